"""Access tokens the emulator issues and checks: RS256 JWTs signed by the tenant's key.

Real Auth0 access tokens are RS256 JWTs too; the emulator decides expiry with its own clock
(never PyJWT's), so a test moves time to expire a Management API token. The tenant key is made
once per process (RSA generation is the slowest thing here) and published at
``/.well-known/jwks.json``.
"""

from __future__ import annotations

import functools
import secrets
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.peers.auth0.clock import Clock
from tests.peers.auth0.errors import ApiError
from tests.peers.auth0.keys import b64url, rfc7638_thumbprint

__all__ = ["TokenIssuer"]


@functools.cache
def _tenant_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class TokenIssuer:
    def __init__(self, domain: str, clock: Clock) -> None:
        self.issuer = f"https://{domain}/"
        self.clock = clock
        self._key = _tenant_key()
        self.kid = rfc7638_thumbprint(self._key.public_key())

    def issue(self, client_id: str, audience: str, scopes: list[str],
              expires_in: int) -> dict[str, Any]:
        now = int(self.clock.now())
        claims = {
            "iss": self.issuer, "sub": f"{client_id}@clients", "aud": audience,
            "iat": now, "exp": now + expires_in, "scope": " ".join(scopes),
            "gty": "client-credentials", "azp": client_id, "jti": secrets.token_hex(8),
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in,
                "scope": " ".join(scopes)}

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The claims of a ``Bearer`` Management API token, or a 401 ApiError (messages as
        Auth0's Management API words them; not in the reference)."""
        if not authorization:
            raise ApiError(401, "Missing authentication")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Bad HTTP authentication header format")
        try:
            claims: dict[str, Any] = jwt.decode(
                token.strip(), self._key.public_key(), algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                         "verify_nbf": False})
        except jwt.PyJWTError as error:
            raise ApiError(401, "Invalid token", "invalid_token") from error
        if claims.get("aud") != audience:
            raise ApiError(401, f"Bad audience: {claims.get('aud')}", "invalid_token")
        if self.clock.now() >= claims.get("exp", 0):
            raise ApiError(401, "Expired token received for JSON Web Token validation",
                           "invalid_token")
        return claims

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()

        def b64int(value: int) -> str:
            return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                          "n": b64int(numbers.n), "e": b64int(numbers.e)}]}
