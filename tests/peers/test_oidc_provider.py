"""node oidc-provider, configured as the test peer, does what the OIDC adapter relies on.

Spoken to directly with httpx, PyJWT and cryptography (no orchestrator code): dynamic
registration (RFC 7591) with an initial access token, management of the whole record (RFC 7592)
with a rotating registration access token, private_key_jwt with RS256 and PS256, JAR through
pushed authorization requests, self-signed and CA-issued mTLS over the peer's own TLS listener,
and how refusals answer: 401 invalid_client when a credential does not authenticate, 400
unauthorized_client when it does but the client may not use the grant (server.js turns the
provider's own 400 invalid_request into that: invalid_request also answers before authentication).

Audience of a client assertion at the token endpoint: the issuer AND the token endpoint URL are
both accepted (oidc-provider also accepts the URL of the endpoint being called, e.g. the PAR
endpoint); anything else is invalid_client.
"""

from __future__ import annotations

import base64
import ssl
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.helpers import certificate, rsa_key
from tests.peers.oidc import OidcPeer

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# RFC 7592 section 2.2: the client must not send these back in an update.
SERVER_MANAGED = ("registration_access_token", "registration_client_uri",
                  "client_secret_expires_at", "client_id_issued_at")


# --- talking to the peer ------------------------------------------------------------------------


def tls_context(peer: OidcPeer, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """Verifies the peer's certificate for real (its test CA); presents a client one if given."""
    context = ssl.create_default_context(cafile=str(peer.ca_file))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


@pytest.fixture(scope="module")
def http(oidc_provider: OidcPeer) -> Iterator[httpx.Client]:
    with httpx.Client(verify=tls_context(oidc_provider), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def meta(oidc_provider: OidcPeer, http: httpx.Client) -> dict[str, Any]:
    answer = http.get(f"{oidc_provider.issuer}/.well-known/openid-configuration")
    answer.raise_for_status()
    return dict(answer.json())


def public_jwk(key: rsa.RSAPrivateKey, kid: str, cert_pem: bytes | None = None) -> dict[str, Any]:
    jwk = dict(RSAAlgorithm.to_jwk(key.public_key(), as_dict=True))
    jwk.update(kid=kid, use="sig")
    if cert_pem is not None:
        der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
        jwk["x5c"] = [base64.b64encode(der).decode()]
    return jwk


def signed(key: rsa.RSAPrivateKey, kid: str, claims: dict[str, Any], alg: str = "RS256") -> str:
    now = int(time.time())
    return jwt.encode({"jti": uuid.uuid4().hex, "iat": now, "exp": now + 120, **claims}, key,
                      algorithm=alg, headers={"kid": kid})


def assertion_form(client_id: str, key: rsa.RSAPrivateKey, kid: str, aud: str,
                   alg: str = "RS256") -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed(
        key, kid, {"iss": client_id, "sub": client_id, "aud": aud}, alg)}


def token(http: httpx.Client, meta: dict[str, Any], client_id: str, key: rsa.RSAPrivateKey,
          kid: str, *, alg: str = "RS256", aud: str | None = None) -> httpx.Response:
    form = {"grant_type": "client_credentials",
            **assertion_form(client_id, key, kid, aud or meta["issuer"], alg)}
    return http.post(meta["token_endpoint"], data=form)


def register(http: httpx.Client, peer: OidcPeer, meta: dict[str, Any],
             body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post(meta["registration_endpoint"], json=body,
                       headers={"Authorization": f"Bearer {peer.initial_access_token}"})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def read(http: httpx.Client, client: dict[str, Any], rat: str) -> httpx.Response:
    return http.get(client["registration_client_uri"], headers={"Authorization": f"Bearer {rat}"})


def replace(http: httpx.Client, client: dict[str, Any], rat: str,
            record: dict[str, Any]) -> httpx.Response:
    return http.put(client["registration_client_uri"], json=record,
                    headers={"Authorization": f"Bearer {rat}"})


def refused(answer: httpx.Response) -> bool:
    return answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def refused_because(peer: OidcPeer, answer: httpx.Response, reason: str) -> bool:
    """Refused, for this reason (the peer's debug log tells what invalid_client does not)."""
    return refused(answer) and peer.last_refusal() == reason


def write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def issued_now(key: rsa.RSAPrivateKey, subject: str, **issuer: Any) -> bytes:
    """A certificate valid now: the peer checks certificates against the real clock."""
    now = datetime.now(UTC)
    return certificate(key, subject, not_before=now - timedelta(minutes=5),
                       not_after=now + timedelta(days=1), **issuer)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# --- registration, private_key_jwt, audiences ---------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_a_registered_private_key_jwt_client_gets_a_token_with_its_key(
    oidc_provider: OidcPeer, http: httpx.Client, meta: dict[str, Any], alg: str
) -> None:
    """Registration needs the initial access token; the assertion's aud may be the issuer or the
    token endpoint; the registered alg is enforced; a key not in jwks is invalid_client."""
    key, stranger = rsa_key(), rsa_key()
    body = {"client_name": f"pkjwt-{alg}", "grant_types": ["client_credentials"],
            "response_types": [], "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": alg, "jwks": {"keys": [public_jwk(key, "k1")]}}
    anonymous = http.post(meta["registration_endpoint"], json=body)
    assert anonymous.status_code == 401, anonymous.text
    client = register(http, oidc_provider, meta, body)
    client_id = client["client_id"]
    assert client["token_endpoint_auth_method"] == "private_key_jwt"
    assert "client_secret" not in client

    form = {"grant_type": "client_credentials",
            **assertion_form(client_id, key, "k1", meta["issuer"], alg)}
    issued = http.post(meta["token_endpoint"], data=form)
    assert issued.status_code == 200, issued.text
    assert refused_because(oidc_provider, http.post(meta["token_endpoint"], data=form),
                           "client assertion tokens must only be used once")
    assert issued.json()["token_type"] == "Bearer" and issued.json()["access_token"]
    at_endpoint = token(http, meta, client_id, key, "k1", alg=alg, aud=meta["token_endpoint"])
    assert at_endpoint.status_code == 200, at_endpoint.text
    assert refused_because(
        oidc_provider, token(http, meta, client_id, key, "k1", alg=alg, aud="https://elsewhere/"),
        "audience (aud) must equal the endpoint url, issuer identifier or token endpoint url")
    other_alg = "PS256" if alg == "RS256" else "RS256"
    assert refused_because(oidc_provider, token(http, meta, client_id, key, "k1", alg=other_alg),
                           "alg mismatch")
    assert refused_because(oidc_provider, token(http, meta, client_id, stranger, "k1", alg=alg),
                           "signature verification failed")


# --- RFC 7592: the whole record, the rotating registration access token -------------------------


def test_a_whole_record_update_adds_then_withdraws_a_key_and_rotates_the_access_token(
    oidc_provider: OidcPeer, http: httpx.Client, meta: dict[str, Any]
) -> None:
    old, new = rsa_key(), rsa_key()
    client = register(http, oidc_provider, meta, {
        "client_name": "rotating", "grant_types": ["client_credentials"], "response_types": [],
        "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "RS256",
        "jwks": {"keys": [public_jwk(old, "old")]}})
    client_id, rat = client["client_id"], client["registration_access_token"]

    def update(change: dict[str, Any]) -> None:
        nonlocal rat
        current = read(http, client, rat)
        assert current.status_code == 200, current.text
        record = {k: v for k, v in current.json().items() if k not in SERVER_MANAGED}
        answer = replace(http, client, rat, {**record, **change})
        assert answer.status_code == 200, answer.text
        assert answer.json()["token_endpoint_auth_method"] == "private_key_jwt"
        assert "client_secret" not in answer.json()
        previous, rat = rat, answer.json()["registration_access_token"]
        assert rat != previous
        assert read(http, client, previous).status_code == 401  # the old RAT is gone at once

    update({"jwks": {"keys": [public_jwk(old, "old"), public_jwk(new, "new")]}})
    assert token(http, meta, client_id, new, "new").status_code == 200
    assert token(http, meta, client_id, old, "old").status_code == 200

    update({"jwks": {"keys": [public_jwk(new, "new")]}})
    assert refused_because(oidc_provider, token(http, meta, client_id, old, "old"),
                           "no applicable key found in the JSON Web Key Set")
    assert token(http, meta, client_id, new, "new").status_code == 200
    assert read(http, client, rat).json()["jwks"]["keys"][0]["kid"] == "new"

    forbidden = {**read(http, client, rat).json()}  # sending a server-managed field back: 400
    assert replace(http, client, rat, forbidden).status_code == 400


def test_a_partial_update_nulls_what_it_omits(
    oidc_provider: OidcPeer, http: httpx.Client, meta: dict[str, Any]
) -> None:
    """Why the adapter must GET, modify and PUT the whole record: omitted fields become defaults,
    here turning a private_key_jwt client into a client_secret_basic one with a minted secret."""
    key = rsa_key()
    client = register(http, oidc_provider, meta, {
        "grant_types": ["client_credentials"], "response_types": [],
        "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [public_jwk(key, "k")]}})
    partial = {"client_id": client["client_id"], "grant_types": ["client_credentials"],
               "response_types": [], "jwks": {"keys": [public_jwk(key, "k")]}}
    answer = replace(http, client, client["registration_access_token"], partial)
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_endpoint_auth_method"] == "client_secret_basic"
    assert answer.json()["client_secret"]
    assert refused(token(http, meta, client["client_id"], key, "k"))
    without_grants = {"client_id": client["client_id"], "jwks": {"keys": [public_jwk(key, "k")]}}
    answer = replace(http, client, answer.json()["registration_access_token"], without_grants)
    assert answer.status_code == 400  # grant_types fell back to authorization_code
    assert answer.json()["error"] == "invalid_redirect_uri"


# --- JAR through PAR, and a client without the client_credentials grant ------------------------


def test_request_objects_are_verified_with_registered_keys_through_par(
    oidc_provider: OidcPeer, http: httpx.Client, meta: dict[str, Any]
) -> None:
    """201 for a request object signed by a registered key, 400 invalid_request_object for any
    other. The client has no client_credentials grant: its key still authenticates at the token
    endpoint, which then answers 400 unauthorized_client (a stranger's key: 401 invalid_client)."""
    auth, jar, stranger = rsa_key(), rsa_key(), rsa_key()
    redirect = "https://app.example.test/callback"
    client = register(http, oidc_provider, meta, {
        "client_name": "jar", "grant_types": ["authorization_code"], "response_types": ["code"],
        "redirect_uris": [redirect], "token_endpoint_auth_method": "private_key_jwt",
        "request_object_signing_alg": "PS256",
        "jwks": {"keys": [public_jwk(auth, "auth"), public_jwk(jar, "jar")]}})
    client_id = client["client_id"]
    par = meta["pushed_authorization_request_endpoint"]

    def push(key: rsa.RSAPrivateKey, kid: str, alg: str = "PS256") -> httpx.Response:
        request = signed(key, kid, {
            "iss": client_id, "aud": meta["issuer"], "client_id": client_id,
            "response_type": "code", "redirect_uri": redirect, "scope": "openid",
            "state": uuid.uuid4().hex, "nbf": int(time.time())}, alg)
        return http.post(par, data={"client_id": client_id, "request": request,
                                    **assertion_form(client_id, auth, "auth", meta["issuer"])})

    pushed = push(jar, "jar")
    assert pushed.status_code == 201, pushed.text
    assert pushed.json()["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    for bad in (push(stranger, "jar"), push(jar, "jar", alg="RS256")):
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"] == "invalid_request_object"

    after_auth = token(http, meta, client_id, auth, "auth")
    assert after_auth.status_code == 400, after_auth.text
    assert after_auth.json()["error"] == "unauthorized_client"
    assert refused(token(http, meta, client_id, stranger, "auth"))


# --- mTLS over the peer's own TLS listener ------------------------------------------------------


def test_self_signed_tls_client_auth_matches_the_certificate_against_x5c(
    oidc_provider: OidcPeer, meta: dict[str, Any], tmp_path: Path
) -> None:
    key, other = rsa_key(), rsa_key()
    cert = issued_now(key, "CN=self-signed-app")
    other_cert = issued_now(other, "CN=self-signed-app")
    with httpx.Client(verify=tls_context(oidc_provider), timeout=30) as plain:
        client = register(plain, oidc_provider, meta, {
            "grant_types": ["client_credentials"], "response_types": [],
            "token_endpoint_auth_method": "self_signed_tls_client_auth",
            "tls_client_certificate_bound_access_tokens": True,
            "jwks": {"keys": [public_jwk(key, "cert-1", cert)]}})
        form = {"grant_type": "client_credentials", "client_id": client["client_id"]}
        assert refused_because(oidc_provider, plain.post(meta["token_endpoint"], data=form),
                               "client certificate was not provided")

    def with_cert(pem: bytes, private: rsa.RSAPrivateKey, name: str) -> httpx.Response:
        context = tls_context(oidc_provider, write_pem(tmp_path / f"{name}.pem", pem),
                              write_pem(tmp_path / f"{name}.key", key_pem(private)))
        with httpx.Client(verify=context, timeout=30) as mtls:
            return mtls.post(meta["token_endpoint"], data=form)

    issued = with_cert(cert, key, "registered")
    assert issued.status_code == 200, issued.text
    assert refused_because(oidc_provider, with_cert(other_cert, other, "unregistered"),
                           "unregistered client certificate provided")


def test_tls_client_auth_needs_a_trusted_chain_and_the_registered_subject(
    oidc_provider: OidcPeer, meta: dict[str, Any], tmp_path: Path
) -> None:
    ca_key, rogue_key, key = rsa_key(), rsa_key(), rsa_key()
    ca_dn = "CN=Peer Test Client CA,O=Example"
    ca = issued_now(ca_key, ca_dn, ca=True)
    subject = "CN=payments-api,OU=Payments,O=Example\\, Inc.,C=FR"
    cert = issued_now(key, subject, issuer_key=ca_key, issuer=ca_dn)
    rogue = issued_now(key, subject, issuer_key=rogue_key, issuer="CN=Rogue CA")
    elsewhere = issued_now(key, "CN=payments-batch,OU=Payments,O=Example\\, Inc.,C=FR",
                           issuer_key=ca_key, issuer=ca_dn)
    dn = x509.load_pem_x509_certificate(cert).subject.rfc4514_string()
    assert dn == subject
    with httpx.Client(verify=tls_context(oidc_provider), timeout=30) as plain:
        client = register(plain, oidc_provider, meta, {
            "grant_types": ["client_credentials"], "response_types": [],
            "token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": dn})
    form = {"grant_type": "client_credentials", "client_id": client["client_id"]}
    key_file = write_pem(tmp_path / "client.key", key_pem(key))

    def with_cert(pem: bytes, name: str) -> httpx.Response:
        context = tls_context(oidc_provider, write_pem(tmp_path / f"{name}.pem", pem), key_file)
        with httpx.Client(verify=context, timeout=30) as mtls:
            return mtls.post(meta["token_endpoint"], data=form)

    untrusted = "client certificate was not verified"
    assert refused_because(oidc_provider, with_cert(cert, "before"), untrusted)  # CA not added yet
    oidc_provider.add_client_ca(ca)
    issued = with_cert(cert, "trusted")
    assert issued.status_code == 200, issued.text
    assert refused_because(oidc_provider, with_cert(rogue, "rogue"), untrusted)  # same subject
    assert refused_because(oidc_provider, with_cert(elsewhere, "elsewhere"),  # trusted issuer
                           "certificate subject value does not match the registered one")


# --- the storage adapter ------------------------------------------------------------------------


@pytest.mark.slow
def test_nothing_is_evicted_under_token_traffic(
    oidc_provider: OidcPeer, http: httpx.Client, meta: dict[str, Any]
) -> None:
    """The built-in MemoryAdapter is one LRU of 1,000 entries (kept for up to two generations of
    1,000 inserts): each token request stores two (the token and the assertion's jti), so 1,100
    of them evicted an idle client and its RAT."""
    idle_key, busy_key = rsa_key(), rsa_key()
    body = {"grant_types": ["client_credentials"], "response_types": [],
            "token_endpoint_auth_method": "private_key_jwt"}
    idle = register(http, oidc_provider, meta,
                    {**body, "jwks": {"keys": [public_jwk(idle_key, "idle")]}})
    busy = register(http, oidc_provider, meta,
                    {**body, "jwks": {"keys": [public_jwk(busy_key, "busy")]}})
    statuses = {token(http, meta, busy["client_id"], busy_key, "busy").status_code
                for _ in range(1100)}
    assert statuses == {200}
    assert token(http, meta, idle["client_id"], idle_key, "idle").status_code == 200
    assert read(http, idle, idle["registration_access_token"]).status_code == 200
