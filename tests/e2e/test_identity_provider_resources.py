"""IdentityProvider resources as a user meets them through the installed command (issue 7,
parts 2 and 6): ``policy validate`` checks and lists them beside the policies, refuses a
client-secret policy the providers cannot honour, and ``app register --provider`` knows the
providers of the policies folder. Every refusal is one line, a non-zero exit, nothing written,
and no secret in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Cli, assert_refused, dump_tables, policy_yaml

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples" / "identity-providers"
SECRET = "s3cr3t-Value-never-shown"
AUTH0 = """apiVersion: orchestrator/v1
kind: IdentityProvider
metadata: {name: auth0-prod}
spec:
  auth0:
    domain: example.eu.auth0.com
    clientId: AbC123
    clientSecret: SECRET_REF
"""
SECRETS_POLICY = policy_yaml("internal-secrets", '["internal-*"]', "{usage: client_secret}",
                             "{every: 30d, beforeExpiry: 7d, overlap: 1h}", lifetime=None)


@pytest.fixture
def cli(sqlite_url: str, tmp_path: Path) -> Cli:
    cli = Cli(sqlite_url, tmp_path / "keystore", cwd=tmp_path)
    cli.env["ORCHESTRATOR_POLICIES"] = str(tmp_path / "policies")
    (tmp_path / "policies").mkdir()
    return cli


def test_validate_lists_the_example_providers(cli: Cli) -> None:
    result = cli("policy", "validate", EXAMPLES)
    assert [line.split()[:3] + line.split()[4:] for line in result.stdout.splitlines()] == [
        ["ok", str(EXAMPLES / "auth0.yaml"), "auth0-prod", "identity", "provider", "(auth0)"],
        ["ok", str(EXAMPLES / "oidc.yaml"), "idp-staging", "identity", "provider", "(oidc)"],
    ]
    assert result.stderr == ""


def test_an_inline_secret_is_one_line_that_does_not_repeat_it(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "policies" / "auth0.yaml"
    path.write_text(AUTH0.replace("SECRET_REF", SECRET))
    result = cli.run("policy", "validate")
    assert_refused(result, f"{path}: spec.auth0.clientSecret: an inline secret is refused")
    assert SECRET not in result.stdout + result.stderr


def test_a_client_secret_policy_beside_auth0_needs_accept_secret_gap(
        cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    (folder / "auth0.yaml").write_text(AUTH0.replace("SECRET_REF", "{env: AUTH0_MGMT_SECRET}"))
    policy = folder / "secrets.yaml"
    policy.write_text(SECRETS_POLICY)
    refused = cli.run("policy", "validate")
    assert_refused(refused, f"{policy}: spec.rotation.acceptSecretGap:",
                   "holds one client secret", "acceptSecretGap: true", "private_key_jwt")
    policy.write_text(SECRETS_POLICY.replace("overlap: 1h}", "overlap: 1h, acceptSecretGap: true}"))
    accepted = cli("policy", "validate")
    assert sorted(line.split()[2] for line in accepted.stdout.splitlines()) == [
        "auth0-prod", "internal-secrets"]


def test_register_refuses_a_provider_the_folder_does_not_declare(
        cli: Cli, sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "policies" / "auth0.yaml").write_text(
        AUTH0.replace("SECRET_REF", "{env: AUTH0_MGMT_SECRET}"))
    before = dump_tables(sqlite_url)
    result = cli.run("app", "register", "web-1", "--provider", "auth0-staging")
    assert_refused(result, "identity provider 'auth0-staging' is not configured",
                   "known: auth0-prod, local")
    assert dump_tables(sqlite_url) == before


def test_register_with_a_provider_whose_secret_is_missing_names_the_variable(
        cli: Cli, sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "policies" / "auth0.yaml").write_text(
        AUTH0.replace("SECRET_REF", "{env: AUTH0_MGMT_SECRET}"))
    cli.env.pop("AUTH0_MGMT_SECRET", None)
    before = dump_tables(sqlite_url)
    result = cli.run("app", "register", "web-1", "--provider", "auth0-prod",
                     "--client-id", "abc")
    assert_refused(result, "identity provider auth0-prod: spec.auth0.clientSecret: environment "
                           "variable AUTH0_MGMT_SECRET is not set")
    assert dump_tables(sqlite_url) == before


def test_the_quick_start_folder_needs_no_provider(cli: Cli) -> None:
    result = cli("policy", "validate", ROOT / "policies")
    assert "identity provider" not in result.stdout
    assert len(result.stdout.splitlines()) == len(list((ROOT / "policies").glob("*.yaml")))


def test_a_ca_file_that_is_not_a_bundle_is_refused_unread(cli: Cli, tmp_path: Path) -> None:
    """Like a policy file or an issuer's, a caFile is read no further than a bound: a path
    pointing at a log or a device is one line, not a hang."""
    huge = tmp_path / "policies" / "not-a-bundle.pem"
    huge.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (8 * 2**20))
    path = tmp_path / "policies" / "oidc.yaml"
    path.write_text("apiVersion: orchestrator/v1\nkind: IdentityProvider\n"
                    "metadata: {name: idp}\nspec:\n  oidc:\n    issuer: https://idp.example.com\n"
                    f"    caFile: {huge.name}\n")
    assert_refused(cli.run("policy", "validate"), f"{path}: spec.oidc.caFile:", "larger than")


def test_a_provider_whose_file_does_not_load_is_named_with_the_reason(
        cli: Cli, tmp_path: Path, sqlite_url: str) -> None:
    """Not "not configured" and a log line beside it: one line saying why its file failed."""
    path = tmp_path / "policies" / "auth0.yaml"
    path.write_text(AUTH0.replace("SECRET_REF", "{env: AUTH0_MGMT_SECRET}") + "    bogus: 1\n")
    cli.env["AUTH0_MGMT_SECRET"] = SECRET
    before = dump_tables(sqlite_url)
    for args in (("app", "register", "web", "--provider", "auth0-prod"),
                 ("import", "--provider", "auth0-prod"), ("drift", "--provider", "auth0-prod")):
        result = cli.run(*args)
        assert_refused(result, "identity provider 'auth0-prod' is not configured",
                       f"{path}: spec.auth0.bogus: unknown key 'bogus'")
        assert dump_tables(sqlite_url) == before, args
