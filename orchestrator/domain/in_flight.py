"""Which differences between the log and a provider a rotation in flight explains. Pure.

Each step of a rotation does its work at the provider first and records it after
(``app.rotator``), so when an answer is lost, or the process stops between the two, the provider
is one step ahead of the log; the rotation's next step finds the work done and records it. A
drift check of an application with a rotation running must not hold it for that, and must hold
it for anything else. A difference is explained when it concerns exactly the credential that
one step acts on, in the state where that step is the one whose work can be ahead:

    removed   the new credential, ``registered`` not yet recorded: it is not uploaded yet
    attached  the new credential, in its own usage's slot while added (or disabled and
              untested: a retried rotation): ``activate`` done, its record lost
    detached  the new credential, active and untested: a failure parking the rotation
              deactivated it, its record lost
    detached  the old credential, active, the rotation tested and delivered: ``disable_old``
              done, its record lost
    removed, detached
              the credential ``free_slot`` deletes, before the new one is generated: its
              deactivation or deletion done, its record lost

A register whose answer was lost needs no rule: ``compare`` matches the upload to the new
credential by key id, thumbprint, fingerprint or subject DN, so it is no difference at all.

A *parked* rotation explains one thing: its new credential not uploaded yet (``removed``,
``registered`` not recorded). Its register step failed until the budget ran out (the provider
down for hours, say), and the retry that resumes it (the daemon's, or ``rotations retry``)
uploads it. Holding the application for it would keep that retry from ever running: an app
whose old credential expired meanwhile would stay without one. Nothing else is a parked
rotation's own: parking withdrew its untested credential at the provider before it was
recorded, so that credential attached there contradicts the log.
Anything else holds the application: the old credential removed, re-dated or detached before
its successor was tested and delivered, the new one removed after its upload, a credential the
log does not know (``added``), another id (``reregistered``), another auth method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from events.state import AppState, Rotation, RotationStatus, Status
from orchestrator.domain.drift import Difference, DriftKind
from orchestrator.domain.rotation import Recorded, slot_to_free
from orchestrator.domain.vocabulary import SECRET_USAGE

__all__ = ["PARKED_RULES", "RULES", "explanation", "unexplained"]

Rule = Callable[[AppState, Rotation, Difference, datetime], bool]


def _only(diff: Difference, credential_id: str | None) -> bool:
    return credential_id is not None and [c.id for c in diff.credentials] == [credential_id]


def _new_not_uploaded(state: AppState, rot: Rotation, diff: Difference, at: datetime) -> bool:
    return (diff.kind is DriftKind.REMOVED and _only(diff, rot.new_credential_id)
            and not rot.done(Recorded.REGISTERED))


def _new_activated(state: AppState, rot: Rotation, diff: Difference, at: datetime) -> bool:
    new = state.credentials.get(rot.new_credential_id)
    return (diff.kind is DriftKind.ATTACHED and _only(diff, rot.new_credential_id)
            and new is not None and diff.usage == str(new.usage)
            and (new.status is Status.ADDED or (new.status is Status.DISABLED
                                                and not rot.done(Recorded.TESTED))))


def _new_parked(state: AppState, rot: Rotation, diff: Difference, at: datetime) -> bool:
    new = state.credentials.get(rot.new_credential_id)
    return (diff.kind is DriftKind.DETACHED and _only(diff, rot.new_credential_id)
            and new is not None and new.status is Status.ACTIVE
            and not rot.done(Recorded.TESTED))


def _old_disabled(state: AppState, rot: Rotation, diff: Difference, at: datetime) -> bool:
    old = state.credentials.get(rot.old_credential_id or "")
    return (diff.kind is DriftKind.DETACHED and _only(diff, rot.old_credential_id)
            and old is not None and old.status is Status.ACTIVE
            and rot.done(Recorded.TESTED) and rot.done(Recorded.DELIVERED))


def _slot_freed(state: AppState, rot: Rotation, diff: Difference, at: datetime) -> bool:
    if diff.kind not in (DriftKind.REMOVED, DriftKind.DETACHED) or rot.usage == SECRET_USAGE:
        return False
    if rot.new_credential_id in state.credentials:  # generated: the slot was freed before
        return False
    victim = slot_to_free(state, rot, at)
    return victim is not None and _only(diff, victim.id)


RULES: tuple[tuple[str, Rule], ...] = (
    ("the new credential is not uploaded yet", _new_not_uploaded),
    ("the rotation attached its new credential; its record follows", _new_activated),
    ("the rotation detached its untested new credential; its record follows", _new_parked),
    ("the rotation detached the old credential after the overlap; its record follows",
     _old_disabled),
    ("the rotation deleted a credential to free a slot; its record follows", _slot_freed),
)


PARKED_RULES: tuple[tuple[str, Rule], ...] = (
    ("the new credential is not uploaded yet (the rotation is parked; its retry uploads it)",
     _new_not_uploaded),
)


def explanation(state: AppState, diff: Difference, at: datetime) -> str | None:
    """Why a rotation in flight on ``state`` explains ``diff`` at ``at`` (None: nothing does):
    a running one by ``RULES``, a parked one by ``PARKED_RULES``."""
    for rotation in state.rotations.values():
        if rotation.status is RotationStatus.RUNNING:
            rules = RULES
        elif rotation.status is RotationStatus.PARKED:
            rules = PARKED_RULES
        else:
            continue
        for why, rule in rules:
            if rule(state, rotation, diff, at):
                return f"rotation {rotation.id}: {why}"
    return None


def unexplained(state: AppState, differences: Sequence[Difference],
                at: datetime) -> tuple[Difference, ...]:
    """The ``differences`` no rotation running on ``state`` explains."""
    return tuple(d for d in differences if explanation(state, d, at) is None)
