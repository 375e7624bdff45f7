"""``orchestrator rotations rollback APP ROTATION`` through the installed command and daemon.

One site on the local provider, under a ``VirtualClock``; the daemon (``daemon --once``) rotates
``web-*`` keys (every 30d, overlap 1h, lifetime 60d, retention 1d; a delivery hook that records
each call) and provisions ``svc-1``'s client secret. The rollback of a completed rotation puts
its previous credential back: active again, its files delivered again (the hook runs), the new
one disabled, recorded as its own events, and the daemon does not start the same rotation again
at its next tick. Every case it cannot be done is refused with one ``error:`` line, a non-zero
exit, and nothing written (no event, no keystore item, no delivered file changed): an unknown
application or rotation, a client secret's rotation, a running one, one rolled back already, one
with a rotation of its usage in flight, one that is not the latest, a provisioning (nothing to
go back to), a previous credential deleted, expired, imported or missing from the keystore (no
private key to deliver). At the Auth0 emulator the rollback moves the tenant's slot back.
"""

from __future__ import annotations

import base64
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.helpers import Cli, VirtualClock, assert_refused, policy_yaml, rsa_key, spki_pem
from tests.oracle import read_log
from tests.peers.auth0 import Auth0Emulator
from tests.support.auth0_tenant import DOMAIN, NAME, Tenant

T0 = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
KEYS = policy_yaml("web-keys", '["web-*"]', "{usage: private_key_jwt, keySize: 2048}",
                   "{every: 30d, beforeExpiry: 7d, overlap: 1h}", "60d",
                   "  retention: 1d\n  delivery: {hook: {command: [./hook.sh]}}\n")
SECRETS = policy_yaml("svc-secrets", '["svc-*"]', "{usage: client_secret}",
                      "{every: 30d, beforeExpiry: 7d, overlap: 1h}", None)
HOOK = """#!/bin/sh
echo "$ORCHESTRATOR_APP $ORCHESTRATOR_CREDENTIAL_ID" >> CALLS
"""


class Site:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "orchestrator.db"
        self.clock = VirtualClock(tmp_path / "clock", T0)
        self.cli = Cli(f"sqlite:///{self.db}", tmp_path / "keystore", tmp_path, clock=self.clock)
        policies, self.delivery = tmp_path / "policies", tmp_path / "delivery"
        self.calls = tmp_path / "hook-calls"
        policies.mkdir()
        (policies / "web-keys.yaml").write_text(KEYS)
        (policies / "svc-secrets.yaml").write_text(SECRETS)
        hook = policies / "hook.sh"
        hook.write_text(HOOK.replace("CALLS", str(self.calls)))
        hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
        self.cli.env.update(ORCHESTRATOR_POLICIES=str(policies),
                            ORCHESTRATOR_DELIVERY=str(self.delivery))

    def daemon(self, at: datetime) -> None:
        self.clock.set(at)
        self.cli("daemon", "--once")

    def rotations(self, app: str) -> list[dict[str, Any]]:
        rows = self.cli("rotations", "--app", app, "--all", "--json").json()
        return sorted(rows, key=lambda r: r["started_at"])

    def written(self) -> tuple[int, dict[str, bytes], dict[str, bytes]]:
        """What a refusal must leave as it was: the log, the keystore, the delivered files."""
        with sqlite3.connect(self.db) as conn:
            count = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        files = {str(p.relative_to(self.delivery)): p.read_bytes()
                 for p in sorted(self.delivery.rglob("*")) if p.is_file()}
        return count, self.cli.item_files(), files

    def refused(self, app: str, rotation_id: str, *fragments: str) -> None:
        before = self.written()
        assert_refused(self.cli.run("rotations", "rollback", app, rotation_id), *fragments)
        assert self.written() == before


def delivered_at(delivery: Path, app: str) -> str:
    return (delivery / app / "private_key_jwt" / "credential_id").read_text()


def delivered(site: Site, app: str) -> str:
    return delivered_at(site.delivery, app)


def test_a_completed_rotation_is_rolled_back_and_every_impossible_rollback_refused(
        tmp_path: Path) -> None:
    site = Site(tmp_path)
    cli = site.cli
    for app in ("web-1", "web-2", "web-3", "svc-1"):
        cli("app", "register", app)
    # web-2's first key expires in 5 hours; web-3's was imported (its private key is elsewhere)
    cli("credential", "add", "web-2", "--usage", "private_key_jwt", "--generate", "--activate",
        "--expires-at", (T0 + 5 * HOUR).isoformat())
    (tmp_path / "web-3.pem").write_bytes(spki_pem(rsa_key()))
    cli("credential", "add", "web-3", "--usage", "private_key_jwt", "--pem",
        tmp_path / "web-3.pem", "--activate")
    site.daemon(T0)  # web-1 provisioned, svc-1's secret provisioned, web-2 rotating (expiring)
    (r0,) = site.rotations("web-1")
    (secret,) = site.rotations("svc-1")

    site.refused("nope", r0["rotation_id"], "application 'nope' is not registered")
    site.refused("web-1", "rot_unknown", "web-1 has no rotation 'rot_unknown'",
                 "orchestrator rotations --app web-1 --all")
    site.refused("svc-1", secret["rotation_id"], "rotated svc-1's client secret",
                 "orchestrator secret rotate svc-1")
    site.refused("web-1", r0["rotation_id"], "had no previous credential",
                 "nothing to roll back to")

    site.daemon(T0 + 2 * HOUR)  # web-2's rotation completes; its old key expires at T0 + 5h
    (w2,) = site.rotations("web-2")
    assert w2["status"] == "completed"
    site.clock.set(T0 + 6 * HOUR)
    site.refused("web-2", w2["rotation_id"], f"previous credential {w2['old_credential_id']}",
                 "expired at 2031-03-03T14:00:00+00:00", "orchestrator rotate web-2")

    due = T0 + 31 * DAY
    site.daemon(due)  # web-1 and web-3 rotate for their age; waiting for the overlap
    r1 = site.rotations("web-1")[1]
    assert r1["status"] == "running"
    site.refused("web-1", r1["rotation_id"], f"rotation {r1['rotation_id']} is running, not "
                 "completed", "orchestrator rotations abandon web-1")
    site.daemon(due + 2 * HOUR)
    r3 = site.rotations("web-3")[0]
    assert r3["status"] == "completed" and site.rotations("web-1")[1]["status"] == "completed"
    site.refused("web-3", r3["rotation_id"], "was imported", "no private key of it")

    # the rollback: not while the keystore has lost the previous key (moved aside, then back)
    old, new = r1["old_credential_id"], r1["new_credential_id"]
    assert delivered(site, "web-1") == new
    name = base64.urlsafe_b64encode(old.encode()).rstrip(b"=").decode()
    item, aside = tmp_path / "keystore" / "items" / f"{name}.bin", tmp_path / "aside.bin"
    item.rename(aside)
    site.refused("web-1", r1["rotation_id"], f"the keystore no longer holds the private key of "
                 f"{old}", "orchestrator rotate web-1")
    aside.rename(item)
    site.clock.set(due + 3 * HOUR)
    shown = cli("rotations", "rollback", "web-1", r1["rotation_id"])
    assert shown.stdout == (f"rotation {r1['rotation_id']}: rolled back; {old} is in service "
                            f"again; its files delivered to {site.delivery / 'web-1' / 'private_key_jwt'}"
                            f"; {new} is disabled\n")
    assert delivered(site, "web-1") == old
    assert site.calls.read_text().splitlines()[-1] == f"web-1 {old}"  # the hook ran
    log = read_log(site.db)
    mine = [r for r in log.rows if r["app"] == "web-1" and r["at"] == due + 3 * HOUR]
    assert [(r["type"], r["payload"].get("credential_id")) for r in mine] == [
        ("credential.activated", old), ("credential.disabled", new),
        ("rotation.rolled_back", None)]
    assert mine[-1]["payload"] == {"rotation_id": r1["rotation_id"], "restored_credential_id": old,
                                   "retired_credential_id": new, "note": None}
    states = {c["id"]: c["status"] for c in cli("credential", "list", "web-1", "--all",
                                                 "--json").json()}
    assert (states[old], states[new]) == ("active", "disabled")
    assert site.rotations("web-1")[1]["status"] == "rolled_back"
    assert cli("verify").returncode == 0
    site.refused("web-1", r1["rotation_id"], "was rolled back already", f"{old} is in service")

    # the daemon leaves it: the restored key's age counts from the rollback
    site.daemon(due + 4 * HOUR)
    assert len(site.rotations("web-1")) == 2 and delivered(site, "web-1") == old

    # before the restored key expires (T0 + 60d) the daemon rotates it: R2
    site.daemon(T0 + 54 * DAY)
    r2 = site.rotations("web-1")[2]
    assert (r2["reason"], r2["old_credential_id"]) == ("expiring", old)
    site.refused("web-1", r0["rotation_id"], f"web-1 has a private_key_jwt rotation in flight "
                 f"({r2['rotation_id']}, running)")
    site.daemon(T0 + 54 * DAY + 2 * HOUR)
    site.refused("web-1", r0["rotation_id"], "is not web-1's latest private_key_jwt rotation",
                 f"({r2['rotation_id']}, completed, came after it)")
    site.daemon(T0 + 56 * DAY)  # retention: the old key (disabled two days ago) is deleted
    site.refused("web-1", r2["rotation_id"], f"previous credential {old} of rotation "
                 f"{r2['rotation_id']} was deleted", "orchestrator rotate web-1")


def test_a_rollback_at_an_auth0_tenant_attaches_the_previous_key_again(
        tmp_path: Path, sqlite_url: str) -> None:
    """At the Auth0 emulator: the rollback attaches the previous key to the client's
    private_key_jwt slot again and detaches the new one (read from the tenant's own state);
    drift is clean after it. While the Management API answers 503, the rollback is one
    ``error:`` line and nothing is recorded or changed at the tenant."""
    start = datetime.now(UTC).replace(microsecond=0)  # the adapter dates assertions by the wall
    with Auth0Emulator({"domain": DOMAIN, "management_rate": None}) as emu:  # clock, as Auth0 does
        tenant = Tenant(emu, sqlite_url, tmp_path)
        clock = VirtualClock(tmp_path / "now", start)
        cli = Cli(sqlite_url, tenant.cli.keystore, tmp_path, clock=clock, init=False)
        cli.env.update({k: v for k, v in tenant.cli.env.items() if k != "ORCHESTRATOR_ACTOR"},
                       **clock.env)
        (tenant.policies / "keys.yaml").write_text(policy_yaml(
            "pay-keys", '["pay-*"]', "{usage: private_key_jwt}",
            "{every: 30d, beforeExpiry: 7d, overlap: 1h}", "60d"))

        def daemon(at: datetime) -> None:
            clock.set(at)
            cli("daemon", "--once")

        client_id = tenant.client("pay-1")
        cli("app", "register", "pay-1", "--provider", NAME, "--client-id", client_id)
        daemon(start)
        daemon(start + 31 * DAY)
        daemon(start + 31 * DAY + 2 * HOUR)
        rotation = cli("rotations", "--app", "pay-1", "--all", "--json").json()
        (r1,) = [r for r in rotation if r["old_credential_id"]]
        ids = {c["id"]: c["provider_id"] for c in tenant.credentials("pay-1")}
        old, new = ids[r1["old_credential_id"]], ids[r1["new_credential_id"]]
        assert tenant.attached(client_id) == [new]

        at = clock.set(start + 31 * DAY + 3 * HOUR)
        emu.configure(faults={"error_rate": 1.0, "error_statuses": [503]})
        before = len(read_log(tmp_path / "orchestrator.db").rows)
        assert_refused(cli.run("rotations", "rollback", "pay-1", r1["rotation_id"]),
                       "Auth0 drift.auth0.test", "503")
        assert len(read_log(tmp_path / "orchestrator.db").rows) == before
        emu.configure(faults={"error_rate": 0.0})
        assert tenant.attached(client_id) == [new]

        cli("rotations", "rollback", "pay-1", r1["rotation_id"])
        assert tenant.attached(client_id) == [old]
        assert tenant.pool_ids(client_id) == {old, new}  # the new one detached, not deleted
        assert delivered_at(tmp_path / "delivery", "pay-1") == r1["old_credential_id"]
        assert cli.run("drift", "--app", "pay-1").returncode == 0
        daemon(at + HOUR)  # the daemon agrees: nothing to rotate, nothing drifted
        assert tenant.attached(client_id) == [old]
        assert len(cli("rotations", "--app", "pay-1", "--all", "--json").json()) == 2
