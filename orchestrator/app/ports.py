"""The service layer's ports: what the use cases need from the world, as Protocols.

Adapters (``orchestrator.adapters``) implement them and ``orchestrator.bootstrap`` wires them; the
service layer never imports an adapter.

``Provider``: where public credential material is registered; one module per implementation:

* ``local``: the embedded default; the orchestrator's own log is the identity provider's
  registry, and it verifies client assertions, mTLS certificates and client secrets the way the
  identity provider does (../shared/reference/auth0-credentials.md section 5).
* ``auth0``: an Auth0 tenant through the Management API v2 (``providers/auth0/``).
* ``oidc``: any OpenID provider with dynamic client registration and management (RFC 7591/7592).
* ``router``: several named providers at once, each app sent to its own.
* ``faulty``: wraps any provider and fails, times out, or succeeds late on command, for tests
  and for rehearsing failures (``ORCHESTRATOR_PROVIDER=faulty:<rate>``).

Every call is idempotent: a repeat after a crash or a timeout finds what the first one did.

CA-issued mTLS certificates (``cert_subject_dn``) are matched by subject DN and chain to a
trusted CA, so two credentials of the log with one DN (a certificate and its successor) are one
registration at the provider: ``register`` of the successor finds it (the rotation's
``confirm`` step), and the service layer never asks to deactivate or remove a registration
another live credential shares (``domain.rotation.shares_registration``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from events.anchor import Checkpoint
from events.state import Credential
from orchestrator.domain.hooks import HookResult
from orchestrator.domain.identity_provider import Capabilities, Proof, RemoteClient
from orchestrator.domain.material import GeneratedKey, PublicMaterial

__all__ = [
    "MAX_ITEM_ID_BYTES",
    "CheckpointKey",
    "CheckpointSigner",
    "CheckpointSink",
    "ClientLookup",
    "ClientRegistrar",
    "Crypto",
    "Delivery",
    "HookRunner",
    "Inventory",
    "Keystore",
    "Lease",
    "MasterKeyRotation",
    "OwnClient",
    "Provider",
    "Providers",
    "RemoteEdits",
    "RotationStart",
]


@runtime_checkable
class Provider(Protocol):
    """An identity provider, or several behind one router (``adapters.providers.router``),
    each app going to the one it belongs to (``AppState.provider``)."""

    def capabilities(self, app: str) -> Capabilities:
        """What the app's provider can hold and test."""

    def register(self, app: str, credential: Credential) -> str | None:
        """Upload the public part of ``credential``; return the provider's id for it (None when
        the provider keeps none of its own). A repeat after a lost answer finds the first
        upload by its key id or thumbprint; a subject DN registered already is found."""

    def activate(self, app: str, credential_id: str) -> None:
        """Let the credential authenticate (attach it to its usage's slot)."""

    def deactivate(self, app: str, credential_id: str) -> None:
        """Stop the credential authenticating (detach it)."""

    def remove(self, app: str, credential_id: str) -> None:
        """Delete the credential; absent is fine."""

    def set_secret(self, app: str, version: int, secret: str,
                   previous_valid_until: datetime | None) -> str | None:
        """Make ``secret`` the app's client secret; where the provider can overlap, the previous
        one stays valid until then. None: ``secret`` is in force. A text: the provider made a
        secret of its own instead (Auth0's ``rotate-secret``), which is now the only copy and
        the app's secret; the caller keeps it at once. A provider that makes its own returns
        None when it holds ``secret`` already (a repeat after it was kept)."""

    def authenticate(self, app: str, proof: Proof, at: datetime) -> str | None:
        """The test: authenticate at the provider's token endpoint with ``proof``. Returns the
        credential id (or the secret version, as text) the provider says it matched, None when
        it authenticated without saying which. Raises ProviderError when refused,
        ProviderUnavailable on a transport failure, TestSkipped when nothing can test it."""

    def metadata(self, app: str) -> dict[str, str]:
        """How the app authenticates: at least ``issuer``, ``token_endpoint``, ``audience`` (the
        ``aud`` of its client assertions) and ``client_id``, for the delivery folder."""


@runtime_checkable
class Inventory(Protocol):
    """A provider that can list its clients (``import``, ``drift``)."""

    def clients(self, match: str | None = None,
                known: Collection[str] = ()) -> Iterator[RemoteClient]:
        """Every client of the tenant, with its credentials (``match``: a glob on the name).
        A client whose id is in ``known`` may come without its credentials (``credentials``
        empty): the caller holds it already, and reading them would cost a request each."""

    def client(self, client_id: str) -> RemoteClient:
        """One client as the provider has it now; ProviderError when it does not exist."""


@runtime_checkable
class ClientLookup(Protocol):
    """A provider that reads one client by its id in one request (Auth0): ``app register``
    checks that a client exists before an application is bound to it."""

    def find_client(self, client_id: str) -> RemoteClient | None:
        """The client as the provider has it now, without its credentials; None when the
        provider has no such client; ProviderError when it cannot be asked."""


@runtime_checkable
class OwnClient(Protocol):
    """A provider reached through a client of its own (Auth0's Management API application):
    no application may be bound to that client (rotating it would lock the orchestrator out)."""

    management_client_id: str


@runtime_checkable
class ClientRegistrar(Protocol):
    """A provider whose clients are each managed with a token of their own (RFC 7592): an app
    is bound to an existing client by handing over its token, or to a client made for it."""

    def adopt(self, client_id: str, registration_token: str) -> None:
        """Check that ``registration_token`` manages ``client_id``, then keep it (replacing a
        kept one); ProviderError when the provider refuses it."""

    def create(self, name: str) -> str:
        """Register a new client named ``name`` and keep its token; return its client id. A
        repeat before ``created(name)`` returns the same client."""

    def created(self, name: str) -> None:
        """The client made for ``name`` is recorded in the log: forget what let a repeat of
        ``create`` find it."""

    def holds_token(self, client_id: str) -> bool:
        """Whether a registration access token of ``client_id`` is kept (without one nothing
        of the client can be managed)."""


@runtime_checkable
class RemoteEdits(Protocol):
    """What ``drift --repair`` needs beyond ``Provider``: edits by the provider's own credential
    id, for a record the log does not know (made outside the orchestrator) or whose slot or
    date the log disagrees with. Each is idempotent (absent is fine for a delete or detach)."""

    def detach_remote(self, client_id: str, provider_credential_id: str, usage: str) -> None:
        """Take the credential out of ``usage``'s slot."""

    def delete_remote(self, client_id: str, provider_credential_id: str) -> None:
        """Take the credential out of every slot, then delete it."""

    def set_remote_expiry(self, client_id: str, provider_credential_id: str,
                          expires_at: datetime | None) -> None:
        """Give the credential this expiry (None: none; ProviderError where it cannot be
        removed)."""


@runtime_checkable
class Providers(Provider, Protocol):
    """The providers by name (``adapters.providers.router``), routing an app's calls to its own."""

    def named(self, name: str) -> Provider:
        """The provider configured under ``name``; ProviderError when there is none."""


MAX_ITEM_ID_BYTES = 150  # a keystore item id, UTF-8 (the file keystore's names stay < 255)


@runtime_checkable
class Keystore(Protocol):
    """Private bytes by item id: 1 to ``MAX_ITEM_ID_BYTES`` bytes of UTF-8 (a longer one is a
    KeystoreError); an id built from outside input must be made to fit."""

    def put(self, item_id: str, data: bytes) -> None:
        """Store ``data`` under ``item_id``, replacing any previous value."""

    def put_new(self, item_id: str, data: bytes) -> bytes:
        """Store ``data`` under ``item_id`` unless something is stored there already; return
        what is stored (a repeat, or a process racing this one, finds the first value)."""

    def get(self, item_id: str) -> bytes | None:
        """The bytes stored under ``item_id``, or None."""

    def delete(self, item_id: str) -> None:
        """Forget ``item_id``; no error when it is absent."""

    def ids(self) -> list[str]:
        """Every stored item id, sorted."""


class RotationStart(StrEnum):
    """What ``MasterKeyRotation.begin_rotation`` found."""

    STARTED = "started"
    RESUMED = "resumed"
    FINISHED = "finished"  # the new key is current already: only installing it may be left


@runtime_checkable
class MasterKeyRotation(Protocol):
    """A keystore whose items can move to a new master key, one at a time, resumably."""

    def begin_rotation(self, new_key: bytes) -> RotationStart:
        """Record ``new_key`` as the next key, or find it recorded (a resumed rotation)."""

    def pending(self, limit: int) -> list[str]:
        """Up to ``limit`` item ids still under the old key."""

    def reencrypt(self, item_id: str) -> bool:
        """Move one item to the new key atomically; False when it had moved already."""

    def finish(self) -> bool:
        """Retire the old key and make the new one current; False while items are left."""

    def install(self, new_key: bytes) -> str:
        """Put the new key where the old one was configured, or say what to change."""


@runtime_checkable
class Delivery(Protocol):
    """Where an application picks up its current credential files."""

    def deliver(self, app: str, usage: str, files: Mapping[str, bytes]) -> Path:
        """Replace the app's files for ``usage`` with ``files``; return where they are."""


@runtime_checkable
class HookRunner(Protocol):
    """Runs a delivery hook (``orchestrator.domain.hooks``): a program, never a shell line."""

    def run(self, command: Sequence[str], env: Mapping[str, str],
            timeout: timedelta) -> HookResult:
        """Run ``command`` with ``env`` added to a minimal environment (never the caller's
        whole one: it may hold a keystore key or an API secret), without input, and wait at
        most ``timeout``; past it the command and what it started are killed. Its stdout and
        stderr, together, come back as text (the end of it when long)."""


@runtime_checkable
class Lease(Protocol):
    """Exactly one leader per database."""

    @property
    def held(self) -> bool:
        """Whether this process believes it holds the lease."""

    @property
    def epoch(self) -> int | None:
        """The leader epoch the lease was taken at (each new leader's is higher); None when
        not held."""

    @property
    def fence(self) -> tuple[int, int | None] | None:
        """What the daemon's appends carry and the database checks (``events.epoch``): the
        epoch and, on PostgreSQL, the lock session's backend pid; None when not held."""

    def acquire(self) -> bool:
        """Take the lease or confirm it is still held; False when another process has it."""

    def confirm(self) -> None:
        """Raise ``events.store.LeaseLost`` unless the lease is still held at its epoch: the
        cheap check before each side effect."""

    def release(self) -> None:
        """Give the lease up; no error when it is not held."""


class CheckpointSigner(Protocol):
    """The key that signs checkpoints of the log's head; it is never in the database."""

    @property
    def key_id(self) -> str:
        """"sha256:" + hex SHA-256 of the public half's SPKI DER."""

    def sign(self, data: bytes) -> bytes:
        """The signature of ``data``."""


class CheckpointKey(Protocol):
    """The public half a verifier trusts."""

    @property
    def key_id(self) -> str:
        """"sha256:" + hex SHA-256 of the public key's SPKI DER."""

    def verifies(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``data``."""


class CheckpointSink(Protocol):
    """Where checkpoints go: each one written whole or not at all, flushed to disk."""

    def write(self, checkpoint: Checkpoint) -> str:
        """Write ``checkpoint``; where it went (a file name), for the operator."""


class Crypto(Protocol):
    """Keys, certificates, secrets and client assertions (``adapters.crypto.Cryptography``)."""

    def new_credential_id(self) -> str:
        """A fresh credential id."""

    def parse_pem(self, data: bytes, source: str = "PEM") -> PublicMaterial:
        """The public facts of a public key or certificate PEM; refuses private keys."""

    def subject_dn_material(self, dn: str) -> PublicMaterial:
        """The public facts of a CA-issued certificate known by its subject DN."""

    def generate_rsa(self, key_size: int) -> GeneratedKey:
        """A new RSA key pair."""

    def generate_self_signed(self, key_size: int, subject_cn: str, not_before: datetime,
                             not_after: datetime) -> GeneratedKey:
        """A new RSA key and a self-signed certificate for it."""

    def issue_certificate(self, ca_cert_pem: bytes, ca_key_pem: bytes, subject_dn: str,
                          key_size: int, not_before: datetime, not_after: datetime) -> GeneratedKey:
        """A new RSA key and a certificate for it issued by the given CA."""

    def private_key_pem(self, private_key_der: bytes) -> bytes:
        """PKCS#8 PEM of a stored private key, for delivery."""

    def public_material_of_private_key(self, private_key_der: bytes) -> PublicMaterial:
        """The public facts of a stored private key."""

    def new_secret(self) -> str:
        """A new client secret."""

    def secret_fingerprint(self, secret: str) -> str:
        """An identifier of a secret that does not reveal it."""

    def sign_client_assertion(self, private_key_der: bytes, *, alg: str, kid: str | None,
                              client_id: str, audience: str, now: datetime,
                              lifetime_seconds: int = 60, jti: str | None = None) -> str:
        """A client assertion (RFC 7523) signed with the stored key."""
