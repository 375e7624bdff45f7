"""Use cases: load a stream, decide, append (retrying on a concurrent write); and the queries.

This is the only layer that touches the store, the keystore and the clock it is given. Private
material goes to the keystore *before* the event that names it is appended, and is removed again
if the append is refused, so the keystore never keeps an orphan and the log never names a key
the keystore lacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from events import catalog as ev
from events.projector import Projector
from events.state import AppState, Credential, evolve, stream_id
from events.store import (
    ConcurrencyError,
    DuplicateClaimError,
    EventStore,
    NewEvent,
    ReadFilter,
    Recorded,
)
from orchestrator.app.fleet import FleetView
from orchestrator.app.ports import Crypto, Keystore
from orchestrator.domain import rules
from orchestrator.domain.errors import ConflictError, InputError, NotFoundError
from orchestrator.domain.material import GeneratedKey
from orchestrator.domain.timemath import later
from orchestrator.domain.vocabulary import DEFAULT_KEY_SIZE, MAX_RSA_BITS, MIN_RSA_BITS

__all__ = ["CredentialSource", "Service", "bound_elsewhere", "secret_item_id"]

MAX_ATTEMPTS = 10
DEFAULT_GENERATED_CERT_LIFETIME = timedelta(days=365)


def secret_item_id(app: str, version: int) -> str:
    return f"secret/{app}/v{version}"


@dataclass(frozen=True, slots=True)
class CredentialSource:
    """Where a new credential's public material comes from: exactly one of the three."""

    pem: bytes | None = None
    pem_name: str = "PEM"
    subject_dn: str | None = None
    generate: bool = False
    key_size: int = DEFAULT_KEY_SIZE


class Service:
    def __init__(
        self,
        store: EventStore,
        keystore: Keystore,
        clock: Callable[[], datetime],
        actor: str,
        crypto: Crypto,
        projector: Projector | None = None,
        fleet: FleetView | None = None,
    ) -> None:
        self.store = store
        self.keystore = keystore
        self.crypto = crypto
        self.clock = clock
        self.actor = actor
        self.projector = projector
        self.fleet = fleet
        self._projecting_later = False  # inside projected_once
        self._unprojected = False  # appended inside it, not projected yet

    # --- the write path ----------------------------------------------------------------------

    def load(self, app: str) -> AppState:
        if self.fleet is not None:
            return self.fleet.get(app)
        state = AppState(app=app)
        for rec in self.store.read(ReadFilter(stream_id=stream_id(app))):
            state = evolve(state, rec.event, rec.occurred_at)
        return state

    def peek(self, app: str) -> AppState:
        """``app``'s state as the in-memory fleet last saw it (as the tick planned it), without
        asking the log for newer events; ``load`` where there is no fleet. For what does not
        move while a tick carries its plan out (which identity provider an app is bound to),
        never to decide a write."""
        if self.fleet is not None:
            return self.fleet.peek(app)
        return self.load(app)

    def execute(
        self,
        app: str,
        make: Callable[[AppState], rules.Command],
        *,
        correlation_id: str | None = None,
        actor: str | None = None,
    ) -> tuple[AppState, list[Recorded]]:
        """Decide ``make(state)`` by the credential rules on the current state and append;
        retry on a concurrent write. Returns the state after the events and the records."""

        def decided(state: AppState) -> tuple[list[ev.Event], datetime]:
            command = make(state)
            return rules.decide(command, state), command.at

        return self.append_decided(app, decided, correlation_id=correlation_id, actor=actor)

    def append_decided(
        self,
        app: str,
        decide: Callable[[AppState], tuple[list[ev.Event], datetime]],
        *,
        correlation_id: str | None = None,
        actor: str | None = None,
    ) -> tuple[AppState, list[Recorded]]:
        """Load, ``decide(state) -> (events, at)``, append at the version decided on; on a
        concurrent write, load and decide again."""
        for _ in range(MAX_ATTEMPTS):
            state = self.load(app)
            events, at = decide(state)
            if not events:
                return state, []
            new = [
                NewEvent(
                    event=e,
                    occurred_at=at,
                    actor=actor or self.actor,
                    correlation_id=correlation_id,
                    claims=rules.claims_of(e),
                )
                for e in events
            ]
            try:
                records = self.store.append(stream_id(app), new, state.version)
            except ConcurrencyError:
                continue
            except DuplicateClaimError as exc:
                raise ConflictError(_duplicate_message(exc)) from None
            for rec in records:
                state = evolve(state, rec.event, rec.occurred_at)
            if self.fleet is not None:
                self.fleet.appended(app, records, state)
            self._project()
            return state, records
        raise ConflictError(f"application {app!r} kept changing under this command; try again")

    def _project(self) -> None:
        if self.projector is None:
            return
        if self._projecting_later:
            self._unprojected = True
            return
        self.projector.catch_up()

    @contextlib.contextmanager
    def projected_once(self) -> Iterator[None]:
        """The read model caught up once, at the end, for every append made inside (a
        rotation's steps, one action of a tick), rather than after each: each catch-up is a
        transaction of its own, durable like the append's. Inside, the read model lags the log
        by the appends made so far (the write path reads the fleet or the log, never the read
        model). When the body raises, nothing is projected here (the daemon's next tick, or
        the next command that reads the read model, catches it up), so the body's error is
        the one raised. Nested: the outermost projects."""
        if self.projector is None or self._projecting_later:
            yield
            return
        self._projecting_later, self._unprojected = True, False
        try:
            yield
        finally:
            self._projecting_later = False
        if self._unprojected:
            self._unprojected = False
            self.projector.catch_up()

    # --- use cases -----------------------------------------------------------------------------

    def register_app(self, app: str, labels: dict[str, str], provider: str | None = None,
                     client_id: str | None = None) -> AppState:
        return self.execute(
            app, lambda s: rules.RegisterApplication(app=app, at=self.clock(), labels=labels,
                                                     provider=provider, client_id=client_id)
        )[0]

    def register_apps(self, apps: Sequence[tuple[str, Mapping[str, str]]],
                      exist_ok: bool = False, provider: str | None = None,
                      client_id: str | None = None,
                      confirm: Callable[[list[str]], None] | None = None,
                      ) -> list[tuple[str, bool]]:
        """Register many applications: every one is checked by the rules first, so a refused
        name or label writes nothing; then ``confirm`` is given the client ids about to be
        bound (it raises to refuse them all: the provider has no such client); then each is
        appended. Returns ``(name, registered)``, False for one already registered (with
        ``exist_ok``; otherwise that is a refusal too)."""
        at = self.clock()
        seen: set[str] = set()
        todo: list[tuple[str, dict[str, str]]] = []
        bound = self.clients_bound(provider) if provider is not None else {}
        for app, labels in apps:
            if app in seen:
                raise InputError(f"application {app!r} is given twice")
            seen.add(app)
            state = self.load(app)
            if state.registered and exist_ok:
                continue
            rules.decide(rules.RegisterApplication(app=app, at=at, labels=dict(labels),
                                                   provider=provider, client_id=client_id), state)
            if provider is not None:
                owner = bound.setdefault(client_id or app, app)
                if owner != app:
                    raise ConflictError(bound_elsewhere(provider, client_id or app, owner))
            todo.append((app, dict(labels)))
        if confirm is not None and todo:
            confirm([client_id or app for app, _ in todo])
        done = {app for app, _ in todo}
        for app, labels in todo:
            self.register_app(app, labels, provider, client_id)
        return [(app, app in done) for app, _ in apps]

    def clients_bound(self, provider: str) -> dict[str, str]:
        """The clients of ``provider`` bound to an application: client id -> application (the
        store's claims keep each one once; this reads them to refuse before writing)."""
        bound = {}
        for rec in self.store.read(ReadFilter(types=("application.registered",))):
            event = rec.event
            if isinstance(event, ev.ApplicationRegistered) and event.provider == provider:
                bound[event.client_id or event.app] = event.app
        return bound

    def add_credential(
        self,
        app: str,
        usage: str,
        source: CredentialSource,
        *,
        alg: str | None = None,
        kid: str | None = None,
        name: str | None = None,
        expires_at: datetime | None = None,
        parse_expiry_from_cert: bool = False,
        activate: bool = False,
        kind: ev.CredentialKind | None = None,
        correlation_id: str | None = None,
        actor: str | None = None,
        before_append: Callable[[AppState, Credential], list[ev.Event]] | None = None,
    ) -> Credential:
        """Add a credential (its private key, when generated, to the keystore first, and out
        again when the append is refused). ``before_append(state, new)``: called once the rules
        accept the new credential, before it is appended (again after a concurrent write);
        returns events to append with it, or raises to refuse it (``app.manual_credentials``
        uploads it to the app's identity provider there)."""
        credential_id = self.crypto.new_credential_id()
        at = self.clock()
        private_der: bytes | None = None
        if source.generate:
            if not self.load(app).registered:  # before spending time on a key
                raise NotFoundError(f"application {app!r} is not registered "
                                    f"(register it with: orchestrator app register {app})")
            generated = self._generate(app, usage, source.key_size, at, expires_at)
            material, private_der = generated.material, generated.private_key_der
        elif source.pem is not None:
            material = self.crypto.parse_pem(source.pem, source.pem_name)
        elif source.subject_dn is not None:
            material = self.crypto.subject_dn_material(source.subject_dn)
        else:
            raise InputError("give the credential as --pem FILE, --subject-dn DN or --generate")
        if private_der is not None:
            self.keystore.put(credential_id, private_der)
        command = rules.AddCredential(
            app=app, credential_id=credential_id, usage=usage, material=material, at=at,
            alg=alg, kid=kid, name=name, expires_at=expires_at,
            parse_expiry_from_cert=parse_expiry_from_cert, generated=private_der is not None,
            activate=activate, kind=kind,
        )

        def decided(state: AppState) -> tuple[list[ev.Event], datetime]:
            events = rules.decide(command, state)
            if before_append is not None:
                new = state
                for event in events:
                    new = evolve(new, event, at)
                events = [*events, *before_append(state, new.credentials[credential_id])]
            return events, at

        try:
            state, _ = self.append_decided(app, decided, correlation_id=correlation_id,
                                           actor=actor)
        except BaseException:
            if private_der is not None:
                self.keystore.delete(credential_id)
            raise
        return state.credentials[credential_id]

    def _generate(
        self, app: str, usage: str, key_size: int, at: datetime, expires_at: datetime | None
    ) -> GeneratedKey:
        if not MIN_RSA_BITS <= key_size <= MAX_RSA_BITS:
            raise InputError(f"--key-size {key_size} is not allowed: use "
                             f"{MIN_RSA_BITS} to {MAX_RSA_BITS}")
        if usage == ev.Usage.MTLS:
            not_after = expires_at or at + DEFAULT_GENERATED_CERT_LIFETIME
            if not_after.microsecond:  # X.509 holds whole seconds: cover the asked-for expiry
                not_after = not_after.replace(microsecond=0) + timedelta(seconds=1)
            return self.crypto.generate_self_signed(key_size, app, at - timedelta(minutes=5), not_after)
        return self.crypto.generate_rsa(key_size)

    def activate(self, app: str, credential_id: str) -> AppState:
        return self.execute(
            app, lambda s: rules.ActivateCredential(app, credential_id, self.clock())
        )[0]

    def disable(self, app: str, credential_id: str, force: bool = False) -> AppState:
        return self.execute(
            app, lambda s: rules.DisableCredential(app, credential_id, self.clock(), force)
        )[0]

    def delete(self, app: str, credential_id: str, force: bool = False) -> AppState:
        state, records = self.execute(
            app, lambda s: rules.DeleteCredential(app, credential_id, self.clock(), force)
        )
        if records:
            self.forget_private(credential_id)
        return state

    def forget_private(self, credential_id: str) -> None:
        """Remove a deleted credential's private key (and certificate) from the keystore."""
        self.keystore.delete(credential_id)
        self.keystore.delete(f"{credential_id}/certificate")

    def set_expiry(self, app: str, credential_id: str, expires_at: datetime) -> AppState:
        return self.execute(
            app, lambda s: rules.ChangeExpiry(app, credential_id, expires_at, self.clock())
        )[0]

    def expire_due(self, apps: list[str] | None = None) -> list[tuple[str, str]]:
        """Record ``credential.expired`` for every credential whose expiry has passed."""
        at = self.clock()
        if apps is None:
            apps = self.apps_with_expired(at)
        expired: list[tuple[str, str]] = []
        for app in apps:
            _, records = self.execute(app, partial(_expire_due, app, at))
            expired.extend((app, r.payload["credential_id"]) for r in records)
        return expired

    def apps_with_expired(self, at: datetime) -> list[str]:
        """Applications with a credential past its expiry and not yet recorded as expired."""
        if self.projector is None:
            raise RuntimeError("expire needs the read models")
        self.projector.catch_up()
        return self.projector.apps_due_to_expire(at)

    # --- queries -------------------------------------------------------------------------------

    def state_at(self, app: str, at: datetime | None) -> AppState:
        state = AppState(app=app)
        for rec in self.store.read(ReadFilter(stream_id=stream_id(app), until=_after(at))):
            state = evolve(state, rec.event, rec.occurred_at)
        if not state.registered:
            when = f" at {at.isoformat()}" if at else ""
            raise NotFoundError(f"application {app!r} was not registered{when}")
        return state

    def audit(self, where: ReadFilter) -> Iterator[Recorded]:
        return self.store.read(where)


def _after(at: datetime | None) -> datetime | None:
    return later(at, timedelta(microseconds=1)) if at is not None else None


def _duplicate_message(exc: DuplicateClaimError) -> str:
    owner = exc.owner.removeprefix("app:") if exc.owner else "another application"
    if exc.namespace == "client":
        provider, _, client_id = exc.value.partition(" ")
        return bound_elsewhere(provider, client_id, owner)
    if exc.namespace == "fingerprint":
        return (f"this credential ({exc.value}) is already registered to application {owner!r}; "
                "the same key or certificate can't be added twice (not on two applications, "
                "not for two usages): use a new key pair")
    return (f"key id {exc.value!r} is already used by application {owner!r}; choose another "
            "--kid")


def bound_elsewhere(provider: str, client_id: str, owner: str) -> str:
    return (f"client {client_id!r} of identity provider {provider!r} is bound to application "
            f"{owner!r} already; one client belongs to one application (two would rotate, "
            "repair and delete each other's credentials there): give this one its own client")


def _expire_due(app: str, at: datetime, state: AppState) -> rules.Command:
    return rules.ExpireDue(app, at)
