"""The events a rotation records, decided purely: ``decide_*(state, ...) -> events``.

The shell (``orchestrator.app.rotator``, ``orchestrator.app.tick``, the CLI) does a step's
outside work, then records what one of these returns, decided again on the freshest state (so a
repeat after a crash or a concurrent writer records nothing twice). A ``decide_*`` that refuses
raises an ``InputError`` or ``RefusedError`` naming the problem and what to do; the ones the
daemon calls on its own return ``[]`` when there is nothing (left) to record.

    decide_manual_start  orchestrator rotate: refused without a policy or with one in flight
    decide_step          a step done: rotation.step_recorded, once
    decide_generated_key the new key or certificate: credential.added (every credential rule
                         applies) and "generated", once
    decide_failure       a step failed: rotation.failed with the next attempt, or after the
                         budget rotation.parked, and the new credential disabled if untested
    decide_completion    rotation.completed, once
    decide_retry         a parked rotation back to work (a human, or the daemon)
    decide_abandon       a rotation given up
    decide_secret_delivered  a new client secret delivered: secret.rotated, with the grace
"""

from __future__ import annotations

from datetime import datetime, timedelta

from events import catalog as ev
from events.state import AppState, Credential, Rotation, RotationStatus, Status
from orchestrator.domain import rules
from orchestrator.domain.errors import InputError, NotFoundError, OrchestratorError, RefusedError
from orchestrator.domain.material import PublicMaterial
from orchestrator.domain.rotation import (
    Params,
    Reason,
    Recorded,
    Step,
    backoff,
    start,
)

__all__ = [
    "decide_abandon",
    "decide_completion",
    "decide_failure",
    "decide_generated_key",
    "decide_manual_start",
    "decide_retry",
    "decide_secret_delivered",
    "decide_step",
    "untested_at_provider",
    "untested_credential",
]


def _running(state: AppState, rotation_id: str) -> Rotation | None:
    rot = state.rotations.get(rotation_id)
    return rot if rot is not None and rot.status is RotationStatus.RUNNING else None


def decide_manual_start(state: AppState, usage: str, policy: str | None, rotation_id: str,
                        new_credential_id: str, at: datetime) -> list[ev.Event]:
    """``orchestrator rotate APP --usage U``: a rotation needs a policy (its overlap, lifetime,
    retry budget and key settings are what the daemon resumes it with), and one at a time."""
    if not state.registered:
        raise NotFoundError(f"application {state.app!r} is not registered "
                            f"(register it with: orchestrator app register {state.app})")
    if policy is None:
        raise RefusedError(
            f"no policy selects application {state.app!r} for {usage}, so the daemon could not "
            "finish a rotation of it; add or widen a policy's selector (check it with: "
            "orchestrator policy validate), then rotate again")
    running = state.running_rotation(usage)
    if running is not None:
        raise RefusedError(f"{state.app} already has a {usage} rotation in flight ({running.id}, "
                           f"{running.status.value}); see: orchestrator rotations")
    return start(state, usage, Reason.MANUAL, rotation_id, new_credential_id, at, policy)


def decide_step(state: AppState, rotation_id: str, recorded: Recorded,
                detail: str | None = None) -> list[ev.Event]:
    """A step done: recorded once, only while the rotation runs."""
    rot = _running(state, rotation_id)
    if rot is None or rot.done(recorded):
        return []
    return [ev.RotationStepRecorded(rotation_id=rotation_id, step=recorded.value, detail=detail)]


def decide_generated_key(state: AppState, rotation_id: str, material: PublicMaterial,
                         params: Params, at: datetime,
                         expires_at: datetime | None) -> list[ev.Event]:
    """The rotation's new key (or certificate) added under its credential id, by the same rules
    as any credential; nothing when it is there already (a repeat after a crash)."""
    rot = _running(state, rotation_id)
    if rot is None or rot.new_credential_id in state.credentials:
        return []
    signing = rot.usage != ev.Usage.MTLS
    added = rules.decide(rules.AddCredential(
        app=state.app, credential_id=rot.new_credential_id, usage=rot.usage, material=material,
        at=at, alg=params.algorithm if signing else None, expires_at=expires_at, generated=True,
    ), state)
    return [*added, *decide_step(state, rotation_id, Recorded.GENERATED)]


def decide_completion(state: AppState, rotation_id: str) -> list[ev.Event]:
    rot = _running(state, rotation_id)
    if rot is None:
        return []
    return [ev.RotationCompleted(rotation_id=rotation_id, new_credential_id=rot.new_credential_id,
                                 old_credential_id=rot.old_credential_id)]


def untested_credential(state: AppState, rotation: Rotation) -> Credential | None:
    """The rotation's new credential when it is active but has not passed the test: parking
    must not leave it so."""
    new = state.credentials.get(rotation.new_credential_id)
    if new is None or new.status is not Status.ACTIVE or rotation.done(Recorded.TESTED):
        return None
    return new


def untested_at_provider(state: AppState, rotation: Rotation) -> Credential | None:
    """The rotation's new credential when it has not passed the test and the provider may
    accept it all the same: registered there and not deleted, whatever the log says of its
    status. An activation the provider carried out may have lost its answer, or a crash may
    have come between it and its record, so a credential the log calls added (or disabled, by
    an earlier parking) can be attached; parking withdraws it there (idempotent)."""
    new = state.credentials.get(rotation.new_credential_id)
    if (new is None or not new.live or rotation.done(Recorded.TESTED)
            or not rotation.done(Recorded.REGISTERED)):
        return None
    return new


def decide_failure(state: AppState, rotation_id: str, step: Step, error: str, params: Params,
                   at: datetime, untested_detached: bool = True) -> list[ev.Event]:
    """A failed step: retried after a backoff, or after the budget parked for a human with the
    old credential intact and the new one, if untested, disabled. The shell deactivates that
    one at the provider first (``untested_at_provider``); when it could not
    (``untested_detached`` False) the rotation is not parked but retried after the longest
    backoff, so that no parked rotation leaves the provider accepting a credential that never
    passed its test (and the log never says disabled what the provider still accepts)."""
    rot = _running(state, rotation_id)
    if rot is None:
        return []
    attempt = rot.attempts + 1
    untested = untested_credential(state, rot)
    if attempt < params.attempts or not untested_detached:
        wait = backoff(rot.id, attempt, params) if attempt < params.attempts else params.max_backoff
        return [ev.RotationFailed(rotation_id=rot.id, step=step.value, error=error,
                                  attempt=attempt, next_attempt_at=at + wait)]
    return [
        ev.RotationFailed(rotation_id=rot.id, step=step.value, error=error, attempt=attempt,
                          next_attempt_at=None),
        ev.RotationParked(rotation_id=rot.id, step=step.value, error=error, attempts=attempt),
        *([ev.CredentialDisabled(credential_id=untested.id)] if untested is not None else []),
    ]


def _in_flight(state: AppState, rotation_id: str) -> Rotation:
    rot = state.rotations.get(rotation_id)
    if rot is None:
        raise InputError(f"{state.app} has no rotation {rotation_id} "
                         "(see: orchestrator rotations --all)")
    return rot


def decide_retry(state: AppState, rotation_id: str) -> list[ev.Event]:
    """A parked rotation back to work with a fresh retry budget."""
    rot = _in_flight(state, rotation_id)
    if rot.status is not RotationStatus.PARKED:
        raise RefusedError(f"rotation {rotation_id} is {rot.status.value}; only a parked "
                           "rotation can be retried")
    return [ev.RotationRetried(rotation_id=rotation_id)]


def decide_abandon(state: AppState, rotation_id: str, note: str | None = None) -> list[ev.Event]:
    """A running or parked rotation given up; its new credential stays (disabled if untested)."""
    rot = _in_flight(state, rotation_id)
    if rot.status not in (RotationStatus.RUNNING, RotationStatus.PARKED):
        raise RefusedError(f"rotation {rotation_id} is {rot.status.value}; only a running or "
                           "parked rotation can be abandoned")
    return [ev.RotationAbandoned(rotation_id=rotation_id, note=note)]


def decide_secret_delivered(state: AppState, rotation_id: str, version: int, fingerprint: str,
                            at: datetime, grace: timedelta, detail: str) -> list[ev.Event]:
    """A new client secret delivered: now ``secret.rotated`` (the previous one valid for
    ``grace`` from ``at``, by the credential rules) and the step, once. Refused if the secret
    moved past ``version - 1`` meanwhile (another rotation of it ran)."""
    rot = _running(state, rotation_id)
    if rot is None or rot.done(Recorded.DELIVERED):
        return []
    events = rules.decide(rules.RotateSecret(state.app, fingerprint, at, grace), state)
    if any(isinstance(e, ev.SecretRotated) and e.version != version for e in events):
        raise OrchestratorError(f"{state.app}: the client secret moved past v{version - 1} "
                                "during this rotation")
    return [*events, *decide_step(state, rotation_id, Recorded.DELIVERED, detail)]
