"""What the installed command checks with an Auth0 tenant before it writes anything (the
emulator in this process, reached through an IdentityProvider resource): ``app register
--provider`` reads each client it binds, so a client id with a typo is refused there rather
than found at the first rotation; ``secret rotate`` refuses a client that authenticates with
keys (it takes no client secret); with ``secretRotation: rotate-secret`` (which ``policy
validate`` checks) Auth0 makes the secret ``secret rotate`` shows and delivers. Every refusal
is one line, a non-zero exit, nothing written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import assert_refused, dump_tables
from tests.peers.auth0 import Auth0Emulator
from tests.peers.kit import token_request
from tests.support.auth0_tenant import DOMAIN, NAME, Tenant, resource_yaml


@pytest.fixture
def tenant(tmp_path: Path, sqlite_url: str) -> Iterator[Tenant]:
    with Auth0Emulator({"domain": DOMAIN, "management_rate": None}) as emu:
        yield Tenant(emu, sqlite_url, tmp_path)


def client_reads(tenant: Tenant) -> int:
    return tenant.emu.counters.count("GET /api/v2/clients/{id}")


def test_register_binds_a_client_the_tenant_has_after_one_read_of_it(tenant: Tenant) -> None:
    client_id = tenant.client("billing")
    tenant.cli("app", "register", "billing", "--provider", NAME, "--client-id", client_id)
    assert client_reads(tenant) == 1
    [app] = tenant.cli("app", "list", "--json").json()
    assert app["app"] == "billing"


def test_register_refuses_a_client_the_tenant_does_not_have_and_writes_nothing(
        tenant: Tenant, sqlite_url: str) -> None:
    client_id = tenant.client("billing")
    typo = client_id[:-1] + ("x" if client_id[-1] != "x" else "y")
    before = dump_tables(sqlite_url)
    result = tenant.cli.run("app", "register", "billing", "--provider", NAME,
                            "--client-id", typo)
    assert_refused(result, f"--provider {NAME}: identity provider '{NAME}' has no client "
                           f"{typo!r}", "check the client id")
    assert dump_tables(sqlite_url) == before
    # many at once (each name its client id): one absent refuses them all
    tenant.emu.seed_client({"name": "web", "client_id": "web"})
    result = tenant.cli.run("app", "register", "web", "api", "--provider", NAME)
    assert_refused(result, "has no client 'api'")
    assert dump_tables(sqlite_url) == before


def test_register_refuses_while_the_tenant_cannot_be_asked(
        tenant: Tenant, sqlite_url: str) -> None:
    client_id = tenant.client("billing")
    tenant.emu.stop()
    before = dump_tables(sqlite_url)
    result = tenant.cli.run("app", "register", "billing", "--provider", NAME,
                            "--client-id", client_id)
    assert_refused(result, f"--provider {NAME}: cannot check that client {client_id!r} exists "
                           "there", "nothing was registered", "run the command again")
    assert dump_tables(sqlite_url) == before


def test_a_rule_refused_first_asks_the_tenant_nothing(tenant: Tenant) -> None:
    result = tenant.cli.run("app", "register", "not a name", "--provider", NAME)
    assert_refused(result, "application name 'not a name' is not allowed")
    assert client_reads(tenant) == 0


def test_secret_rotate_refuses_a_client_that_authenticates_with_keys(
        tenant: Tenant, sqlite_url: str) -> None:
    """Whether the log knows its keys (imported) or only the tenant does (bound by client id),
    the command says so in one line, writes nothing and sets no secret at the tenant."""
    ledger = tenant.client("ledger", 1)
    assert tenant.imported(match="ledger")["summary"]["imported"] == 1
    billing = tenant.client("billing", 0)
    tenant.cli("app", "register", "billing", "--provider", NAME, "--client-id", billing)
    secrets = {c: tenant.remote(c)["client_secret"] for c in (ledger, billing)}
    before, reads = dump_tables(sqlite_url), client_reads(tenant)
    result = tenant.cli.run("secret", "rotate", "ledger", "--accept-gap")
    assert_refused(result, f"application 'ledger': its client {ledger!r} at identity "
                           f"provider '{NAME}' authenticates with private_key_jwt (the log "
                           "holds its usable keys)",
                   "it takes no client secret")
    assert client_reads(tenant) == reads  # the log said it: the tenant was not asked
    result = tenant.cli.run("secret", "rotate", "billing", "--accept-gap")
    assert_refused(result, "authenticates with private_key_jwt (so the identity provider says)")
    assert client_reads(tenant) == reads + 1
    assert result.stdout == ""
    assert dump_tables(sqlite_url) == before
    assert not list((tenant.cli.cwd / "keystore").glob("items/*"))
    assert {c: tenant.remote(c)["client_secret"] for c in (ledger, billing)} == secrets


def test_secret_rotation_rotate_secret_delivers_the_secret_auth0_made(
        tenant: Tenant, tmp_path: Path) -> None:
    resource = tenant.policies / "auth0.yaml"
    resource.write_text(resource_yaml(tenant.emu.base_url, extra="    secretRotation: rotate\n"))
    assert_refused(tenant.cli.run("policy", "validate"),
                   f"{resource}: spec.auth0.secretRotation: 'rotate' is not allowed; use "
                   "'patch' or 'rotate-secret'")
    resource.write_text(resource_yaml(tenant.emu.base_url,
                                      extra="    secretRotation: rotate-secret\n"))
    assert tenant.cli("policy", "validate").stdout.split()[:3] == ["ok", str(resource), NAME]

    api = "https://api.example.com/"
    client_id = tenant.emu.seed_client({"name": "billing", "grants": [
        {"audience": api, "scope": []}]}).client_id
    before = tenant.remote(client_id)["client_secret"]
    tenant.cli("app", "register", "billing", "--provider", NAME, "--client-id", client_id)
    shown = tenant.cli("secret", "rotate", "billing", "--accept-gap").stdout.strip()
    folder = tmp_path / "delivery" / "billing" / "client_secret"
    assert shown == (folder / "client_secret").read_text() == tenant.remote(client_id)[
        "client_secret"]
    counts = tenant.emu.counters
    assert (counts.count("POST /api/v2/clients/{id}/rotate-secret", 200),
            counts.count("PATCH /api/v2/clients/{id}")) == (1, 0)  # Auth0 made it

    def status(secret: str) -> int:
        return token_request(tenant.emu, {"grant_type": "client_credentials", "audience": api,
                                          "client_id": client_id, "client_secret": secret}
                             ).status_code

    assert (status(shown), status(before)) == (200, 401)
