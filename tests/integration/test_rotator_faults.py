"""The rotator under a failing identity provider: in process, real keys, a virtual clock.

Every test wires the production pieces over an in-memory log (``Service``, ``FleetView``,
``Rotator``, ``Ticker``) with the real ``LocalProvider`` wrapped in ``FaultyProvider``, which
fails, times out or answers late on command. RSA keys are real (``PrimePairKeys``: fast, weak,
never leaving the test); the clock only moves when a test moves it, and nothing sleeps.

What is proven for private_key_jwt, jar, mtls and client_secret alike: a rotation completes and
the identity provider accepts the new credential and, after the overlap, refuses the old one; a
failed, timed-out or late provider call is retried after its backoff and never before; a late
success is found done (no second credential, no second key); the old credential is never disabled
before its successor passed the test (checked in the log's order, every time); an exhausted retry
budget parks the rotation with the old credential intact, and ``rotations retry`` resumes it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from events import catalog as ev
from events.codec import format_time
from events.state import AppState, Credential, RotationStatus, Status
from events.store import ReadFilter, Recorded
from orchestrator.adapters import crypto
from orchestrator.adapters.crypto import Cryptography, PrimePairKeys
from orchestrator.adapters.delivery import FileDelivery
from orchestrator.adapters.providers.faulty import FaultyProvider
from orchestrator.adapters.providers.local import LocalProvider
from orchestrator.app.rotator import StepOutcome
from orchestrator.app.secret_steps import next_secret_version
from orchestrator.app.service import CredentialSource, secret_item_id
from orchestrator.bootstrap import in_memory
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.planner import Kind, PlanPolicy, plan
from orchestrator.domain.rotation import Next, Params, Reason, Step, backoff

APP = "pay"
PKJWT, JAR, MTLS, SECRET = "private_key_jwt", "jar", "mtls", "client_secret"
KEY_USAGES = (PKJWT, JAR, MTLS)
START = datetime(2026, 11, 22, 12, tzinfo=UTC)
SECOND, MINUTE, HOUR, DAY = (timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1),
                             timedelta(days=1))
PARAMS = {
    PKJWT: Params(usage=PKJWT, algorithm="RS256", overlap=HOUR, lifetime=90 * DAY),
    JAR: Params(usage=JAR, algorithm="PS256", overlap=HOUR, lifetime=90 * DAY),
    MTLS: Params(usage=MTLS, algorithm=None, overlap=HOUR, lifetime=90 * DAY,
                 subject="CN={app}.clients.example"),
    SECRET: Params(usage=SECRET, algorithm=None, overlap=HOUR),
}
# the provider call behind each step, per usage
REGISTER = {PKJWT: "register", JAR: "register", MTLS: "register", SECRET: "set_secret"}
VERIFY = {PKJWT: "authenticate", JAR: "authenticate", MTLS: "authenticate",
          SECRET: "authenticate"}


@pytest.fixture(scope="module")
def key_source() -> PrimePairKeys:
    """One pool of primes for the module: real RSA keys in microseconds once it is warm."""
    return PrimePairKeys()


class World:
    """The production wiring over an in-memory log, with a clock that moves only when told."""

    def __init__(self, delivery: Path, key_source: PrimePairKeys) -> None:
        self.now = START
        self.crypto = Cryptography(key_source)
        self.policies: list[PlanPolicy] = []  # what the ticker plans with
        core = in_memory(self.clock, lambda: self.policies,
                         provider=lambda load, ks: FaultyProvider(LocalProvider(load, ks)),
                         delivery=FileDelivery(delivery), crypto=self.crypto, actor="cli:test")
        self.store, self.keystore, self.fleet = core.store, core.keystore, core.fleet
        self.service, self.rotator, self.ticker = core.service, core.rotator, core.ticker
        self.provider = core.provider.local
        assert isinstance(self.provider, FaultyProvider)
        self.idp = self.provider.inner

    def clock(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by

    def state(self, app: str = APP) -> AppState:
        return self.service.load(app)

    def records(self, **where: object) -> list[Recorded]:
        return list(self.store.read(ReadFilter(**where)))  # type: ignore[arg-type]

    def of_rotation(self, rid: str) -> list[Recorded]:
        return [r for r in self.records() if r.correlation_id == rid]

    def rotate(self, usage: str, reason: Reason = Reason.MANUAL,
               params: Params | None = None) -> tuple[str, StepOutcome]:
        rid = self.rotator.start(APP, usage, reason)
        assert rid is not None
        return rid, self.rotator.advance(APP, rid, params or PARAMS[usage])

    def finish(self, rid: str, params: Params) -> None:
        """Advance the rotation to its end, jumping over each wait (overlap)."""
        for _ in range(5):
            rotation = self.state().rotations[rid]
            if rotation.status is not RotationStatus.RUNNING:
                break
            out = self.rotator.advance(APP, rid, params)
            assert not out.failed, self.state().rotations[rid].last_error
            if out.last.step is Step.WAIT and out.last.not_before is not None:
                self.now = max(self.now, out.last.not_before)
        assert self.state().rotations[rid].status is RotationStatus.COMPLETED


@pytest.fixture
def world(tmp_path: Path, key_source: PrimePairKeys) -> World:
    w = World(tmp_path / "delivery", key_source)
    w.service.register_app(APP, {"env": "prod"})
    return w


def provisioned(world: World, usage: str) -> str:
    """The application's first credential of ``usage``, by a provisioning rotation, a day ago."""
    rid, out = world.rotate(usage, Reason.PROVISION)
    assert out.last.step is Step.COMPLETE and not out.failed
    world.advance(DAY)
    return rid


# --- the identity provider's point of view -------------------------------------------------------


Handle = Credential | int  # a key or certificate credential, or a client secret version


def new_of(world: World, rid: str) -> Handle:
    rotation = world.state().rotations[rid]
    if rotation.usage == SECRET:  # secret.rotated is recorded when the new one is delivered
        state = world.state()
        if not rotation.done("delivered"):
            return next_secret_version(state)
        assert state.secret is not None
        return state.secret.version
    return world.state().credentials[rotation.new_credential_id]


def old_of(world: World, rid: str) -> Handle:
    rotation = world.state().rotations[rid]
    if rotation.usage == SECRET:
        new = new_of(world, rid)
        assert isinstance(new, int)
        return new - 1
    assert rotation.old_credential_id is not None
    return world.state().credentials[rotation.old_credential_id]


def authenticates(world: World, usage: str, handle: Handle) -> bool:
    """Whether the identity provider lets the application in with this credential now: a client
    assertion signed with the key, the client certificate, or the client secret."""
    at = world.now
    try:
        if isinstance(handle, int):
            secret = world.keystore.get(secret_item_id(APP, handle))
            assert secret is not None
            return world.idp.verify_secret(APP, secret.decode(), at) == handle
        if usage == MTLS:
            return world.idp.verify_certificate(APP, handle.certificate_pem or "", at) == handle.id
        private = world.keystore.get(handle.id)
        assert private is not None
        token = crypto.sign_client_assertion(private, alg=handle.alg or "RS256", kid=handle.kid,
                                             client_id=APP, audience=world.idp.audience, now=at)
        return world.idp.verify_assertion(APP, token, at) == handle.id
    except ProviderError:
        return False


# --- invariants read from the log ----------------------------------------------------------------


def assert_old_disabled_only_after_new_tested(world: World) -> int:
    """Every credential.disabled a rotation records comes after that rotation's "tested" step
    and disables that rotation's old credential (or, when it is parked, its own untested new
    one). Returns how many old credentials were disabled."""
    started: dict[str, dict[str, object]] = {}
    tested: set[str] = set()
    disabled = 0
    for rec in world.records():
        data = rec.payload
        if rec.type == ev.RotationStarted.type_name:
            started[data["rotation_id"]] = data
        elif rec.type == ev.RotationStepRecorded.type_name and data["step"] == "tested":
            tested.add(data["rotation_id"])
        elif rec.type == ev.CredentialDisabled.type_name:
            rid = rec.correlation_id
            assert rid in started, f"{data['credential_id']} disabled outside a rotation"
            if data["credential_id"] == started[rid]["new_credential_id"]:
                assert rid not in tested, f"{rid} disabled its tested new credential"
                continue
            assert rid in tested, (f"{data['credential_id']} disabled at position "
                                   f"{rec.position} before rotation {rid} was tested")
            assert data["credential_id"] == started[rid]["old_credential_id"]
            disabled += 1
    return disabled


def assert_one_new_credential(world: World, rid: str) -> None:
    types = Counter(r.type for r in world.of_rotation(rid))
    made = ev.SecretRotated.type_name if world.state().rotations[rid].usage == SECRET \
        else ev.CredentialAdded.type_name
    assert types[made] == 1, types
    steps = Counter(r.payload["step"] for r in world.of_rotation(rid)
                    if r.type == ev.RotationStepRecorded.type_name)
    assert set(steps.values()) == {1}, steps  # every step recorded exactly once


def assert_no_orphans(world: World, apps: list[str]) -> None:
    """Every keystore item belongs to a live credential (its key or its certificate), to the
    current or previous client secret, or to the identity provider's own records; and every
    live generated key is there."""
    allowed: set[str] = set()
    for app in apps:
        state = world.state(app)
        for cred in state.credentials.values():
            if cred.live:
                allowed |= {cred.id, f"{cred.id}/certificate"}
                if cred.generated:
                    assert world.keystore.get(cred.id) is not None, cred.id
        if state.secret is not None:
            versions = (state.secret.version, state.secret.version - 1)
            allowed |= {secret_item_id(app, v) for v in versions}
            allowed |= {f"idp/{app}/secret/v{v}" for v in versions} | {f"idp/{app}/secret"}
    stray = [item for item in world.keystore.ids() if item not in allowed]
    assert stray == []


# --- a full rotation -----------------------------------------------------------------------------


@pytest.mark.parametrize("usage", [*KEY_USAGES, SECRET])
def test_a_full_rotation_switches_the_provider_to_the_new_credential(world: World,
                                                                     usage: str) -> None:
    provisioned(world, usage)
    params = PARAMS[usage]
    rid, out = world.rotate(usage)
    new, old = new_of(world, rid), old_of(world, rid)
    assert authenticates(world, usage, new)
    assert authenticates(world, usage, old)  # both work during the overlap: zero downtime
    rotation = world.state().rotations[rid]
    if usage == SECRET:
        assert out.last.step is Step.COMPLETE
        previous_until = world.state().secret.previous_valid_until  # type: ignore[union-attr]
        assert previous_until == world.now + params.overlap
    else:
        assert isinstance(old, Credential)
        assert rotation.tested_at == world.now
        assert out.last == Next(Step.WAIT, old.id, not_before=world.now + params.overlap)
    world.advance(params.overlap - SECOND)
    assert world.rotator.advance(APP, rid, params).steps_done == 0
    assert authenticates(world, usage, old)  # until the very end of the overlap
    world.advance(SECOND)
    world.finish(rid, params)
    assert authenticates(world, usage, new)
    assert not authenticates(world, usage, old)
    assert assert_old_disabled_only_after_new_tested(world) == int(usage != SECRET)
    assert_one_new_credential(world, rid)
    assert_no_orphans(world, [APP])


@pytest.mark.parametrize("usage", KEY_USAGES)
def test_a_rotation_at_capacity_frees_the_disabled_slot_and_forgets_its_key(
        world: World, usage: str) -> None:
    provisioned(world, usage)
    params = PARAMS[usage]
    first, _ = world.rotate(usage)
    world.finish(first, params)
    spent = old_of(world, first)
    assert isinstance(spent, Credential) and len(world.state().live(usage)) == 2
    world.advance(DAY)
    world.provider.fail_next("remove")  # freeing the slot fails once, then is retried
    rid, out = world.rotate(usage)
    assert out.failed and out.last == Next(Step.FREE_SLOT, spent.id)
    world.now = world.state().rotations[rid].next_attempt_at  # type: ignore[assignment]
    world.finish(rid, params)
    state = world.state()
    assert state.credentials[spent.id].status is Status.DELETED
    assert state.rotations[rid].old_credential_id == world.state().rotations[first].new_credential_id
    assert world.keystore.get(spent.id) is None
    assert world.keystore.get(f"{spent.id}/certificate") is None
    assert authenticates(world, usage, new_of(world, rid))
    assert not authenticates(world, usage, old_of(world, rid))
    assert assert_old_disabled_only_after_new_tested(world) == 2
    assert_no_orphans(world, [APP])


# --- a failing provider --------------------------------------------------------------------------


def _fault_cases() -> list[object]:
    cases: list[object] = []
    for usage in (*KEY_USAGES, SECRET):
        steps = [(REGISTER[usage], Step.REGISTER), (VERIFY[usage], Step.TEST)]
        if usage != SECRET:
            steps.insert(1, ("activate", Step.ACTIVATE))
        for method, step in steps:
            for kind, what in (("fail", "failing"), ("timeout", "timing out")):
                cases.append(pytest.param(
                    usage, method, step, kind,
                    id=f"{usage}: the provider {what} at {method} is retried after the backoff, "
                       "never before, and succeeds once it heals"))
    return cases


@pytest.mark.parametrize(("usage", "method", "step", "kind"), _fault_cases())
def test_a_failing_provider_call_is_retried_after_its_backoff(
        world: World, usage: str, method: str, step: Step, kind: str) -> None:
    provisioned(world, usage)
    params = PARAMS[usage]
    inject: Callable[[str, int], None] = getattr(world.provider, f"{kind}_next")
    inject(method, 5)

    rid, out = world.rotate(usage)
    assert out.failed and out.last.step is step
    first = world.state().rotations[rid]
    assert first.attempts == 1
    assert first.next_attempt_at == world.now + backoff(rid, 1, params)
    failed = world.records()[-1]
    assert failed.type == ev.RotationFailed.type_name
    assert (failed.payload["step"], failed.payload["attempt"]) == (step.value, 1)
    assert failed.payload["next_attempt_at"] is not None
    assert ("timed out" if kind == "timeout" else "failed (injected)") in (first.last_error or "")
    old_handle = old_of(world, rid) if usage != SECRET else 1
    assert authenticates(world, usage, old_handle)

    # nothing happens before the retry time: no event, no provider call
    world.now = first.next_attempt_at - SECOND
    events, calls = len(world.records()), len(world.provider.calls)
    out = world.rotator.advance(APP, rid, params)
    assert out == StepOutcome(rid, Next(Step.WAIT, not_before=first.next_attempt_at), 0)
    assert (len(world.records()), len(world.provider.calls)) == (events, calls)

    # at the retry time the step is tried again; the provider still fails: a longer backoff
    world.now = first.next_attempt_at
    out = world.rotator.advance(APP, rid, params)
    assert out.failed and out.last.step is step
    second = world.state().rotations[rid]
    assert second.attempts == 2
    assert second.next_attempt_at == world.now + backoff(rid, 2, params)

    # healed: the retry succeeds and the rotation runs to its end
    world.provider.heal()
    world.now = second.next_attempt_at
    out = world.rotator.advance(APP, rid, params)
    assert not out.failed
    world.finish(rid, params)
    world.advance(params.overlap)  # a previous client secret's grace has ended too
    assert authenticates(world, usage, new_of(world, rid))
    assert not authenticates(world, usage, old_of(world, rid))
    assert assert_old_disabled_only_after_new_tested(world) == int(usage != SECRET)
    assert_one_new_credential(world, rid)
    assert_no_orphans(world, [APP])


LATE = [
    pytest.param(PKJWT, "register", Step.REGISTER,
                 id="private_key_jwt: a registration that took effect but timed out is found done"),
    pytest.param(PKJWT, "activate", Step.ACTIVATE,
                 id="private_key_jwt: an activation that took effect but timed out is found done"),
    pytest.param(PKJWT, "authenticate", Step.TEST,
                 id="private_key_jwt: a test that passed but answered late is simply repeated"),
    pytest.param(JAR, "register", Step.REGISTER,
                 id="jar: a registration that took effect but timed out is found done"),
    pytest.param(MTLS, "register", Step.REGISTER,
                 id="mtls: a registration that took effect but timed out is found done"),
    pytest.param(MTLS, "activate", Step.ACTIVATE,
                 id="mtls: an activation that took effect but timed out is found done"),
    pytest.param(SECRET, "set_secret", Step.REGISTER,
                 id="client_secret: a secret set but reported timed out is found done"),
    pytest.param(SECRET, "authenticate", Step.TEST,
                 id="client_secret: a test that passed but answered late is simply repeated"),
]


@pytest.mark.parametrize(("usage", "method", "step"), LATE)
def test_a_late_success_is_found_done_on_the_repeat(world: World, usage: str, method: str,
                                                    step: Step) -> None:
    provisioned(world, usage)
    params = PARAMS[usage]
    before, calls = set(world.keystore.ids()), len(world.provider.calls)
    world.provider.late_next(method)
    rid, out = world.rotate(usage)
    assert out.failed and out.last.step is step
    assert "answered too late" in (world.state().rotations[rid].last_error or "")

    world.now = world.state().rotations[rid].next_attempt_at  # type: ignore[assignment]
    assert not world.rotator.advance(APP, rid, params).failed
    world.finish(rid, params)
    world.advance(params.overlap)
    # the late call and its repeat (and for a secret, the re-registration at delivery that
    # restarts the previous secret's grace)
    assert world.provider.calls[calls:].count(method) == (3 if method == "set_secret" else 2)
    assert_one_new_credential(world, rid)
    new = new_of(world, rid)
    if isinstance(new, int):
        expected = {secret_item_id(APP, new), f"idp/{APP}/secret/v{new}"}
    else:
        expected = {new.id} | ({f"{new.id}/certificate"} if usage == MTLS else set())
        assert len(world.state().live(usage)) == 2  # the new one and the disabled old one
    assert set(world.keystore.ids()) - before == expected  # no second key, no second secret
    assert authenticates(world, usage, new)
    assert not authenticates(world, usage, old_of(world, rid))
    assert assert_old_disabled_only_after_new_tested(world) == int(usage != SECRET)


# --- an exhausted retry budget, and `rotations retry` --------------------------------------------


def policy_for(usage: str) -> PlanPolicy:
    """A policy that wants this usage rotated hourly: anything not in flight is due."""
    return PlanPolicy(name=f"{usage}-policy", params=PARAMS[usage], every=HOUR,
                      before_expiry=DAY, retention=7 * DAY)


@pytest.mark.parametrize("usage", [*KEY_USAGES, SECRET])
def test_an_exhausted_budget_parks_the_rotation_and_retry_resumes_it(world: World,
                                                                     usage: str) -> None:
    provisioned(world, usage)
    params = dataclasses.replace(PARAMS[usage], attempts=3)
    world.provider.fail_next(REGISTER[usage], 10)
    rid, out = world.rotate(usage, params=params)
    for _ in range(2):
        assert out.failed
        world.now = world.state().rotations[rid].next_attempt_at  # type: ignore[assignment]
        out = world.rotator.advance(APP, rid, params)
    assert out.failed

    types = [r.type for r in world.of_rotation(rid)]
    assert types.count(ev.RotationFailed.type_name) == 3
    assert types[-2:] == [ev.RotationFailed.type_name, ev.RotationParked.type_name]
    parked = world.state().rotations[rid]
    assert (parked.status, parked.attempts, parked.next_attempt_at) == (
        RotationStatus.PARKED, 3, None)
    # the old credential is intact: still active, and the provider still lets the app in
    old = old_of(world, rid) if usage != SECRET else 1
    if isinstance(old, Credential):
        assert world.state().credentials[old.id].status is Status.ACTIVE
        assert world.state().usable(usage, world.now) == [world.state().credentials[old.id]]
    assert authenticates(world, usage, old)
    # nothing more happens by itself, and the planner plans nothing for it, however overdue
    events = len(world.records())
    assert world.rotator.advance(APP, rid, params).steps_done == 0
    world.advance(3 * HOUR)
    assert plan([policy_for(usage)], [world.state()], world.now).actions == ()
    assert world.rotator.start(APP, usage, Reason.MANUAL) is None  # never a second rotation
    assert len(world.records()) == events

    # a human retries it (orchestrator rotations retry), the provider has healed
    world.service.append_decided(
        APP, lambda s: ([ev.RotationRetried(rotation_id=rid)], world.now),
        correlation_id=rid, actor="cli:ops")
    retried = world.state().rotations[rid]
    assert (retried.status, retried.attempts, retried.next_attempt_at) == (
        RotationStatus.RUNNING, 0, None)
    (action,) = plan([policy_for(usage)], [world.state()], world.now).actions
    assert (action.kind, action.rotation_id) == (Kind.RESUME, rid)
    world.provider.heal()
    retried_at = world.now
    out = world.rotator.advance(APP, rid, params)
    assert not out.failed
    assert authenticates(world, usage, old)  # still: the app may not have the new one yet
    if usage == SECRET:  # the previous secret stays valid until the new one is delivered
        (registered,) = [r for r in world.of_rotation(rid)
                         if r.type == ev.RotationStepRecorded.type_name
                         and r.payload["step"] == "registered"]
        assert registered.payload["detail"] == (
            f"client secret v{new_of(world, rid)}; previous secret valid until it is delivered")
        world.now = retried_at + params.overlap - SECOND
        assert authenticates(world, usage, old)
    assert authenticates(world, usage, new_of(world, rid))
    world.finish(rid, params)
    world.advance(params.overlap)
    assert authenticates(world, usage, new_of(world, rid))
    assert not authenticates(world, usage, old)
    assert assert_old_disabled_only_after_new_tested(world) == int(usage != SECRET)
    assert_one_new_credential(world, rid)


# --- the ticker, end to end ----------------------------------------------------------------------


def test_the_ticker_provisions_rotates_by_age_and_deletes_after_retention(
        world: World, key_source: PrimePairKeys) -> None:
    keys = PlanPolicy(name="keys", params=PARAMS[PKJWT], every=30 * DAY, before_expiry=7 * DAY,
                      retention=7 * DAY)
    secrets = PlanPolicy(name="secrets", params=PARAMS[SECRET], every=30 * DAY,
                         before_expiry=7 * DAY, retention=7 * DAY)
    policies = [keys, secrets]
    world.policies[:] = policies
    ticker = world.ticker
    apps = [APP, "shop", "legacy"]
    world.service.register_app("shop", {})
    world.service.register_app("legacy", {})
    uploaded = crypto.generate_rsa(2048, key_source).material.public_pem
    assert uploaded is not None
    world.service.add_credential("legacy", PKJWT, CredentialSource(pem=uploaded.encode()),
                                 activate=True)
    t0 = world.now

    def reasons(since: int) -> Counter[str]:
        return Counter(r.payload["reason"] for r in world.records(after=since)
                       if r.type == ev.RotationStarted.type_name)

    # first tick: provision what each application lacks (legacy has its key already)
    report = ticker.tick()
    assert report.done == Counter(start=5) and report.failed == 0
    assert reasons(0) == Counter(provision=5)
    for app in apps:
        state = world.state(app)
        assert len(state.usable(PKJWT, world.now)) == 1 and state.secret is not None
        assert all(r.status is RotationStatus.COMPLETED for r in state.rotations.values())

    # next tick: nothing to do
    world.advance(HOUR)
    mark = len(world.records())
    report = ticker.tick()
    assert (report.planned, report.deferred, report.failed) == (0, 0, 0)
    assert len(world.records()) == mark

    # past `every`: age rotations start; secrets complete, keys wait out their overlap
    world.now = t0 + 30 * DAY + HOUR
    report = ticker.tick()
    assert report.done == Counter(start=6)
    assert reasons(mark) == Counter(age=6)
    running = {app: world.state(app).running_rotation(PKJWT) for app in apps}
    assert all(r is not None and r.done("tested") for r in running.values())
    olds = {app: r.old_credential_id for app, r in running.items() if r is not None}
    mark = len(world.records())
    world.advance(30 * MINUTE)
    assert ticker.tick().planned == 0  # still in the overlap
    world.advance(30 * MINUTE)
    report = ticker.tick()
    assert report.done == Counter(resume=3)
    for app, old in olds.items():
        state = world.state(app)
        assert state.credentials[old or ""].status is Status.DISABLED
        assert state.running_rotation(PKJWT) is None
    disabled_at = world.now

    # retention: the disabled keys are deleted, and their private keys forgotten
    world.now = disabled_at + 7 * DAY - MINUTE
    assert ticker.tick().planned == 0
    world.now = disabled_at + 7 * DAY
    report = ticker.tick()
    assert report.done == Counter(delete=3)
    deleted = [r for r in world.records(types=(ev.CredentialDeleted.type_name,))]
    assert sorted(r.payload["credential_id"] for r in deleted) == sorted(
        o or "" for o in olds.values())
    assert all(r.actor == "scheduler" for r in deleted)
    assert not any(world.keystore.get(o or "") for o in olds.values())
    assert_no_orphans(world, apps)

    # a second cycle: the client secret v1 is dropped from the keystore and the provider
    world.now = t0 + 60 * DAY + 2 * HOUR
    assert ticker.tick().done == Counter(start=6)
    world.advance(HOUR)
    assert ticker.tick().done == Counter(resume=3)
    for app in apps:
        assert world.state(app).secret.version == 3  # type: ignore[union-attr]
        held = [i for i in world.keystore.ids()
                if i.startswith((f"idp/{app}/secret/v", f"secret/{app}/v"))]
        assert sorted(held) == [f"idp/{app}/secret/v2", f"idp/{app}/secret/v3",
                                secret_item_id(app, 2), secret_item_id(app, 3)]
    assert_no_orphans(world, apps)
    assert assert_old_disabled_only_after_new_tested(world) == 6


def test_the_previous_secret_stays_valid_until_the_new_one_is_delivered_and_an_overlap_after(
        world: World) -> None:
    """Registering the new secret keeps the previous one (the one the app holds) valid until
    the new one is delivered, however long that takes: a failed test retried after the daemon
    was down for days never locks the app out (a grace limited to the overlap and the retry
    budget did, and nothing retried a parked rotation: tests/explore found it). From the
    delivery, the previous secret stays valid for the overlap."""
    provisioned(world, SECRET)
    rid = world.rotator.start(APP, SECRET, Reason.AGE)
    assert rid is not None
    world.provider.fail_next("authenticate")  # the test step fails: the rotation stops there
    out = world.rotator.advance(APP, rid, PARAMS[SECRET])
    assert out.failed and world.state().rotations[rid].done("registered")
    world.provider.heal()
    old = old_of(world, rid)
    world.advance(3 * DAY)  # the daemon was down for days
    assert authenticates(world, SECRET, old)
    world.finish(rid, PARAMS[SECRET])
    delivered_at = world.now
    assert authenticates(world, SECRET, old)  # the grace starts at delivery
    assert authenticates(world, SECRET, new_of(world, rid))
    world.now = delivered_at + PARAMS[SECRET].overlap - SECOND
    assert authenticates(world, SECRET, old)
    world.now = delivered_at + PARAMS[SECRET].overlap
    assert not authenticates(world, SECRET, old)
    detail = [r.payload["detail"] for r in world.of_rotation(rid)
              if r.type == ev.RotationStepRecorded.type_name and r.payload["step"] == "delivered"]
    assert detail == [f"client secret v{new_of(world, rid)}; previous secret valid until "
                      f"{format_time(delivered_at + PARAMS[SECRET].overlap)}"]


# --- parked at the test: the untested credential is not left active (issue 6, defect 6) ---------


def fail_the_test(world: World, usage: str, params: Params, attempts: int) -> str:
    """A rotation whose test fails ``attempts`` times (each after its backoff)."""
    world.provider.fail_next(VERIFY[usage], 10)
    rid, out = world.rotate(usage, params=params)
    for _ in range(attempts - 1):
        assert out.failed
        world.now = world.state().rotations[rid].next_attempt_at  # type: ignore[assignment]
        out = world.rotator.advance(APP, rid, params)
    assert out.failed
    return rid


@pytest.mark.parametrize("usage", KEY_USAGES)
def test_parking_at_the_test_disables_the_untested_credential(world: World, usage: str) -> None:
    provisioned(world, usage)
    params = dataclasses.replace(PARAMS[usage], attempts=2)
    rid = fail_the_test(world, usage, params, 2)
    state = world.state()
    new, old = new_of(world, rid), old_of(world, rid)
    assert isinstance(new, Credential) and isinstance(old, Credential)
    assert state.rotations[rid].status is RotationStatus.PARKED
    assert state.credentials[new.id].status is Status.DISABLED  # in the log ...
    assert world.provider.calls[-1] == "deactivate"  # ... after the provider was told
    assert not authenticates(world, usage, state.credentials[new.id])
    assert state.credentials[old.id].status is Status.ACTIVE and authenticates(world, usage, old)
    assert world.state().usable(usage, world.now) == [state.credentials[old.id]]

    # retried, the provider healed: the credential is activated again, tested, and it completes
    world.service.append_decided(APP, lambda s: ([ev.RotationRetried(rotation_id=rid)],
                                                 world.now), correlation_id=rid, actor="cli:ops")
    world.provider.heal()
    world.finish(rid, params)
    assert authenticates(world, usage, world.state().credentials[new.id])
    assert assert_old_disabled_only_after_new_tested(world) == 1


def test_an_untested_credential_the_provider_cannot_deactivate_keeps_its_rotation_running(
        world: World) -> None:
    provisioned(world, PKJWT)
    params = dataclasses.replace(PARAMS[PKJWT], attempts=2, max_backoff=10 * MINUTE)
    world.provider.fail_next("deactivate", 1)
    rid = fail_the_test(world, PKJWT, params, 2)
    rotation = world.state().rotations[rid]
    # not parked: the log must not say disabled what the provider still accepts
    assert rotation.status is RotationStatus.RUNNING
    assert rotation.next_attempt_at == world.now + params.max_backoff
    assert world.state().credentials[rotation.new_credential_id].status is Status.ACTIVE
