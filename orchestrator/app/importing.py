"""``orchestrator import``: adopt every client of an identity provider's tenant.

Each client becomes an application bound to the provider and its client id, named from the
client's name (``domain.adoption.app_name``: clashes resolved predictably), with its credentials
recorded as they are at the provider and with the provider's ids, so the daemon can rotate
them. One client is one append (the application and its credentials together: a crash leaves
whole clients); a client bound already (the same provider and client id) is skipped, so an
import can be run again and only adds what is new. A credential the rules cannot hold (a third
of a usage, a key another application holds) is left out and reported; ``drift`` shows it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from events import catalog as ev
from events.kinds import CredentialKind
from events.state import AppState, Credential
from orchestrator.app.ports import Crypto, Inventory
from orchestrator.app.service import Service
from orchestrator.domain.adoption import (
    Refusal,
    app_name,
    attached_first,
    decide_adopt_credential,
    decide_import,
    marked_fingerprint,
)
from orchestrator.domain.errors import ConflictError, OrchestratorError, RefusedError
from orchestrator.domain.identity_provider import RemoteClient, RemoteCredential
from orchestrator.domain.material import MaterialKind, PublicMaterial

__all__ = ["ClientImport", "Importer", "Outcome", "public_material"]

_KINDS = {
    CredentialKind.PUBLIC_KEY: MaterialKind.PUBLIC_KEY,
    CredentialKind.X509_CERT: MaterialKind.CERTIFICATE,
    CredentialKind.CERT_SUBJECT_DN: MaterialKind.SUBJECT_DN,
}


class Outcome:
    IMPORTED = "imported"
    ALREADY = "already_imported"
    FAILED = "failed"


@dataclass(frozen=True)
class ClientImport:
    """What became of one client."""

    client_id: str
    client_name: str
    outcome: str
    app: str | None = None
    credentials: tuple[Credential, ...] = ()
    refused: tuple[Refusal, ...] = ()
    error: str | None = None


def public_material(crypto: Crypto, provider: str, record: RemoteCredential) -> PublicMaterial:
    """The public facts of a remote credential: parsed from its PEM or subject DN when the
    provider returns one, else a fingerprint derived from its record (``marked_fingerprint``)."""
    pem = record.certificate_pem or record.public_pem
    try:
        if pem:
            return crypto.parse_pem(pem.encode(), f"credential {record.provider_id}")
        if record.kind is CredentialKind.CERT_SUBJECT_DN and record.subject_dn:
            return crypto.subject_dn_material(record.subject_dn)
    except OrchestratorError:
        pass  # what the provider returned does not parse: fall back to its record
    fingerprint = record.fingerprint or marked_fingerprint(provider, record)
    return PublicMaterial(kind=_KINDS[record.kind], fingerprint=fingerprint,
                          subject_dn=record.subject_dn)


@dataclass
class _Index:
    """Applications already in the log: by name, and by (provider, client id)."""

    names: set[str] = field(default_factory=set)
    bound: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, states: Iterable[AppState]) -> _Index:
        index = cls()
        for state in states:
            if state.registered:
                index.add(state.app, state.provider, state.provider_client_id)
        return index

    def add(self, app: str, provider: str | None, client_id: str) -> None:
        self.names.add(app.lower())
        if provider is not None:
            self.bound[(provider, client_id)] = app

    def taken(self, name: str) -> bool:
        return name.lower() in self.names  # names differing in case only would confuse people


class Importer:
    def __init__(self, service: Service, crypto: Crypto, states: Callable[[], Iterable[AppState]],
                 clock: Callable[[], datetime]) -> None:
        self.service = service
        self.crypto = crypto
        self.states = states
        self.clock = clock

    def run(self, provider: str, inventory: Inventory, match: str | None = None,
            on_client: Callable[[ClientImport], None] = lambda _done: None) -> list[ClientImport]:
        """Import every client of ``inventory`` whose name matches ``match`` (a glob)."""
        index = _Index.of(self.states())
        known = {client for (bound, client) in index.bound if bound == provider}
        done = []
        for remote in inventory.clients(match, known=known):
            result = self.one(provider, remote, index)
            done.append(result)
            on_client(result)
        return done

    def one(self, provider: str, remote: RemoteClient, index: _Index) -> ClientImport:
        known = index.bound.get((provider, remote.client_id))
        if known is not None:
            return ClientImport(remote.client_id, remote.name, Outcome.ALREADY, known)
        app = app_name(remote.name, remote.client_id, index.taken)
        index.names.add(app.lower())  # this run's choice, whatever happens below
        try:
            state, refused = self._record(provider, remote, app)
        except OrchestratorError as exc:
            return ClientImport(remote.client_id, remote.name, Outcome.FAILED, app,
                                error=str(exc))
        index.add(app, provider, remote.client_id)
        creds = tuple(state.credentials.values())
        return ClientImport(remote.client_id, remote.name, Outcome.IMPORTED, app, creds,
                            tuple(refused))

    def _record(self, provider: str, remote: RemoteClient,
                app: str) -> tuple[AppState, list[Refusal]]:
        ids = {r.provider_id: self.crypto.new_credential_id() for r in remote.credentials}
        materials = {r.provider_id: public_material(self.crypto, provider, r)
                     for r in remote.credentials}
        at = self.clock()
        refused: list[Refusal] = []

        def whole(state: AppState, keep: Mapping[str, str]) -> tuple[list[ev.Event], datetime]:
            events, no = decide_import(state, app, provider, remote, keep, materials, at)
            refused[:] = no
            return events, at

        try:
            state, _ = self.service.append_decided(app, lambda s: whole(s, ids))
            return state, refused
        except ConflictError:
            pass  # a key or key id another application holds: then one credential at a time
        state, _ = self.service.append_decided(app, lambda s: whole(s, {}))
        refused = []
        for record in attached_first(remote.credentials):
            pid = record.provider_id

            def one(s: AppState, record: RemoteCredential = record) -> tuple[list[ev.Event],
                                                                              datetime]:
                return decide_adopt_credential(s, provider, record, ids[record.provider_id],
                                               materials[record.provider_id]), at
            try:
                state, _ = self.service.append_decided(app, one)
            except (RefusedError, ConflictError) as exc:
                refused.append(Refusal(pid, str(exc)))
        return state, refused
