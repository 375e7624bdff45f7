"""The identity provider down for hours, as an operator meets it. The installed daemon (one
process, on a virtual clock the test moves five minutes a tick) runs against the Auth0 emulator,
whose tenant goes down for twelve virtual hours: for six nothing listens on its port (every
connection refused), for six more it answers 503 to everything, its token endpoint included.
Four applications are bound to it; the daemon's first tick, the tenant up, compares each with
it (an app never compared is not rotated), then the tenant goes down as their rotations fall due
(the policies arrive):

    pay-a  a private_key_jwt key expiring in 2 days (within beforeExpiry)
    pay-b  a key expiring 5 hours into the outage
    pay-c  a key due for reasons other than its expiry (an imported key of unknown size)
    vault  a client secret the log has none of yet (the orchestrator is to provision one)

While the tenant is down every tick completes; each failed step is a warning naming the
application and the provider, no traceback; each rotation backs off, parks after its budget
with the old credential intact (the tenant still holds it and accepts it), and nothing is
recorded that the tenant did not confirm. The log grows with the backoff, not with the ticks:
a parked rotation whose old credential nears its expiry or has gone (pay-a, pay-b, vault) is
retried once per ``retry.maxBackoff``; pay-b's key expires at its instant and the app is
reported without a usable credential at every tick (README: the worst state, paged on).

When the tenant returns the daemon retries those three on its own and they complete; pay-c's
rotation, parked for a reason that is not an expiry, waits for a human (README: *When a
rotation parks*), who retries it. (Before ``domain/in_flight.py`` let a parked rotation explain
its never-uploaded key, the first clean drift check held all three key apps as drifted, and
none was ever retried: pay-b stayed without a credential.) Then ``drift`` is clean, ``verify``
passes, every application authenticates at the tenant with what was delivered to it and no
longer with what it held before (pay-b's old key expired there), and this test's own fold of
the events (``tests.oracle``) finds pay-a and pay-c never without a usable credential and pay-b
without one only from its expiry until the tenant came back.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.helpers import Cli, VirtualClock, read_delivered
from tests.oracle import gaps, read_log
from tests.peers.auth0 import Auth0Emulator
from tests.support.auth0_tenant import DOMAIN, NAME, Tenant, key
from tests.support.live import LiveDaemon
from tests.support.token_client import Options, accepted, attempt

TICK = timedelta(minutes=5)
HALF = timedelta(hours=6)  # refused connections, then 503s for as long again
ATTEMPTS, MAX_BACKOFF = 3, timedelta(hours=1)
RETRY = f"retry: {{attempts: {ATTEMPTS}, backoff: 5m, maxBackoff: 1h}}"
POLICIES = {
    "keys.yaml": f"""apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {{name: keys}}
spec:
  selector: {{apps: ["pay-*"]}}
  credential: {{usage: private_key_jwt}}
  rotation: {{every: 30d, beforeExpiry: 10d, overlap: 1h, {RETRY}}}
  lifetime: 60d
""",
    "secrets.yaml": f"""apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {{name: secrets}}
spec:
  selector: {{apps: [vault]}}
  credential: {{usage: client_secret}}
  rotation: {{every: 30d, beforeExpiry: 7d, overlap: 1h, acceptSecretGap: true, {RETRY}}}
""",
}
ALL_503 = {"error_rate": 1.0, "error_statuses": [503], "apply_to_oauth": True}
VAULT_SECRET = "vault-secret-before-the-outage-0123456789"
KEYS = {"pay-a": 1, "pay-b": 2, "pay-c": 3}
APPS = (*KEYS, "vault")
PER_TICK = 4  # heartbeat, tick_completed, one drift check, pay-b's alarm once it has expired
PER_RETRY = 2 + ATTEMPTS  # rotation_retried, its failed steps and parking, a tick's summary


@pytest.mark.slow
def test_the_daemon_rides_out_an_identity_provider_down_for_twelve_hours(
        tmp_path: Path, sqlite_url: str) -> None:
    with Auth0Emulator({"domain": DOMAIN, "management_rate": None}) as emu:
        tenant = Tenant(emu, sqlite_url, tmp_path)
        start = datetime.now(UTC).replace(microsecond=0)
        lapse = start + timedelta(hours=5, minutes=2)  # pay-b's key, mid-outage
        expiries = {"pay-a": start + timedelta(days=2), "pay-b": lapse,
                    "pay-c": start + timedelta(days=40)}
        ids = {app: tenant.client(app, n, expires=expiries[app]) for app, n in KEYS.items()}
        ids["vault"] = emu.seed_client({"name": "vault", "client_secret": VAULT_SECRET}).client_id
        tenant.cli("import", "--provider", NAME)
        clock = VirtualClock(tmp_path / "now", start)
        cli = Cli(sqlite_url, tenant.cli.keystore, tmp_path, clock=clock, init=False)
        cli.env.update({k: v for k, v in tenant.cli.env.items() if k != "ORCHESTRATOR_ACTOR"},
                       **clock.env)
        daemon = LiveDaemon(cli.env, tmp_path, clock, tmp_path / "daemon.log",
                            interval=TICK.total_seconds())
        try:
            # the first tick compared every app with the tenant; now it goes down, and the
            # rotations fall due
            held = at_the_tenant(emu)
            before = read_log(tmp_path / "orchestrator.db").rows
            imported = len(before)
            since = max(r["at"] for r in before if r["type"] == "credential.activated")
            emu.halt()
            for name, text in POLICIES.items():
                (tenant.policies / name).write_text(text)
            ticks = []
            for n in range(2 * HALF // TICK):
                if n == HALF // TICK:
                    emu.resume()
                    emu.configure(faults=ALL_503)
                seen = len(daemon.lines())
                daemon.step(TICK)
                ticks.append(daemon.lines()[seen:])
            down_until = clock.now()
            emu.configure(faults={"error_rate": 0.0})  # back, before the daemon's next tick

            judge_the_outage(ticks)
            log = read_log(tmp_path / "orchestrator.db")
            during = log.rows[imported:]
            nothing_unconfirmed(during)
            assert at_the_tenant(emu) == held  # nothing changed there
            for app, n in KEYS.items():  # the old keys are intact, and they still work
                if app != "pay-b":
                    assert authenticates(imported_key(emu, ids[app], n)), app
            assert authenticates(secret_files(emu, ids["vault"], VAULT_SECRET))
            retried_by_the_backoff(log, start, down_until)
            (expired,) = [r for r in during if r["type"] == "credential.expired"]
            assert expired["app"] == "pay-b" and lapse <= expired["at"] < lapse + TICK
            alarms = [e for tick in ticks for e in tick
                      if e["event"] == "app_without_usable_credential"]
            assert {e["app"] for e in alarms} == {"pay-b"}
            # at every tick from the one that recorded the expiry on (the nth tick is at
            # start + n ticks)
            assert len(alarms) == sum(1 for n in range(1, len(ticks) + 1)
                                      if start + n * TICK >= lapse)

            # the tenant is back: the daemon retries what it retries on its own
            for _ in range(int(3 * MAX_BACKOFF / TICK)):
                if all(latest(read_log(tmp_path / "orchestrator.db"), app)["done"]
                       for app in ("pay-a", "pay-b", "vault")):
                    break
                daemon.step(TICK)
            log = read_log(tmp_path / "orchestrator.db")
            for app in ("pay-a", "pay-b", "vault"):
                assert latest(log, app)["done"], (app, latest(log, app))
            waiting = latest(log, "pay-c")  # parked for a human, not retried by the daemon
            assert waiting["types"][-1] == "rotation.parked" and not waiting["retried"], waiting
            cli("rotations", "retry", "pay-c", waiting["id"])  # the operator
            for _ in range(int(2 * MAX_BACKOFF / TICK)):
                if latest(read_log(tmp_path / "orchestrator.db"), "pay-c")["done"]:
                    break
                daemon.step(TICK)
            end = clock.now()
        finally:
            assert daemon.stop() == 0

        text = (tmp_path / "daemon.log").read_text()
        assert "Traceback" not in text and '"tick_failed"' not in text
        assert cli.run("drift").returncode == 0, str(cli.history[-1])
        assert cli.run("verify").returncode == 0, str(cli.history[-1])
        log = read_log(tmp_path / "orchestrator.db")
        assert latest(log, "pay-c")["done"]
        delivered = tmp_path / "delivery"
        for app, n in KEYS.items():
            files = read_delivered(delivered / app / "private_key_jwt")
            assert authenticates(files), app  # what the app holds now works at the tenant ...
            if app == "pay-b":  # ... and the old key no more: pay-b's expired at the tenant
                (old,) = [c for c in tenant.pool(ids[app]) if c["name"] == f"test key {n}"]
                assert datetime.fromisoformat(old["expires_at"]) == lapse  # (its clock is behind)
            else:  # the others' were detached there after the overlap
                assert not authenticates(imported_key(emu, ids[app], n)), app
            # never without a usable key, but pay-b from its expiry until the tenant was back
            usable = [i for c in log.creds[app].values() for i in c.usable_intervals(end)]
            new = log.creds[app][files["credential_id"].decode()].active_from[0]
            assert gaps(usable, since, end) == ([(lapse, new)] if app == "pay-b" else []), app
            assert new > down_until
        secret = read_delivered(delivered / "vault" / "client_secret")["client_secret"].decode()
        assert authenticates(secret_files(emu, ids["vault"], secret))
        assert not authenticates(secret_files(emu, ids["vault"], VAULT_SECRET))
        assert cli("plan", "--json").json()["without_usable_credential"] == []


# --- the outage, judged ----------------------------------------------------------------------


def judge_the_outage(ticks: list[list[dict[str, Any]]]) -> None:
    """Every tick completed and said what was wrong in bounded words: failures are warnings
    naming the app and the provider, parking and a lost credential errors, nothing else."""
    assert all(any(e["event"] == "daemon_heartbeat" for e in tick) for tick in ticks)
    lines = [e for tick in ticks for e in tick]
    assert not [e for e in lines if "exception" in e or e["event"] == "tick_failed"]
    errors = {e["event"] for e in lines if e["level"] in ("error", "critical")}
    assert errors <= {"rotation_parked", "app_without_usable_credential"}, errors
    half = len(ticks) // 2
    for n, tick in enumerate(ticks):
        cause = "cannot connect" if n < half else "503"
        for e in tick:
            if e["event"] in ("rotation_step_failed", "rotation_parked"):
                assert e["app"] in APPS and e["provider"] == NAME, e
                assert e["level"] == ("warning" if e["event"] == "rotation_step_failed"
                                      else "error") and cause in e["error"], e
            if e["event"] == "drift_check_failed":
                assert e["level"] == "warning" and e["provider"] == NAME and cause in e["error"]
        assert sum(e["event"] == "drift_check_failed" for e in tick) <= 1  # one per provider
    # the log grows with the backoff, not with the ticks: per hour, a few lines a tick and
    # each app's retry (once per maxBackoff), however long the outage lasts
    per_hour = int(timedelta(hours=1) / TICK)
    hours = [Counter(e["event"] for tick in ticks[h:h + per_hour] for e in tick)
             for h in range(0, len(ticks), per_hour)]
    bound = per_hour * PER_TICK + len(APPS) * PER_RETRY
    assert max(sum(hour.values()) for hour in hours[1:]) <= bound, hours
    failed = Counter((h, e["app"]) for h in range(len(hours)) for tick in
                     ticks[h * per_hour:(h + 1) * per_hour] for e in tick
                     if e["event"] in ("rotation_step_failed", "rotation_parked"))
    assert max(failed.values()) <= ATTEMPTS, failed  # each app: at most its budget an hour


def nothing_unconfirmed(rows: list[dict[str, Any]]) -> None:
    """What the log records while the tenant is down: rotations started, keys generated (in
    the keystore, not yet at the tenant), failures, parkings, retries, an expiry. Nothing that
    needs the tenant's word: no registration, activation, test, delivery or secret."""
    kinds = Counter(r["type"] for r in rows)
    assert set(kinds) <= {"policy.applied", "rotation.started", "credential.added",
                          "rotation.step_recorded", "rotation.failed", "rotation.parked",
                          "rotation.retried", "credential.expired"}, kinds
    assert {r["payload"]["step"] for r in rows if r["type"] == "rotation.step_recorded"} == {
        "generated"}
    assert kinds["rotation.started"] == len(APPS)


def retried_by_the_backoff(log: Any, start: datetime, until: datetime) -> None:
    """Each rotation parked after its budget; the daemon sent pay-a's (its old key within
    beforeExpiry), pay-b's (its key about to expire, then expired) and vault's (no secret yet)
    back to work once per maxBackoff after each parking, never sooner; pay-c's never."""
    for app in APPS:
        rows = [r for r in log.rows if r["app"] == app and start < r["at"] <= until
                and r["type"] in ("rotation.parked", "rotation.retried")]
        assert rows and rows[0]["type"] == "rotation.parked", app
        retries = [r for r in rows if r["type"] == "rotation.retried"]
        if app == "pay-c":
            assert not retries
            continue
        assert len(retries) >= 5, (app, len(retries))  # 12 hours at about 1h20 a round
        for parked, retried in itertools.pairwise(rows):
            if retried["type"] == "rotation.retried":
                assert parked["type"] == "rotation.parked"
                assert retried["at"] - parked["at"] >= MAX_BACKOFF, (app, parked, retried)


def latest(log: Any, app: str) -> dict[str, Any]:
    """The app's latest rotation: its id, its events' types, whether it completed and whether
    anyone retried it."""
    started = [r for r in log.rows if r["app"] == app and r["type"] == "rotation.started"]
    rid = started[-1]["payload"]["rotation_id"]
    types = [r["type"] for r in log.by_rotation[rid]]
    return {"id": rid, "types": types, "done": types[-1] == "rotation.completed",
            "retried": "rotation.retried" in types}


# --- the tenant's side -------------------------------------------------------------------------


def at_the_tenant(emu: Auth0Emulator) -> dict[str, Any]:
    """What each client holds at the tenant: its credentials, what is attached, its secret."""
    return {c["client_id"]: (sorted(x["id"] for x in c["credentials"]),
                             json.dumps(c.get("client_authentication_methods"), sort_keys=True),
                             c.get("client_secret"))
            for c in emu.snapshot()["clients"]}


def imported_key(emu: Auth0Emulator, client_id: str, number: int) -> dict[str, bytes]:
    """The files of an application holding test key ``number`` (imported: the orchestrator
    never had its private half)."""
    pem = key(number).private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return {"private_key.pem": pem, "metadata.json": _metadata(emu, client_id,
                                                               "private_key_jwt")}


def secret_files(emu: Auth0Emulator, client_id: str, secret: str) -> dict[str, bytes]:
    return {"client_secret": secret.encode(),
            "metadata.json": _metadata(emu, client_id, "client_secret")}


def _metadata(emu: Auth0Emulator, client_id: str, usage: str) -> bytes:
    return json.dumps({"client_id": client_id, "usage": usage, "token_endpoint": emu.token_url,
                       "issuer": f"https://{DOMAIN}/"}).encode()


def authenticates(files: dict[str, bytes]) -> bool:
    """Whether the tenant authenticates an application holding ``files`` (the application's
    own client, tests/support/token_client.py)."""
    status, error = attempt(files, Options())
    return accepted(status, error)
