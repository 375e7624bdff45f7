"""An identity provider in memory that keeps its own record of each client, apart from the log (as
Auth0 does), so a test can change it behind the orchestrator's back: the ``Provider`` and
``Inventory`` ports, wired as a named provider beside the local one (``bootstrap.in_memory``).

* ``journal``: every call in order, ``(method, client_id)``; ``down``: every call fails as a
  transport failure (``ProviderUnavailable``); ``lose``: the next answer of each method named
  there is lost after the work was done (the call raises ``ProviderUnavailable``).
* ``delete_client`` / ``delete_record`` / ``detach``: changes made at the provider by someone
  else. A client that does not exist answers ``ClientMissing`` (Auth0's 404).
* The test of a new credential is the local provider's (it reads the log), refused unless the
  credential's record here is attached: a credential deleted or detached here does not work.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator
from dataclasses import replace
from datetime import datetime

from events.state import AppState, Credential
from orchestrator.adapters.providers.local import LocalProvider
from orchestrator.app.ports import Keystore
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import (
    Capabilities,
    ClientMissing,
    Proof,
    ProviderUnavailable,
    RemoteClient,
    RemoteCredential,
)

__all__ = ["MemoryTenant"]


class MemoryTenant:
    def __init__(self, name: str, state_of: Callable[[str], AppState], keystore: Keystore) -> None:
        self.name = name
        self._state_of = state_of
        self._local = LocalProvider(state_of, keystore)
        self.records: dict[str, dict[str, RemoteCredential]] = {}  # client -> its id -> record
        self.journal: list[tuple[str, str]] = []
        self.down = False
        self.lose: set[str] = set()
        self.on_read: Callable[[str], None] = lambda client_id: None
        self._ids = itertools.count(1)

    # --- the tenant, as others change it -------------------------------------------------------

    def add_client(self, client_id: str) -> None:
        self.records.setdefault(client_id, {})

    def delete_client(self, client_id: str) -> None:
        del self.records[client_id]

    def delete_record(self, client_id: str, provider_id: str) -> None:
        del self.records[client_id][provider_id]

    def detach(self, client_id: str, provider_id: str) -> None:
        record = self.records[client_id][provider_id]
        self.records[client_id][provider_id] = replace(record, attached=())

    def calls(self, method: str, client_id: str | None = None) -> int:
        return sum(1 for m, c in self.journal if m == method and client_id in (None, c))

    # --- Provider --------------------------------------------------------------------------------

    def capabilities(self, app: str) -> Capabilities:
        return Capabilities()

    def metadata(self, app: str) -> dict[str, str]:
        return self._local.metadata(app)

    def register(self, app: str, credential: Credential) -> str | None:
        client = self._enter("register", app)
        found = self._find(client, credential)
        if found is None:
            found = f"cred_{next(self._ids)}"
            client[found] = RemoteCredential(
                provider_id=found, kind=credential.kind, kid=credential.kid, alg=credential.alg,
                fingerprint=credential.fingerprint, expires_at=credential.expires_at)
        self._answer("register")
        return found

    def activate(self, app: str, credential_id: str) -> None:
        self._slot(app, credential_id, "activate", attach=True)

    def deactivate(self, app: str, credential_id: str) -> None:
        self._slot(app, credential_id, "deactivate", attach=False)

    def remove(self, app: str, credential_id: str) -> None:
        client = self._enter("remove", app)
        found = self._find(client, self._state_of(app).credentials[credential_id])
        if found is not None:
            del client[found]
        self._answer("remove")

    def set_secret(self, app: str, version: int, secret: str,
                   previous_valid_until: datetime | None) -> None:
        self._enter("set_secret", app)
        self._local.set_secret(app, version, secret, previous_valid_until)

    def authenticate(self, app: str, proof: Proof, at: datetime) -> str | None:
        client = self._enter("authenticate", app)
        if proof.credential is not None:
            found = self._find(client, proof.credential)
            if found is None or not client[found].attached:
                raise ProviderError(f"{self.name}: invalid_client: {proof.credential.id} is not "
                                    "attached")
        return self._local.authenticate(app, proof, at)

    # --- Inventory -------------------------------------------------------------------------------

    def clients(self, match: str | None = None,
                known: Collection[str] = ()) -> Iterator[RemoteClient]:
        for client_id in sorted(self.records):
            yield self.client(client_id)

    def client(self, client_id: str) -> RemoteClient:
        self.journal.append(("client", client_id))
        self.on_read(client_id)
        if self.down:
            raise ProviderUnavailable(f"{self.name}: cannot connect")
        if client_id not in self.records:
            raise ClientMissing(self.name, client_id, "404 from the tenant")
        return RemoteClient(client_id=client_id, name=client_id,
                            credentials=tuple(self.records[client_id].values()))

    # --- inside ----------------------------------------------------------------------------------

    def _enter(self, method: str, app: str) -> dict[str, RemoteCredential]:
        client_id = self._state_of(app).provider_client_id
        self.journal.append((method, client_id))
        if self.down:
            raise ProviderUnavailable(f"{self.name}: cannot connect")
        if client_id not in self.records:
            raise ClientMissing(self.name, client_id, "404 from the tenant")
        return self.records[client_id]

    def _answer(self, method: str) -> None:
        if method in self.lose:
            self.lose.discard(method)
            raise ProviderUnavailable(f"{self.name}: {method}: the answer was lost")

    def _find(self, client: dict[str, RemoteCredential], credential: Credential) -> str | None:
        for pid, record in client.items():
            if pid == credential.provider_id or record.kid == credential.kid:
                return pid
        return None

    def _slot(self, app: str, credential_id: str, method: str, *, attach: bool) -> None:
        client = self._enter(method, app)
        cred = self._state_of(app).credentials[credential_id]
        found = self._find(client, cred)
        if found is None:
            raise ProviderError(f"{self.name}: {credential_id} is not registered")
        record = client[found]
        usage = str(cred.usage)
        attached = tuple(u for u in record.attached if u != usage) + ((usage,) if attach else ())
        client[found] = replace(record, attached=attached)
        self._answer(method)
