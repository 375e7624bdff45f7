"""``orchestrator drift`` end to end: each kind of change made at the Auth0 tenant behind the
orchestrator's back is detected, adopted (the log records what the tenant has) and repaired (the
tenant is put back to what the log says), through the installed command against the emulator.

Given: a client imported (the log and the tenant agree). When: the change at the tenant. Then:
``drift`` exits 1 naming that one difference; ``--adopt`` or ``--repair`` exits 0; ``drift``
exits 0; and the side that was made to follow holds what the other says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import json_events
from tests.peers.auth0 import Auth0Emulator
from tests.support.auth0_tenant import DOMAIN, NAME, Tenant, pem

SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=200)  # every key's, at first
LATER = SOON + timedelta(days=200)


@pytest.fixture
def tenant(tmp_path: Path, sqlite_url: str) -> Iterator[Tenant]:
    with Auth0Emulator({"domain": DOMAIN, "management_rate": None}) as emu:
        yield Tenant(emu, sqlite_url, tmp_path)


@dataclass
class Given:
    """A client imported as application ``app``: ``keys`` are the tenant's credential ids of
    its test keys, by key number."""

    tenant: Tenant
    app: str
    client_id: str
    keys: dict[int, str]
    offset: int = 0  # test key n of this app is the tenant's key n + offset

    def add(self, number: int, **body: Any) -> str:
        """Test key ``number`` created at the tenant behind our back; its id."""
        return self.tenant.add(self.client_id, number + self.offset, **body)

    def ours(self) -> dict[str, dict[str, Any]]:
        """The log's credentials by the tenant's id."""
        return {c["provider_id"]: c for c in self.tenant.credentials(self.app)}

    def differences(self) -> list[tuple[str, str | None]]:
        result = self.tenant.drift("--app", self.app, "--json")
        assert result.returncode == 1, str(result)
        (app,) = result.json()["apps"]
        return [(d["kind"], d["provider_credential_id"]) for d in app["differences"]]


def imported(tenant: Tenant, app: str, *attached: int, pool: tuple[int, ...] = (),
             offset: int = 0) -> Given:
    """A client with test keys ``attached`` and ``pool`` (each + ``offset``: a key is one
    application's only), imported."""
    client_id = tenant.client(app, *[n + offset for n in attached],
                              pool=[n + offset for n in pool], expires=SOON)
    tenant.imported(match=app)
    keys = {n: _id_of_key(tenant, client_id, n + offset) for n in (*attached, *pool)}
    return Given(tenant, app, client_id, keys, offset)


def _id_of_key(tenant: Tenant, client_id: str, number: int) -> str:
    """The tenant's id for test key ``number`` (matched by its PEM, which only the tenant
    keeps)."""
    return next(c["id"] for c in tenant.pool(client_id) if c["pem"].strip() == pem(number).strip())


# --- each kind: the change at the tenant, then what adopting and repairing leave ------------------


@dataclass
class Kind:
    name: str
    attached: tuple[int, ...]
    pool: tuple[int, ...]
    change: Callable[[Given], None]
    adopted: Callable[[Given], None]  # checks the log after --adopt
    repaired: Callable[[Given], None]  # checks the tenant after --repair
    subject: Callable[[Given], str | None]  # the provider id the difference names


def _added(g: Given) -> None:
    g.keys[7] = g.add(7)


def _added_adopted(g: Given) -> None:
    ours = g.ours()
    assert ours[g.keys[7]]["status"] == "added" and ours[g.keys[7]]["usage"] == "private_key_jwt"


def _added_repaired(g: Given) -> None:
    assert g.tenant.pool_ids(g.client_id) == {g.keys[1]}


def _removed(g: Given) -> None:
    g.tenant.delete(g.client_id, g.keys[2])


def _removed_adopted(g: Given) -> None:
    assert g.ours()[g.keys[2]]["status"] == "deleted"


def _attached(g: Given) -> None:
    g.tenant.attach(g.client_id, g.keys[1], g.keys[2])


def _attached_adopted(g: Given) -> None:
    assert g.ours()[g.keys[2]]["status"] == "active"


def _attached_repaired(g: Given) -> None:
    assert g.tenant.attached(g.client_id) == [g.keys[1]]


def _detached(g: Given) -> None:
    g.tenant.attach(g.client_id, g.keys[1])


def _detached_adopted(g: Given) -> None:
    assert g.ours()[g.keys[3]]["status"] == "disabled"


def _detached_repaired(g: Given) -> None:
    assert sorted(g.tenant.attached(g.client_id)) == sorted([g.keys[1], g.keys[3]])


def _redated(g: Given) -> None:
    g.tenant.redate(g.client_id, g.keys[1], LATER)


def _redated_adopted(g: Given) -> None:
    assert g.ours()[g.keys[1]]["expires_at"] == LATER.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def _redated_repaired(g: Given) -> None:
    assert g.tenant.expiry(g.client_id, g.keys[1]) == SOON.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _to_secret(g: Given) -> None:
    g.tenant.to_secret(g.client_id)


def _to_secret_adopted(g: Given) -> None:
    assert g.ours()[g.keys[1]]["status"] == "disabled"


def _to_secret_repaired(g: Given) -> None:
    remote = g.tenant.remote(g.client_id)
    assert remote.get("token_endpoint_auth_method") is None
    assert g.tenant.attached(g.client_id) == [g.keys[1]]


def _reregistered(g: Given) -> None:
    g.tenant.delete(g.client_id, g.keys[2])
    g.keys[-2] = g.keys[2]
    g.keys[2] = g.add(2, expires_at=SOON.isoformat())  # the same key again: a new id


def _reregistered_both(g: Given) -> None:
    ours = g.ours()
    assert g.keys[-2] not in ours and ours[g.keys[2]]["status"] == "added"


KINDS = [
    Kind("added", (1,), (), _added, _added_adopted, _added_repaired, lambda g: g.keys[7]),
    Kind("removed", (1,), (2,), _removed, _removed_adopted, lambda g: None, lambda g: g.keys[2]),
    Kind("attached", (1,), (2,), _attached, _attached_adopted, _attached_repaired,
         lambda g: g.keys[2]),
    Kind("detached", (1, 3), (), _detached, _detached_adopted, _detached_repaired,
         lambda g: g.keys[3]),
    Kind("redated", (1,), (), _redated, _redated_adopted, _redated_repaired,
         lambda g: g.keys[1]),
    Kind("auth_method", (1,), (), _to_secret, _to_secret_adopted, _to_secret_repaired,
         lambda g: g.keys[1]),
    Kind("reregistered", (1,), (2,), _reregistered, _reregistered_both, _reregistered_both,
         lambda g: g.keys[2]),
]


def drifted(tenant: Tenant, kind: Kind, prefix: str, offset: int = 0) -> Given:
    """Given an imported client, when ``kind``'s change is made at the tenant, then ``drift``
    names that one difference."""
    given = imported(tenant, f"{prefix}-{kind.name}".replace("_", "-"), *kind.attached,
                     pool=kind.pool, offset=offset)
    kind.change(given)
    assert given.differences() == [(kind.name, kind.subject(given))]
    return given


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_each_change_at_the_tenant_is_detected_and_adopted(tenant: Tenant, kind: Kind) -> None:
    given = drifted(tenant, kind, "adopt")
    adopted = tenant.drift("--app", given.app, "--adopt")
    assert adopted.returncode == 0, str(adopted)
    assert f"adopted: {given.app}: " in adopted.stdout
    assert tenant.drift("--app", given.app).returncode == 0
    kind.adopted(given)


REPAIRABLE = [k for k in KINDS if k.name != "removed"]  # imported: the log holds no key to upload


@pytest.mark.parametrize("kind", REPAIRABLE, ids=[k.name for k in REPAIRABLE])
def test_each_change_at_the_tenant_is_detected_and_repaired(tenant: Tenant, kind: Kind) -> None:
    given = drifted(tenant, kind, "repair")
    before = given.ours()
    repaired = tenant.drift("--app", given.app, "--repair")
    assert repaired.returncode == 0, str(repaired)
    assert tenant.drift("--app", given.app).returncode == 0
    kind.repaired(given)
    if kind.name != "reregistered":  # the log is left as it is: only drift.repaired is new
        assert {k: v["status"] for k, v in given.ours().items()} == {
            k: v["status"] for k, v in before.items()}
    audit = tenant.cli("audit", "--app", given.app, "--type", "drift.repaired",
                       "--format", "json").json_lines()
    assert [a["payload"]["kind"] for a in audit] == [kind.name]


def test_a_removed_credential_is_uploaded_again_when_the_log_holds_its_key(
        tenant: Tenant, tmp_path: Path) -> None:
    given = imported(tenant, "reupload", 1)
    (tmp_path / "k4.pem").write_text(pem(4))
    added = tenant.cli("credential", "add", "reupload", "--usage", "private_key_jwt",
                       "--pem", tmp_path / "k4.pem", "--activate", "--json").json()
    # the command uploaded and attached it (test_bound_credential_commands.py)
    uploaded = added["provider_id"]
    assert uploaded in tenant.attached(given.client_id)
    assert tenant.drift("--app", "reupload").returncode == 0
    # deleted at the tenant behind our back: uploaded again, under a new id, and attached
    tenant.delete(given.client_id, uploaded)
    assert given.differences() == [("removed", uploaded)]
    assert tenant.drift("--app", "reupload", "--repair").returncode == 0
    assert tenant.drift("--app", "reupload").returncode == 0
    again = next(pid for pid, c in given.ours().items() if c["id"] == added["id"])
    assert again != uploaded and again in tenant.attached(given.client_id)


def test_an_imported_credential_removed_at_the_tenant_cannot_be_uploaded_again(
        tenant: Tenant) -> None:
    given = imported(tenant, "no-pem", 1, pool=(2,))
    tenant.delete(given.client_id, given.keys[2])
    result = tenant.drift("--app", "no-pem", "--repair")
    assert result.returncode == 1
    assert "the log does not hold its public key (it was imported from the provider)" in (
        result.stdout)


def test_drift_reports_every_kind_at_once_and_exits_0_only_when_all_agree(tenant: Tenant) -> None:
    givens = {}
    for number, kind in enumerate(KINDS):
        given = imported(tenant, f"all-{kind.name}".replace("_", "-"), *kind.attached,
                         pool=kind.pool, offset=10 * (number + 1))
        kind.change(given)
        givens[kind.name] = given
    result = tenant.drift("--json")
    assert result.returncode == 1
    found = {a["app"]: [d["kind"] for d in a["differences"]] for a in result.json()["apps"]}
    assert found == {g.app: [name] for name, g in givens.items()}
    table = tenant.drift()
    assert table.returncode == 1
    assert "7 applications: 0 agree with the provider, 7 differ (7 differences)" in table.stdout
    for given in givens.values():
        assert tenant.drift("--app", given.app, "--adopt").returncode == 0
    assert tenant.drift().returncode == 0
    assert tenant.drift("--provider", NAME).returncode == 0


def test_the_local_provider_has_nothing_to_compare(tenant: Tenant) -> None:
    tenant.cli("app", "register", "here")
    for args in (("--app", "here"), ("--provider", "local")):
        result = tenant.drift(*args)
        assert result.returncode == 0
        assert len(result.stdout.splitlines()) == 1
        assert "the log itself is the identity provider" in result.stdout


def test_an_unreachable_provider_is_not_called_clean(tenant: Tenant) -> None:
    imported(tenant, "offline", 1)
    tenant.emu.stop()
    result = tenant.drift("--app", "offline")
    assert result.returncode == 3, str(result)
    assert "not compared: offline" in result.stdout


def test_a_client_deleted_at_the_tenant_is_named_with_what_to_do(tenant: Tenant) -> None:
    gone = imported(tenant, "gone", 1)
    imported(tenant, "here", 2)
    tenant.emu.tenant.delete_client(gone.client_id)  # behind the orchestrator's back
    result = tenant.drift()
    assert result.returncode == 1, str(result)
    line = (f"client missing: gone ({NAME}): client {gone.client_id!r} no longer exists at "
            f"identity provider {NAME!r} (deleted there; Auth0 {DOMAIN}: GET /clients/"
            f"{gone.client_id}: The client does not exist): nothing the orchestrator does can "
            "recreate it (drift --repair neither); if application 'gone' lives on, create a "
            "client for it at the provider and register it again under a new name: "
            f"orchestrator app register NAME --provider {NAME} --client-id ID (or orchestrator "
            f"import --provider {NAME})")
    assert line in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == (
        "2 applications: 1 agree with the provider, 0 differ (0 differences), 0 could not be "
        "compared, 1 whose client is missing at the provider")
    document = tenant.drift("--json").json()
    found = {a["app"]: a for a in document["apps"]}
    assert found["gone"]["client_missing"] and not found["gone"]["clean"]
    assert not found["here"]["client_missing"] and found["here"]["clean"]
    assert document["summary"]["client_missing"] == 1
    assert document["summary"]["not_compared"] == 0
    before = tenant.cli("audit", "--app", "gone", "--format", "json").json_lines()
    repaired = tenant.drift("--app", "gone", "--repair")
    assert repaired.returncode == 1 and line in repaired.stdout.splitlines()
    assert tenant.cli("audit", "--app", "gone", "--format", "json").json_lines() == before


# --- the daemon ---------------------------------------------------------------------------------


JAR_POLICY = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: jar-keys}
spec:
  selector: {apps: ["daemon-*"]}
  credential: {usage: jar}
  rotation: {every: 30d, beforeExpiry: 10d, overlap: 1h}
  lifetime: 60d
"""


def test_the_daemon_does_not_rotate_an_app_whose_tenant_contradicts_the_log(
        tenant: Tenant) -> None:
    drifted = imported(tenant, "daemon-drifted", 1)
    imported(tenant, "daemon-clean", 2)
    (tenant.policies / "jar.yaml").write_text(JAR_POLICY)
    foreign = tenant.add(drifted.client_id, 3)  # made at the tenant behind our back
    log = tenant.policies.parent / "daemon.log"
    result = tenant.cli.run("daemon", "--once", "--json-logs", "--drift-every", "1h")
    log.write_text(result.stderr)
    assert result.returncode == 0, str(result)
    (alarm,) = json_events(log, "app_drifted")
    assert alarm["level"] == "error" and alarm["app"] == "daemon-drifted"
    assert alarm["fix"] == "orchestrator drift --app daemon-drifted --adopt|--repair"
    assert any(foreign in text for text in alarm["differences"])
    started = {e["stream"].removeprefix("app:") for e in tenant.cli(
        "audit", "--type", "rotation.started", "--format", "json").json_lines()}
    assert started == {"daemon-clean"}
    # repaired: the next check finds it clean and its rotation starts
    assert tenant.drift("--app", "daemon-drifted", "--repair").returncode == 0
    again = tenant.cli.run("daemon", "--once", "--json-logs")
    assert again.returncode == 0, str(again)
    assert "app_drifted" not in again.stderr
    started = {e["stream"].removeprefix("app:") for e in tenant.cli(
        "audit", "--type", "rotation.started", "--format", "json").json_lines()}
    assert started == {"daemon-clean", "daemon-drifted"}
