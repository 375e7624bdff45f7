"""Several identity providers at once: each application's calls go to the provider it belongs
to (``AppState.provider``, recorded when it was registered), the local provider for the rest.

The named providers come from the ``IdentityProvider`` resources beside the policies, read
again when they change (``named``); an application whose provider is not configured is refused
with one line naming it: the tick starts no rotation of it (``Ticker.start_refused``), and one
already in flight fails (and is retried) rather than going elsewhere.
Every call goes through ``named``, which first asks ``guard`` (the daemon's: is the leader lease
still ours; see ``orchestrator.app.fencing``). After each call of a rotation, a deletion or a
test (register, activate, deactivate, remove, set_secret, authenticate), ``observe`` is told the
provider's name and the outcome: ``ok``, ``unavailable`` (``ProviderUnavailable``: it could not
be reached) or ``error`` (refused, or anything else it raised): the daemon's
``orchestrator_provider_requests_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from events.state import AppState, Credential
from orchestrator.app.ports import Provider
from orchestrator.app.provider_calls import Observe, observed
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import LOCAL_PROVIDER, Capabilities, Proof

__all__ = ["ProviderRouter"]

T = TypeVar("T")


class ProviderRouter:
    def __init__(self, state_of: Callable[[str], AppState], local: Provider,
                 named: Callable[[], Mapping[str, Provider]] = dict,
                 problems: Callable[[], Sequence[str]] = tuple,
                 guard: Callable[[], None] = lambda: None,
                 observe: Observe = lambda _provider, _outcome: None) -> None:
        self._state_of = state_of
        self._observe = observe  # (provider, outcome) after each call made of a provider
        self._guard = guard
        self.local = local
        self._named = named
        self._problems = problems  # the policies folder's files that do not load, one line each

    def named(self, name: str) -> Provider:
        """The provider configured under ``name`` (``local``: the embedded one)."""
        self._guard()
        if name == LOCAL_PROVIDER:
            return self.local
        found = self._named().get(name)
        if found is None:
            known = ", ".join(sorted([LOCAL_PROVIDER, *self._named()]))
            problems = self._problems()
            why = (f"; {len(problems)} files of the policies folder do not load, the first: "
                   if len(problems) > 1 else "; a file of the policies folder does not load: ")
            raise ProviderError(f"identity provider {name!r} is not configured (no "
                                f"IdentityProvider resource of that name; known: {known})"
                                + (why + problems[0] if problems else ""))
        return found

    def of(self, app: str) -> Provider:
        return self.named(self._state_of(app).provider or LOCAL_PROVIDER)

    def capabilities(self, app: str) -> Capabilities:
        return self.of(app).capabilities(app)

    def metadata(self, app: str) -> dict[str, str]:
        return self.of(app).metadata(app)

    def _call(self, app: str, call: Callable[[Provider], T]) -> T:
        """``call`` on the app's provider, told to ``observe`` with its outcome."""
        name = self._state_of(app).provider or LOCAL_PROVIDER
        provider = self.named(name)
        return observed(name, lambda: call(provider), self._observe)

    def register(self, app: str, credential: Credential) -> str | None:
        return self._call(app, lambda p: p.register(app, credential))

    def activate(self, app: str, credential_id: str) -> None:
        self._call(app, lambda p: p.activate(app, credential_id))

    def deactivate(self, app: str, credential_id: str) -> None:
        self._call(app, lambda p: p.deactivate(app, credential_id))

    def remove(self, app: str, credential_id: str) -> None:
        self._call(app, lambda p: p.remove(app, credential_id))

    def set_secret(self, app: str, version: int, secret: str,
                   previous_valid_until: datetime | None) -> str | None:
        return self._call(app, lambda p: p.set_secret(app, version, secret,
                                                      previous_valid_until))

    def authenticate(self, app: str, proof: Proof, at: datetime) -> str | None:
        return self._call(app, lambda p: p.authenticate(app, proof, at))
