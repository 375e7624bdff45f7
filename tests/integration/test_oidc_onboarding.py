"""``app register --provider P --create`` and ``--client-id ID --registration-token-file F``
against a real OpenID provider (node oidc-provider), through the command line's own entry point
(``main``) on a real SQLite file and file keystore, the provider described by an
IdentityProvider resource in the policies folder as an operator writes it.

What a user sees: one line per application, the client id the provider assigned, never the
registration access token (in output or in the log); refusals in one line with nothing written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from events.store import ReadFilter
from orchestrator.adapters.keystore import FileKeystore
from orchestrator.bootstrap import Settings, bootstrap
from orchestrator.entrypoints import logs
from orchestrator.entrypoints.cli import main
from tests.helpers import policy_yaml
from tests.peers.oidc import OidcPeer

IDP = "oidc-test"


@pytest.fixture(autouse=True)
def logs_left_alone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command line sets its logs up on this test's captured stderr: undo that after."""
    monkeypatch.setattr(logs, "_configured", False)
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "orchestrator.structlog"]:
        root.removeHandler(handler)


@pytest.fixture
def site(tmp_path: Path, oidc_provider: OidcPeer,
         monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    db, keystore = f"sqlite:///{tmp_path / 'orchestrator.db'}", tmp_path / "keystore"
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "iat").write_text(oidc_provider.initial_access_token + "\n")
    (policies / f"{IDP}.yaml").write_text(f"""apiVersion: orchestrator/v1
kind: IdentityProvider
metadata: {{name: {IDP}}}
spec:
  oidc:
    issuer: {oidc_provider.issuer}
    initialAccessToken: {{file: iat}}
    caFile: {oidc_provider.ca_file}
""")
    monkeypatch.setenv("ORCHESTRATOR_DB", db)
    monkeypatch.setenv("ORCHESTRATOR_KEYSTORE", str(keystore))
    monkeypatch.setenv("ORCHESTRATOR_POLICIES", str(policies))
    return {"db": db, "keystore": keystore}


def run(site: dict[str, Any], capsys: pytest.CaptureFixture[str],
        *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def registered(site: dict[str, Any]) -> list[dict[str, Any]]:
    system = bootstrap(Settings(db=site["db"], keystore=site["keystore"]), migrate=False)
    try:
        return [dict(r.payload) for r in system.store.read(ReadFilter())
                if r.type == "application.registered"]
    finally:
        system.close()


def kept_token(site: dict[str, Any], client_id: str) -> str:
    raw = FileKeystore(site["keystore"]).get(f"idp/{IDP}/{client_id}/registration-token")
    assert raw is not None
    return str(json.loads(raw)["token"])


def read_client(peer: OidcPeer, client_id: str, token: str) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(peer.ca_file))
    with httpx.Client(verify=context, timeout=30) as client:
        return client.get(f"{peer.issuer}/reg/{client_id}",
                          headers={"Authorization": f"Bearer {token}"})


def test_create_registers_a_client_and_records_the_id_the_provider_assigned(
    site: dict[str, Any], oidc_provider: OidcPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(site, capsys, "init")[0] == 0
    code, out, err = run(site, capsys, "app", "register", "svc", "--provider", IDP, "--create",
                         "--label", "env=prod")
    assert code == 0, err
    [event] = registered(site)
    client_id = event["client_id"]
    assert event == {"app": "svc", "labels": {"env": "prod"}, "provider": IDP,
                     "client_id": client_id}
    assert out == f"registered svc (client {client_id}, created at {IDP})\n"
    token = kept_token(site, client_id)
    assert token not in out + err
    record = read_client(oidc_provider, client_id, token)
    assert record.status_code == 200
    assert record.json()["client_name"] == "svc"
    assert record.json()["token_endpoint_auth_method"] == "private_key_jwt"
    assert record.json()["jwks"] == {"keys": []}  # no credential until one is activated
    assert "client_secret" not in record.json()


def test_a_token_file_binds_an_existing_client_and_replaces_a_lost_token(
    site: dict[str, Any], oidc_provider: OidcPeer, capsys: pytest.CaptureFixture[str],
    tmp_path: Path
) -> None:
    assert run(site, capsys, "init")[0] == 0
    context = ssl.create_default_context(cafile=str(oidc_provider.ca_file))
    with httpx.Client(verify=context, timeout=30) as http:
        answer = http.post(f"{oidc_provider.issuer}/reg", json={
            "client_name": "billing", "grant_types": ["client_credentials"],
            "response_types": [], "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": []}},
            headers={"Authorization": f"Bearer {oidc_provider.initial_access_token}"})
    client = answer.json()
    token_file = tmp_path / "rat"
    token_file.write_text("not-the-token\n")
    args = ("app", "register", "billing", "--provider", IDP, "--client-id", client["client_id"],
            "--registration-token-file", str(token_file))
    code, _, err = run(site, capsys, *args)
    assert code == 1 and err.count("\n") == 1
    assert "refused the registration access token given for client" in err
    assert registered(site) == []  # refused: nothing written

    token_file.write_text(client["registration_access_token"] + "\n")
    code, out, err = run(site, capsys, *args)
    assert code == 0, err
    assert out == f"registered billing (client {client['client_id']}, adopted at {IDP})\n"
    assert client["registration_access_token"] not in out + err
    assert kept_token(site, client["client_id"]) == client["registration_access_token"]

    code, out, err = run(site, capsys, *args, "--exist-ok")
    assert code == 0, err
    assert out == "billing is already registered (its registration access token was replaced)\n"
    assert [e["app"] for e in registered(site)] == ["billing"]


def test_a_client_bound_to_an_application_is_not_handed_to_another(
    site: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Refused before the provider is asked: the first application's kept registration access
    token is not replaced by the second's."""
    assert run(site, capsys, "init")[0] == 0
    assert run(site, capsys, "app", "register", "svc", "--provider", IDP, "--create")[0] == 0
    [event] = registered(site)
    client_id, token = event["client_id"], kept_token(site, event["client_id"])
    (tmp_path / "rat").write_text("another-token\n")
    code, _, err = run(site, capsys, "app", "register", "svc2", "--provider", IDP,
                       "--client-id", client_id, "--registration-token-file",
                       str(tmp_path / "rat"))
    assert code == 1 and err.count("\n") == 1, err
    assert "is bound to application 'svc' already" in err
    assert [e["app"] for e in registered(site)] == ["svc"]
    assert kept_token(site, client_id) == token


@pytest.mark.parametrize(("extra", "message"), [
    (("--create", "--client-id", "x"), "--create makes a new client"),
    (("other", "--create"), "need --provider and exactly one NAME"),
])
def test_contradictory_options_are_refused_in_one_line(
    site: dict[str, Any], capsys: pytest.CaptureFixture[str], extra: tuple[str, ...],
    message: str
) -> None:
    assert run(site, capsys, "init")[0] == 0
    code, _, err = run(site, capsys, "app", "register", "svc", "--provider", IDP, *extra)
    assert code == 2 and message in err and err.count("\n") == 1
    assert registered(site) == []


def test_the_local_provider_keeps_no_registration_tokens(
    site: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(site, capsys, "init")[0] == 0
    code, _, err = run(site, capsys, "app", "register", "svc", "--provider", "local", "--create")
    assert code == 2 and "manages no client with a registration access token" in err
    assert registered(site) == []


def test_the_longest_provider_name_and_client_id_keep_their_token_and_rotate(
    site: dict[str, Any], oidc_provider: OidcPeer, capsys: pytest.CaptureFixture[str],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 63-character resource name and a 64-character client id (the longest each allows)
    would make the token's keystore item id 151 bytes, one more than a keystore takes: the
    client id's part of it is hashed, and the token is found again by drift (which lists the
    clients from the items) and by a rotation (whose update rotates the token)."""
    idp = "oidc-" + "x" * 58
    client_id = "svc-" + "0123456789" * 6
    assert (len(idp), len(client_id)) == (63, 64)
    policies = tmp_path / "policies"
    (policies / "long.yaml").write_text(
        (policies / f"{IDP}.yaml").read_text().replace(f"name: {IDP}", f"name: {idp}"))
    (policies / "keys.yaml").write_text(policy_yaml(
        "keys", "[billing]", "{usage: private_key_jwt}",
        "{every: 30d, beforeExpiry: 10d, overlap: 1h}", lifetime="60d"))
    monkeypatch.setenv("ORCHESTRATOR_DELIVERY", str(tmp_path / "delivery"))
    context = ssl.create_default_context(cafile=str(oidc_provider.ca_file))
    with httpx.Client(verify=context, timeout=30) as http:
        client = http.post(f"{oidc_provider.issuer}/reg", json={
            "client_id": client_id, "client_name": "billing",
            "grant_types": ["client_credentials"], "response_types": [],
            "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}},
            headers={"Authorization": f"Bearer {oidc_provider.initial_access_token}"}).json()
    assert client["client_id"] == client_id
    (tmp_path / "rat").write_text(client["registration_access_token"])
    assert run(site, capsys, "init")[0] == 0

    code, out, err = run(site, capsys, "app", "register", "billing", "--provider", idp,
                         "--client-id", client_id, "--registration-token-file",
                         str(tmp_path / "rat"))
    assert code == 0, err
    assert out == f"registered billing (client {client_id}, adopted at {idp})\n"
    hashed = base64.urlsafe_b64encode(hashlib.sha256(client_id.encode()).digest())
    item = f"idp/{idp}/~{hashed.rstrip(b'=').decode()}/registration-token"
    keystore = FileKeystore(site["keystore"])
    assert keystore.ids() == [item] and len(item) <= 150
    code, out, err = run(site, capsys, "drift", "--provider", idp)
    assert code == 0, out + err

    code, out, err = run(site, capsys, "rotate", "billing", "--usage", "private_key_jwt")
    assert code == 0, err
    token = json.loads(keystore.get(item) or b"{}")["token"]
    assert token != client["registration_access_token"]  # rotated by the update, and kept
    record = read_client(oidc_provider, client_id, token)
    assert record.status_code == 200 and len(record.json()["jwks"]["keys"]) == 1
