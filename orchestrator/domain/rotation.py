"""The zero-downtime rotation process, pure: ``resume(state, rotation, params, now) -> Next``.

A rotation is keyed by a rotation id allocated before its first step. Every step is recorded in
the application's stream (with the rotation id as correlation id), so after a crash at any
instant ``resume`` reads the state and names the one step to do next; every step is idempotent.

Keys and certificates (private_key_jwt, jar, mtls)::

    started -> [free_slot] -> generate (credential.added + "generated")
            -> register ("registered") -> activate (credential.activated)
            -> test ("tested": the provider accepted an assertion / certificate made with the
               new key) -> deliver ("delivered": the app's files now hold the new credential)
            -> wait for the overlap -> disable_old (credential.disabled) -> complete

A CA-issued mTLS certificate is matched by the identity provider by its subject DN and its chain
to the CA (a ``cert_subject_dn`` credential holds only the DN). A new certificate from the same
CA for the same DN needs no change at the provider: it is recorded as a *successor* credential
that shares the old one's registration (``shares_registration``). Its ``register`` step is
``confirm`` (the provider is asked to find the registration, nothing is changed), its test
accepts a match by that shared registration (and checks the new key belongs to the new
certificate), and no step detaches or removes a registration another live credential still
uses (``Next.at_provider`` is False: the step changes the log only).

A rotation parked before its new credential passed the test disables that credential (the old
one stays as it was); retrying it activates it again before testing.

Client secrets::

    started -> generate (secret.rotated + "generated") -> register ("registered")
            -> test ("tested") -> deliver ("delivered") -> complete

The old credential is never disabled before its successor passed the test. At capacity (two live
credentials) a slot is freed first, never taking the last usable credential. A failed step is
retried with exponential backoff and jitter; after the retry budget the rotation is parked for a
human with the old credential intact (the events of both: ``orchestrator.domain.rotation_events``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from events import catalog as ev
from events.state import AppState, Credential, Rotation, RotationStatus, Status
from orchestrator.domain.hooks import Hook
from orchestrator.domain.timemath import doubled
from orchestrator.domain.vocabulary import DEFAULT_ALGORITHM, DEFAULT_KEY_SIZE, SECRET_USAGE, Step

__all__ = [
    "SECRET_USAGE",
    "Next",
    "Params",
    "Reason",
    "Recorded",
    "Step",
    "backoff",
    "held_usable",
    "registration_sharers",
    "replaced_credential",
    "resume",
    "retry_budget",
    "shares_registration",
    "slot_to_free",
    "start",
    "total_backoff",
    "undelivered",
    "why_test_failed",
]

class Recorded(StrEnum):
    """The names ``rotation.step_recorded`` gives the steps done (the log's own spelling)."""

    GENERATED = "generated"
    REGISTERED = "registered"
    TESTED = "tested"
    DELIVERED = "delivered"


class Reason(StrEnum):
    """Why a rotation starts, or (planner) why anything is done."""

    PROVISION = "provision"
    AGE = "age"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    MANUAL = "manual"
    POLICY_CHANGED = "policy-changed"
    OVERDUE_STEP = "overdue-step"  # the planner: an in-flight rotation has a step due
    RETENTION = "retention"  # the planner: a disabled or expired credential to delete


@dataclass(frozen=True, slots=True)
class Params:
    """What a rotation needs to know of its policy."""

    usage: str
    algorithm: str | None = DEFAULT_ALGORITHM
    key_size: int = DEFAULT_KEY_SIZE
    overlap: timedelta = timedelta(hours=1)
    lifetime: timedelta | None = None
    subject: str | None = None  # mtls certificate subject, "{app}" replaced
    issuer_cert: bytes | None = None  # mtls: the CA to issue from (PEM); None = self-signed
    issuer_key: bytes | None = field(default=None, repr=False)
    attempts: int = 5
    backoff: timedelta = timedelta(minutes=1)
    max_backoff: timedelta = timedelta(hours=1)
    accept_untested: bool = False  # where the provider cannot test the usage, go on untested
    accept_secret_gap: bool = False  # a client secret without overlap at the provider is fine
    hook: Hook | None = None  # run after each delivery; its failure fails the deliver step


@dataclass(frozen=True, slots=True)
class Next:
    step: Step
    credential_id: str | None = None  # the credential the step acts on
    not_before: datetime | None = None  # WAIT: nothing to do before this instant
    at_provider: bool = True  # False: the provider keeps a registration another credential uses


def registration_sharers(state: AppState, cred: Credential) -> list[Credential]:
    """The other live credentials of the app that the provider matches by the same registration
    as ``cred``: CA-issued certificates (``cert_subject_dn``) with the same subject DN. The
    provider holds one registration for all of them; changing it for one changes it for all."""
    if cred.kind is not ev.CredentialKind.CERT_SUBJECT_DN or not cred.subject_dn:
        return []
    return [c for c in state.credentials.values()
            if c.id != cred.id and c.live and c.usage == cred.usage
            and c.kind is ev.CredentialKind.CERT_SUBJECT_DN and c.subject_dn == cred.subject_dn]


def shares_registration(state: AppState, cred: Credential) -> Credential | None:
    """The oldest of ``registration_sharers``: another live credential holding ``cred``'s
    registration at the provider, or None."""
    others = registration_sharers(state, cred)
    return min(others, key=lambda c: (c.added_at, c.id)) if others else None


def replaced_credential(state: AppState, usage: str, at: datetime) -> Credential | None:
    """The credential a new rotation replaces: the newest usable one of ``usage``."""
    usable = state.usable(usage, at)
    return max(usable, key=lambda c: (c.activated_at or c.added_at, c.id)) if usable else None


def held_usable(state: AppState, usage: str, at: datetime) -> list[Credential]:
    """The usable credentials of ``usage`` the application can hold: not the new credential of
    a rotation that has not delivered it yet (the app does not have it)."""
    pending = undelivered(state)
    return [c for c in state.usable(usage, at) if c.id not in pending]


def undelivered(state: AppState) -> set[str]:
    """The new credentials of rotations in flight that have not delivered them yet."""
    return {r.new_credential_id for r in state.rotations.values()
            if r.status in (RotationStatus.RUNNING, RotationStatus.PARKED)
            and not r.done(Recorded.DELIVERED)}


def start(
    state: AppState, usage: str, reason: Reason, rotation_id: str, new_credential_id: str,
    at: datetime, policy: str | None = None,
) -> list[ev.Event]:
    """The events that start a rotation; none while one is in flight (or parked) for ``usage``."""
    if state.running_rotation(usage) is not None:
        return []
    old = None if usage == SECRET_USAGE else replaced_credential(state, usage, at)
    return [
        ev.RotationStarted(
            rotation_id=rotation_id, usage=usage, reason=reason.value, policy=policy,
            old_credential_id=old.id if old else None, new_credential_id=new_credential_id,
        )
    ]


def why_test_failed(state: AppState, new: Credential, accepted: str) -> str | None:
    """Why the provider's answer to the test of ``new`` does not prove it works (None: it does).

    The provider names the credential that authenticated what the test presented (an assertion
    signed with the new key, the new certificate). That must be ``new`` itself, or for a CA-issued
    certificate the registration it shares (the provider matches the subject DN and the chain to
    the CA, so it cannot tell two certificates of one DN apart, and need not)."""
    if accepted == new.id:
        return None
    shared = state.credentials.get(accepted)
    if (shared is not None and shared.kind is ev.CredentialKind.CERT_SUBJECT_DN
            and new.kind is ev.CredentialKind.CERT_SUBJECT_DN
            and shared.subject_dn == new.subject_dn and shared.usage == new.usage):
        return None
    return f"provider matched {accepted}, not the new credential {new.id}"


def slot_to_free(state: AppState, rotation: Rotation, at: datetime) -> Credential | None:
    """The credential ``rotation`` deletes to make room for its new one (None: there is room):
    an unusable one first, else the usable one it does not replace."""
    live = state.live(rotation.usage)
    if len(live) < 2:
        return None
    unusable = [c for c in live if not c.usable(at)]
    if unusable:
        return min(unusable, key=lambda c: (c.added_at, c.id))
    others = [c for c in live if c.id != rotation.old_credential_id]
    return min(others, key=lambda c: (c.added_at, c.id)) if others else None


def resume(state: AppState, rotation: Rotation, params: Params, at: datetime) -> Next:
    """The next step of a running ``rotation`` on ``state`` at ``at``."""
    if rotation.next_attempt_at is not None and at < rotation.next_attempt_at:
        return Next(Step.WAIT, not_before=rotation.next_attempt_at)
    if rotation.usage == SECRET_USAGE:
        return _resume_secret(rotation)
    new = state.credentials.get(rotation.new_credential_id)
    if new is None:
        victim = slot_to_free(state, rotation, at)
        if victim is not None:
            return Next(Step.FREE_SLOT, victim.id,
                        at_provider=shares_registration(state, victim) is None)
        return Next(Step.GENERATE, rotation.new_credential_id)
    tested = rotation.done(Recorded.TESTED)
    if not rotation.done(Recorded.REGISTERED):
        shared = shares_registration(state, new) is not None
        return Next(Step.CONFIRM if shared else Step.REGISTER, new.id)
    if new.status is Status.ADDED or (new.status is Status.DISABLED and not tested):
        return Next(Step.ACTIVATE, new.id)
    if not tested:
        return Next(Step.TEST, new.id)
    if not rotation.done(Recorded.DELIVERED):
        return Next(Step.DELIVER, new.id)
    old = state.credentials.get(rotation.old_credential_id or "")
    if old is not None and old.status is Status.ACTIVE:
        until = (rotation.tested_at or at) + params.overlap
        if at < until and not old.expired_by(at):
            return Next(Step.WAIT, old.id, not_before=until)
        return Next(Step.DISABLE_OLD, old.id, at_provider=shares_registration(state, old) is None)
    return Next(Step.COMPLETE)


def _resume_secret(rotation: Rotation) -> Next:
    for step, recorded in ((Step.GENERATE, Recorded.GENERATED), (Step.REGISTER, Recorded.REGISTERED),
                           (Step.TEST, Recorded.TESTED), (Step.DELIVER, Recorded.DELIVERED)):
        if not rotation.done(recorded):
            return Next(step)
    return Next(Step.COMPLETE)


def backoff(rotation_id: str, attempt: int, params: Params) -> timedelta:
    """Exponential backoff with deterministic jitter in [50%, 100%] of the step's delay."""
    base = doubled(params.backoff, max(attempt - 1, 0), params.max_backoff)
    digest = hashlib.sha256(f"{rotation_id}:{attempt}".encode()).digest()
    fraction = 0.5 + (int.from_bytes(digest[:4], "big") / 2**32) / 2
    delay: timedelta = base * fraction
    return delay


def total_backoff(attempts: int, first: timedelta, longest: timedelta) -> timedelta:
    """The sum of the waits between ``attempts`` attempts: doubling from ``first``, each at most
    ``longest`` (``backoff`` with its jitter at the top of its range)."""
    return sum((doubled(first, k - 1, longest) for k in range(1, attempts)), timedelta(0))


def retry_budget(params: Params) -> timedelta:
    """The longest a rotation can spend waiting between its attempts before it is parked."""
    return total_backoff(params.attempts, params.backoff, params.max_backoff)
