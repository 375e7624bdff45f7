"""``orchestrator drift``: compare the log with the identity providers, then adopt or repair.

``check`` reads an app's client from its provider (``Inventory.client``) and compares it with
the log (``domain.drift.compare``). ``adopt`` records what the provider has
(``domain.adoption.decide_adoption``: one append per difference, decided again on the fresh
state). ``repair`` puts the provider back to what the log says, each difference by one call
and recorded as ``drift.repaired``; it works in an order that never needs more room than a
slot has: what is at the provider and not in the log goes first, attachments last:

    added         delete it at the provider (``RemoteEdits.delete_remote``)
    attached      detach it (``Provider.deactivate``; from another usage's slot:
                  ``RemoteEdits.detach_remote``)
    reregistered  record the provider's id (nothing at the provider can be put back)
    removed       upload it again (``Provider.register``; the log must hold its public key),
                  record its new id, attach it when the log has it active
    redated       the log's expiry (``RemoteEdits.set_remote_expiry``)
    detached      attach it (``Provider.activate``)
    auth_method   attach the log's active credentials (which restores the method)

An app with a rotation in flight is compared (its differences may be the rotation's own steps)
but neither adopted nor repaired: the rotation finishes first.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from events import catalog as ev
from events.state import AppState, RotationStatus, Status
from orchestrator.app.importing import public_material
from orchestrator.app.ports import Crypto, Inventory, Providers, RemoteEdits
from orchestrator.app.provider_calls import Observe, observed
from orchestrator.app.service import Service
from orchestrator.domain.adoption import decide_adoption
from orchestrator.domain.drift import Difference, DriftKind, compare
from orchestrator.domain.errors import OrchestratorError, ProviderError
from orchestrator.domain.identity_provider import (
    LOCAL_PROVIDER,
    ClientMissing,
    ProviderUnavailable,
    RemoteClient,
)

__all__ = ["REPAIR_ORDER", "AppDrift", "DriftChecker", "Fix"]

REPAIR_ORDER = (DriftKind.ADDED, DriftKind.ATTACHED, DriftKind.REREGISTERED, DriftKind.REMOVED,
                DriftKind.REDATED, DriftKind.DETACHED, DriftKind.AUTH_METHOD)


@dataclass(frozen=True)
class AppDrift:
    """One application compared: its differences, or why it could not be compared."""

    app: str
    provider: str
    client_id: str
    version: int  # the app's stream version it was compared at
    differences: tuple[Difference, ...] = ()
    remote: RemoteClient | None = field(default=None, repr=False)
    error: str | None = None  # why it could not be compared (or, ``missing``, the client is gone)
    missing: bool = False  # the provider no longer gives the client (``ClientMissing``)
    unreachable: bool = False  # the provider could not be reached (``ProviderUnavailable``)
    rotation: str | None = None  # a rotation in flight: adopt and repair wait for it
    dates: bool = True  # the provider keeps expiries (they were compared)
    shared_key_set: bool = False  # one key set serves every signing usage
    keeps_detached: bool = True  # a credential not attached stays at the provider

    @property
    def clean(self) -> bool:
        return self.error is None and not self.differences

    @property
    def fix(self) -> str:
        """What the operator runs to make the log and the provider agree."""
        if self.rotation is not None:  # adopt and repair wait for it, and the daemon holds it
            return (f"orchestrator rotations abandon {self.app} {self.rotation}, then "
                    f"orchestrator drift --app {self.app} --adopt|--repair")
        return f"orchestrator drift --app {self.app} --adopt|--repair"


@dataclass(frozen=True)
class Fix:
    """What ``adopt`` or ``repair`` did with one difference (``done`` False: why not)."""

    app: str
    difference: Difference
    done: bool
    detail: str


class DriftChecker:
    def __init__(self, service: Service, providers: Providers, crypto: Crypto,
                 states: Callable[[], Iterable[AppState]], clock: Callable[[], datetime],
                 observe: Observe = lambda _provider, _outcome: None) -> None:
        self.service = service
        self._observe = observe  # (provider, outcome) after each read of a client (metrics)
        self.providers = providers
        self.crypto = crypto
        self.states = states
        self.clock = clock

    # --- what is compared --------------------------------------------------------------------

    def inventory(self, name: str) -> Inventory | None:
        """The provider ``name`` if it can list its clients (None: it cannot, as the local
        provider, which is the log itself)."""
        if name == LOCAL_PROVIDER:
            return None
        found = self.providers.named(name)
        return found if isinstance(found, Inventory) else None

    def targets(self, provider: str | None = None, app: str | None = None) -> list[AppState]:
        """The registered apps bound to a provider that can list its clients (``provider`` and
        ``app`` narrow them)."""
        out = []
        usable: dict[str, bool] = {}
        for state in self.states():
            if (provider is not None and state.provider != provider) or (
                    app is not None and state.app != app):
                continue
            if self.watches(state, usable):
                out.append(state)
        return out

    def watches(self, state: AppState, known: dict[str, bool] | None = None) -> bool:
        """Whether ``state`` is a registered app bound to a provider that can list its clients
        (one whose provider is not configured, or cannot be built, counts: its check says why).
        ``known``: what was found of each provider so far, filled in."""
        bound = state.provider
        if not state.registered or bound is None or bound == LOCAL_PROVIDER:
            return False
        known = {} if known is None else known
        if bound not in known:
            try:
                known[bound] = self.inventory(bound) is not None
            except OrchestratorError:  # not configured, its secret not to be had, ...
                known[bound] = True  # ... each app says so when checked
        return known[bound]

    def check(self, state: AppState) -> AppDrift:
        provider = state.provider or LOCAL_PROVIDER
        client_id = state.provider_client_id
        running = next((r.id for r in state.rotations.values()
                        if r.status is RotationStatus.RUNNING), None)
        base = AppDrift(state.app, provider, client_id, state.version, rotation=running)
        try:
            inventory = self.inventory(provider)
            if inventory is None:
                return _with(base, error=f"provider {provider!r} cannot list its clients")
            remote = observed(provider, lambda: inventory.client(client_id), self._observe)
            can = self.providers.named(provider).capabilities(state.app)
        except ProviderUnavailable as exc:
            return _with(base, error=f"provider {provider!r} could not be reached: {exc}",
                         unreachable=True)
        except ClientMissing as exc:
            return _with(base, error=exc.for_app(state.app), missing=True)
        except OrchestratorError as exc:  # refused, not configured, a secret not to be had
            return _with(base, error=str(exc))
        found = compare(state, remote, self.clock(), dates=can.expiry,
                        shared_key_set=can.shared_key_set, keeps_detached=can.keeps_detached)
        return _with(base, differences=found, remote=remote, dates=can.expiry,
                     shared_key_set=can.shared_key_set, keeps_detached=can.keeps_detached)

    # --- adopt -------------------------------------------------------------------------------

    def adopt(self, drift: AppDrift) -> list[Fix]:
        """Record what the provider has, one difference at a time."""
        if (refused := self._refuse(drift)) is not None:
            return refused
        remote = drift.remote
        assert remote is not None
        records = [d.remote for d in drift.differences
                   if d.kind is DriftKind.ADDED and d.remote is not None]
        ids = {r.provider_id: self.crypto.new_credential_id() for r in records}
        materials = {r.provider_id: public_material(self.crypto, drift.provider, r)
                     for r in records}
        correlation = f"drift-{uuid.uuid4()}"
        fixes = []
        for diff in drift.differences:
            outcome: list[str] = []

            def decide(state: AppState, diff: Difference = diff,
                       outcome: list[str] = outcome) -> tuple[list[ev.Event], datetime]:
                at = self.clock()
                now = _same(compare(state, remote, at, dates=drift.dates,
                                    shared_key_set=drift.shared_key_set,
                                    keeps_detached=drift.keeps_detached), diff)
                if now is None:
                    outcome[:] = ["gone"]
                    return [], at
                events, refused = decide_adoption(state, (now,), drift.provider, ids,
                                                  materials, at)
                outcome[:] = [r.reason for r in refused]
                return events, at

            try:
                _, records_ = self.service.append_decided(drift.app, decide,
                                                          correlation_id=correlation)
            except OrchestratorError as exc:
                fixes.append(Fix(drift.app, diff, False, str(exc)))
                continue
            if outcome == ["gone"]:
                fixes.append(Fix(drift.app, diff, True, "the log agrees already"))
            elif outcome:
                fixes.append(Fix(drift.app, diff, False, outcome[0]))
            else:
                recorded = ", ".join(r.type for r in records_)
                fixes.append(Fix(drift.app, diff, True, f"recorded {recorded}"))
        return fixes

    # --- repair ------------------------------------------------------------------------------

    def repair(self, drift: AppDrift) -> list[Fix]:
        """Put the provider back to what the log says, one difference at a time."""
        if (refused := self._refuse(drift)) is not None:
            return refused
        correlation = f"drift-{uuid.uuid4()}"
        fixes = []
        for diff in sorted(drift.differences, key=lambda d: REPAIR_ORDER.index(d.kind)):
            try:
                detail, events = self._repair_one(drift, diff)
            except OrchestratorError as exc:
                fixes.append(Fix(drift.app, diff, False, str(exc)))
                continue
            repaired = ev.DriftRepaired(kind=str(diff.kind), detail=f"{detail}: {diff.text}",
                                        credential_id=diff.credential_id,
                                        provider_credential_id=diff.provider_id)
            self._record(drift.app, [*events, repaired], correlation)
            fixes.append(Fix(drift.app, diff, True, detail))
        return fixes

    def _record(self, app: str, events: list[ev.Event], correlation: str | None = None) -> None:
        def decided(_state: AppState) -> tuple[list[ev.Event], datetime]:
            return list(events), self.clock()

        self.service.append_decided(app, decided, correlation_id=correlation)

    def _edits(self, drift: AppDrift) -> RemoteEdits:
        found = self.providers.named(drift.provider)
        if not isinstance(found, RemoteEdits):
            raise ProviderError(f"provider {drift.provider!r} cannot edit a credential by its "
                                "own id; adopt this difference instead")
        return found

    def _repair_one(self, drift: AppDrift, diff: Difference) -> tuple[str, list[ev.Event]]:
        app, pid = drift.app, diff.provider_id
        kind = diff.kind
        if kind is DriftKind.ADDED:
            assert pid is not None
            self._edits(drift).delete_remote(drift.client_id, pid)
            return f"deleted {pid} at the provider", []
        if kind is DriftKind.REREGISTERED:
            assert pid is not None and diff.credential_id is not None
            return f"recorded the provider's id {pid}", [ev.CredentialRegistered(
                credential_id=diff.credential_id, provider=drift.provider,
                provider_credential_id=pid)]
        cred = self.service.load(app).credentials[diff.credentials[0].id]
        if kind is DriftKind.ATTACHED:
            if diff.usage == str(cred.usage):
                self.providers.deactivate(app, cred.id)
            else:
                assert pid is not None and diff.usage is not None
                self._edits(drift).detach_remote(drift.client_id, pid, diff.usage)
            return f"detached from {diff.usage}", []
        if kind is DriftKind.REMOVED:
            return self._upload_again(drift, diff)
        if kind is DriftKind.REDATED:
            assert pid is not None
            self._edits(drift).set_remote_expiry(drift.client_id, pid, cred.expires_at)
            return "the log's expiry set at the provider", []
        for one in diff.credentials:  # detached, auth_method
            self.providers.activate(app, one.id)
        return f"attached to {diff.usage or 'its slot'}", []

    def _upload_again(self, drift: AppDrift, diff: Difference) -> tuple[str, list[ev.Event]]:
        cred = self.service.load(drift.app).credentials[diff.credentials[0].id]
        if not (cred.public_pem or cred.certificate_pem or cred.subject_dn):
            raise ProviderError(f"credential {cred.id} cannot be uploaded again: the log does not "
                                "hold its public key (it was imported from the provider); adopt "
                                "this difference, or rotate the credential")
        pid = self.providers.register(drift.app, cred)
        events: list[ev.Event] = []
        if pid is not None and pid != cred.provider_id:
            events.append(ev.CredentialRegistered(credential_id=cred.id, provider=drift.provider,
                                                  provider_credential_id=pid))
            self._record(drift.app, events)
        if cred.status is Status.ACTIVE:
            self.providers.activate(drift.app, cred.id)
        return f"uploaded again as {pid or cred.id}", []

    def _refuse(self, drift: AppDrift) -> list[Fix] | None:
        if drift.remote is None:
            return []
        if drift.rotation is None:
            return None
        return [Fix(drift.app, d, False, f"rotation {drift.rotation} is in flight: let it finish "
                    f"(orchestrator rotations), or give it up (orchestrator rotations abandon "
                    f"{drift.app} {drift.rotation}), and compare again")
                for d in drift.differences]


def _with(base: AppDrift, **changes: object) -> AppDrift:
    return AppDrift(**{**base.__dict__, **changes})


def _same(found: tuple[Difference, ...], diff: Difference) -> Difference | None:
    """The difference of ``found`` that is ``diff`` (the same kind, credentials and usage)."""
    key = (diff.kind, diff.credential_id, diff.provider_id, diff.usage)
    return next((d for d in found if (d.kind, d.credential_id, d.provider_id, d.usage) == key),
                None)
