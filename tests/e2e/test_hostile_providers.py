"""Red team: the installed command against identity providers that misbehave, and secrets an
operator got slightly wrong. Every case is one ``error:`` line, a non-zero exit, no traceback,
no secret in what is shown, and nothing written.

The provider is ``tests/support/hostile_http.py``: a loopback server whose every answer the test
chooses (plain http is allowed to loopback hosts only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Cli, assert_refused, dump_tables
from tests.support.hostile_http import Answer, HostileServer, nested_json

IAT = "IAT-secret-value-0123456789"
RAT = "RAT-secret-value-0123456789"
MGMT_SECRET = "mgmt-secret-value-0123456789"


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture
def cli(sqlite_url: str, tmp_path: Path) -> Cli:
    cli = Cli(sqlite_url, tmp_path / "keystore", cwd=tmp_path)
    (tmp_path / "policies").mkdir()
    cli.env.update(ORCHESTRATOR_POLICIES=str(tmp_path / "policies"), MGMT_SECRET=MGMT_SECRET)
    return cli


def oidc_resource(cli: Cli, hostile: HostileServer, token_file: Path) -> None:
    hostile.routes["GET /.well-known/openid-configuration"] = Answer.json(hostile.discovery())
    (cli.cwd / "policies" / "op.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: IdentityProvider\nmetadata: {name: op}\n"
        f"spec:\n  oidc: {{issuer: '{hostile.issuer}', "
        f"initialAccessToken: {{file: {token_file}}}}}\n")


def auth0_resource(cli: Cli, hostile: HostileServer, access_token: str = "mgmt-token") -> None:
    hostile.routes["POST /oauth/token"] = Answer.json(
        {"access_token": access_token, "expires_in": 86400, "token_type": "Bearer"})
    (cli.cwd / "policies" / "auth0.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: IdentityProvider\nmetadata: {name: tenant}\n"
        f"spec:\n  auth0: {{domain: tenant.auth0.test, baseUrl: '{hostile.issuer}', "
        "clientId: mgmt, clientSecret: {env: MGMT_SECRET}}\n")


def clients(hostile: HostileServer, *client_ids: str) -> None:
    """The tenant has these clients (``app register`` reads each one it binds)."""
    for client_id in client_ids:
        hostile.routes[f"GET /api/v2/clients/{client_id}"] = Answer.json(
            {"client_id": client_id, "name": client_id})


def refused_and_silent(cli: Cli, result: object, *fragments: str,
                       secrets: tuple[str, ...] = (IAT, RAT, MGMT_SECRET)) -> None:
    assert_refused(result, *fragments)  # type: ignore[arg-type]
    shown = result.stdout + result.stderr  # type: ignore[attr-defined]
    for secret in secrets:
        assert secret not in shown, shown


# --- a secret slightly wrong -------------------------------------------------------------------


@pytest.mark.parametrize("content", [f"{IAT} \n", f"{IAT}\n\n", f"{IAT}\t\n"],
                         ids=["trailing space", "blank line after", "trailing tab"])
def test_an_initial_access_token_with_a_stray_character_is_never_echoed(
        cli: Cli, hostile: HostileServer, sqlite_url: str, content: str) -> None:
    (cli.cwd / "iat").write_text(content)
    oidc_resource(cli, hostile, cli.cwd / "iat")
    before = dump_tables(sqlite_url)
    result = cli.run("app", "register", "web", "--provider", "op", "--create")
    refused_and_silent(cli, result, "identity provider 'op'", "registration of a new client")
    assert dump_tables(sqlite_url) == before


def test_a_secret_pasted_as_the_variable_name_is_never_shown(
        cli: Cli, hostile: HostileServer, sqlite_url: str) -> None:
    """{env: <the secret>} instead of {env: NAME}: policy validate, app register and the
    daemon each say what is wrong without repeating it, whether it could be a variable's
    name (then it is looked up, and not found) or not (then the file is refused)."""
    auth0_resource(cli, hostile)
    clients(hostile, "web")
    path = cli.cwd / "policies" / "auth0.yaml"
    resource = path.read_text()
    not_a_name = "sk-live-51HxYzAbCdEf0123456789"
    path.write_text(resource.replace("MGMT_SECRET", not_a_name))
    refused_and_silent(cli, cli.run("policy", "validate"),
                       f"{path}: spec.auth0.clientSecret.env: the env name is not a valid "
                       "variable name", "did you paste the secret itself?",
                       secrets=(not_a_name,))

    pasted = "sk_live_51HxYzAbCdEf0123456789"  # a valid name, as far as the rules go
    path.write_text(resource.replace("MGMT_SECRET", pasted))
    validated = cli("policy", "validate")
    assert pasted not in validated.stdout + validated.stderr
    before = dump_tables(sqlite_url)
    refused_and_silent(cli, cli.run("app", "register", "web", "--provider", "tenant"),
                       "identity provider tenant: spec.auth0.clientSecret: the environment "
                       "variable named in env (its name is not repeated", secrets=(pasted,))
    assert dump_tables(sqlite_url) == before
    cli.env[pasted] = MGMT_SECRET
    cli("app", "register", "web", "--provider", "tenant")
    del cli.env[pasted]
    result = cli.run("daemon", "--once", "--json-logs", "--drift-every", "1h")
    assert result.returncode == 0, str(result)
    [failed] = [json.loads(line) for line in result.stderr.splitlines()
                if json.loads(line)["event"] == "drift_check_failed"]
    assert "the environment variable named in env" in failed["error"]
    assert pasted not in result.stdout + result.stderr


@pytest.mark.parametrize("content", [f"{IAT}\u00a0\n", f"{IAT}é\n"], ids=["nbsp", "accent"])
def test_an_initial_access_token_that_is_not_ascii_is_one_line(
        cli: Cli, hostile: HostileServer, content: str) -> None:
    (cli.cwd / "iat").write_text(content)
    oidc_resource(cli, hostile, cli.cwd / "iat")
    result = cli.run("app", "register", "web", "--provider", "op", "--create")
    refused_and_silent(cli, result, "identity provider 'op'")


@pytest.mark.parametrize("token", [f"{RAT}\x00x", f"{RAT}é"], ids=["nul", "accent"])
def test_a_registration_access_token_that_cannot_be_sent_is_never_echoed(
        cli: Cli, hostile: HostileServer, token: str) -> None:
    (cli.cwd / "iat").write_text(IAT)
    oidc_resource(cli, hostile, cli.cwd / "iat")
    (cli.cwd / "rat").write_text(token)
    result = cli.run("app", "register", "web", "--provider", "op", "--client-id", "c1",
                     "--registration-token-file", cli.cwd / "rat")
    refused_and_silent(cli, result, "identity provider 'op'")
    assert cli.item_files() == {}


def test_a_management_token_that_cannot_be_sent_is_one_line(
        cli: Cli, hostile: HostileServer) -> None:
    auth0_resource(cli, hostile, access_token="mgmt-tökén")
    result = cli.run("import", "--provider", "tenant")
    refused_and_silent(cli, result, "Auth0 tenant.auth0.test")


# --- a provider that fails -------------------------------------------------------------------


@pytest.mark.parametrize("answer", [Answer(500, b'{"message": "down"}'), Answer(200, b"<html>")],
                         ids=["500", "not json"])
def test_import_and_drift_against_a_failing_tenant_say_so_in_one_line(
        cli: Cli, hostile: HostileServer, answer: Answer) -> None:
    """The adapter retries within the call (4 attempts); those retries are the daemon's
    business (logged at info), not lines before the command's one error."""
    auth0_resource(cli, hostile)
    clients(hostile, "c1")
    cli("app", "register", "web", "--provider", "tenant", "--client-id", "c1")
    hostile.routes["GET /api/v2/clients"] = answer
    hostile.routes["GET /api/v2/clients/c1"] = answer
    result = cli.run("import", "--provider", "tenant")
    refused_and_silent(cli, result, "Auth0 tenant.auth0.test: list clients", "gave up after 4")
    assert hostile.requests.count("GET /api/v2/clients") == 4
    drift = cli.run("drift")
    assert drift.returncode == 3, str(drift)
    assert drift.stderr == ""
    assert "not compared: web (tenant)" in drift.stdout



def test_import_and_drift_refused_write_nothing(
        cli: Cli, hostile: HostileServer, sqlite_url: str) -> None:
    """The policies folder is only read by import and drift (as by app register --provider,
    rotate and plan): a refused run records nothing, not even the resource as applied."""
    auth0_resource(cli, hostile)
    hostile.routes["GET /api/v2/clients"] = Answer(503, b"{}")
    before = dump_tables(sqlite_url)
    for args in (("import", "--provider", "tenant"), ("import", "--provider", "nope"),
                 ("drift", "--provider", "nope")):
        assert_refused(cli.run(*args))
        assert dump_tables(sqlite_url) == before, args



def test_a_manual_rotation_at_a_failing_tenant_says_so_in_one_line(
        cli: Cli, hostile: HostileServer) -> None:
    auth0_resource(cli, hostile)
    hostile.routes["GET /api/v2/clients/web/credentials"] = Answer(503, b"{}")
    (cli.cwd / "policies" / "keys.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: RotationPolicy\nmetadata: {name: keys}\nspec:\n"
        "  selector: {apps: [web]}\n  credential: {usage: private_key_jwt}\n"
        "  rotation: {every: 30d, beforeExpiry: 10d, overlap: 1h}\n  lifetime: 60d\n")
    clients(hostile, "web")
    cli("app", "register", "web", "--provider", "tenant")
    result = cli.run("rotate", "web", "--usage", "private_key_jwt")
    refused_and_silent(cli, result, "failed at register", "the daemon retries it")

# --- answers no parser should trust ----------------------------------------------------------

HUGE = 48 * 1024 * 1024  # bytes: far beyond any answer a provider gives; never read whole


def test_an_auth0_answer_nested_beyond_any_parser_is_one_line(
        cli: Cli, hostile: HostileServer, sqlite_url: str) -> None:
    auth0_resource(cli, hostile)
    hostile.routes["GET /api/v2/clients"] = Answer(200, nested_json())
    before = dump_tables(sqlite_url)
    result = cli.run("import", "--provider", "tenant")
    refused_and_silent(cli, result, "Auth0 tenant.auth0.test: list clients",
                       "malformed JSON answer")
    assert dump_tables(sqlite_url) == before


def test_an_openid_discovery_nested_beyond_any_parser_is_one_line(
        cli: Cli, hostile: HostileServer) -> None:
    (cli.cwd / "iat").write_text(IAT)
    oidc_resource(cli, hostile, cli.cwd / "iat")
    hostile.routes["GET /.well-known/openid-configuration"] = Answer(200, nested_json())
    result = cli.run("app", "register", "web", "--provider", "op", "--create")
    refused_and_silent(cli, result, "identity provider 'op': discovery", "without a JSON object")


def test_a_huge_auth0_answer_is_refused_without_reading_it(
        cli: Cli, hostile: HostileServer) -> None:
    auth0_resource(cli, hostile)
    hostile.routes["GET /api/v2/clients"] = Answer(200, stream=b" " * 65536, length=HUGE)
    result = cli.run("import", "--provider", "tenant")
    refused_and_silent(cli, result, "Auth0 tenant.auth0.test: list clients", "larger than")
    assert hostile.sent < HUGE


def test_a_huge_openid_answer_is_refused_without_reading_it(
        cli: Cli, hostile: HostileServer) -> None:
    (cli.cwd / "iat").write_text(IAT)
    oidc_resource(cli, hostile, cli.cwd / "iat")
    hostile.routes["GET /.well-known/openid-configuration"] = Answer(
        200, stream=b" " * 65536, length=HUGE)
    result = cli.run("app", "register", "web", "--provider", "op", "--create")
    refused_and_silent(cli, result, "identity provider 'op': discovery", "larger than")
    assert hostile.sent < HUGE


# --- one client, one application ---------------------------------------------------------------


def test_a_client_bound_to_an_application_cannot_be_bound_to_another(
        cli: Cli, hostile: HostileServer, sqlite_url: str) -> None:
    """Two applications on one client would rotate, repair and delete each other's
    credentials there: the second binding is refused, whichever way it is spelled."""
    auth0_resource(cli, hostile)
    clients(hostile, "c1", "api")
    cli("app", "register", "web", "--provider", "tenant", "--client-id", "c1")
    cli("app", "register", "api", "--provider", "tenant")  # its client id is its name
    before = dump_tables(sqlite_url)
    for args in (("other", "--client-id", "c1"), ("c1",), ("x", "y", "c1"),
                 ("z", "--client-id", "api")):
        result = cli.run("app", "register", *args, "--provider", "tenant")
        assert_refused(result, "of identity provider 'tenant' is bound to application")
        assert dump_tables(sqlite_url) == before, args
    cli("app", "register", "web", "--provider", "tenant", "--client-id", "c1", "--exist-ok")
    cli("app", "register", "c1")  # the local provider: no client of tenant


# --- what a provider says, taken as data, never trusted as shaped -----------------------------


def test_import_takes_fields_of_the_wrong_type_as_absent(
        cli: Cli, hostile: HostileServer) -> None:
    """A credential whose kid, alg, name or expiry is not text, a client whose name or auth
    methods are not what they should be: imported as far as the data goes, no traceback."""
    auth0_resource(cli, hostile)
    hostile.routes["GET /api/v2/clients"] = Answer.json({"clients": [
        {"client_id": "c1", "name": ["not", "text"], "client_authentication_methods": 7},
        {"client_id": "c2", "name": "two", "signed_request_object": ["x"],
         "client_authentication_methods": {"private_key_jwt": ["cred_1"]}},
    ], "total": 2})
    hostile.routes["GET /api/v2/clients/c1/credentials"] = Answer.json([
        {"id": "cred_1", "credential_type": "public_key", "kid": ["k"], "alg": 5,
         "name": {"a": 1}, "expires_at": "not a time", "thumbprint_sha256": 3},
        {"id": "cred_2", "credential_type": ["public_key"]}])
    hostile.routes["GET /api/v2/clients/c2/credentials"] = Answer.json([])
    result = cli.run("import", "--provider", "tenant", "--json")
    assert result.returncode == 0, str(result)
    assert "Traceback" not in result.stderr
    imported = {c["client_id"]: c for c in result.json()["imported"]}
    assert set(imported) == {"c1", "c2"}
    assert imported["c1"]["app"] == "c1"  # a name that is not text: named from the client id
    [cred] = imported["c1"]["credentials"]
    assert cred["provider_credential_id"] == "cred_1"
    assert cred["kid"] != "['k']" and cred["fingerprint"].startswith("provider:tenant:")


@pytest.mark.parametrize("page", [[{"client_id": "c1"}, 3], [None], [{"name": "no id"}],
                                  [{"client_id": ["c1"]}]],
                         ids=["a number", "null", "no client id", "a list for an id"])
def test_a_list_of_clients_that_is_not_one_is_one_line(
        cli: Cli, hostile: HostileServer, sqlite_url: str, page: list[object]) -> None:
    auth0_resource(cli, hostile)
    hostile.routes["GET /api/v2/clients"] = Answer.json({"clients": page, "total": len(page)})
    hostile.routes["GET /api/v2/clients/c1/credentials"] = Answer.json([])
    before = dump_tables(sqlite_url)
    result = cli.run("import", "--provider", "tenant")
    refused_and_silent(cli, result, "Auth0 tenant.auth0.test: list clients", "malformed")
    assert dump_tables(sqlite_url) == before


def test_drift_takes_an_openid_record_of_the_wrong_shape_as_data(
        cli: Cli, hostile: HostileServer) -> None:
    (cli.cwd / "iat").write_text(IAT)
    oidc_resource(cli, hostile, cli.cwd / "iat")
    hostile.routes["GET /reg/c1"] = Answer.json({
        "client_id": "c1", "client_name": 5, "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [{"kid": "k1", "kty": "RSA", "n": 7, "e": "AQAB", "x5c": [42]},
                          {"kid": ["k2"], "x5c": [None]}, "not a key"]}})
    (cli.cwd / "rat").write_text(RAT)
    cli("app", "register", "web", "--provider", "op", "--client-id", "c1",
        "--registration-token-file", cli.cwd / "rat")
    result = cli.run("drift", "--json")
    assert result.returncode == 1, str(result)  # the keys there are not the log's: drift
    assert "Traceback" not in result.stderr + result.stdout
    [app] = result.json()["apps"]
    assert app["error"] is None and {d["kind"] for d in app["differences"]} == {"added"}


@pytest.mark.parametrize("status", [404, 401])
def test_an_openid_client_gone_at_the_provider_is_named_with_what_to_do(
        cli: Cli, hostile: HostileServer, sqlite_url: str, status: int) -> None:
    """Its registration endpoint answers 404 (deleted) or refuses the kept token (401: deleted,
    or the token lost): drift says 'client missing' in one line with the fix, exit 1."""
    (cli.cwd / "iat").write_text(IAT)
    oidc_resource(cli, hostile, cli.cwd / "iat")
    hostile.routes["GET /reg/c1"] = Answer.json({"client_id": "c1", "client_name": "web"})
    (cli.cwd / "rat").write_text(RAT)
    cli("app", "register", "web", "--provider", "op", "--client-id", "c1",
        "--registration-token-file", cli.cwd / "rat")
    hostile.routes["GET /reg/c1"] = Answer(status, b'{"error": "invalid_token"}')
    result = cli.run("drift")
    assert result.returncode == 1, str(result)
    [line] = [x for x in result.stdout.splitlines() if x.startswith("client missing: web (op): ")]
    fix = ("get a new registration access token from the provider's administrator and run: "
           "orchestrator app register web --provider op --client-id c1 "
           "--registration-token-file FILE --exist-ok") if status == 401 else (
           "client 'c1' no longer exists at identity provider 'op' (deleted there; read of "
           "client 'c1': 404): nothing the orchestrator does can recreate it")
    assert fix in line
    assert RAT not in result.stdout + result.stderr
    # a client id never bound that the provider does not know: mistyped, not "deleted"
    before = dump_tables(sqlite_url)
    (cli.cwd / "rat9").write_text(RAT)
    refused = cli.run("app", "register", "other", "--provider", "op", "--client-id", "c9",
                      "--registration-token-file", cli.cwd / "rat9")
    refused_and_silent(cli, refused, "identity provider 'op' has no client 'c9'",
                       "answered 404): check the client id")
    assert dump_tables(sqlite_url) == before



def test_the_management_application_itself_cannot_be_bound(
        cli: Cli, hostile: HostileServer, sqlite_url: str) -> None:
    """Rotating the orchestrator's own Management API application (its secret, with a
    client_secret policy) would lock the orchestrator out of the whole tenant."""
    auth0_resource(cli, hostile)  # clientId: mgmt
    before = dump_tables(sqlite_url)
    for args in (("web", "--client-id", "mgmt"), ("mgmt",), ("a", "mgmt")):
        result = cli.run("app", "register", *args, "--provider", "tenant")
        assert_refused(result, "client 'mgmt' is the Management API application")
        assert dump_tables(sqlite_url) == before, args


def test_an_openid_client_is_bound_only_with_its_registration_access_token(
        cli: Cli, hostile: HostileServer, sqlite_url: str) -> None:
    """Without its token the orchestrator can manage nothing of an RFC 7592 client: every
    rotation would fail. So a binding without --registration-token-file or --create is
    refused, unless a token for that client is kept already."""
    (cli.cwd / "iat").write_text(IAT)
    oidc_resource(cli, hostile, cli.cwd / "iat")
    before = dump_tables(sqlite_url)
    for args in (("web", "--client-id", "c1"), ("a", "b")):
        result = cli.run("app", "register", *args, "--provider", "op")
        assert_refused(result, "--registration-token-file", "--create")
        assert dump_tables(sqlite_url) == before, args
    assert hostile.requests == []

# --- the daemon ----------------------------------------------------------------------------------


def test_the_daemon_names_each_app_whose_provider_cannot_be_built(
        cli: Cli, hostile: HostileServer) -> None:
    """A provider whose secret cannot be had (its variable unset) is one warning per app,
    naming it, and the tick goes on; no traceback in the logs."""
    auth0_resource(cli, hostile)
    clients(hostile, "web", "api")
    cli("app", "register", "web", "api", "--provider", "tenant")
    hostile.requests.clear()
    del cli.env["MGMT_SECRET"]
    result = cli.run("daemon", "--once", "--json-logs", "--drift-every", "1h")
    assert result.returncode == 0, str(result)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    failed = [e for e in lines if e["event"] == "drift_check_failed"]
    assert sorted(e.get("app") for e in failed) == ["api", "web"], result.stderr
    assert all("MGMT_SECRET is not set" in e["error"] for e in failed)
    assert not any("exception" in e for e in lines), result.stderr
    assert hostile.requests == []


def test_the_daemon_starts_nothing_for_an_app_whose_provider_file_was_removed(
        cli: Cli, hostile: HostileServer, sqlite_url: str) -> None:
    """The router knows the provider is not configured before a rotation starts: one error
    line naming the app, the provider and the fix; no key generated, nothing recorded."""
    auth0_resource(cli, hostile)
    clients(hostile, "web")
    cli("app", "register", "web", "--provider", "tenant")
    (cli.cwd / "policies" / "auth0.yaml").unlink()
    (cli.cwd / "policies" / "keys.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: RotationPolicy\nmetadata: {name: keys}\nspec:\n"
        "  selector: {apps: [web]}\n  credential: {usage: private_key_jwt}\n"
        "  rotation: {every: 30d, beforeExpiry: 10d, overlap: 1h}\n  lifetime: 60d\n")
    hostile.requests.clear()
    result = cli.run("daemon", "--once", "--json-logs", "--drift-every", "0")
    assert result.returncode == 0, str(result)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    [refused] = [e for e in lines if e["event"] == "rotation_not_started"]
    assert (refused["level"], refused["app"], refused["provider"]) == ("error", "web", "tenant")
    assert "identity provider 'tenant' is not configured" in refused["error"]
    assert "restore the IdentityProvider resource 'tenant'" in refused["fix"]
    assert not [e for e in lines if e["event"] in ("rotation_started", "rotation_step_failed")]
    assert not list((cli.cwd / "keystore").glob("items/*"))
    assert "rotation.started" not in str(dump_tables(sqlite_url))
    assert hostile.requests == []
