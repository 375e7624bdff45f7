"""One look at an application (``planner.assess``) answers as the chain read afresh.

An ``Assessment`` walks the chain of checks on one ``checks.Input`` per applied policy, whose
facts (the newest usable credential, the rotation in flight) are looked up once and shared by
every check, by the plan and by the next instant; the tick also hands an application's
assessment before its actions to the one after them (``like``), which keeps the selection.
Over generated histories, policies and instants, each answer (the plan's actions, deferrals,
problems, alarms and capped starts; the next instant; the alarms) is the one the chain gives
when every check reads a fresh input (the facts looked up at each question, as before they
were shared), whatever is asked first, and whether or not an earlier assessment is handed on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from events import catalog as ev
from events.state import fold
from orchestrator.domain import checks
from orchestrator.domain.planner import PlanPolicy, assess, next_due, plan, plan_of, stranded
from orchestrator.domain.rotation import Params, Recorded, replaced_credential
from orchestrator.policies.windows import CronWindow
from tests.conftest import NOW

APP = "pay"
PKJWT, MTLS, SECRET = "private_key_jwt", "mtls", "client_secret"
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
CIDS, RIDS = ("c1", "c2", "c3"), ("r1", "r2")


def _policy(name: str, usage: str, *, labels: dict[str, str] | None = None,
            window: CronWindow | None = None, fraction: float | None = None,
            alg: str | None = "RS256", max_per_tick: int = 50) -> PlanPolicy:
    params = Params(usage=usage, algorithm=alg, key_size=2048, overlap=HOUR,
                    lifetime=120 * DAY, max_backoff=6 * HOUR)
    return PlanPolicy(name=name, params=params, every=90 * DAY, before_expiry=14 * DAY,
                      retention=7 * DAY, labels=labels or {}, window=window,
                      max_per_tick=max_per_tick, before_expiry_fraction=fraction)


POLICIES = (
    _policy("keys", PKJWT),
    _policy("keys-prod", PKJWT, labels={"env": "prod"}),  # with "keys": a conflict on prod apps
    _policy("keys-nightly", PKJWT, window=CronWindow("0 2 * * *", timedelta(hours=4), "UTC"),
            fraction=0.33, max_per_tick=1),
    _policy("certs", MTLS, alg=None),
    _policy("secrets", SECRET, alg=None),
)

times = st.integers(-400, 400).map(lambda hours: NOW + hours * 6 * HOUR)
maybe_times = st.none() | times
cids, rids = st.sampled_from(CIDS), st.sampled_from(RIDS)
labels = st.sampled_from([{}, {"env": "prod"}, {"env": "dev"}])
events = st.one_of(
    st.builds(lambda cid, usage, alg, expires: ev.CredentialAdded(
        credential_id=cid, usage=usage, kind=(ev.CredentialKind.X509_CERT if usage == MTLS
                                              else ev.CredentialKind.PUBLIC_KEY),
        kid=f"kid-{cid}", fingerprint=f"sha256:{cid}", alg=None if usage == MTLS else alg,
        key_size=2048, expires_at=expires, generated=True),
        cids, st.sampled_from([PKJWT, MTLS]), st.sampled_from(["RS256", "ES256"]), maybe_times),
    st.builds(lambda cid: ev.CredentialActivated(credential_id=cid), cids),
    st.builds(lambda cid: ev.CredentialDisabled(credential_id=cid), cids),
    st.builds(lambda cid, at: ev.CredentialExpired(credential_id=cid, expired_at=at), cids, times),
    st.builds(lambda cid: ev.CredentialDeleted(credential_id=cid), cids),
    st.builds(lambda v: ev.SecretRotated(version=v, fingerprint=f"sha256:s{v}"),
              st.integers(1, 3)),
    st.builds(lambda rid, usage, old, new: ev.RotationStarted(
        rotation_id=rid, usage=usage, reason="age", policy="keys", old_credential_id=old,
        new_credential_id=new), rids, st.sampled_from([PKJWT, MTLS, SECRET]), st.none() | cids,
        cids),
    st.builds(lambda rid, step: ev.RotationStepRecorded(rotation_id=rid, step=step), rids,
              st.sampled_from([r.value for r in Recorded])),
    st.builds(lambda rid, at: ev.RotationFailed(rotation_id=rid, step="register", error="down",
                                                attempt=1, next_attempt_at=at), rids, maybe_times),
    st.builds(lambda rid: ev.RotationParked(rotation_id=rid, step="register", error="down",
                                            attempts=5), rids),
    st.builds(lambda rid: ev.RotationRetried(rotation_id=rid), rids),
    st.builds(lambda rid, new, old: ev.RotationCompleted(
        rotation_id=rid, new_credential_id=new, old_credential_id=old), rids, cids,
        st.none() | cids),
    st.builds(lambda rid: ev.RotationAbandoned(rotation_id=rid), rids),
    st.builds(lambda tags: ev.ApplicationRegistered(app=APP, labels=tags), labels),
)


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[ev.Event, datetime]]:
    """An application's facts in time order; most begin with its registration."""
    facts = sorted(draw(st.lists(st.tuples(events, times), max_size=14)), key=lambda f: f[1])
    if draw(st.integers(0, 9)):
        facts.insert(0, (ev.ApplicationRegistered(app=APP, labels=draw(labels)), NOW - 500 * DAY))
    return facts


@contextmanager
def fresh_inputs() -> Iterator[None]:
    """Every check reads the facts afresh at each question, as before they were shared (what
    ``Input`` looks up once is dropped: each read asks the state again)."""
    def afresh(fact: Callable[[checks.Input], object]) -> property:
        return property(fact, lambda i, value: None)

    with mock.patch.object(checks.Input, "newest", afresh(
            lambda i: replaced_credential(i.state, i.policy.usage, i.now))), \
         mock.patch.object(checks.Input, "running", afresh(
             lambda i: i.state.running_rotation(i.policy.usage))):
        yield


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(1, 14), st.sets(st.sampled_from(range(len(POLICIES)))), times)
def test_an_assessment_answers_as_the_chain_read_afresh(
        facts: list[tuple[ev.Event, datetime]], cut: int, chosen: set[int], now: datetime) -> None:
    policies = [POLICIES[n] for n in sorted(chosen)]
    state, earlier = fold(APP, facts), fold(APP, facts[:cut])
    with fresh_inputs():
        expected = (plan(policies, [state], now), next_due(state, policies, now),
                    stranded(state, now))

    plan_first = assess(state, policies, now)
    the_plan = plan_of([plan_first], policies, now)
    assert (the_plan, plan_first.next_due(), plan_first.alarms()) == expected
    due_first = assess(state, policies, now)
    due = due_first.next_due()
    assert (plan_of([due_first], policies, now), due, due_first.alarms()) == expected
    # the tick's hand-over: this state assessed after an earlier one was (its plan asked)
    before = assess(earlier, policies, now)
    plan_of([before], policies, now)
    after = assess(state, policies, now, like=before)
    assert (plan_of([after], policies, now), after.next_due(), after.alarms()) == expected
