"""Client assertions (RFC 7523 Private Key JWT): signing with a stored key, and verifying as
the identity provider's token endpoint does (PyJWT)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from orchestrator.adapters.crypto.keys import _load_private_der
from orchestrator.domain.errors import ProviderError

__all__ = [
    "MAX_ASSERTION_BYTES",
    "MAX_ASSERTION_LIFETIME",
    "MAX_CLIENT_ID_LENGTH",
    "MAX_JTI_LENGTH",
    "AssertionInvalid",
    "sign_client_assertion",
    "sign_request_object",
    "verify_client_assertion",
]

MAX_ASSERTION_BYTES = 2048


MAX_ASSERTION_LIFETIME = 300


MAX_JTI_LENGTH = 64


MAX_CLIENT_ID_LENGTH = 64


class AssertionInvalid(ProviderError):
    """A client assertion (Private Key JWT) that the token endpoint must refuse."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"client assertion rejected: {reason}")
        self.reason = reason


def _epoch(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return int(now.timestamp())


def _signed(claims: Mapping[str, Any], private_key_der: bytes, alg: str, kid: str | None) -> str:
    """``claims`` as a JWT signed with the stored key, its ``kid`` in the header when given."""
    headers = {"kid": kid} if kid is not None else None
    key = _load_private_der(private_key_der)
    return jwt.encode(dict(claims), key, algorithm=alg, headers=headers)  # type: ignore[arg-type]


def sign_client_assertion(
    private_key_der: bytes,
    *,
    alg: str,
    kid: str | None,
    client_id: str,
    audience: str,
    now: datetime,
    lifetime_seconds: int = 60,
    jti: str | None = None,
) -> str:
    """A signed client assertion: iss = sub = client_id, aud, iat = now, exp, jti (uuid4)."""
    iat = _epoch(now)
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": iat,
              "exp": iat + lifetime_seconds, "jti": jti if jti is not None else str(uuid.uuid4())}  # fmt: skip
    return _signed(claims, private_key_der, alg, kid)


def sign_request_object(
    private_key_der: bytes,
    *,
    alg: str,
    kid: str | None,
    client_id: str,
    audience: str,
    now: datetime,
    lifetime_seconds: int = 60,
    parameters: Mapping[str, str] | None = None,
) -> str:
    """A signed authorization request object (RFC 9101, JAR): the request's ``parameters``
    (response_type, scope, ...) with iss = client_id = the client, aud, iat = nbf = now, exp
    and a jti (uuid4)."""
    iat = _epoch(now)
    claims: dict[str, Any] = {**(parameters or {}), "iss": client_id, "client_id": client_id,
                              "aud": audience, "iat": iat, "nbf": iat,
                              "exp": iat + lifetime_seconds, "jti": str(uuid.uuid4())}
    return _signed(claims, private_key_der, alg, kid)


def verify_client_assertion(
    token: str,
    *,
    public_pem: str,
    alg: str,
    client_id: str,
    audience: str,
    now: datetime,
    leeway_seconds: int = 10,
) -> dict[str, Any]:
    """Verify a client assertion by Auth0's rules at ``now``; return its claims.

    PyJWT checks signature, alg, iss = sub = client_id, aud and that exp/jti exist; times are
    checked here against ``now`` (PyJWT would read the real clock): iat/nbf at most
    ``leeway_seconds`` ahead, now < exp <= iat + 300. Raises ``AssertionInvalid``.
    """
    current = _epoch(now)
    if len(token.encode("utf-8")) > MAX_ASSERTION_BYTES:
        raise AssertionInvalid(f"assertion is larger than {MAX_ASSERTION_BYTES} bytes")
    if len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise AssertionInvalid(f"iss/sub longer than {MAX_CLIENT_ID_LENGTH} characters")
    try:
        header_alg = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError:
        raise AssertionInvalid("not a JWT") from None
    if header_alg != alg:
        raise AssertionInvalid(f"header alg {str(header_alg)[:16]!r} is not {alg!r}")
    try:
        key = serialization.load_pem_public_key(public_pem.encode("ascii"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise AssertionInvalid("the credential's public key cannot be loaded") from None
    options = {"verify_exp": False, "verify_iat": False, "verify_nbf": False,
               "require": ["iss", "sub", "aud", "exp", "jti"]}  # fmt: skip
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[alg], audience=audience, issuer=client_id,  # type: ignore[arg-type]
            subject=client_id, leeway=timedelta(seconds=leeway_seconds), options=options,  # type: ignore[arg-type]
        )  # fmt: skip
    except jwt.InvalidTokenError as error:
        raise AssertionInvalid(str(error) or type(error).__name__) from None
    times: dict[str, int] = {}
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise AssertionInvalid(f"{name} must be a number")
            times[name] = int(value)
    for name in ("iat", "nbf"):
        if times.get(name, current) > current + leeway_seconds:
            raise AssertionInvalid(f"{name} is in the future")
    if times["exp"] <= current:
        raise AssertionInvalid("assertion has expired (exp)")
    if times["exp"] - times.get("iat", current) > MAX_ASSERTION_LIFETIME:
        raise AssertionInvalid(f"exp is more than {MAX_ASSERTION_LIFETIME} s after iat")
    if not claims["jti"] or len(claims["jti"]) > MAX_JTI_LENGTH:
        raise AssertionInvalid(f"jti must be 1 to {MAX_JTI_LENGTH} characters")
    return claims
