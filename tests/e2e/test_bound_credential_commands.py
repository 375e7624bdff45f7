"""``orchestrator credential add|activate|disable|delete|set-expiry`` on an application bound to
an Auth0 tenant, through the installed command as an operator runs them against the emulator:
each one does at the tenant what it says (read from the emulator's own state), says so on its
line, and ``orchestrator drift`` exits 0 after it. With the tenant failing every Management API
call, a command is one ``error:`` line, exit 1, and nothing is recorded or changed there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.peers.auth0 import Auth0Emulator
from tests.support.auth0_tenant import DOMAIN, NAME, Tenant

APP = "payments"
WHERE = f"identity provider {NAME!r}"


@pytest.fixture
def tenant(tmp_path: Path, sqlite_url: str) -> Iterator[Tenant]:
    with Auth0Emulator({"domain": DOMAIN, "management_rate": None}) as emu:
        yield Tenant(emu, sqlite_url, tmp_path)


def clean(tenant: Tenant) -> None:
    result = tenant.drift("--app", APP)
    assert result.returncode == 0, str(result)


def events(tenant: Tenant) -> int:
    return len(tenant.cli("audit", "--app", APP, "--format", "json").json_lines())


def test_each_command_changes_the_tenant_and_drift_stays_clean(tenant: Tenant) -> None:
    cli = tenant.cli
    client_id = tenant.client(APP)
    cli("app", "register", APP, "--provider", NAME, "--client-id", client_id)

    first = cli("credential", "add", APP, "--usage", "private_key_jwt", "--generate",
                "--json").json()
    pid = first["provider_id"]
    assert tenant.pool_ids(client_id) == {pid} and tenant.attached(client_id) == []
    clean(tenant)

    shown = cli("credential", "activate", APP, first["id"])
    assert shown.stdout == f"{APP} {first['id']}: active (attached at {WHERE})\n"
    assert tenant.attached(client_id) == [pid]
    clean(tenant)
    again = cli("credential", "activate", APP, first["id"])
    assert again.stdout == (f"{APP} {first['id']}: active (active already: nothing sent to "
                            f"{WHERE})\n")
    assert tenant.attached(client_id) == [pid]

    second = cli("credential", "add", APP, "--usage", "private_key_jwt", "--generate",
                 "--activate")
    assert second.stdout.endswith(f"; attached at {WHERE}\n"), second.stdout
    (other,) = tenant.pool_ids(client_id) - {pid}
    assert tenant.attached(client_id) == [pid, other]
    clean(tenant)

    when = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    cli("credential", "set-expiry", APP, first["id"], "--expires-at", when.isoformat())
    assert tenant.expiry(client_id, pid) == when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    clean(tenant)

    cli("credential", "disable", APP, first["id"])
    assert tenant.attached(client_id) == [other]
    clean(tenant)

    cli("credential", "delete", APP, first["id"])
    assert tenant.pool_ids(client_id) == {other}
    clean(tenant)

    assert "PRIVATE KEY" not in json.dumps(tenant.emu.snapshot())
    assert "PRIVATE KEY" not in "".join(r.stdout + r.stderr for r in cli.history)


def test_a_tenant_that_fails_every_call_refuses_in_one_line_and_nothing_is_written(
        tenant: Tenant) -> None:
    cli = tenant.cli
    client_id = tenant.client(APP)
    cli("app", "register", APP, "--provider", NAME, "--client-id", client_id)
    cred = cli("credential", "add", APP, "--usage", "private_key_jwt", "--generate", "--activate",
               "--json").json()
    recorded, before = events(tenant), tenant.remote(client_id)
    tenant.emu.configure(faults={"error_rate": 1.0, "error_statuses": [503]})
    try:
        failed = cli.run("credential", "disable", APP, cred["id"], "--force")
    finally:
        tenant.emu.configure(faults={"error_rate": 0.0})
    assert failed.returncode == 1 and failed.stdout == "", str(failed)
    (line,) = failed.stderr.splitlines()
    assert line.startswith(f"error: Auth0 {DOMAIN}: ") and "503" in line, line
    assert events(tenant) == recorded and tenant.remote(client_id) == before
    assert tenant.attached(client_id) == [cred["provider_id"]]
    clean(tenant)
