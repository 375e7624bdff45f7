"""What the orchestrator knows of an identity provider, as plain values (no I/O).

* ``Capabilities``: what a provider can hold and test. Real providers differ: Auth0 keeps at most
  2 credentials per slot and a pool of 4 per client, one client secret with no overlap, and can
  test JAR keys through a pushed authorization request; an RFC 7592 provider replaces the whole
  client record, has one secret it cannot rotate, and tests JAR only where it offers PAR.
* ``Proof``: what the test of a new credential presents at the provider's token endpoint.
* ``RemoteClient`` / ``RemoteCredential``: a client as the provider reports it, for ``import``
  and ``drift``.
* ``SecretRotation``: how a new client secret reaches an Auth0 client (``spec.auth0.secretRotation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from events.kinds import CredentialKind
from events.state import Credential
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.vocabulary import SECRET_USAGE, Usage

__all__ = [
    "LOCAL_PROVIDER",
    "Capabilities",
    "ClientMissing",
    "Proof",
    "ProviderUnavailable",
    "RemoteClient",
    "RemoteCredential",
    "SecretRotation",
    "TestSkipped",
]

LOCAL_PROVIDER = "local"
ALL_USAGES = frozenset({Usage.PRIVATE_KEY_JWT, Usage.JAR, Usage.MTLS, SECRET_USAGE})


class ProviderUnavailable(ProviderError):
    """A transport failure (connection, timeout, TLS, 5xx, 429, a malformed answer): the call
    may or may not have taken effect; the rotation retries it with backoff."""


class ClientMissing(ProviderError):
    """The provider no longer gives the application's client: deleted there (Auth0 and RFC 7592
    answer 404), or (RFC 7592, ``TokenRefused``) its registration access token is refused.
    Nothing the orchestrator does brings a client back (``drift --repair`` puts credentials
    back, not clients), so only an operator can act; ``for_app`` says what."""

    def __init__(self, provider: str, client_id: str, detail: str | None = None) -> None:
        self.provider = provider
        self.client_id = client_id
        self.detail = detail
        super().__init__(self.for_app(None))

    def for_app(self, app: str | None) -> str:
        """One line: what is missing, and what the operator does."""
        who = f"application {app!r}" if app else "the application"
        detail = f"; {self.detail}" if self.detail else ""
        return (f"client {self.client_id!r} no longer exists at identity provider "
                f"{self.provider!r} (deleted there{detail}): nothing the orchestrator does can "
                "recreate it (drift --repair neither); if " + who + " lives on, create a "
                "client for it at the provider and register it again under a new name: "
                f"orchestrator app register NAME --provider {self.provider} --client-id ID "
                f"(or orchestrator import --provider {self.provider})")


class SecretRotation(StrEnum):
    """How a new client secret reaches an Auth0 client (auth0-credentials.md 4.3).

    ``patch``: the orchestrator makes the secret and stores it, then sets it as Auth0's "custom
    client secret" (``PATCH /clients/{id}``); a repeat sends the same secret again.
    ``rotate-secret``: Auth0 makes it (``POST /clients/{id}/rotate-secret``), for tenants whose
    policy forbids custom secrets; its answer holds the only copy, which the orchestrator stores
    at once, and a repeat reads the client to tell a lost answer from a success."""

    PATCH = "patch"
    ROTATE_SECRET = "rotate-secret"


class TestSkipped(ProviderError):
    """Nothing at the provider can test this credential (the reason is the message)."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True, slots=True)
class Capabilities:
    usages: frozenset[str] = ALL_USAGES
    per_slot: int = 2  # credentials attached at once to one usage
    per_client: int | None = None  # credential records a client may hold (None: no limit)
    secret_overlap: bool = True  # the previous client secret keeps working after a switch
    # a client secret authenticates a client beside its keys and certificates; False at Auth0,
    # where a client authenticating with keys refuses a secret (one set there is never used)
    secret_beside_keys: bool = True
    untestable: tuple[tuple[str, str], ...] = ()  # (usage, why it cannot be tested)
    expiry: bool = True  # the provider keeps each credential's expiry (drift compares them)
    shared_key_set: bool = False  # one key set serves every signing usage (RFC 7591's jwks)
    # a credential not attached stays at the provider (Auth0's pool); RFC 7592's record holds
    # only what authenticates, so there a credential added or disabled in the log is absent
    keeps_detached: bool = True

    def why_untestable(self, usage: str) -> str | None:
        return dict(self.untestable).get(usage)


@dataclass(frozen=True, slots=True)
class Proof:
    """The test's request: a client assertion signed with ``private_key_der`` (private_key_jwt),
    a request object (jar), the certificate and its key on the TLS connection (mtls), or the
    client ``secret``."""

    client_id: str
    usage: str
    credential: Credential | None = None
    private_key_der: bytes | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    secret_version: int | None = None


@dataclass(frozen=True, slots=True)
class RemoteCredential:
    """A credential record at the provider; ``attached`` names the usages whose slot holds it."""

    provider_id: str
    kind: CredentialKind
    attached: tuple[str, ...] = ()
    kid: str | None = None
    alg: str | None = None
    fingerprint: str | None = None  # ours: "sha256:<hex>" of the SPKI, when the provider says
    thumbprint: str | None = None  # the provider's own (RFC 7638 kid, x5t#S256)
    subject_dn: str | None = None
    expires_at: datetime | None = None
    public_pem: str | None = None
    certificate_pem: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteClient:
    client_id: str
    name: str
    auth_method: str | None = None  # private_key_jwt, tls_client_auth, client_secret_post, ...
    credentials: tuple[RemoteCredential, ...] = ()
    has_secret: bool = False
