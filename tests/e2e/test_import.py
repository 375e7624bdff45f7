"""``orchestrator import`` end to end: the installed command against the Auth0 emulator, which
runs in this process and is reached through an IdentityProvider resource in the policies folder.
"""

from __future__ import annotations

import os
import pty
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ORCHESTRATOR, dump_tables
from tests.peers.auth0 import Auth0Emulator
from tests.support.auth0_tenant import DOMAIN, JAR, NAME, PKJWT, Tenant


@pytest.fixture
def tenant(tmp_path: Path, sqlite_url: str) -> Iterator[Tenant]:
    with Auth0Emulator({"domain": DOMAIN, "management_rate": None}) as emu:
        yield Tenant(emu, sqlite_url, tmp_path)


def by_client(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["client_id"]: c for c in document["imported"]}


def test_import_registers_each_client_bound_to_the_provider_with_its_credentials(
        tenant: Tenant) -> None:
    pay = tenant.client("Payments API (prod)", 0, pool=[1])
    sign = tenant.client("signer", jar=[2])
    plain = tenant.client("plain")
    document = tenant.imported(match="[Pps]*")
    assert document["summary"] == {"imported": 3, "already_imported": 0, "failed": 0,
                                   "credentials": 3, "credentials_left_out": 0}
    found = by_client(document)
    assert (found[pay]["app"], found[sign]["app"], found[plain]["app"]) == (
        "Payments-API-prod", "signer", "plain")
    apps = {a["app"]: a for a in tenant.cli("app", "list", "--json").json()}
    assert set(apps) == {"Payments-API-prod", "signer", "plain"}
    # the credentials are recorded as they are at the tenant, with the tenant's ids
    pool = {c["kid"]: c for c in tenant.pool(pay)}
    creds = {c["kid"]: c for c in tenant.credentials("Payments-API-prod")}
    assert set(creds) == set(pool)
    attached = set(tenant.attached(pay))
    for kid, ours in creds.items():
        assert ours["provider_id"] == pool[kid]["id"]
        assert ours["usage"] == PKJWT and ours["alg"] == "RS256"
        assert ours["status"] == ("active" if pool[kid]["id"] in attached else "added")
        assert ours["fingerprint"] == f"provider:{NAME}:kid:{kid}"  # no PEM from Auth0
    (jar,) = tenant.credentials("signer")
    assert (jar["usage"], jar["status"], jar["provider_id"]) == (
        "jar", "active", tenant.attached(sign, JAR)[0])
    assert tenant.credentials("plain") == []
    # the log agrees with the tenant right after the import
    assert tenant.drift().returncode == 0


def test_name_clashes_are_resolved_predictably_and_a_second_import_adds_only_new_clients(
        tenant: Tenant, sqlite_url: str) -> None:
    tenant.cli("app", "register", "web")  # a local application holds the name already
    first, second = tenant.client("web", 0), tenant.client("web", 1)
    document = tenant.imported(match="web")
    names = {c["client_id"]: c["app"] for c in document["imported"]}
    assert names == {first: f"web-{first[:8]}", second: f"web-{second[:8]}"}
    before = dump_tables(sqlite_url)["events"]
    pools = tenant.emu.counters.count("GET /api/v2/clients/{id}/credentials")
    again = tenant.imported(match="web")
    assert again["summary"]["imported"] == 0 and again["summary"]["already_imported"] == 2
    assert {c["app"] for c in again["already_imported"]} == set(names.values())
    assert dump_tables(sqlite_url)["events"] == before  # a re-run writes nothing
    # and reads no credentials of a client it holds already: one request a page, not a client
    assert tenant.emu.counters.count("GET /api/v2/clients/{id}/credentials") == pools
    third = tenant.client("web", 2)
    last = tenant.imported(match="web")
    assert [(c["client_id"], c["app"]) for c in last["imported"]] == [
        (third, f"web-{third[:8]}")]


def test_a_credential_the_rules_cannot_hold_is_left_out_and_shown(tenant: Tenant) -> None:
    crowded = tenant.client("crowded", 3, 4, pool=[5])  # a third Private Key JWT key
    result = tenant.cli("import", "--provider", NAME, "--match", "crowded")
    spare = next(c["id"] for c in tenant.pool(crowded) if c["id"] not in tenant.attached(crowded))
    assert f"left out: credential {spare} of crowded: the application has 2 private_key_jwt " \
           "credentials already" in result.stdout
    assert "imported 1 clients from auth0-test (2 credentials, 1 left out)" in result.stdout
    assert {c["status"] for c in tenant.credentials("crowded")} == {"active"}
    drift = tenant.drift("--app", "crowded", "--json")
    assert drift.returncode == 1
    (app,) = drift.json()["apps"]
    assert [(d["kind"], d["provider_credential_id"]) for d in app["differences"]] == [
        ("added", spare)]


def test_import_from_the_local_provider_or_an_unknown_one_is_refused(tenant: Tenant) -> None:
    local = tenant.cli.run("import", "--provider", "local")
    assert local.returncode == 2
    assert local.stderr.startswith("error: the local provider is the orchestrator's own log")
    unknown = tenant.cli.run("import", "--provider", "nope")
    assert unknown.returncode != 0
    assert "identity provider 'nope' is not configured" in unknown.stderr


def test_a_progress_bar_only_when_stderr_is_a_terminal(tenant: Tenant) -> None:
    tenant.client("one", 6)
    quiet = tenant.cli("import", "--provider", NAME, "--match", "one")
    assert quiet.stderr == ""
    tenant.client("two")
    main, child = pty.openpty()
    try:
        done = subprocess.run([str(ORCHESTRATOR), "import", "--provider", NAME, "--match", "two"],
                              env=tenant.cli.env, cwd=tenant.cli.cwd, stdout=subprocess.PIPE,
                              stderr=child, text=True, timeout=120, check=False)
        os.close(child)
        child = -1
        shown = _read_all(main)
    finally:
        os.close(main)
        if child != -1:
            os.close(child)
    assert done.returncode == 0, done.stdout
    assert "importing from auth0-test" in shown and "1/?" not in done.stdout
    assert "imported 1 clients" in done.stdout


def _read_all(fd: int) -> str:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")
