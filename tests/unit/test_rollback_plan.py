"""Rolling a rotation back, as specifications: given the facts, when ``plan_rollback`` or
``decide_rolled_back`` at a fixed instant, then the plan, the events, or the refusal (the
installed command, every refusal and the daemon after it: tests/e2e/test_rollback.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from events import catalog as ev
from events.state import AppState, RotationStatus, fold
from orchestrator.domain.checks import CHAIN, Input, PlanPolicy
from orchestrator.domain.errors import NotFoundError, RefusedError
from orchestrator.domain.rollback import decide_rolled_back, plan_rollback
from orchestrator.domain.rotation import Params
from tests.conftest import NOW

APP, RID, OLD, NEW = "bank", "rot_1", "cred_old", "cred_new"
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
T0 = NOW - 40 * DAY
Fact = tuple[ev.Event, datetime]


def key(cid: str, at: datetime, generated: bool = True) -> list[Fact]:
    return [(ev.CredentialAdded(credential_id=cid, usage="private_key_jwt",
                                kind=ev.CredentialKind.PUBLIC_KEY, kid=f"kid-{cid}",
                                fingerprint=f"sha256:{cid}", expires_at=at + 60 * DAY,
                                generated=generated), at),
            (ev.CredentialActivated(credential_id=cid), at)]


def completed(generated: bool = True, old_at: datetime = T0) -> list[Fact]:
    """OLD in service since ``old_at`` (for 60 days), rotated to NEW ten days ago."""
    at = NOW - 10 * DAY
    return [(ev.ApplicationRegistered(app=APP), old_at), *key(OLD, old_at, generated),
            (ev.RotationStarted(rotation_id=RID, usage="private_key_jwt", reason="age",
                                old_credential_id=OLD, new_credential_id=NEW), at),
            *key(NEW, at), (ev.CredentialDisabled(credential_id=OLD), at + HOUR),
            (ev.RotationCompleted(rotation_id=RID, new_credential_id=NEW,
                                  old_credential_id=OLD), at + HOUR)]


def state(*more: Fact, base: list[Fact] | None = None) -> AppState:
    return fold(APP, [*(completed() if base is None else base), *more])


def test_a_completed_rotation_plans_its_old_credential_back_and_the_new_one_out() -> None:
    plan = plan_rollback(state(), RID, NOW)
    assert (plan.restore.id, plan.retire.id, plan.rotation.id) == (OLD, NEW, RID)
    assert decide_rolled_back(state(), RID, NOW) == [ev.RotationRolledBack(
        rotation_id=RID, restored_credential_id=OLD, retired_credential_id=NEW)]


def test_a_rollback_marks_the_rotation_and_restarts_the_restored_credential_age() -> None:
    after = state((ev.CredentialActivated(credential_id=OLD), NOW),
                  (ev.CredentialDisabled(credential_id=NEW), NOW),
                  (ev.RotationRolledBack(rotation_id=RID, restored_credential_id=OLD,
                                         retired_credential_id=NEW), NOW))
    assert after.rotations[RID].status is RotationStatus.ROLLED_BACK
    assert after.rotations[RID].rolled_back_at == NOW
    assert after.credentials[OLD].restored_at == NOW
    assert after.credentials[OLD].activated_at == T0  # its first activation stays
    policy = PlanPolicy("keys", Params(usage="private_key_jwt", algorithm=None, key_size=0),
                        every=30 * DAY, before_expiry=7 * DAY, retention=DAY)
    age = next(c for c in CHAIN if c.name == "age")
    assert age.fires(Input(after, policy, NOW + HOUR)) is None  # 40 days old, restored an hour ago
    assert age.due(Input(after, policy, NOW + HOUR)) == NOW + 30 * DAY


def test_an_unknown_rotation_is_refused() -> None:
    with pytest.raises(NotFoundError, match="bank has no rotation 'rot_x'"):
        plan_rollback(state(), "rot_x", NOW)


def running(status_facts: list[Fact]) -> AppState:
    """OLD in service, a rotation to NEW started and then ``status_facts``."""
    return fold(APP, [(ev.ApplicationRegistered(app=APP), T0), *key(OLD, T0),
                      (ev.RotationStarted(rotation_id=RID, usage="private_key_jwt", reason="age",
                                          old_credential_id=OLD, new_credential_id=NEW),
                       NOW - DAY), *key(NEW, NOW - DAY), *status_facts])


@pytest.mark.parametrize(("given", "fragment"), [
    pytest.param(running([]), "is running, not completed", id="a running rotation is refused"),
    pytest.param(running([(ev.RotationParked(rotation_id=RID, step="test", error="e",
                                             attempts=3), NOW)]),
                 "is parked, not completed", id="a parked rotation is refused"),
    pytest.param(running([(ev.RotationAbandoned(rotation_id=RID), NOW)]),
                 "is abandoned, not completed", id="an abandoned rotation is refused"),
    pytest.param(fold("ghost", []), "application 'ghost' is not registered",
                 id="an unknown application is refused"),
    pytest.param(fold(APP, completed(generated=False)), "was imported",
                 id="an imported previous credential is refused"),
    pytest.param(state((ev.CredentialDeleted(credential_id=OLD), NOW - DAY)), "was deleted",
                 id="a deleted previous credential is refused"),
    pytest.param(fold(APP, completed(old_at=NOW - 61 * DAY)), "expired at",
                 id="an expired previous credential is refused"),
])
def test_a_rollback_that_cannot_be_done_is_refused(given: AppState, fragment: str) -> None:
    with pytest.raises(RefusedError, match=fragment):
        plan_rollback(given, RID, NOW)
