"""What a rotation records, as specifications: given the facts, when a ``decide_*``, then events.

Every decision the rotator, the tick and the CLI carry out is a pure function of
``orchestrator.domain.rotation_events`` (or ``resume`` for the next step); each row below is one
sentence of behaviour: given an ``AppState`` folded from events, when the decision is asked at a
fixed instant, then these events (or this refusal).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from events import catalog as ev
from events.state import AppState, fold
from orchestrator.domain.errors import NotFoundError, OrchestratorError, RefusedError
from orchestrator.domain.material import MaterialKind, PublicMaterial
from orchestrator.domain.rotation import (
    Next,
    Params,
    Recorded,
    Step,
    backoff,
    resume,
    why_test_failed,
)
from orchestrator.domain.rotation_events import (
    decide_abandon,
    decide_completion,
    decide_failure,
    decide_generated_key,
    decide_manual_start,
    decide_retry,
    decide_step,
)
from tests.conftest import NOW

APP, RID, NEW, OLD_ID = "bank", "rot_1", "cred_new", "cred_old"
MTLS, PKJWT = "mtls", "private_key_jwt"
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
T0 = NOW - 30 * DAY
DN = "CN=bank,O=Acme"
PARAMS = Params(usage=PKJWT, attempts=3, backoff=MINUTE, max_backoff=HOUR)
Fact = tuple[ev.Event, datetime]


# --- given ---------------------------------------------------------------------------------------


def key(cid: str, usage: str = PKJWT, dn: str | None = None) -> ev.CredentialAdded:
    kind = (ev.CredentialKind.CERT_SUBJECT_DN if dn else ev.CredentialKind.PUBLIC_KEY)
    return ev.CredentialAdded(credential_id=cid, usage=usage, kind=kind, kid=f"kid-{cid}",
                              fingerprint=f"sha256:{cid}", subject_dn=dn,
                              expires_at=NOW + 5 * DAY, generated=True)


def active(cid: str, at: datetime = T0, usage: str = PKJWT, dn: str | None = None) -> list[Fact]:
    return [(key(cid, usage, dn), at), (ev.CredentialActivated(credential_id=cid), at)]


def started(usage: str = PKJWT, old: str | None = OLD_ID) -> Fact:
    return ev.RotationStarted(rotation_id=RID, usage=usage, reason="age", policy="keys",
                              old_credential_id=old, new_credential_id=NEW), NOW - HOUR


def step(name: str) -> Fact:
    return ev.RotationStepRecorded(rotation_id=RID, step=name), NOW - HOUR


def failed(attempt: int) -> Fact:
    return ev.RotationFailed(rotation_id=RID, step="test", error="refused", attempt=attempt,
                             next_attempt_at=NOW), NOW - HOUR


def given(*facts: Fact | list[Fact]) -> AppState:
    flat: list[Fact] = [(ev.ApplicationRegistered(app=APP), T0 - DAY)]
    for fact in facts:
        flat.extend(fact if isinstance(fact, list) else [fact])
    return fold(APP, flat)


MATERIAL = PublicMaterial(kind=MaterialKind.PUBLIC_KEY, fingerprint="sha256:new", key_type="RSA",
                          key_size=2048, jwk_thumbprint="thumbprint-of-the-new-key",
                          public_pem="-----BEGIN PUBLIC KEY-----")
ACTIVE_UNTESTED = [started(), (key(NEW), NOW - HOUR), step("generated"), step("registered"),
                   (ev.CredentialActivated(credential_id=NEW), NOW - HOUR)]
PARKED: Fact = (ev.RotationParked(rotation_id=RID, step="test", error="refused", attempts=3),
                NOW - HOUR)

# --- decide_* ------------------------------------------------------------------------------------

Decision = Callable[[AppState], list[ev.Event]]

DECISIONS = [
    pytest.param(given(active(OLD_ID)),
                 lambda s: decide_manual_start(s, PKJWT, "keys", RID, NEW, NOW),
                 [ev.RotationStarted(rotation_id=RID, usage=PKJWT, reason="manual", policy="keys",
                                     old_credential_id=OLD_ID, new_credential_id=NEW)],
                 id="a manual rotation under a policy starts, replacing the newest usable key"),
    pytest.param(given(active(OLD_ID), started(), step("generated")),
                 lambda s: decide_step(s, RID, Recorded.REGISTERED),
                 [ev.RotationStepRecorded(rotation_id=RID, step="registered")],
                 id="a step done is recorded"),
    pytest.param(given(active(OLD_ID), started(), step("registered")),
                 lambda s: decide_step(s, RID, Recorded.REGISTERED), [],
                 id="a step recorded already is not recorded again (a repeat after a crash)"),
    pytest.param(given(active(OLD_ID), started(), PARKED),
                 lambda s: decide_step(s, RID, Recorded.TESTED), [],
                 id="nothing is recorded for a rotation that no longer runs"),
    pytest.param(given(active(OLD_ID), started()),
                 lambda s: decide_generated_key(s, RID, MATERIAL, PARAMS, NOW, NOW + DAY),
                 [ev.CredentialAdded(credential_id=NEW, usage=PKJWT,
                                     kind=ev.CredentialKind.PUBLIC_KEY,
                                     kid="thumbprint-of-the-new-key", alg="RS256", key_size=2048,
                                     fingerprint="sha256:new",
                                     public_pem="-----BEGIN PUBLIC KEY-----",
                                     expires_at=NOW + DAY, generated=True),
                  ev.RotationStepRecorded(rotation_id=RID, step="generated")],
                 id="the new key is added under the rotation's credential id, and generated"),
    pytest.param(given(active(OLD_ID), started(), (key(NEW), NOW), step("generated")),
                 lambda s: decide_generated_key(s, RID, MATERIAL, PARAMS, NOW, NOW + DAY), [],
                 id="a key added already is not added again (a repeat after a crash)"),
    pytest.param(given(active(OLD_ID), started()),
                 lambda s: decide_completion(s, RID),
                 [ev.RotationCompleted(rotation_id=RID, new_credential_id=NEW,
                                       old_credential_id=OLD_ID)],
                 id="a completed rotation names its new and old credentials"),
    pytest.param(given(active(OLD_ID), started(),
                       (ev.RotationCompleted(rotation_id=RID, new_credential_id=NEW), NOW)),
                 lambda s: decide_completion(s, RID), [],
                 id="a rotation completes once"),
    pytest.param(given(active(OLD_ID), started()),
                 lambda s: decide_failure(s, RID, Step.REGISTER, "down", PARAMS, NOW),
                 [ev.RotationFailed(rotation_id=RID, step="register", error="down", attempt=1,
                                    next_attempt_at=NOW + backoff(RID, 1, PARAMS))],
                 id="a failed step is retried after a jittered backoff"),
    pytest.param(given(active(OLD_ID), started(), failed(1), failed(2)),
                 lambda s: decide_failure(s, RID, Step.REGISTER, "down", PARAMS, NOW),
                 [ev.RotationFailed(rotation_id=RID, step="register", error="down", attempt=3,
                                    next_attempt_at=None),
                  ev.RotationParked(rotation_id=RID, step="register", error="down", attempts=3)],
                 id="after the budget the rotation is parked; the old credential is untouched"),
    pytest.param(given(active(OLD_ID), *ACTIVE_UNTESTED, failed(1), failed(2)),
                 lambda s: decide_failure(s, RID, Step.TEST, "refused", PARAMS, NOW),
                 [ev.RotationFailed(rotation_id=RID, step="test", error="refused", attempt=3,
                                    next_attempt_at=None),
                  ev.RotationParked(rotation_id=RID, step="test", error="refused", attempts=3),
                  ev.CredentialDisabled(credential_id=NEW)],
                 id="parking disables the new credential that never passed the test"),
    pytest.param(given(active(OLD_ID), *ACTIVE_UNTESTED, step("tested"), failed(1), failed(2)),
                 lambda s: decide_failure(s, RID, Step.DELIVER, "disk full", PARAMS, NOW),
                 [ev.RotationFailed(rotation_id=RID, step="deliver", error="disk full",
                                    attempt=3, next_attempt_at=None),
                  ev.RotationParked(rotation_id=RID, step="deliver", error="disk full",
                                    attempts=3)],
                 id="parking leaves a new credential that passed the test active"),
    pytest.param(given(active(OLD_ID), *ACTIVE_UNTESTED, failed(1), failed(2)),
                 lambda s: decide_failure(s, RID, Step.TEST, "refused", PARAMS, NOW, False),
                 [ev.RotationFailed(rotation_id=RID, step="test", error="refused", attempt=3,
                                    next_attempt_at=NOW + HOUR)],
                 id="when the provider could not deactivate the untested one it is not parked "
                    "but retried after the longest backoff"),
    pytest.param(given(active(OLD_ID), started(), PARKED),
                 lambda s: decide_retry(s, RID), [ev.RotationRetried(rotation_id=RID)],
                 id="a parked rotation is retried"),
    pytest.param(given(active(OLD_ID), started()),
                 lambda s: decide_abandon(s, RID, "operator"),
                 [ev.RotationAbandoned(rotation_id=RID, note="operator")],
                 id="a running rotation is abandoned"),
]


@pytest.mark.parametrize(("state", "when", "then"), DECISIONS)
def test_a_decision_records(state: AppState, when: Decision, then: list[ev.Event]) -> None:
    assert when(state) == then


REFUSALS = [
    pytest.param(given(active(OLD_ID)),
                 lambda s: decide_manual_start(s, PKJWT, None, RID, NEW, NOW),
                 RefusedError, "no policy selects application 'bank' for private_key_jwt",
                 id="a manual rotation no policy selects is refused (the daemon could not "
                    "finish it)"),
    pytest.param(fold("ghost", []),
                 lambda s: decide_manual_start(s, PKJWT, "keys", RID, NEW, NOW),
                 NotFoundError, "not registered", id="a manual rotation of an unknown app"),
    pytest.param(given(active(OLD_ID), started(), PARKED),
                 lambda s: decide_manual_start(s, PKJWT, "keys", "rot_2", "cred_2", NOW),
                 RefusedError, "already has a private_key_jwt rotation in flight (rot_1, parked)",
                 id="a manual rotation while one is parked"),
    pytest.param(given(active(OLD_ID), started()), lambda s: decide_retry(s, RID),
                 RefusedError, "only a parked rotation can be retried",
                 id="a running rotation cannot be retried"),
    pytest.param(given(active(OLD_ID)), lambda s: decide_retry(s, RID),
                 OrchestratorError, "has no rotation rot_1", id="an unknown rotation"),
    pytest.param(given(active(OLD_ID), started(),
                       (ev.RotationCompleted(rotation_id=RID, new_credential_id=NEW), NOW)),
                 lambda s: decide_abandon(s, RID), RefusedError,
                 "only a running or parked rotation can be abandoned",
                 id="a completed rotation cannot be abandoned"),
]


@pytest.mark.parametrize(("state", "when", "error", "says"), REFUSALS)
def test_a_decision_refuses(state: AppState, when: Decision, error: type[Exception],
                            says: str) -> None:
    with pytest.raises(error, match=None) as raised:
        when(state)
    assert says in str(raised.value) and "\n" not in str(raised.value)


# --- resume: CA-issued certificates and parked rotations ------------------------------------------

MTLS_PARAMS = Params(usage=MTLS, algorithm=None, overlap=HOUR)
CA_OLD = active(OLD_ID, usage=MTLS, dn=DN)
CA_STARTED = started(MTLS)
CA_NEW: Fact = (key(NEW, MTLS, DN), NOW - HOUR)
CA_THROUGH_DELIVERY = [CA_STARTED, CA_NEW, step("generated"), step("registered"),
                       (ev.CredentialActivated(credential_id=NEW), NOW - HOUR), step("tested"),
                       step("delivered")]

RESUMES = [
    pytest.param(given(CA_OLD, CA_STARTED, CA_NEW, step("generated")), MTLS_PARAMS,
                 Next(Step.CONFIRM, NEW),
                 id="a new CA-issued certificate of the same DN only confirms the registration"),
    pytest.param(given(active(OLD_ID, usage=MTLS, dn="CN=other"), CA_STARTED, CA_NEW,
                       step("generated")), MTLS_PARAMS, Next(Step.REGISTER, NEW),
                 id="a CA-issued certificate of a new DN is registered"),
    pytest.param(given(CA_OLD, *CA_THROUGH_DELIVERY), MTLS_PARAMS,
                 Next(Step.DISABLE_OLD, OLD_ID, at_provider=False),
                 id="the old certificate is disabled in the log only: the provider keeps the "
                    "DN the new one authenticates with"),
    pytest.param(given(active(OLD_ID), *ACTIVE_UNTESTED, PARKED,
                       (ev.CredentialDisabled(credential_id=NEW), NOW - HOUR),
                       (ev.RotationRetried(rotation_id=RID), NOW - MINUTE)), PARAMS,
                 Next(Step.ACTIVATE, NEW),
                 id="a retried rotation activates again the new credential parking disabled"),
]


@pytest.mark.parametrize(("state", "params", "then"), RESUMES)
def test_resume_names_the_next_step(state: AppState, params: Params, then: Next) -> None:
    assert resume(state, state.rotations[RID], params, NOW) == then


TESTS = [
    pytest.param(given(CA_OLD, CA_STARTED, CA_NEW), NEW, None,
                 id="the provider matched the new credential itself"),
    pytest.param(given(CA_OLD, CA_STARTED, CA_NEW), OLD_ID, None,
                 id="the provider matched the DN registration the new certificate shares"),
    pytest.param(given(active(OLD_ID), started(), (key(NEW), NOW)), OLD_ID,
                 f"provider matched {OLD_ID}, not the new credential {NEW}",
                 id="a key matched as the old one did not pass"),
]


@pytest.mark.parametrize(("state", "accepted", "refusal"), TESTS)
def test_the_test_passes_only_for_the_new_credential_or_its_registration(
        state: AppState, accepted: str, refusal: str | None) -> None:
    assert why_test_failed(state, state.credentials[NEW], accepted) == refusal
