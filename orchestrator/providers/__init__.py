"""Where public credential material is registered: one Protocol, one module per implementation.

* ``local``: the embedded default; the orchestrator's own log is the identity provider's
  registry, and it verifies client assertions, mTLS certificates and client secrets the way the
  identity provider does (../shared/reference/auth0-credentials.md section 5).
* ``faulty``: wraps any provider and fails, times out, or succeeds late on command, for tests
  and for rehearsing failures (``ORCHESTRATOR_PROVIDER=faulty:<rate>``).

Every call is idempotent: a repeat after a crash or a timeout finds what the first one did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from events.state import Credential

__all__ = ["Provider"]


@runtime_checkable
class Provider(Protocol):
    audience: str

    def register(self, app: str, credential: Credential) -> None:
        """Upload the public part of ``credential`` (found by its key id on a repeat)."""

    def activate(self, app: str, credential_id: str) -> None:
        """Let the credential authenticate (attach it)."""

    def deactivate(self, app: str, credential_id: str) -> None:
        """Stop the credential authenticating (detach it)."""

    def remove(self, app: str, credential_id: str) -> None:
        """Delete the credential; absent is fine."""

    def set_secret(self, app: str, version: int, secret: str,
                   previous_valid_until: datetime | None) -> None:
        """Make ``secret`` the app's client secret; the previous one stays valid until then."""

    def verify_assertion(self, app: str, assertion: str, at: datetime) -> str:
        """The id of the credential that signed a valid client assertion, or ProviderError."""

    def verify_certificate(self, app: str, certificate_pem: str, at: datetime) -> str:
        """The id of the mTLS credential matching a client certificate, or ProviderError."""

    def verify_secret(self, app: str, secret: str, at: datetime) -> int:
        """The version of the client secret that matches, or ProviderError."""
