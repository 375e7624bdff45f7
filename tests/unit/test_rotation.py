"""The rotation process, as specifications: given a rotation's recorded steps, then the next one.

``rotation`` is pure: each case folds facts into an ``AppState`` with the one ``fold`` and asks
``resume`` (what next), ``start`` (may a rotation begin) or ``decide_failure`` (what a failed
step records) at a fixed instant. A walk carries out each named step as the events it records, so the
order of the whole process is pinned, not only its single steps.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from events import catalog as ev
from events.state import AppState, RotationStatus, evolve, fold
from orchestrator.domain.rotation import (
    SECRET_USAGE,
    Next,
    Params,
    Reason,
    Step,
    backoff,
    replaced_credential,
    resume,
    start,
)
from orchestrator.domain.rotation_events import decide_failure
from tests.conftest import NOW

APP = "pay"
PKJWT = "private_key_jwt"
DAY, HOUR, MINUTE, SECOND = (timedelta(days=1), timedelta(hours=1), timedelta(minutes=1),
                             timedelta(seconds=1))
T0 = NOW - 100 * DAY
RID, NEW = "rot_1", "cred_new"
KEY = Params(usage=PKJWT, overlap=HOUR)
SECRET = Params(usage=SECRET_USAGE, algorithm=None, overlap=HOUR)


# --- given ---------------------------------------------------------------------------------------


def added(cid: str, *, expires: datetime | None = None) -> ev.CredentialAdded:
    return ev.CredentialAdded(credential_id=cid, usage=PKJWT, kind=ev.CredentialKind.PUBLIC_KEY,
                              kid=f"kid-{cid}", alg="RS256", key_size=2048,
                              fingerprint=f"sha256:{cid}", expires_at=expires, generated=True)


def active(cid: str, at: datetime, *, expires: datetime | None = None) -> list[tuple[ev.Event,
                                                                                     datetime]]:
    return [(added(cid, expires=expires), at), (ev.CredentialActivated(credential_id=cid), at)]


def started(usage: str = PKJWT, old: str | None = "cred_old", at: datetime = NOW,
            rid: str = RID) -> tuple[ev.Event, datetime]:
    new = NEW if usage != SECRET_USAGE else f"secret_{rid}"
    return ev.RotationStarted(rotation_id=rid, usage=usage, reason="age", policy="keys",
                              old_credential_id=old, new_credential_id=new), at


def step(name: str, at: datetime = NOW) -> tuple[ev.Event, datetime]:
    return ev.RotationStepRecorded(rotation_id=RID, step=name), at


def given(*facts: tuple[ev.Event, datetime] | list[tuple[ev.Event, datetime]]) -> AppState:
    flat: list[tuple[ev.Event, datetime]] = [(ev.ApplicationRegistered(app=APP), T0)]
    for fact in facts:
        flat.extend(fact if isinstance(fact, list) else [fact])
    return fold(APP, flat)


OLD = active("cred_old", T0)
GENERATED = [(added(NEW), NOW), step("generated")]
ACTIVATED = (ev.CredentialActivated(credential_id=NEW), NOW)
TESTED_AT = NOW + 2 * MINUTE
THROUGH_DELIVERY = [started(), *GENERATED, step("registered"), ACTIVATED,
                    step("tested", TESTED_AT), step("delivered", TESTED_AT)]


# --- resume: the next step of a key rotation -----------------------------------------------------


KEY_STEPS = [
    pytest.param(given(OLD, started()), NOW, Next(Step.GENERATE, NEW),
                 id="generates the new key first when a slot is free"),
    pytest.param(given(OLD, active("cred_other", T0 + DAY), started()), NOW,
                 Next(Step.FREE_SLOT, "cred_other"),
                 id="at capacity frees the slot of the credential it is not replacing"),
    pytest.param(given(active("cred_first", T0 - DAY), OLD, started(old="cred_first")), NOW,
                 Next(Step.FREE_SLOT, "cred_old"),
                 id="at capacity never frees the old credential, even the older one"),
    pytest.param(given(active("cred_dead", T0 - DAY, expires=NOW - DAY), OLD, started()), NOW,
                 Next(Step.FREE_SLOT, "cred_dead"),
                 id="at capacity frees a credential that no longer works (expired) first"),
    pytest.param(given(active("cred_off", T0 + DAY),
                       (ev.CredentialDisabled(credential_id="cred_off"), T0 + 2 * DAY), OLD,
                       started()), NOW,
                 Next(Step.FREE_SLOT, "cred_off"),
                 id="at capacity frees a disabled credential before a newer usable one"),
    pytest.param(given(active("cred_old", T0, expires=NOW - MINUTE),
                       active("cred_other", T0 + DAY), started(at=NOW - HOUR)), NOW,
                 Next(Step.FREE_SLOT, "cred_old"),
                 id="at capacity frees the old credential only once it stopped working itself"),
    pytest.param(given(OLD, started(), *GENERATED), NOW, Next(Step.REGISTER, NEW),
                 id="registers the new key with the provider once it is generated"),
    pytest.param(given(OLD, started(), *GENERATED, step("registered")), NOW,
                 Next(Step.ACTIVATE, NEW),
                 id="activates the new key once the provider has it"),
    pytest.param(given(OLD, started(), *GENERATED, step("registered"), ACTIVATED), NOW,
                 Next(Step.TEST, NEW),
                 id="tests the new key once it is active"),
    pytest.param(given(OLD, started(), *GENERATED, step("registered"), ACTIVATED,
                       step("tested")), NOW,
                 Next(Step.DELIVER, NEW),
                 id="delivers the new key once it passed the test"),
    pytest.param(given(OLD, *THROUGH_DELIVERY), TESTED_AT + 30 * MINUTE,
                 Next(Step.WAIT, "cred_old", not_before=TESTED_AT + HOUR),
                 id="waits for the overlap, counted from the test, before disabling the old key"),
    pytest.param(given(OLD, *THROUGH_DELIVERY), TESTED_AT + HOUR,
                 Next(Step.DISABLE_OLD, "cred_old"),
                 id="disables the old key when the overlap has passed"),
    pytest.param(given(active("cred_old", T0, expires=NOW + 10 * MINUTE), *THROUGH_DELIVERY),
                 TESTED_AT + 30 * MINUTE, Next(Step.DISABLE_OLD, "cred_old"),
                 id="disables an old key that expired during the overlap without waiting"),
    pytest.param(given(OLD, *THROUGH_DELIVERY,
                       (ev.CredentialDisabled(credential_id="cred_old"), TESTED_AT + HOUR)),
                 TESTED_AT + HOUR, Next(Step.COMPLETE),
                 id="completes once the old key is disabled"),
    pytest.param(given(started(old=None), *THROUGH_DELIVERY[1:]), TESTED_AT,
                 Next(Step.COMPLETE),
                 id="completes right after delivery when there was no old key (provisioning)"),
    pytest.param(given(OLD, started(),
                       (ev.RotationFailed(rotation_id=RID, step="register", error="down",
                                          attempt=1, next_attempt_at=NOW + MINUTE), NOW)), NOW,
                 Next(Step.WAIT, not_before=NOW + MINUTE),
                 id="waits for the retry time after a failed step"),
]


@pytest.mark.parametrize(("state", "at", "expected"), KEY_STEPS)
def test_resume_names_the_next_step_of_a_key_rotation(state: AppState, at: datetime,
                                                      expected: Next) -> None:
    assert resume(state, state.rotations[RID], KEY, at) == expected


SECRET_STEPS = [
    pytest.param([], Step.GENERATE, id="generates the new secret first"),
    pytest.param(["generated"], Step.REGISTER, id="registers it with the provider next"),
    pytest.param(["generated", "registered"], Step.TEST,
                 id="tests it once the provider has it (there is nothing to activate)"),
    pytest.param(["generated", "registered", "tested"], Step.DELIVER,
                 id="delivers it once it passed the test"),
    pytest.param(["generated", "registered", "tested", "delivered"], Step.COMPLETE,
                 id="completes once it is delivered (the previous one stays valid for its grace)"),
]


@pytest.mark.parametrize(("done", "expected"), SECRET_STEPS)
def test_resume_names_the_next_step_of_a_client_secret_rotation(done: list[str],
                                                                expected: Step) -> None:
    state = given(started(SECRET_USAGE, old=None), *[step(s) for s in done])
    assert resume(state, state.rotations[RID], SECRET, NOW) == Next(expected)


# --- the whole walk ------------------------------------------------------------------------------


def carry_out(state: AppState, nxt: Next, at: datetime) -> list[ev.Event]:
    """The events each step records when its outside work succeeds (as the rotator does)."""
    match nxt.step:
        case Step.FREE_SLOT:
            return [ev.CredentialDeleted(credential_id=nxt.credential_id or "")]
        case Step.GENERATE if state.rotations[RID].usage == SECRET_USAGE:
            version = state.secret.version + 1 if state.secret else 1
            return [ev.SecretRotated(version=version, fingerprint=f"sha256:v{version}"),
                    ev.RotationStepRecorded(rotation_id=RID, step="generated")]
        case Step.GENERATE:
            return [added(NEW), ev.RotationStepRecorded(rotation_id=RID, step="generated")]
        case Step.REGISTER | Step.TEST | Step.DELIVER:
            recorded = {Step.REGISTER: "registered", Step.TEST: "tested",
                        Step.DELIVER: "delivered"}[nxt.step]
            return [ev.RotationStepRecorded(rotation_id=RID, step=recorded)]
        case Step.ACTIVATE:
            return [ev.CredentialActivated(credential_id=NEW)]
        case Step.DISABLE_OLD:
            return [ev.CredentialDisabled(credential_id=nxt.credential_id or "")]
        case Step.COMPLETE:
            return [ev.RotationCompleted(rotation_id=RID, new_credential_id=NEW)]
        case Step.WAIT:
            return []


def walk(state: AppState, params: Params) -> tuple[list[Next], AppState]:
    """Resume, carry out, repeat, a minute apart (jumping to the end of a wait)."""
    at, seen = NOW, []
    while state.rotations[RID].status is RotationStatus.RUNNING:
        nxt = resume(state, state.rotations[RID], params, at)
        seen.append(nxt)
        assert len(seen) < 20, seen
        if nxt.step is Step.WAIT:
            assert nxt.not_before is not None and nxt.not_before > at
            at = nxt.not_before
            continue
        for event in carry_out(state, nxt, at):
            state = evolve(state, event, at)
        at += MINUTE
    return seen, state


def test_a_key_rotation_at_capacity_walks_every_step_in_order() -> None:
    state = given(active("cred_spare", T0 - DAY), OLD, started())
    seen, end = walk(state, KEY)
    assert [n.step.value for n in seen] == [
        "free_slot", "generate", "register", "activate", "test", "deliver", "wait",
        "disable_old", "complete"]
    assert seen[0].credential_id == "cred_spare"
    tested_at = end.rotations[RID].tested_at
    assert tested_at is not None and seen[6].not_before == tested_at + KEY.overlap
    assert end.credentials["cred_old"].disabled_at == tested_at + KEY.overlap
    assert [c.id for c in end.usable(PKJWT, NOW + DAY)] == [NEW]


def test_a_client_secret_rotation_walks_its_steps_in_order() -> None:
    seen, end = walk(given(started(SECRET_USAGE, old=None)), SECRET)
    assert [n.step.value for n in seen] == ["generate", "register", "test", "deliver",
                                            "complete"]
    assert end.secret is not None and end.secret.version == 1


# --- start ---------------------------------------------------------------------------------------


def test_start_names_the_newest_usable_credential_as_the_one_it_replaces() -> None:
    state = given(active("cred_a", T0), active("cred_b", T0 + DAY))
    assert replaced_credential(state, PKJWT, NOW) == state.credentials["cred_b"]
    assert start(state, PKJWT, Reason.AGE, RID, NEW, NOW, "keys") == [ev.RotationStarted(
        rotation_id=RID, usage=PKJWT, reason="age", policy="keys", old_credential_id="cred_b",
        new_credential_id=NEW)]


def test_start_of_a_client_secret_rotation_replaces_no_credential() -> None:
    (event,) = start(given(), SECRET_USAGE, Reason.PROVISION, RID, "secret_rot_1", NOW)
    assert isinstance(event, ev.RotationStarted)
    assert (event.usage, event.reason, event.old_credential_id) == (
        SECRET_USAGE, "provision", None)


PARKED = (ev.RotationParked(rotation_id=RID, step="register", error="down", attempts=5), NOW)


@pytest.mark.parametrize(("state", "allowed"), [
    pytest.param(given(OLD, started()), False,
                 id="refuses a second rotation of the usage while one runs"),
    pytest.param(given(OLD, started(), PARKED), False,
                 id="refuses a second rotation while one is parked for a human"),
    pytest.param(given(OLD, started(), (ev.RotationCompleted(rotation_id=RID,
                                                             new_credential_id=NEW), NOW)), True,
                 id="allows a new rotation once the previous one completed"),
    pytest.param(given(OLD, started(), PARKED,
                       (ev.RotationAbandoned(rotation_id=RID), NOW)), True,
                 id="allows a new rotation once a parked one was abandoned"),
    pytest.param(given(OLD, started(usage="jar")), True,
                 id="a rotation of another usage does not stand in the way"),
])
def test_start_allows_one_rotation_per_usage_at_a_time(state: AppState, allowed: bool) -> None:
    events = start(state, PKJWT, Reason.MANUAL, "rot_2", "cred_2", NOW)
    assert bool(events) is allowed


# --- failure and backoff -------------------------------------------------------------------------

RETRYING = Params(usage=PKJWT, attempts=10, backoff=MINUTE, max_backoff=HOUR)


def failed_times(n: int) -> AppState:
    """A running rotation that has failed ``n`` times already."""
    return given(OLD, started(), *[
        (ev.RotationFailed(rotation_id=RID, step="register", error="down", attempt=k,
                           next_attempt_at=NOW), NOW) for k in range(1, n + 1)])


@pytest.mark.parametrize(("before", "base"), [
    pytest.param(0, MINUTE, id="the first failure waits 50-100% of the base backoff"),
    pytest.param(1, 2 * MINUTE, id="the second failure waits 50-100% of twice the base"),
    pytest.param(3, 8 * MINUTE, id="the fourth failure waits 50-100% of eight times the base"),
    pytest.param(6, HOUR, id="the seventh failure is capped by max_backoff (not 64 minutes)"),
    pytest.param(8, HOUR, id="the ninth failure is still capped by max_backoff"),
])
def test_failure_records_a_retry_after_an_exponential_jittered_backoff(before: int,
                                                                       base: timedelta) -> None:
    state = failed_times(before)
    (event,) = decide_failure(state, RID, Step.REGISTER, "provider down", RETRYING, NOW)
    assert isinstance(event, ev.RotationFailed)
    assert (event.rotation_id, event.step, event.error, event.attempt) == (
        RID, "register", "provider down", before + 1)
    assert event.next_attempt_at == NOW + backoff(RID, before + 1, RETRYING)
    assert NOW + base / 2 <= event.next_attempt_at <= NOW + base
    after = evolve(state, event, NOW)
    assert after.rotations[RID].status is RotationStatus.RUNNING
    assert after.rotations[RID].attempts == before + 1
    assert resume(after, after.rotations[RID], RETRYING, NOW).step is Step.WAIT


def test_failure_parks_the_rotation_when_the_attempts_budget_is_reached() -> None:
    params = Params(usage=PKJWT, attempts=3)
    state = failed_times(2)
    events = decide_failure(state, RID, Step.TEST, "assertion refused", params, NOW)
    assert events == [
        ev.RotationFailed(rotation_id=RID, step="test", error="assertion refused", attempt=3,
                          next_attempt_at=None),
        ev.RotationParked(rotation_id=RID, step="test", error="assertion refused", attempts=3),
    ]
    for event in events:
        state = evolve(state, event, NOW)
    rotation = state.rotations[RID]
    assert rotation.status is RotationStatus.PARKED
    assert (rotation.attempts, rotation.next_attempt_at) == (3, None)
    assert state.usable(PKJWT, NOW)[0].id == "cred_old"
    assert start(state, PKJWT, Reason.MANUAL, "rot_2", "cred_2", NOW) == []


def test_a_retried_rotation_runs_again_with_its_attempts_reset() -> None:
    params = Params(usage=PKJWT, attempts=3)
    state = failed_times(2)
    for event in decide_failure(state, RID, Step.REGISTER, "down", params, NOW):
        state = evolve(state, event, NOW)
    state = evolve(state, ev.RotationRetried(rotation_id=RID), NOW + HOUR)
    rotation = state.rotations[RID]
    assert (rotation.status, rotation.attempts, rotation.next_attempt_at) == (
        RotationStatus.RUNNING, 0, None)
    assert resume(state, rotation, params, NOW + HOUR) == Next(Step.GENERATE, NEW)
    (event,) = decide_failure(state, RID, Step.REGISTER, "down", params, NOW + HOUR)
    assert isinstance(event, ev.RotationFailed) and event.attempt == 1


def test_backoff_is_deterministic_for_a_rotation_and_attempt() -> None:
    assert backoff("rot_a", 3, RETRYING) == backoff("rot_a", 3, RETRYING)
    assert backoff("rot_a", 3, RETRYING) != backoff("rot_b", 3, RETRYING)  # spread apart
    assert backoff("rot_a", 1, RETRYING) != backoff("rot_a", 2, RETRYING) / 2


def test_backoff_jitter_stays_within_half_and_all_of_the_delay() -> None:
    fractions = [backoff(f"rot_{n}", 1, RETRYING) / MINUTE for n in range(500)]
    assert all(0.5 <= f <= 1.0 for f in fractions)
    assert min(fractions) < 0.55 and max(fractions) > 0.95  # the whole range is used
    assert len(set(fractions)) == 500


# --- the error a rotation shows ------------------------------------------------------------------

FAILED = (ev.RotationFailed(rotation_id=RID, step="register", error="provider down", attempt=1,
                            next_attempt_at=NOW + MINUTE), NOW)
PARKED = (ev.RotationParked(rotation_id=RID, step="register", error="provider down",
                            attempts=1), NOW)


@pytest.mark.parametrize(("facts", "shown"), [
    pytest.param([FAILED], "provider down", id="a failed step waiting for its retry shows why"),
    pytest.param([FAILED, PARKED], "provider down", id="a parked rotation shows why"),
    pytest.param([FAILED, step("generated")], None,
                 id="a step that succeeded after the failure clears it"),
    pytest.param([FAILED, PARKED, (ev.RotationRetried(rotation_id=RID), NOW)], None,
                 id="a parked rotation sent back by a retry shows none until it fails again"),
    pytest.param([FAILED, step("generated"), (ev.RotationCompleted(
        rotation_id=RID, new_credential_id=NEW, old_credential_id="cred_old"), NOW)], None,
                 id="a rotation that completed after a failure shows none"),
    pytest.param([FAILED, PARKED, (ev.RotationAbandoned(rotation_id=RID), NOW)], None,
                 id="an abandoned rotation shows none"),
])
def test_a_rotation_shows_the_error_only_while_it_holds_it(
        facts: list[tuple[ev.Event, datetime]], shown: str | None) -> None:
    rotation = given(OLD, started(), *facts).rotations[RID]
    assert rotation.error == shown
    assert rotation.last_error == "provider down"  # the history keeps it
