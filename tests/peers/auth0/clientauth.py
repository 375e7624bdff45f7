"""Client authentication at ``/oauth/token`` and ``/oauth/par``: a client secret (post or
basic), a Private Key JWT client assertion, or an mTLS certificate forwarded by the customer
edge. Every failure is 401 ``invalid_client`` (the wrong-secret answer can be switched to 401
``access_denied`` "Unauthorized", seen in the wild: identity-providers.md §1).

Assertion checks (auth0-credentials.md §5 and checklist 8), in this order: size <= 2048 bytes;
header ``alg`` one of RS256/RS384/PS256 (<= 16 chars); ``iss`` = ``sub`` = client_id (<= 64);
``aud`` = ``https://{domain}/`` (or a custom domain; ``/oauth/token`` only behind a switch,
UNCONFIRMED); ``exp`` required and not passed; ``exp - iat`` <= 300 s (``exp - now`` without
``iat``); ``iat``/``nbf`` at most 10 s in the future; ``jti`` required (<= 64); then the
signature by an ATTACHED, unexpired ``private_key_jwt`` credential whose ``alg`` equals the
header's, chosen by ``kid`` when the header has one, else each in turn; finally ``jti`` replay
(a switch, default on: "The client assertion is a one-time use token").

mTLS (D/edge): ``client-certificate`` is the URL-encoded PEM, ``client-certificate-ca-verified``
``SUCCESS`` or ``FAILED``. ``self_signed_tls_client_auth`` matches attached ``x509_cert``
credentials by SHA-256 thumbprint; ``tls_client_auth`` needs ``SUCCESS`` and matches attached
``cert_subject_dn`` credentials by subject DN. The certificate must be valid now.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus

import jwt

from tests.peers.auth0.credentials import ALGORITHMS
from tests.peers.auth0.errors import OAuthError
from tests.peers.auth0.keys import (
    cert_thumbprint,
    cert_valid_at,
    dn_lines,
    load_certificate,
    normalize_dn,
)
from tests.peers.auth0.model import Client, Credential
from tests.peers.auth0.rules import Tenant

__all__ = ["ASSERTION_TYPE", "Presented", "authenticate", "verify_signed"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_BYTES = 2048
MAX_LIFETIME = 300
SKEW = 10


def _refuse(description: str) -> OAuthError:
    return OAuthError(401, "invalid_client", description)


@dataclass(frozen=True)
class Presented:
    """What a request offers to authenticate with."""

    client_id: str | None
    secret: str | None
    basic: bool
    assertion: str | None
    assertion_type: str | None
    certificate: str | None
    ca_verified: str | None

    @classmethod
    def read(cls, params: Mapping[str, str], headers: Mapping[str, str],
             cname_api_key: str | None) -> Presented:
        client_id = params.get("client_id") or None
        secret = params.get("client_secret") or None
        basic = False
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
                user, _, password = decoded.partition(":")
            except ValueError as error:
                raise _refuse("Malformed Basic authorization header") from error
            user, password = unquote_plus(user), unquote_plus(password)
            if client_id is not None and client_id != user:
                raise _refuse("client_id in the body differs from the Basic credentials")
            if secret is not None:
                raise OAuthError(400, "invalid_request",
                                 "Client secret sent both in the body and the Basic header")
            client_id, secret, basic = user, password, True
        certificate = headers.get("client-certificate")
        if cname_api_key is not None and headers.get("cname-api-key") != cname_api_key:
            certificate = None  # only the customer edge may forward certificates
        return cls(client_id=client_id, secret=secret, basic=basic,
                   assertion=params.get("client_assertion") or None,
                   assertion_type=params.get("client_assertion_type") or None,
                   certificate=unquote(certificate) if certificate else None,
                   ca_verified=headers.get("client-certificate-ca-verified"))


def authenticate(tenant: Tenant, presented: Presented) -> Client:
    """The authenticated client, or an OAuthError."""
    if presented.assertion is not None:
        if presented.secret is not None:
            raise OAuthError(400, "invalid_request",
                             "Only one client authentication method may be used")
        return _by_assertion(tenant, presented)
    if presented.client_id is None:
        raise _refuse("Missing client_id (no client authentication presented)")
    client = _client(tenant, presented.client_id)
    if presented.secret is not None:
        return _by_secret(tenant, client, presented.secret)
    if presented.certificate is not None:
        return _by_certificate(tenant, client, presented)
    raise _refuse("No client authentication presented")


def _client(tenant: Tenant, client_id: str) -> Client:
    client = tenant.clients.get(client_id)
    if client is None:
        raise _refuse(f"Unknown client: {client_id}")
    return client


def _by_secret(tenant: Tenant, client: Client, secret: str) -> Client:
    if client.client_authentication_methods is not None:
        raise _refuse("Client secret authentication is not enabled for this client "
                      "(it uses client_authentication_methods)")
    if client.token_endpoint_auth_method in (None, "none"):
        raise _refuse("Client secret authentication is not enabled for this client")
    if any(hmac.compare_digest(secret.encode(), accepted.encode())
           for accepted in tenant.secrets_accepted(client)):
        return client
    if tenant.config.wrong_secret_error == "access_denied":
        raise OAuthError(401, "access_denied", "Unauthorized")
    raise _refuse("Unauthorized")


def _by_assertion(tenant: Tenant, presented: Presented) -> Client:
    if presented.assertion_type != ASSERTION_TYPE:
        raise OAuthError(400, "invalid_request", f"client_assertion_type must be "
                                                 f"{ASSERTION_TYPE}")
    token = presented.assertion or ""
    if len(token.encode()) > MAX_ASSERTION_BYTES:
        raise _refuse(f"client_assertion is larger than {MAX_ASSERTION_BYTES} bytes")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise _refuse(f"client_assertion is not a valid JWT: {error}") from error
    alg = header.get("alg")
    if not isinstance(alg, str) or len(alg) > 16 or alg not in ALGORITHMS:
        raise _refuse(f"Unsupported client_assertion alg: {alg!r}")
    client_id = _check_claims(tenant, claims, presented.client_id)
    client = _client(tenant, client_id)
    slot = client.slot_ids("private_key_jwt")
    if "private_key_jwt" not in (client.client_authentication_methods or {}):
        raise _refuse("Private Key JWT authentication is not enabled for this client")
    verify_signed(token, header, [client.credentials[cid] for cid in slot],
                  tenant.clock.now(), "client_assertion", _refuse)
    if tenant.config.jti_replay_rejected and not tenant.remember_jti(
            client_id, claims["jti"], float(claims["exp"])):
        raise _refuse("client_assertion jti has already been used")
    return client


def _check_claims(tenant: Tenant, claims: dict[str, Any], client_id: str | None) -> str:
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not iss or iss != sub:
        raise _refuse("client_assertion iss and sub must both be the client_id")
    if len(iss) > 64:
        raise _refuse("client_assertion iss/sub longer than 64 characters")
    if client_id is not None and client_id != iss:
        raise _refuse("client_assertion iss/sub differ from client_id")
    audiences = [f"https://{domain}/" for domain in
                 [tenant.domain, *tenant.config.custom_domains]]
    if tenant.config.accept_token_endpoint_aud:
        audiences += [f"{aud}oauth/token" for aud in audiences]
    aud = claims.get("aud")
    offered = aud if isinstance(aud, list) else [aud]
    if not any(item in audiences for item in offered):
        raise _refuse(f"client_assertion aud must be {audiences[0]} (with the trailing slash)")
    now = tenant.clock.now()
    if not _number(claims.get("exp")):
        raise _refuse("client_assertion exp is required")
    for label in ("iat", "nbf"):
        if claims.get(label) is not None and not _number(claims[label]):
            raise _refuse(f"client_assertion {label} must be a number")
    exp: float = claims["exp"]
    iat: float | None = claims.get("iat")
    nbf: float | None = claims.get("nbf")
    if now >= exp:
        raise _refuse("client_assertion has expired")
    if exp - (iat if iat is not None else now) > MAX_LIFETIME:
        raise _refuse("'exp' claim must specify a time that is no more than 5 minutes after "
                      "'iat'")
    if iat is not None and iat > now + SKEW:
        raise _refuse("client_assertion iat is in the future")
    if nbf is not None and nbf > now + SKEW:
        raise _refuse("client_assertion is not valid yet (nbf)")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise _refuse("client_assertion jti is required")
    if len(jti) > 64:
        raise _refuse("client_assertion jti longer than 64 characters")
    return iss


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def verify_signed(token: str, header: dict[str, Any], attached: list[Credential], now: float,
                  what: str, refuse: Any) -> Credential:
    """The attached credential that signed ``token``: by ``kid`` when the header has one,
    else each in turn; expired credentials and other algorithms never verify."""
    kid = header.get("kid")
    candidates = [c for c in attached if kid is None or c.kid == kid]
    if not candidates:
        raise refuse(f"{what} kid {kid!r} matches no credential attached to the client")
    usable = [c for c in candidates if c.usable_at(now)]
    if not usable:
        raise refuse(f"{what} was signed with an expired credential")
    fitting = [c for c in usable if c.alg == header.get("alg")]
    if not fitting:
        raise refuse(f"{what} alg {header.get('alg')} differs from the credential's alg")
    for cred in fitting:
        try:
            jwt.decode(token, cred.public_key(), algorithms=[str(cred.alg)],  # type: ignore[arg-type]
                       options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                                "verify_nbf": False, "verify_iss": False, "verify_sub": False,
                                "verify_jti": False})
            return cred
        except jwt.PyJWTError:
            continue
    raise refuse(f"{what} signature does not verify with any attached credential")


def _by_certificate(tenant: Tenant, client: Client, presented: Presented) -> Client:
    methods = client.client_authentication_methods or {}
    try:
        cert = load_certificate(presented.certificate or "")
    except ValueError as error:
        raise _refuse("client-certificate is not a PEM certificate") from error
    now = tenant.clock.now()
    if not cert_valid_at(cert, now):
        raise _refuse("The client certificate is expired or not yet valid")
    if "self_signed_tls_client_auth" in methods:
        thumbprint = cert_thumbprint(cert)
        for cid in client.slot_ids("self_signed_tls_client_auth"):
            cred = client.credentials[cid]
            if cred.thumbprint_sha256 == thumbprint and cred.usable_at(now):
                return client
        raise _refuse("The client certificate matches no attached x509_cert credential")
    if "tls_client_auth" in methods:
        if presented.ca_verified != "SUCCESS":
            raise _refuse("The client certificate was not verified by a trusted CA")
        presented_dn = normalize_dn(dn_lines(cert.subject))
        for cid in client.slot_ids("tls_client_auth"):
            cred = client.credentials[cid]
            if (cred.subject_dn is not None and normalize_dn(cred.subject_dn) == presented_dn
                    and cred.usable_at(now)):
                return client
        raise _refuse("The client certificate's subject DN matches no attached credential")
    raise _refuse("mTLS client authentication is not enabled for this client")
