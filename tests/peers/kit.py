"""Client-side helpers for tests against the Auth0 emulator: assertions signed as a client
would, the edge's certificate header, a Management API session. Built with PyJWT and
cryptography directly (not the emulator's code), so the two sides can disagree."""

from __future__ import annotations

import functools
import ssl
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers import spki_pem
from tests.peers.auth0 import Auth0Emulator

__all__ = [
    "ASSERTION_TYPE",
    "api_session",
    "assertion",
    "attach",
    "cert_header",
    "create_credential",
    "http_client",
    "management_grant",
    "public_pem",
    "token_request",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # made once: httpx builds one per client otherwise


def http_client(**options: Any) -> httpx.Client:
    """An httpx client for the emulator's plain-http URLs (sharing one TLS context)."""
    return httpx.Client(verify=_tls(), timeout=30, **options)


@functools.cache
def _shared() -> httpx.Client:
    return http_client()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return spki_pem(key).decode()


def assertion(key: rsa.RSAPrivateKey, client_id: str, audience: str, now: float, *,
              alg: str = "RS256", kid: str | None = None, lifetime: int = 60,
              **claims: Any) -> str:
    """A client assertion; ``claims`` override (a value of None drops the claim)."""
    payload: dict[str, Any] = {"iss": client_id, "sub": client_id, "aud": audience,
                               "iat": int(now), "exp": int(now) + lifetime,
                               "jti": str(uuid.uuid4())}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def cert_header(pem: bytes | str) -> str:
    """The customer edge's ``client-certificate`` header: the URL-encoded PEM."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    return quote(text, safe="")


def token_request(emu: Auth0Emulator, data: dict[str, Any],
                  headers: dict[str, str] | None = None) -> httpx.Response:
    return _shared().post(emu.token_url, data=data, headers=headers)


def management_grant(emu: Auth0Emulator, audience: str | None = None) -> dict[str, str]:
    """The token request of the management app (for the Management API unless ``audience``)."""
    app = emu.config.management
    return {"grant_type": "client_credentials", "client_id": app.client_id,
            "client_secret": app.client_secret,
            "audience": emu.management_audience if audience is None else audience}


def api_session(emu: Auth0Emulator, scopes: list[str] | None = None) -> httpx.Client:
    """A Management API session whose token came from ``POST /oauth/token`` (the management
    app's grant narrowed to ``scopes`` when given)."""
    data = management_grant(emu)
    if scopes is not None:
        data["scope"] = " ".join(scopes)
    answer = token_request(emu, data)
    answer.raise_for_status()
    token = answer.json()["access_token"]
    return http_client(base_url=emu.api_url, headers={"authorization": f"Bearer {token}"})


def create_credential(api: httpx.Client, client_id: str, **body: Any) -> dict[str, Any]:
    answer = api.post(f"/clients/{client_id}/credentials", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def attach(api: httpx.Client, client_id: str, slot: str, *ids: str) -> httpx.Response:
    refs = [{"id": cid} for cid in ids]
    if slot == "signed_request_object":
        return api.patch(f"/clients/{client_id}",
                         json={"signed_request_object": {"credentials": refs}})
    return api.patch(f"/clients/{client_id}", json={
        "token_endpoint_auth_method": None,
        "client_authentication_methods": {slot: {"credentials": refs}}})
