"""An application's credential state and the one pure fold that builds it: ``evolve``.

The same ``evolve`` builds the state a command is decided on, the read-model tables, the
point-in-time audit view (``state APP --at T``) and the simulator's state. It never rejects:
rules that refuse belong in ``orchestrator.domain.rules.decide``; an event is a fact already recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from events.kinds import CredentialKind, Usage

if TYPE_CHECKING:  # the fold loads the catalog (pydantic) on first use; reading states does not
    from events import catalog as ev

__all__ = [
    "AppState",
    "Credential",
    "Rotation",
    "RotationStatus",
    "Secret",
    "Status",
    "evolve",
    "fold",
    "stream_id",
]

STREAM_PREFIX = "app:"


def stream_id(app: str) -> str:
    """The stream that holds one application's events."""
    return STREAM_PREFIX + app


class Status(StrEnum):
    ADDED = "added"
    ACTIVE = "active"
    DISABLED = "disabled"
    EXPIRED = "expired"
    DELETED = "deleted"


@dataclass(frozen=True)
class Credential:
    id: str
    usage: Usage
    kind: CredentialKind
    kid: str
    fingerprint: str
    status: Status
    added_at: datetime
    updated_at: datetime
    alg: str | None = None
    key_size: int | None = None
    name: str | None = None
    public_pem: str | None = None
    certificate_pem: str | None = None
    subject_dn: str | None = None
    not_before: datetime | None = None
    expires_at: datetime | None = None
    generated: bool = False
    activated_at: datetime | None = None  # first activation: the credential's age counts from here
    disabled_at: datetime | None = None
    expired_at: datetime | None = None
    deleted_at: datetime | None = None
    provider_id: str | None = None  # the identity provider's own id for it, once recorded
    restored_at: datetime | None = None  # put back in service by a rollback: its age restarts

    @property
    def live(self) -> bool:
        """Counts against the two-per-usage limit: everything not deleted (expired included)."""
        return self.status is not Status.DELETED

    def expired_by(self, at: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= at

    def usable(self, at: datetime) -> bool:
        """Accepted by the identity provider at ``at``: active and not past its expiry."""
        return self.status is Status.ACTIVE and not self.expired_by(at)

    def effective_status(self, at: datetime) -> Status:
        """The status a user should see at ``at``: past its expiry a live credential is expired,
        whether or not ``credential.expired`` has been recorded yet."""
        if self.status in (Status.DELETED, Status.EXPIRED):
            return self.status
        return Status.EXPIRED if self.expired_by(at) else self.status


@dataclass(frozen=True)
class Secret:
    version: int
    fingerprint: str
    rotated_at: datetime
    previous_valid_until: datetime | None = None


class RotationStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    PARKED = "parked"
    ABANDONED = "abandoned"
    ROLLED_BACK = "rolled_back"  # completed, then undone: the old credential is back


@dataclass(frozen=True)
class Rotation:
    id: str
    usage: str
    reason: str
    new_credential_id: str
    started_at: datetime
    updated_at: datetime
    status: RotationStatus = RotationStatus.RUNNING
    policy: str | None = None
    old_credential_id: str | None = None
    steps: tuple[str, ...] = ()
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    completed_at: datetime | None = None
    tested_at: datetime | None = None  # the new credential passed the provider's test
    rolled_back_at: datetime | None = None

    def done(self, step: str) -> bool:
        return step in self.steps

    @property
    def error(self) -> str | None:
        """The error holding the rotation now: it is parked, or waits to retry a failed step.
        None once a later step succeeded, it was sent back by a retry, completed or was
        abandoned (``last_error`` keeps the last one recorded, for the history)."""
        failing = self.status is RotationStatus.PARKED or (
            self.status is RotationStatus.RUNNING and self.next_attempt_at is not None)
        return self.last_error if failing else None


@dataclass(frozen=True)
class AppState:
    app: str
    version: int = 0
    registered_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    provider: str | None = None  # the identity provider resource; None: the local provider
    client_id: str | None = None  # the provider's client id; None: the app's name
    credentials: Mapping[str, Credential] = field(default_factory=dict)
    secret: Secret | None = None
    rotations: Mapping[str, Rotation] = field(default_factory=dict)

    @property
    def registered(self) -> bool:
        return self.registered_at is not None

    @property
    def provider_client_id(self) -> str:
        """The client id the identity provider knows the app by."""
        return self.client_id or self.app

    def live(self, usage: Usage | str) -> list[Credential]:
        return [c for c in self.credentials.values() if c.usage == usage and c.live]

    def usable(self, usage: Usage | str, at: datetime) -> list[Credential]:
        return [c for c in self.credentials.values() if c.usage == usage and c.usable(at)]

    def running_rotation(self, usage: str) -> Rotation | None:
        """The rotation of ``usage`` in flight: running, or parked waiting for a human."""
        for rotation in self.rotations.values():
            if rotation.usage == usage and rotation.status in (
                    RotationStatus.RUNNING, RotationStatus.PARKED):
                return rotation
        return None


def _with_credential(state: AppState, cred: Credential) -> dict[str, Credential]:
    creds = dict(state.credentials)
    creds[cred.id] = cred
    return creds


def _with(obj: Any, changes: Mapping[str, Any]) -> Any:
    """``dataclasses.replace`` for these frozen value objects without re-running ``__init__``:
    a C-level copy of the attributes and one update instead of a Python loop over every field
    (the fold is the hot path of a rebuild, which folds every event of the log)."""
    attributes = obj.__dict__.copy()
    attributes.update(changes)
    new = object.__new__(type(obj))
    object.__setattr__(new, "__dict__", attributes)
    return new


Changes = dict[str, Any]


def _update(state: AppState, credential_id: str, at: datetime, **changes: Any) -> Changes:
    cred = state.credentials.get(credential_id)
    if cred is None:  # a fact about a credential we never saw: keep the fold total
        return {}
    changes["updated_at"] = at
    return {"credentials": _with_credential(state, _with(cred, changes))}


def _rotation(state: AppState, rotation_id: str, at: datetime, **changes: Any) -> Changes:
    rot = state.rotations.get(rotation_id)
    if rot is None:
        return {}
    rotations = dict(state.rotations)
    changes["updated_at"] = at
    rotations[rotation_id] = _with(rot, changes)
    return {"rotations": rotations}


# --- what each event changes: one handler per event type -------------------------------------


def _registered(state: AppState, event: ev.ApplicationRegistered, at: datetime) -> Changes:
    return {"registered_at": at, "labels": dict(event.labels), "provider": event.provider,
            "client_id": event.client_id}


def _credential_registered(state: AppState, event: ev.CredentialRegistered, at: datetime) -> Changes:
    return _update(state, event.credential_id, at, provider_id=event.provider_credential_id)


def _credential_added(state: AppState, event: ev.CredentialAdded, at: datetime) -> Changes:
    cred = Credential(
        id=event.credential_id,
        usage=event.usage,
        kind=event.kind,
        kid=event.kid,
        fingerprint=event.fingerprint,
        status=Status.ADDED,
        added_at=at,
        updated_at=at,
        alg=event.alg,
        key_size=event.key_size,
        name=event.name,
        public_pem=event.public_pem,
        certificate_pem=event.certificate_pem,
        subject_dn=event.subject_dn,
        not_before=event.not_before,
        expires_at=event.expires_at,
        generated=event.generated,
    )
    return {"credentials": _with_credential(state, cred)}


def _credential_activated(state: AppState, event: ev.CredentialActivated, at: datetime) -> Changes:
    cid = event.credential_id
    known = state.credentials.get(cid)
    first = known.activated_at if known and known.activated_at else at
    return _update(state, cid, at, status=Status.ACTIVE, activated_at=first)


def _credential_disabled(state: AppState, event: ev.CredentialDisabled, at: datetime) -> Changes:
    return _update(state, event.credential_id, at, status=Status.DISABLED, disabled_at=at)


def _credential_expired(state: AppState, event: ev.CredentialExpired, at: datetime) -> Changes:
    return _update(state, event.credential_id, at, status=Status.EXPIRED,
                   expired_at=event.expired_at)


def _credential_deleted(state: AppState, event: ev.CredentialDeleted, at: datetime) -> Changes:
    return _update(state, event.credential_id, at, status=Status.DELETED, deleted_at=at)


def _expiry_changed(state: AppState, event: ev.CredentialExpiryChanged, at: datetime) -> Changes:
    return _update(state, event.credential_id, at, expires_at=event.expires_at)


def _secret_rotated(state: AppState, event: ev.SecretRotated, at: datetime) -> Changes:
    return {"secret": Secret(event.version, event.fingerprint, at, event.previous_valid_until)}


def _rotation_started(state: AppState, event: ev.RotationStarted, at: datetime) -> Changes:
    rotations = dict(state.rotations)
    rotations[event.rotation_id] = Rotation(
        id=event.rotation_id,
        usage=event.usage,
        reason=event.reason,
        new_credential_id=event.new_credential_id,
        started_at=at,
        updated_at=at,
        policy=event.policy,
        old_credential_id=event.old_credential_id,
        steps=("started",),
    )
    return {"rotations": rotations}


def _rotation_step(state: AppState, event: ev.RotationStepRecorded, at: datetime) -> Changes:
    rid, step = event.rotation_id, event.step
    rot = state.rotations.get(rid)
    steps = (*rot.steps, step) if rot else ()
    tested = {"tested_at": at} if step == "tested" else {}
    return _rotation(state, rid, at, steps=steps, next_attempt_at=None, **tested)


def _rotation_failed(state: AppState, event: ev.RotationFailed, at: datetime) -> Changes:
    return _rotation(state, event.rotation_id, at, attempts=event.attempt,
                     last_error=event.error, next_attempt_at=event.next_attempt_at)


def _rotation_parked(state: AppState, event: ev.RotationParked, at: datetime) -> Changes:
    return _rotation(state, event.rotation_id, at, status=RotationStatus.PARKED,
                     last_error=event.error, attempts=event.attempts, next_attempt_at=None)


def _rotation_retried(state: AppState, event: ev.RotationRetried, at: datetime) -> Changes:
    return _rotation(state, event.rotation_id, at, status=RotationStatus.RUNNING, attempts=0,
                     next_attempt_at=None)


def _rotation_abandoned(state: AppState, event: ev.RotationAbandoned, at: datetime) -> Changes:
    return _rotation(state, event.rotation_id, at, status=RotationStatus.ABANDONED)


def _rotation_rolled_back(state: AppState, event: ev.RotationRolledBack, at: datetime) -> Changes:
    changes = _rotation(state, event.rotation_id, at, status=RotationStatus.ROLLED_BACK,
                        rolled_back_at=at)
    restored = _update(state, event.restored_credential_id, at, restored_at=at)
    return {**changes, **restored}


def _rotation_completed(state: AppState, event: ev.RotationCompleted, at: datetime) -> Changes:
    return _rotation(state, event.rotation_id, at, status=RotationStatus.COMPLETED,
                     completed_at=at)


def _nothing(state: AppState, event: Any, at: datetime) -> Changes:
    return {}


Handler = Callable[[AppState, Any, datetime], Changes]  # a new dict: evolve adds the version
# by event class; filled with the catalog on the first fold (which loads pydantic), and with
# each other class the fold meets (a subclass takes its base's handler; any other, _nothing)
_HANDLERS: dict[type, Handler] = {}


def _handler(kind: type) -> Handler:
    if not _HANDLERS:
        from events import catalog as ev

        _HANDLERS.update({
            ev.ApplicationRegistered: _registered,
            ev.CredentialRegistered: _credential_registered,
            ev.CredentialAdded: _credential_added,
            ev.CredentialActivated: _credential_activated,
            ev.CredentialDisabled: _credential_disabled,
            ev.CredentialExpired: _credential_expired,
            ev.CredentialDeleted: _credential_deleted,
            ev.CredentialExpiryChanged: _expiry_changed,
            ev.SecretRotated: _secret_rotated,
            ev.RotationStarted: _rotation_started,
            ev.RotationStepRecorded: _rotation_step,
            ev.RotationFailed: _rotation_failed,
            ev.RotationParked: _rotation_parked,
            ev.RotationRetried: _rotation_retried,
            ev.RotationAbandoned: _rotation_abandoned,
            ev.RotationRolledBack: _rotation_rolled_back,
            ev.RotationCompleted: _rotation_completed,
        })
    found = _HANDLERS.get(kind)
    if found is None:
        found = next((h for base, h in _HANDLERS.items() if issubclass(kind, base)), _nothing)
        _HANDLERS[kind] = found
    return found


def evolve(state: AppState, event: ev.Event, at: datetime) -> AppState:
    """The state after ``event``, which occurred at ``at``. Total: unknown facts change nothing
    but the version."""
    handler = _HANDLERS.get(type(event)) or _handler(type(event))
    changes = handler(state, event, at)
    changes["version"] = state.version + 1
    after: AppState = _with(state, changes)
    return after


def fold(app: str, events: Iterable[tuple[ev.Event, datetime]]) -> AppState:
    """The state of ``app`` after all of ``events`` (each with the time it occurred)."""
    state = AppState(app=app)
    for event, at in events:
        state = evolve(state, event, at)
    return state
