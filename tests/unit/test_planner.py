"""The planner, as specifications: given an application's history, at NOW, then the plan.

``plan(policies, fleet, now)`` is pure: every case folds a few facts into an ``AppState`` with
the one ``fold`` and reads the plan at a fixed instant. Each action is summed up in one line,
``"<kind> <reason> <usage or credential/rotation id>"``, so a table row reads as what the daemon
would do. Windows, the per-application jitter, the per-tick cap, conflicting selectors and
``next_due`` follow the chain of checks.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from events import catalog as ev
from events.state import AppState, fold
from orchestrator.domain.planner import Action, Kind, Plan, PlanPolicy, Reason, next_due, plan
from orchestrator.domain.rotation import Params
from orchestrator.policies.windows import CronWindow
from tests.conftest import NOW

APP = "pay"
PKJWT, JAR, MTLS, SECRET = "private_key_jwt", "jar", "mtls", "client_secret"
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
T0 = NOW - 400 * DAY  # when the application was registered


# --- given: an application's history, folded -----------------------------------------------------


class Given:
    """Facts about one application, each with the instant it occurred; ``state()`` folds them."""

    def __init__(self, app: str = APP, labels: dict[str, str] | None = None) -> None:
        self.app = app
        self.facts: list[tuple[ev.Event, datetime]] = [
            (ev.ApplicationRegistered(app=app, labels=labels or {}), T0)]
        self.expiry: dict[str, datetime | None] = {}

    def _(self, event: ev.Event, at: datetime) -> Given:
        self.facts.append((event, at))
        return self

    def key(self, cid: str, *, added: datetime, usage: str = PKJWT, alg: str | None = "RS256",
            size: int = 2048, expires: datetime | None = None, active: bool = True) -> Given:
        """Credential ``cid`` added (and activated) at ``added``."""
        kind = ev.CredentialKind.X509_CERT if usage == MTLS else ev.CredentialKind.PUBLIC_KEY
        self.expiry[cid] = expires
        self._(ev.CredentialAdded(
            credential_id=cid, usage=usage, kind=kind, kid=f"kid-{cid}", fingerprint=f"sha256:{cid}",
            alg=None if usage == MTLS else alg, key_size=size, expires_at=expires, generated=True,
        ), added)
        return self._(ev.CredentialActivated(credential_id=cid), added) if active else self

    def disabled(self, cid: str, at: datetime) -> Given:
        return self._(ev.CredentialDisabled(credential_id=cid), at)

    def expired(self, cid: str) -> Given:
        """``credential.expired`` recorded at the credential's expiry."""
        at = self.expiry[cid]
        assert at is not None
        return self._(ev.CredentialExpired(credential_id=cid, expired_at=at), at)

    def secret(self, version: int, at: datetime) -> Given:
        return self._(ev.SecretRotated(version=version, fingerprint=f"sha256:s{version}"), at)

    def rotation(self, rid: str, at: datetime, *, usage: str = PKJWT, old: str | None = None,
                 new: str = "cred_new", steps: tuple[str, ...] = ()) -> Given:
        self._(ev.RotationStarted(rotation_id=rid, usage=usage, reason="age", policy="keys",
                                  old_credential_id=old, new_credential_id=new), at)
        for step in steps:
            self._(ev.RotationStepRecorded(rotation_id=rid, step=step), at)
        return self

    def step(self, rid: str, step: str, at: datetime) -> Given:
        return self._(ev.RotationStepRecorded(rotation_id=rid, step=step), at)

    def failed(self, rid: str, at: datetime, retry_at: datetime | None, attempt: int = 1) -> Given:
        return self._(ev.RotationFailed(rotation_id=rid, step="register", error="provider down",
                                        attempt=attempt, next_attempt_at=retry_at), at)

    def parked(self, rid: str, at: datetime) -> Given:
        self.failed(rid, at, None, attempt=5)
        return self._(ev.RotationParked(rotation_id=rid, step="register", error="provider down",
                                        attempts=5), at)

    def state(self) -> AppState:
        return fold(self.app, self.facts)


def policy(name: str = "keys", usage: str = PKJWT, *, every: timedelta = 90 * DAY,
           before_expiry: timedelta = 14 * DAY, retention: timedelta = 7 * DAY,
           overlap: timedelta = HOUR, alg: str | None = "RS256", size: int = 2048,
           window: CronWindow | None = None, max_per_tick: int = 50,
           apps: tuple[str, ...] = ("*",), labels: dict[str, str] | None = None) -> PlanPolicy:
    params = Params(usage=usage, algorithm=alg, key_size=size, overlap=overlap,
                    lifetime=120 * DAY)
    return PlanPolicy(name=name, params=params, every=every, before_expiry=before_expiry,
                      retention=retention, apps=apps, labels=labels or {}, window=window,
                      max_per_tick=max_per_tick)


KEYS = policy()
SECRETS = policy("secrets", SECRET, alg=None)


def said(action: Action) -> str:
    """One action as a line: kind, reason, and the usage (start) or the id it acts on."""
    target = action.usage if action.kind is Kind.START else (
        action.credential_id or action.rotation_id)
    return f"{action.kind.value} {action.reason.value} {target}"


def lines(actions: tuple[Action, ...]) -> list[str]:
    return [said(a) for a in actions]


def fraction(app: str, policy_name: str) -> float:
    """The per-application share of the first half of a window (written out independently)."""
    digest = hashlib.sha256(f"{policy_name}/{app}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def slot(opening: datetime, close: datetime, app: str, policy_name: str) -> datetime:
    return opening + (close - opening) / 2 * fraction(app, policy_name)


# --- the chain of checks: one case per check ------------------------------------------------------


CHAIN = [
    pytest.param(
        Given(), [KEYS], ["start provision private_key_jwt"],
        id="provisions when the application has no credential of the usage yet"),
    pytest.param(
        Given().key("cred_a", added=NOW - 91 * DAY), [KEYS], ["start age private_key_jwt"],
        id="rotates when the active key is older than the policy's age"),
    pytest.param(
        Given().key("cred_a", added=NOW - 20 * DAY, expires=NOW + 10 * DAY), [KEYS],
        ["start expiring private_key_jwt"],
        id="rotates when the newest key expires within beforeExpiry"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW + 5 * DAY), [KEYS],
        ["start expiring private_key_jwt"],
        id="names expiry rather than age when both are due (expiry is checked first)"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - 2 * DAY).expired("cred_a"),
        [KEYS], ["start expired private_key_jwt"],
        id="starts with reason expired when every key of the usage has expired"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - HOUR)
        .key("cred_b", added=NOW - 10 * DAY), [KEYS], ["expire expired cred_a"],
        id="records the expiry of a live key past expires_at that has no credential.expired"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - HOUR), [KEYS],
        ["expire expired cred_a", "start expired private_key_jwt"],
        id="records the expiry and starts a rotation when the only key passed its expiry"),
    pytest.param(
        Given("pay").key("cred_a", added=NOW - 100 * DAY, expires=NOW - HOUR),
        [policy(apps=("shop-*",))], ["expire expired cred_a"],
        id="expires the keys of an application that no policy selects"),
    pytest.param(
        Given().key("cred_a", added=NOW - 91 * DAY)
        .rotation("rot_1", NOW - 5 * MINUTE, old="cred_a"), [KEYS],
        ["resume overdue-step rot_1"],
        id="resumes an in-flight rotation whose next step is due"),
    pytest.param(
        Given().key("cred_a", added=NOW - 91 * DAY)
        .rotation("rot_1", NOW - 5 * MINUTE, old="cred_a").failed("rot_1", NOW - 2 * MINUTE,
                                                                  NOW - MINUTE),
        [KEYS], ["resume overdue-step rot_1"],
        id="resumes a failed rotation once its retry time has passed"),
    pytest.param(
        Given().key("cred_a", added=NOW - 91 * DAY)
        .rotation("rot_1", NOW - 5 * MINUTE, old="cred_a").failed("rot_1", NOW - MINUTE,
                                                                  NOW + MINUTE),
        [KEYS], [],
        id="does nothing while a failed rotation waits for its backoff"),
    pytest.param(
        Given().key("cred_a", added=NOW - 200 * DAY)
        .rotation("rot_1", NOW - 100 * DAY, old="cred_a").parked("rot_1", NOW - 99 * DAY),
        [KEYS], [],
        id="leaves a parked rotation to a human and never starts a second one"),
    pytest.param(
        Given().key("cred_a", added=NOW - 91 * DAY)
        .rotation("rot_1", NOW - 20 * MINUTE, old="cred_a", new="cred_n")
        .key("cred_n", added=NOW - 20 * MINUTE).step("rot_1", "registered", NOW - 20 * MINUTE)
        .step("rot_1", "tested", NOW - 10 * MINUTE).step("rot_1", "delivered", NOW - 10 * MINUTE),
        [KEYS], [],
        id="does nothing while a rotation waits out its overlap"),
    pytest.param(
        Given().key("cred_a", added=NOW - 91 * DAY)
        .rotation("rot_1", NOW - 90 * MINUTE, old="cred_a", new="cred_n")
        .key("cred_n", added=NOW - 90 * MINUTE).step("rot_1", "registered", NOW - 90 * MINUTE)
        .step("rot_1", "tested", NOW - 70 * MINUTE).step("rot_1", "delivered", NOW - 70 * MINUTE),
        [KEYS], ["resume overdue-step rot_1"],
        id="resumes a rotation whose overlap has ended (the old key is disabled next)"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - DAY).expired("cred_a")
        .rotation("rot_1", NOW - 2 * DAY, old="cred_a").parked("rot_1", NOW - 2 * HOUR),
        [KEYS], ["retry expired rot_1"],
        id="retries a parked rotation when the application has no usable credential left"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - DAY).expired("cred_a")
        .rotation("rot_1", NOW - 2 * DAY, old="cred_a").parked("rot_1", NOW - 10 * MINUTE),
        [KEYS], [],
        id="retries it no sooner than the policy's longest backoff after it was parked"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - DAY).expired("cred_a")
        .rotation("rot_1", NOW - 9 * DAY, old="cred_a", new="cred_n")
        .key("cred_n", added=NOW - 9 * DAY, expires=NOW - HOUR, active=False)
        .parked("rot_1", NOW - 8 * DAY),
        [KEYS], ["expire expired cred_n", "abandon expired rot_1"],
        id="abandons a parked rotation whose new credential expired untested (a new one starts)"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW + 10 * DAY)
        .rotation("rot_p", NOW - 5 * DAY, old="cred_a").parked("rot_p", NOW - 5 * MINUTE),
        [KEYS], [],
        id="retries a parked rotation whose old key expires soon only after the longest backoff"),
    pytest.param(
        Given().key("cred_a", added=NOW - 60 * DAY).key("cred_b", added=NOW - 10 * DAY)
        .disabled("cred_a", NOW - 8 * DAY), [KEYS], ["delete retention cred_a"],
        id="deletes a disabled key once the retention has passed"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - 8 * DAY).expired("cred_a")
        .key("cred_b", added=NOW - 10 * DAY), [KEYS], ["delete retention cred_a"],
        id="deletes an expired key once the retention has passed since its expiry"),
    pytest.param(
        Given().key("cred_a", added=NOW - 60 * DAY).key("cred_b", added=NOW - 10 * DAY)
        .disabled("cred_a", NOW - 6 * DAY), [KEYS], [],
        id="keeps a disabled key before the retention has passed"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - 6 * DAY).expired("cred_a")
        .key("cred_b", added=NOW - 10 * DAY), [KEYS], [],
        id="keeps an expired key before the retention has passed"),
    pytest.param(
        Given().key("cred_a", added=NOW - 10 * DAY), [policy(alg="PS256")],
        ["start policy-changed private_key_jwt"],
        id="rotates when the key's algorithm is not the policy's"),
    pytest.param(
        Given().key("cred_a", added=NOW - 10 * DAY), [policy(size=3072)],
        ["start policy-changed private_key_jwt"],
        id="rotates when the key's size is not the policy's"),
    pytest.param(
        Given(), [SECRETS], ["start provision client_secret"],
        id="provisions a client secret when the application has none"),
    pytest.param(
        Given().secret(1, NOW - 91 * DAY), [SECRETS], ["start age client_secret"],
        id="rotates a client secret older than the policy's age"),
    pytest.param(
        Given().secret(1, NOW - 89 * DAY), [SECRETS], [],
        id="keeps a client secret younger than the policy's age"),
    pytest.param(
        Given().key("cred_a", added=NOW - 89 * DAY, expires=NOW + 30 * DAY), [KEYS], [],
        id="does nothing when the key is young, far from expiry and as the policy wants"),
    pytest.param(
        Given().key("cred_j", added=NOW - 91 * DAY, usage=JAR), [KEYS, SECRETS],
        ["start provision private_key_jwt", "start provision client_secret"],
        id="plans each usage on its own: a stale jar key is no concern of these policies"),
]


@pytest.mark.parametrize(("given", "policies", "expected"), CHAIN)
def test_the_chain_of_checks(given: Given, policies: list[PlanPolicy],
                             expected: list[str]) -> None:
    the_plan = plan(policies, [given.state()], NOW)
    assert lines(the_plan.actions) == expected
    assert the_plan.deferred == ()
    assert the_plan.problems == ()


def test_an_unregistered_application_is_not_planned() -> None:
    assert plan([KEYS], [AppState(app="ghost")], NOW) == Plan(actions=())


@pytest.mark.parametrize(("given", "policies", "urgent"), [
    pytest.param(Given(), [KEYS], True, id="provisioning is urgent"),
    pytest.param(Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - DAY)
                 .expired("cred_a"), [KEYS], True, id="replacing an expired key is urgent"),
    pytest.param(Given().key("cred_a", added=NOW - 20 * DAY, expires=NOW + DAY), [KEYS], True,
                 id="an expiring key with no window to wait for is urgent"),
    pytest.param(Given().key("cred_a", added=NOW - 91 * DAY), [KEYS], False,
                 id="an age rotation is routine"),
    pytest.param(Given().key("cred_a", added=NOW - DAY), [policy(size=3072)], False,
                 id="a policy change is routine"),
])
def test_urgency_of_a_start(given: Given, policies: list[PlanPolicy], urgent: bool) -> None:
    starts = [a for a in plan(policies, [given.state()], NOW).actions if a.kind is Kind.START]
    assert len(starts) == 1
    assert starts[0].urgent is urgent


def test_an_action_names_its_policy_and_explains_itself() -> None:
    (action,) = plan([KEYS], [Given().key("cred_a", added=NOW - 91 * DAY).state()], NOW).actions
    assert (action.app, action.policy, action.usage) == (APP, "keys", PKJWT)
    assert action.message == "cred_a is 91d old (rotate every 90d)"


# --- maintenance windows -------------------------------------------------------------------------

# NOW is Sunday 22 November 2026, 12:00 UTC; this window next opens Monday 02:00 UTC.
NIGHTLY = CronWindow("0 2 * * *", timedelta(hours=4), "UTC")
OPENS = datetime(2026, 11, 23, 2, tzinfo=UTC)
CLOSES = OPENS + 4 * HOUR
WINDOWED = policy(window=NIGHTLY)
STALE = Given().key("cred_a", added=NOW - 91 * DAY)


def test_a_routine_rotation_outside_the_window_is_deferred_to_its_slot_in_the_next_one() -> None:
    the_plan = plan([WINDOWED], [STALE.state()], NOW)
    assert the_plan.actions == ()
    (deferred,) = the_plan.deferred
    assert said(deferred) == "start age private_key_jwt"
    assert deferred.not_before == slot(OPENS, CLOSES, APP, "keys")
    assert OPENS <= deferred.not_before < OPENS + 2 * HOUR  # the first half of the window
    assert not deferred.urgent


def test_inside_the_window_a_routine_rotation_waits_for_its_slot_then_starts() -> None:
    at_slot = slot(OPENS, CLOSES, APP, "keys")
    assert at_slot > OPENS  # this app's slot is not the opening itself
    just_opened = plan([WINDOWED], [STALE.state()], OPENS)
    assert just_opened.actions == ()
    assert [d.not_before for d in just_opened.deferred] == [at_slot]

    started = plan([WINDOWED], [STALE.state()], at_slot)
    assert lines(started.actions) == ["start age private_key_jwt"]
    assert started.deferred == ()
    assert plan([WINDOWED], [STALE.state()], CLOSES - MINUTE).actions == started.actions


def test_provisioning_never_waits_for_a_window() -> None:
    (action,) = plan([WINDOWED], [Given().state()], NOW).actions
    assert said(action) == "start provision private_key_jwt"
    assert action.urgent and action.not_before is None


def test_an_expiring_key_that_would_expire_before_the_next_window_plus_the_overlap_rotates_now(
) -> None:
    given = Given().key("cred_a", added=NOW - 30 * DAY, expires=OPENS + 30 * MINUTE)
    the_plan = plan([WINDOWED], [given.state()], NOW)
    (action,) = the_plan.actions
    assert said(action) == "start expiring private_key_jwt"
    assert action.urgent and action.not_before is None
    assert the_plan.deferred == ()


def test_an_expiring_key_with_time_to_spare_waits_for_the_window() -> None:
    given = Given().key("cred_a", added=NOW - 30 * DAY, expires=NOW + 5 * DAY)
    the_plan = plan([WINDOWED], [given.state()], NOW)
    assert the_plan.actions == ()
    (deferred,) = the_plan.deferred
    assert said(deferred) == "start expiring private_key_jwt"
    assert deferred.not_before == slot(OPENS, CLOSES, APP, "keys")


# An application whose slot lies late in the first half of the window (found, not guessed).
LATE_APP = next(a for a in (f"late-{n}" for n in itertools.count())
                if fraction(a, "keys") > 0.75)


def test_an_expiring_key_rotates_now_when_its_own_slot_plus_the_overlap_would_pass_the_expiry(
) -> None:
    """The window opens early enough, but this application's jittered slot does not: waiting
    for it would let the key expire before the rotation even starts."""
    late_slot = slot(OPENS, CLOSES, LATE_APP, "keys")
    expires = OPENS + 90 * MINUTE  # after the opening + overlap (1 h), before the slot (> 1.5 h)
    assert OPENS + HOUR < expires < late_slot
    given = Given(LATE_APP).key("cred_a", added=NOW - 30 * DAY, expires=expires)
    the_plan = plan([WINDOWED], [given.state()], NOW)
    (action,) = the_plan.actions
    assert said(action) == "start expiring private_key_jwt"
    assert action.urgent
    assert the_plan.deferred == ()


BERLIN_3H = timedelta(hours=3)

DST = [
    pytest.param("30 2 * * *", datetime(2027, 3, 27, 12, tzinfo=UTC),
                 datetime(2027, 3, 28, 1, 0, tzinfo=UTC),
                 id="30 2 * * * on the spring-forward night opens when the clocks jump, 01:00 UTC"),
    pytest.param("30 2 * * *", datetime(2027, 3, 28, 12, tzinfo=UTC),
                 datetime(2027, 3, 29, 0, 30, tzinfo=UTC),
                 id="30 2 * * * the night after spring-forward opens at 02:30 CEST, 00:30 UTC"),
    pytest.param("30 2 * * *", datetime(2027, 10, 30, 12, tzinfo=UTC),
                 datetime(2027, 10, 31, 0, 30, tzinfo=UTC),
                 id="30 2 * * * on the autumn night opens once, at the first 02:30, 00:30 UTC"),
    pytest.param("30 2 * * *", datetime(2027, 10, 31, 12, tzinfo=UTC),
                 datetime(2027, 11, 1, 1, 30, tzinfo=UTC),
                 id="30 2 * * * the night after fall-back opens at 02:30 CET, 01:30 UTC"),
    pytest.param("0 2 * * 1-5", datetime(2027, 3, 25, 12, tzinfo=UTC),
                 datetime(2027, 3, 26, 1, 0, tzinfo=UTC),
                 id="0 2 * * 1-5 on the Friday before spring-forward opens at 01:00 UTC (CET)"),
    pytest.param("0 2 * * 1-5", datetime(2027, 3, 27, 12, tzinfo=UTC),
                 datetime(2027, 3, 29, 0, 0, tzinfo=UTC),
                 id="0 2 * * 1-5 skips the weekend and opens on Monday at 00:00 UTC (CEST)"),
    pytest.param("0 2 * * 1-5", datetime(2027, 10, 28, 12, tzinfo=UTC),
                 datetime(2027, 10, 29, 0, 0, tzinfo=UTC),
                 id="0 2 * * 1-5 on the Friday before fall-back opens at 00:00 UTC (CEST)"),
    pytest.param("0 2 * * 1-5", datetime(2027, 10, 30, 12, tzinfo=UTC),
                 datetime(2027, 11, 1, 1, 0, tzinfo=UTC),
                 id="0 2 * * 1-5 skips the weekend and opens on Monday at 01:00 UTC (CET)"),
]


@pytest.mark.parametrize(("cron", "now", "opening"), DST)
def test_a_deferred_start_across_a_daylight_saving_change(cron: str, now: datetime,
                                                          opening: datetime) -> None:
    berlin = policy("berlin", window=CronWindow(cron, BERLIN_3H, "Europe/Berlin"))
    given = Given().key("cred_a", added=now - 91 * DAY)
    the_plan = plan([berlin], [given.state()], now)
    assert the_plan.actions == ()
    (deferred,) = the_plan.deferred
    # duration is elapsed time: the window closes 3 h after it opened, whatever the clocks do
    assert deferred.not_before == slot(opening, opening + BERLIN_3H, APP, "berlin")
    assert opening <= deferred.not_before < opening + BERLIN_3H / 2


# --- spread and cap ------------------------------------------------------------------------------


def test_fifty_apps_due_at_once_are_spread_over_the_first_half_of_the_window() -> None:
    fleet = [Given(f"app-{n:02d}").key(f"cred_{n:02d}", added=NOW - 91 * DAY).state()
             for n in range(50)]
    first = plan([WINDOWED], fleet, NOW)
    assert first.actions == ()
    slots = {a.app: a.not_before for a in first.deferred}
    assert len(slots) == 50
    assert len(set(slots.values())) == 50  # distinct
    assert all(s is not None and OPENS <= s < OPENS + 2 * HOUR for s in slots.values())
    spread = sorted(s for s in slots.values() if s is not None)
    assert spread[0] < OPENS + 30 * MINUTE and spread[-1] > OPENS + 90 * MINUTE
    assert slots == {app: slot(OPENS, CLOSES, app, "keys") for app in slots}
    # same input, same output, in whatever order the fleet comes
    again = plan([WINDOWED], list(reversed(fleet)), NOW)
    assert {a.app: a.not_before for a in again.deferred} == slots
    # once the window's first half has passed, every one of them is due
    later = plan([WINDOWED], fleet, OPENS + 2 * HOUR)
    assert len(later.actions) == 50 and later.deferred == ()
    assert again.capped == ()  # waiting for their slots in the window is not the cap's doing


def test_the_per_tick_cap_starts_the_most_urgent_first_and_defers_the_rest() -> None:
    capped = policy(max_per_tick=5)
    routine = [Given(f"age-{n:02d}").key(f"cred_a{n}", added=NOW - 91 * DAY).state()
               for n in range(9)]
    expiring = [Given(f"exp-{n:02d}").key(f"cred_e{n}", added=NOW - 30 * DAY,
                                          expires=NOW + DAY).state() for n in range(3)]
    the_plan = plan([capped], routine + expiring, NOW)
    assert len(the_plan.actions) == 5
    assert len(the_plan.deferred) == 7
    assert the_plan.capped == the_plan.deferred  # due now: the daemon ticks again at once for them
    assert [a.app for a in the_plan.actions[:3]] == ["exp-00", "exp-01", "exp-02"]
    assert all(a.urgent and a.reason is Reason.EXPIRING for a in the_plan.actions[:3])
    assert {a.app for a in the_plan.actions[3:]} == {"age-00", "age-01"}
    assert {a.app for a in the_plan.deferred} == {f"age-{n:02d}" for n in range(2, 9)}
    assert all(a.reason is Reason.AGE for a in the_plan.deferred)


# --- conflicts -----------------------------------------------------------------------------------


def test_two_policies_selecting_one_app_for_one_usage_is_a_problem_and_neither_applies() -> None:
    by_name = policy("keys-by-name", apps=("pay*",))
    by_label = policy("keys-by-label", labels={"env": "prod"})
    pay = Given("pay", {"env": "prod"}).key("cred_a", added=NOW - 91 * DAY).state()
    shop = Given("shop", {"env": "dev"}).key("cred_s", added=NOW - 91 * DAY).state()
    the_plan = plan([by_name, by_label, SECRETS], [pay, shop], NOW)
    (problem,) = the_plan.problems
    assert "'pay'" in problem and "'keys-by-name'" in problem and "'keys-by-label'" in problem
    assert "private_key_jwt" in problem
    assert [(a.app, said(a)) for a in the_plan.actions] == [
        ("pay", "start provision client_secret"),  # the other usage is unaffected
        ("shop", "start provision client_secret"),
    ]
    assert the_plan.deferred == ()
    # an application selected by one of the two policies only is planned under it
    pay_only = Given("payroll").key("cred_p", added=NOW - 91 * DAY).state()
    assert lines(plan([by_name, by_label], [pay_only], NOW).actions) == [
        "start age private_key_jwt"]


# --- next_due ------------------------------------------------------------------------------------


NEXT_DUE = [
    pytest.param(
        Given().key("cred_a", added=NOW - 10 * DAY, expires=NOW + 2 * DAY)
        .key("cred_b", added=NOW - DAY), [KEYS], NOW + 2 * DAY,
        id="the expiry of a live key"),
    pytest.param(
        Given().key("cred_a", added=NOW - DAY, expires=NOW + 30 * DAY), [KEYS],
        NOW + 16 * DAY,
        id="the instant the newest key enters beforeExpiry"),
    pytest.param(
        Given().key("cred_a", added=NOW - 80 * DAY), [KEYS], NOW + 10 * DAY,
        id="the instant the newest key reaches the policy's age"),
    pytest.param(
        Given().key("cred_a", added=NOW - 60 * DAY).key("cred_b", added=NOW - DAY)
        .disabled("cred_a", NOW - 2 * DAY), [KEYS], NOW + 5 * DAY,
        id="the end of a disabled key's retention"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - 3 * DAY).expired("cred_a")
        .key("cred_b", added=NOW - DAY), [KEYS], NOW + 4 * DAY,
        id="the end of an expired key's retention"),
    pytest.param(
        Given().key("cred_a", added=NOW - 91 * DAY).rotation("rot_1", NOW - MINUTE, old="cred_a")
        .failed("rot_1", NOW, NOW + 40 * timedelta(seconds=1)), [KEYS],
        NOW + timedelta(seconds=40),
        id="the retry time of a failed rotation"),
    pytest.param(
        Given().key("cred_a", added=NOW - 91 * DAY)
        .rotation("rot_1", NOW - 20 * MINUTE, old="cred_a", new="cred_n")
        .key("cred_n", added=NOW - 20 * MINUTE).step("rot_1", "registered", NOW - 20 * MINUTE)
        .step("rot_1", "tested", NOW - 10 * MINUTE), [KEYS], NOW + 50 * MINUTE,
        id="the end of a running rotation's overlap"),
    pytest.param(
        Given().secret(1, NOW - 20 * DAY), [SECRETS], NOW + 70 * DAY,
        id="the instant the client secret reaches the policy's age"),
    pytest.param(
        Given().key("cred_a", added=NOW - 10 * DAY), [], None,
        id="None for a key that never expires under no policy"),
    pytest.param(
        Given().key("cred_a", added=NOW - 200 * DAY)
        .rotation("rot_1", NOW - 100 * DAY, old="cred_a").parked("rot_1", NOW - 99 * DAY),
        [KEYS], None,
        id="None while a parked rotation waits for a human"),
    pytest.param(
        Given().key("cred_a", added=NOW - 100 * DAY, expires=NOW - DAY).expired("cred_a")
        .rotation("rot_1", NOW - 2 * DAY, old="cred_a").parked("rot_1", NOW - 10 * MINUTE),
        [KEYS], NOW + 50 * MINUTE,
        id="the retry of a parked rotation of an application without a usable credential"),
    pytest.param(
        Given(), [], None,
        id="None for an application with nothing at all"),
]


@pytest.mark.parametrize(("given", "policies", "expected"), NEXT_DUE)
def test_next_due_is_the_earliest_instant_a_check_could_fire(
        given: Given, policies: list[PlanPolicy], expected: datetime | None) -> None:
    assert next_due(given.state(), policies, NOW) == expected


def test_next_due_is_when_the_plan_changes() -> None:
    """Just before next_due the plan is empty; at it, the check fires."""
    state = Given().key("cred_a", added=NOW - 80 * DAY).state()
    due = next_due(state, [KEYS], NOW)
    assert due is not None
    assert plan([KEYS], [state], due - timedelta(seconds=1)).actions == ()
    assert lines(plan([KEYS], [state], due).actions) == ["start age private_key_jwt"]


# --- a parked rotation whose old credential is about to expire ---------------------------------


def test_retries_a_parked_rotation_rather_than_let_the_old_credential_expire() -> None:
    """A parked rotation waits for a human, until its old credential enters beforeExpiry:
    then the planner sends it back to work (retry) rather than let the app lose its key."""
    state = (Given().key("old", added=NOW - 100 * DAY, expires=NOW + 10 * DAY)
             .rotation("rot_p", NOW - 5 * DAY, old="old").parked("rot_p", NOW - 4 * DAY)
             .state())
    assert lines(plan([KEYS], [state], NOW).actions) == ["retry expiring rot_p"]


def test_leaves_a_parked_rotation_alone_while_its_old_credential_has_time() -> None:
    """Parked with the old credential far from expiry: nothing, and next_due wakes the app when
    the credential enters beforeExpiry."""
    state = (Given().key("old", added=NOW - 100 * DAY, expires=NOW + 60 * DAY)
             .rotation("rot_p", NOW - 5 * DAY, old="old").parked("rot_p", NOW - 4 * DAY)
             .state())
    assert lines(plan([KEYS], [state], NOW).actions) == []
    assert next_due(state, [KEYS], NOW) == NOW + 60 * DAY - KEYS.before_expiry


# --- an application without a usable credential -------------------------------------------------


def test_every_check_says_when_it_is_next_due() -> None:
    """next_due is read from the chain itself: each check carries its own due time."""
    from orchestrator.domain.planner import CHAIN as TABLE

    assert [c.name for c in TABLE] == ["stranded", "running", "no-usable", "expiring",
                                       "policy-changed", "age"]
    assert all(callable(c.due) for c in TABLE)


@pytest.mark.parametrize(("given", "alarmed"), [
    pytest.param(Given().key("cred_a", added=NOW - 10 * DAY, expires=NOW - HOUR), [PKJWT],
                 id="an application whose only key expired is alarmed, policy or not"),
    pytest.param(Given().key("cred_a", added=NOW - 10 * DAY).disabled("cred_a", NOW - HOUR),
                 [PKJWT], id="so is one whose only key was disabled"),
    pytest.param(Given().key("cred_a", added=NOW - 10 * DAY, expires=NOW - HOUR)
                 .rotation("rot_1", NOW - DAY, old="cred_a", new="cred_n")
                 .key("cred_n", added=NOW - DAY), [PKJWT],
                 id="a new key not delivered yet is not held: still alarmed"),
    pytest.param(Given().key("cred_a", added=NOW - 10 * DAY), [],
                 id="an application with a usable key is not"),
    pytest.param(Given(), [], id="nor one that never had a credential (it is provisioned)"),
])
def test_plan_lists_applications_without_a_usable_credential(given: Given,
                                                             alarmed: list[str]) -> None:
    alarms = plan([], [given.state()], NOW).alarms
    assert [(a.app, a.usage) for a in alarms] == [(APP, usage) for usage in alarmed]
