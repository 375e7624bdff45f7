"""The manual credential commands (``credential add|activate|disable|delete|set-expiry``) for an
application bound to an identity provider: each does at the provider what it says, then records
it, so the log never claims what the provider does not hold.

For an application of the local provider (the log is its registry) each is the service's own
use case, unchanged. For one bound to another provider:

    add         the rules accept it; a provider that keeps credentials that are not attached
                (Auth0's pool: ``Capabilities.keeps_detached``) gets it uploaded
                (``Provider.register``) and the log records it with the provider's id
                (``credential.added`` + ``credential.registered``, one append), so drift does
                not find it ``removed``; one that holds only what authenticates (an RFC 7592
                record) is sent nothing, as drift expects: ``activate`` sends it.
                ``--activate``: then ``activate`` below (when that fails, the credential stays
                added, at the provider as in the log, and the error says so).
    activate    registered first when the log has no provider id for it
                (``credential.registered``), attached (``Provider.activate``), recorded
                (``credential.activated``).
    disable     detached (``Provider.deactivate``), recorded (``credential.disabled``).
    delete      removed (``Provider.remove``), recorded (``credential.deleted``), then its
                private key forgotten.
    set-expiry  where the provider keeps the credential's expiry (``Capabilities.expiry``, for a
                key: a certificate expires at its notAfter and a subject DN carries no date),
                changed there (``RemoteEdits.set_remote_expiry``) and recorded; elsewhere
                recorded only, and the command says so: such a provider accepts the key until it
                is disabled or deleted, whatever the log's date (which still drives the
                rotation and ``expire``).

**Order.** The rules decide first (a refusal calls nothing). Then the provider's capabilities: a
usage it does not take, or a slot or pool already full (``domain.room``, from the client as the
provider lists it, when it can), is refused in one line naming what to disable or delete, before
anything changes there. Then the provider, then the log. A command the log has done already
(activate an active credential, disable a disabled one) calls nothing: however often it runs,
the provider holds one attachment. Only public material is sent; a generated private key stays
in the keystore.

**Failures.** A provider error (refused, ``ProviderUnavailable``) is the command's one line and
nothing is recorded. A provider call that succeeded followed by an append that failed (the
database gone, a concurrent command that changed the credential first) leaves the provider ahead
of the log: that is drift, which ``orchestrator drift`` and the daemon's drift check (which then
holds the application) report; the error line says what was done at the provider. For ``add``
the upload is taken back instead (``RemoteEdits.delete_remote``), when the client's list read
before it shows this command made it: the usual cause is a key that belongs to another
application, refused by the store's claims. A lost answer to the upload itself can leave the key
at the provider unrecorded: drift shows it as ``added``, and a repeat with the same key finds it.

A registration two credentials share (a CA-issued certificate and its successor, one subject
DN) is detached only when no other of them is active, and removed only when no other is live.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from events import catalog as ev
from events.state import AppState, Credential, Status
from orchestrator.app.ports import Inventory, Provider, Providers, RemoteEdits
from orchestrator.app.service import CredentialSource, Service
from orchestrator.domain import rules
from orchestrator.domain.drift import match_record
from orchestrator.domain.errors import OrchestratorError, ProviderError, RefusedError
from orchestrator.domain.identity_provider import LOCAL_PROVIDER, Capabilities, RemoteClient
from orchestrator.domain.room import pool_refusal, slot_refusal, usage_refusal
from orchestrator.domain.rotation import registration_sharers

__all__ = ["Done", "ManualCredentials"]


@dataclass(frozen=True, slots=True)
class Done:
    """A command's result: the credential as recorded, and what happened at the provider (None:
    the local provider, where the log is all there is)."""

    credential: Credential
    note: str | None = None


@dataclass(frozen=True, slots=True)
class _Bound:
    """An application bound to a provider other than ``local``, and that provider."""

    app: str
    name: str
    provider: Provider
    client_id: str

    @property
    def where(self) -> str:
        return f"identity provider {self.name!r}"

    def capabilities(self) -> Capabilities:
        return self.provider.capabilities(self.app)

    def remote(self) -> RemoteClient | None:
        """The client as the provider lists it now (None: it cannot list its clients)."""
        if isinstance(self.provider, Inventory):
            return self.provider.client(self.client_id)
        return None


_Acted = tuple[str, ev.CredentialRegistered | None]  # what was done there; the provider's id


class ManualCredentials:
    def __init__(self, service: Service, providers: Providers) -> None:
        self.service = service
        self.providers = providers

    # --- the commands ------------------------------------------------------------------------

    def add(self, app: str, usage: str, source: CredentialSource, *, activate: bool = False,
            alg: str | None = None, kid: str | None = None, name: str | None = None,
            expires_at: datetime | None = None, parse_expiry_from_cert: bool = False,
            kind: ev.CredentialKind | None = None) -> Done:
        _, bound = self._bound(app)

        def add(before_append: _Upload | None = None, activate: bool = False) -> Credential:
            return self.service.add_credential(
                app, usage, source, alg=alg, kid=kid, name=name, expires_at=expires_at,
                parse_expiry_from_cert=parse_expiry_from_cert, activate=activate, kind=kind,
                before_append=before_append)

        if bound is None:
            return Done(add(activate=activate))
        caps = bound.capabilities()
        if (refusal := usage_refusal(usage, caps, bound.name)) is not None:
            raise RefusedError(refusal)
        upload = _Upload(bound, caps, activate)
        try:
            cred = add(upload)
        except Exception as exc:
            upload.take_back(exc)
            raise
        if not activate:
            return Done(cred, upload.note)
        try:
            done = self.activate(app, cred.id)
        except OrchestratorError as exc:
            raise OrchestratorError(
                f"credential {cred.id} was added to {app} ({upload.note}) but not activated: "
                f"{exc}; activate it with: orchestrator credential activate {app} {cred.id}"
            ) from exc
        return Done(done.credential, f"{upload.note}; {done.note}")

    def activate(self, app: str, credential_id: str) -> Done:
        return self._lifecycle(
            app, credential_id, lambda at: rules.ActivateCredential(app, credential_id, at),
            lambda: self.service.activate(app, credential_id), "active already", self._attach)

    def disable(self, app: str, credential_id: str, force: bool = False) -> Done:
        return self._lifecycle(
            app, credential_id, lambda at: rules.DisableCredential(app, credential_id, at, force),
            lambda: self.service.disable(app, credential_id, force), "disabled already",
            _detach)

    def delete(self, app: str, credential_id: str, force: bool = False) -> Done:
        done = self._lifecycle(
            app, credential_id, lambda at: rules.DeleteCredential(app, credential_id, at, force),
            lambda: self.service.delete(app, credential_id, force), "deleted already", _remove)
        if done.note is not None:  # bound (the local path is the service's delete, which forgets)
            self.service.forget_private(credential_id)
        return done

    def set_expiry(self, app: str, credential_id: str, expires_at: datetime) -> Done:
        def redate(state: AppState, cred: Credential, bound: _Bound) -> _Acted:
            if not (bound.capabilities().expiry and cred.kind is ev.CredentialKind.PUBLIC_KEY):
                return (f"recorded in the log only: {bound.where} keeps no expiry for it, so it "
                        "accepts it there until it is disabled or deleted"), None
            edits = bound.provider
            if not isinstance(edits, RemoteEdits):
                raise ProviderError(f"{bound.where} keeps credential expiries but cannot change "
                                    "one; rotate the credential instead")
            edits.set_remote_expiry(bound.client_id, cred.provider_id or _found(bound, cred),
                                    expires_at)
            return f"changed at {bound.where}", None

        return self._lifecycle(
            app, credential_id, lambda at: rules.ChangeExpiry(app, credential_id, expires_at, at),
            lambda: self.service.set_expiry(app, credential_id, expires_at), "unchanged", redate)

    # --- what each does at the provider --------------------------------------------------------

    def _lifecycle(self, app: str, credential_id: str,
                   command: Callable[[datetime], rules.Command],
                   local: Callable[[], AppState], already: str,
                   act: Callable[[AppState, Credential, _Bound], _Acted]) -> Done:
        """The rules decide ``command``; ``act`` does it at the provider and says what it did
        (and what the provider's id of the credential is, when that is news); then the rules
        decide again on the fresh state and the events are appended."""
        state, bound = self._bound(app)
        if bound is None:
            return _done(local(), credential_id)
        if not self._decide(state, command):
            return _done(state, credential_id, f"{already}: nothing sent to {bound.where}")
        done, registered = act(state, state.credentials[credential_id], bound)

        def events(fresh: AppState) -> list[ev.Event]:
            known = fresh.credentials.get(credential_id)
            news: list[ev.Event] = [registered] if registered is not None and known is not None \
                and known.provider_id != registered.provider_credential_id else []
            return news + self._decide(fresh, command)

        return _done(self._record(bound, events, done), credential_id, done)

    def _attach(self, state: AppState, cred: Credential, bound: _Bound) -> _Acted:
        """Room checked, registered when the log has no provider id for it, attached."""
        caps = bound.capabilities()
        if (refusal := usage_refusal(str(cred.usage), caps, bound.name)) is not None:
            raise RefusedError(refusal)
        remote = bound.remote()
        for refusal in (slot_refusal(state, cred, caps, bound.name, remote),
                        pool_refusal(state, cred, caps, bound.name, remote)
                        if cred.provider_id is None else None):
            if refusal is not None:
                raise RefusedError(refusal)
        provider_id = None if cred.provider_id else bound.provider.register(state.app, cred)
        bound.provider.activate(state.app, cred.id)
        return f"attached at {bound.where}", None if provider_id is None else (
            ev.CredentialRegistered(credential_id=cred.id, provider=bound.name,
                                    provider_credential_id=provider_id))

    # --- the parts -----------------------------------------------------------------------------

    def _bound(self, app: str) -> tuple[AppState, _Bound | None]:
        state = self.service.load(app)
        name = state.provider or LOCAL_PROVIDER
        if not state.registered or name == LOCAL_PROVIDER:
            return state, None  # the service's own use case (which refuses an unknown app)
        return state, _Bound(app, name, self.providers.named(name), state.provider_client_id)

    def _decide(self, state: AppState, command: Callable[[datetime], rules.Command]
                ) -> list[ev.Event]:
        return rules.decide(command(self.service.clock()), state)

    def _record(self, bound: _Bound, events: Callable[[AppState], list[ev.Event]],
                done: str) -> AppState:
        """Append what ``events`` decides on the fresh state, after ``done`` at the provider."""
        try:
            state, _ = self.service.append_decided(
                bound.app, lambda s: (events(s), self.service.clock()))
        except Exception as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise OrchestratorError(
                f"{done}, but recording it failed ({reason[0] if reason else type(exc).__name__}"
                f"): the log and the provider now differ; orchestrator drift --app {bound.app} "
                "shows how") from exc
        return state


@dataclass
class _Upload:
    """``before_append`` of ``add`` at a bound application: room checked, then, at a provider
    that keeps credentials that are not attached, the credential uploaded (once, however often
    the append is tried again) and its provider id recorded with it."""

    bound: _Bound
    caps: Capabilities
    activating: bool
    events: list[ev.Event] | None = None
    note: str = ""
    made: str | None = None  # the provider's id of a record this command made

    def __call__(self, state: AppState, new: Credential) -> list[ev.Event]:
        if self.events is not None:
            return self.events
        bound, caps = self.bound, self.caps
        uploading = caps.keeps_detached
        remote = bound.remote() if uploading or self.activating else None
        for refusal in (pool_refusal(state, new, caps, bound.name, remote) if uploading else None,
                        slot_refusal(state, new, caps, bound.name, remote)
                        if self.activating else None):
            if refusal is not None:
                raise RefusedError(refusal)
        if not uploading:
            self.events = []
            self.note = (f"not sent to {bound.where} yet: it holds only active credentials "
                         "(credential activate sends it)")
            return self.events
        held = remote is not None and match_record(new, remote.credentials) is not None
        provider_id = bound.provider.register(bound.app, new)
        if remote is not None and not held:
            self.made = provider_id
        self.events = [] if provider_id is None else [ev.CredentialRegistered(
            credential_id=new.id, provider=bound.name, provider_credential_id=provider_id)]
        self.note = f"registered at {bound.where}" + (f" as {provider_id}" if provider_id else "")
        return self.events

    def take_back(self, failure: Exception) -> None:
        """The append failed after the upload: delete what this command made at the provider
        (raises, naming what is left there, when it cannot)."""
        made, bound = self.made, self.bound
        if made is None:
            return
        self.made = None
        left = (f"{failure}; credential {made}, uploaded to {bound.where} for it, is left there "
                f"(orchestrator drift --app {bound.app} --repair deletes it)")
        if not isinstance(bound.provider, RemoteEdits):
            raise OrchestratorError(left) from failure
        try:
            bound.provider.delete_remote(bound.client_id, made)
        except Exception as again:
            raise OrchestratorError(f"{left}: deleting it failed ({again})") from failure


def _detach(state: AppState, cred: Credential, bound: _Bound) -> _Acted:
    """Detached, unless another active credential holds the same registration."""
    holder = next((c for c in registration_sharers(state, cred) if c.status is Status.ACTIVE),
                  None)
    if holder is not None:
        return (f"its registration (subject DN) stays attached at {bound.where} for "
                f"{holder.id}, which is active"), None
    bound.provider.deactivate(state.app, cred.id)
    return f"detached at {bound.where}", None


def _remove(state: AppState, cred: Credential, bound: _Bound) -> _Acted:
    """Removed, unless another live credential holds the same registration (then detached
    when none of them is active)."""
    sharers = registration_sharers(state, cred)
    if not sharers:
        bound.provider.remove(state.app, cred.id)
        return f"removed at {bound.where}", None
    kept = f"its registration (subject DN) stays at {bound.where} for {sharers[0].id}"
    if cred.status is Status.ACTIVE and not any(c.status is Status.ACTIVE for c in sharers):
        bound.provider.deactivate(state.app, cred.id)
        return f"detached at {bound.where}; {kept}", None
    return kept, None


def _found(bound: _Bound, cred: Credential) -> str:
    """The provider's id of a credential the log recorded none for, found in its client."""
    remote = bound.remote()
    record = match_record(cred, remote.credentials) if remote is not None else None
    if record is None:
        raise RefusedError(
            f"credential {cred.id} is not at {bound.where} (the log has no id of it there "
            f"and client {bound.client_id!r} holds no such key): orchestrator drift --app "
            f"{bound.app} shows it, and --repair uploads it again")
    return record.provider_id


def _done(state: AppState, credential_id: str, note: str | None = None) -> Done:
    return Done(state.credentials[credential_id], note)
