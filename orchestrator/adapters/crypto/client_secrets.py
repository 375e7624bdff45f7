"""Client secrets and credential ids: random values, their fingerprints and salted hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from orchestrator.adapters.crypto.material import _b64

__all__ = ["check_secret", "hash_secret", "new_credential_id", "new_secret", "secret_fingerprint"]

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def new_secret() -> str:
    """A new client secret: 48 random bytes, base64url (64 characters)."""
    return secrets.token_urlsafe(48)


def secret_fingerprint(secret: str) -> str:
    """"sha256:" + hex SHA-256 of the secret (identifies it; not for verification)."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str) -> str:
    """Salted hash for verifying a client secret later: "hmac-sha256$<salt>$<digest>" (base64url).

    The secrets hashed here are 384-bit random values (``new_secret``): no work factor makes
    those harder to guess, so a salted HMAC-SHA256 is the right cost (microseconds, not the
    tens of milliseconds of a password hash)."""
    salt = secrets.token_bytes(16)
    digest = hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).digest()
    return f"hmac-sha256${_b64(salt)}${_b64(digest)}"


def check_secret(secret: str, stored: str) -> bool:
    """True when ``secret`` matches a ``hash_secret`` value (constant-time); False on a
    mismatch or a malformed value."""
    try:
        scheme, salt, expected = stored.split("$")
        if scheme != "hmac-sha256":
            return False
        digest = hmac.new(_unb64(salt), secret.encode("utf-8"), hashlib.sha256).digest()
        return hmac.compare_digest(digest, _unb64(expected))
    except (ValueError, TypeError):
        return False


def new_credential_id() -> str:
    """A credential id in Auth0's observed form: "cred_" + 22 base58 characters."""
    return "cred_" + "".join(secrets.choice(_BASE58) for _ in range(22))
