"""The emulator driven by Auth0's own Python SDK (auth0-python 6.8.0): if the SDK reads our
answers, their shapes are Auth0's. ``Auth0(base_url=..., token=...)`` reaches a plain-http
emulator (the SDK builds ``https://{tenant_domain}/api/v2`` only when no ``base_url`` is given);
``GetToken(domain, ..., protocol="http")`` posts to ``http://{domain}/oauth/token`` and signs its
client assertion for ``aud=https://{domain}/``, so the emulator's domain is its ``host:port``.
The SDK's assertions carry the wall-clock time, so these tests run on the wall clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import auth0.authentication as auth0_authentication  # the dev extra pins auth0-python
import auth0.management as auth0_management
import jwt
import pytest
from auth0.authentication.pushed_authorization_requests import PushedAuthorizationRequests
from auth0.management.errors import BadRequestError
from cryptography.hazmat.primitives import serialization

from tests.peers.auth0 import Auth0Emulator, Clock
from tests.peers.kit import public_pem

API = "https://api.example.com/"


@pytest.fixture
def live() -> Iterator[Auth0Emulator]:
    with Auth0Emulator({"management_rate": None}, clock=Clock()) as emu:
        yield emu


@pytest.fixture
def sdk(live: Auth0Emulator):
    app = live.config.management
    token = auth0_authentication.GetToken(live.domain, app.client_id,
                                          client_secret=app.client_secret, protocol="http")
    issued = token.client_credentials(live.management_audience)
    assert issued["token_type"] == "Bearer"
    return auth0_management.Auth0(base_url=live.api_url, token=issued["access_token"],
                                  max_retries=0)


def private_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_sdk_fetches_the_management_token_and_pages_through_clients(live, sdk):
    for number in range(7):
        live.seed_client({"name": f"app-{number}"})
    names = [client.name for client in sdk.clients.list(per_page=3)]  # pages 0..3
    assert names == ["Emulator Management API client"] + [f"app-{n}" for n in range(7)]
    page = sdk.clients.list(per_page=3, page=1, include_totals=True)
    assert page.response.total == 8
    assert page.response.start == 3


def test_sdk_creates_lists_updates_and_deletes_credentials(live, sdk, keys):
    client = sdk.clients.create(name="payments-api", app_type="non_interactive")
    cred = sdk.clients.credentials.create(client.client_id, credential_type="public_key",
                                          name="k1", pem=public_pem(keys[0]), alg="PS256")
    assert cred.id.startswith("cred_")
    assert cred.alg == "PS256"
    listed = sdk.clients.credentials.list(client.client_id)
    assert [c.id for c in listed] == [cred.id]
    expiry = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    updated = sdk.clients.credentials.update(client.client_id, cred.id, expires_at=expiry)
    assert updated.expires_at == expiry
    with pytest.raises(BadRequestError) as duplicate:
        sdk.clients.credentials.create(client.client_id, credential_type="public_key",
                                       pem=public_pem(keys[0]))
    assert duplicate.value.body["message"] == (
        "credentials contains public keys that already exist in client")
    sdk.clients.credentials.delete(client.client_id, cred.id)
    assert list(sdk.clients.credentials.list(client.client_id)) == []


def test_sdk_attaches_keys_and_signs_assertions_the_emulator_accepts(live, sdk, keys):
    client = sdk.clients.create(name="signer", app_type="non_interactive")
    live.seed_grant(client.client_id, API, ["read:things"])
    ids = [sdk.clients.credentials.create(client.client_id, credential_type="public_key",
                                          pem=public_pem(key)).id for key in keys[:2]]
    updated = sdk.clients.update(client.client_id, token_endpoint_auth_method=None,
                                 client_authentication_methods={
                                     "private_key_jwt": {"credentials": [{"id": i} for i in ids]}})
    assert [c.id for c in updated.client_authentication_methods.private_key_jwt.credentials] \
        == ids
    for key in keys[:2]:  # the SDK's assertion has no kid: each attached key is tried
        signer = auth0_authentication.GetToken(
            live.domain, client.client_id, client_assertion_signing_key=private_pem(key),
            protocol="http")
        assert signer.client_credentials(API)["access_token"]
    stranger = auth0_authentication.GetToken(
        live.domain, client.client_id, client_assertion_signing_key=private_pem(keys[2]),
        protocol="http")
    with pytest.raises(auth0_authentication.exceptions.Auth0Error) as refused:
        stranger.client_credentials(API)
    assert refused.value.status_code == 401
    assert refused.value.error_code == "invalid_client"
    with pytest.raises(BadRequestError) as attached:
        sdk.clients.credentials.delete(client.client_id, ids[0])
    assert "still associated with a client" in attached.value.body["message"]


def test_sdk_rotates_a_secret(live, sdk):
    client = sdk.clients.create(name="secretive", app_type="non_interactive")
    live.seed_grant(client.client_id, API, [])
    rotated = sdk.clients.rotate_secret(client.client_id)
    assert rotated.client_secret != client.client_secret
    fresh = auth0_authentication.GetToken(live.domain, client.client_id,
                                          client_secret=rotated.client_secret, protocol="http")
    assert fresh.client_credentials(API)["access_token"]
    stale = auth0_authentication.GetToken(live.domain, client.client_id,
                                          client_secret=client.client_secret, protocol="http")
    with pytest.raises(auth0_authentication.exceptions.Auth0Error) as refused:
        stale.client_credentials(API)
    assert refused.value.status_code == 401


def test_sdk_pushes_an_authorization_request_with_a_signed_request_object(live, sdk, keys):
    client = sdk.clients.create(name="jar", app_type="regular_web")
    cred = sdk.clients.credentials.create(client.client_id, credential_type="public_key",
                                          pem=public_pem(keys[3]))
    sdk.clients.update(client.client_id, signed_request_object={
        "required": True, "credentials": [{"id": cred.id}]})
    now = int(datetime.now(UTC).timestamp())
    request = jwt.encode({"iss": client.client_id, "aud": f"https://{live.domain}/",
                          "client_id": client.client_id, "response_type": "code",
                          "redirect_uri": "https://app.example.com/cb", "iat": now,
                          "exp": now + 60}, keys[3], algorithm="RS256")
    par = PushedAuthorizationRequests(
        live.domain, client.client_id, client_secret=client.client_secret, protocol="http")
    pushed = par.pushed_authorization_request("code", "https://app.example.com/cb",
                                              request=request)
    assert pushed["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
