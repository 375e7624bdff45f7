"""Operators, ops and the daemon at once, over a real SQLite file: a Hypothesis state machine.

Two processes' worth of the service layer share one SQLite database (WAL), one keystore and
one delivery folder, as the daemon and the command line do: the daemon's (``wire`` with the
fleet view, the scheduler's actor) ticks; the operator's (``cli:ops``, read from the store)
adds, activates, disables and deletes credentials with and without ``--force``, rotates now,
rotates the client secret now, retries and abandons parked rotations and records expiry. Ops
edit the policy files (a valid change, or a broken file that must leave the last good one in
force); the clock jumps; the identity provider (the local one, behind the fault injector)
refuses, times out, or answers late.

After every step, judged from the SQLite file with the tests' own oracle (``tests/oracle.py``,
plain SQL and a fold of its own):

* never more than 2 live credentials per application and usage;
* never fewer than 1 usable credential of a usage for an application that had one, unless an
  operator forced it in that step or the clock jumped past an expiry; and the client secret
  the application's files hold is accepted by the provider (unless forced away the same way);
* the hash chain verifies;
* the read models (projector) are the fold of the log, application by application.

Examples are few and derandomized (no database of examples), so runs are the same everywhere.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from events.chain import Verified, verify
from events.projector import Projector, state_to_json
from events.sql import SQLEventStore, create_engine, upgrade
from events.state import fold, stream_id
from events.store import ReadFilter
from orchestrator.adapters.crypto import Cryptography, PrimePairKeys
from orchestrator.adapters.delivery import FileDelivery
from orchestrator.adapters.keystore import MemoryKeystore
from orchestrator.adapters.providers.faulty import FaultyProvider
from orchestrator.adapters.providers.local import LocalProvider
from orchestrator.app.manual_credentials import ManualCredentials
from orchestrator.app.secret_rotation import rotate_secret_now
from orchestrator.app.service import CredentialSource
from orchestrator.bootstrap import Core, wire
from orchestrator.domain.errors import OrchestratorError, ProviderError
from orchestrator.domain.planner import policy_for
from orchestrator.domain.rotation_events import decide_abandon, decide_retry
from orchestrator.policies.source import PolicySource
from tests.helpers import policy_yaml
from tests.oracle import read_log

T0 = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
APPS = ("shop", "bank")
KEY_USAGES = ("private_key_jwt", "mtls")
SECRET = "client_secret"
CRYPTO = Cryptography(PrimePairKeys())  # real keys, fast and weak: they never leave the test
RETRY = "retry: {attempts: 2, backoff: 1m, maxBackoff: 10m}"
JUMPS = [timedelta(minutes=1), timedelta(minutes=11), timedelta(hours=1), timedelta(hours=6),
         timedelta(days=1), timedelta(days=3), timedelta(days=9)]
METHODS = ("register", "activate", "deactivate", "remove", "set_secret", "authenticate")
FAULTS = st.none() | st.tuples(st.sampled_from(METHODS),
                               st.sampled_from(("fail", "timeout", "late")), st.integers(1, 3))


def key_policy(usage: str, *, alg: str = "RS256", overlap: str = "1h", every: str = "2d") -> str:
    credential = ("{usage: mtls, certificate: {subject: \"CN={app}\"}}" if usage == "mtls"
                  else f"{{usage: {usage}, algorithm: {alg}}}")
    return policy_yaml(usage.replace("_", "-"), '["*"]', credential,
                       f"{{every: {every}, beforeExpiry: 1d, overlap: {overlap}, {RETRY}}}",
                       lifetime="4d", extra="  retention: 1d\n")


def secret_policy(overlap: str = "1h") -> str:
    return policy_yaml("client-secret", '["*"]', "{usage: client_secret}",
                       f"{{every: 2d, beforeExpiry: 1d, overlap: {overlap}, {RETRY}}}",
                       lifetime=None)


class Orchestration(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="stateful-"))
        self.db = self.folder / "o.db"
        self.now = T0
        self.engine = create_engine(f"sqlite:///{self.db}?synchronous=normal")
        upgrade(self.engine)
        store = SQLEventStore(self.engine, clock=self.clock)
        self.projector = Projector(self.engine, store)
        self.policies_dir = self.folder / "policies"
        self.policies_dir.mkdir()
        for usage in KEY_USAGES:
            self._write(usage, key_policy(usage))
        self._write(SECRET, secret_policy())
        self.source = PolicySource(self.policies_dir, store, self.clock)
        keystore = MemoryKeystore()
        delivery = FileDelivery(self.folder / "delivery", self.clock)
        self.provider: FaultyProvider | None = None

        def provider(load: object, ks: object) -> FaultyProvider:
            if self.provider is None:
                self.provider = FaultyProvider(LocalProvider(load, keystore))  # type: ignore[arg-type]
            return self.provider

        common = dict(keystore=keystore, clock=self.clock, policies=self.source.current,
                      provider=provider, delivery=delivery, crypto=CRYPTO, projector=self.projector)
        self.daemon: Core = wire(store, actor="scheduler", fleet_writes=True, **common)  # type: ignore[arg-type]
        self.ops: Core = wire(SQLEventStore(self.engine, clock=self.clock), actor="cli:ops",
                              rotation_actor="cli:ops", fleet_writes=False, **common)  # type: ignore[arg-type]
        self.manual = ManualCredentials(self.ops.service, self.ops.provider)  # as the CLI does
        self.excused: set[tuple[str, str]] = set()  # (app, usage) that may lose usability now
        self.had: set[tuple[str, str]] = set()

    def clock(self) -> datetime:
        return self.now

    def _write(self, usage: str, text: str) -> None:
        (self.policies_dir / f"{usage}.yaml").write_text(text)

    def teardown(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- set-up ------------------------------------------------------------------------------

    @initialize()
    def register(self) -> None:
        for app in APPS:
            self.ops.service.register_app(app, {"env": "prod"})

    # --- the daemon, the clock, the provider -----------------------------------------------------

    def _fault(self, fault: tuple[str, str, int] | None) -> None:
        if fault is not None:
            method, how, times = fault
            assert self.provider is not None
            getattr(self.provider, f"{how}_next")(method, times)

    @rule(by=st.sampled_from([timedelta(0), *JUMPS]), fault=FAULTS)
    def daemon_tick(self, by: timedelta, fault: tuple[str, str, int] | None) -> None:
        """The clock moves (or not), the provider may be told to fail, the daemon ticks."""
        if by:
            self.now += by
            self.excused.update((a, u) for a in APPS for u in (*KEY_USAGES, SECRET))  # expiry
        self._fault(fault)
        self.daemon.ticker.tick()

    @rule()
    def provider_heals(self) -> None:
        assert self.provider is not None
        self.provider.heal()

    # --- ops: the policy files ---------------------------------------------------------------

    @rule(usage=st.sampled_from(KEY_USAGES), alg=st.sampled_from(("RS256", "PS256")),
          overlap=st.sampled_from(("1h", "3h")), every=st.sampled_from(("2d", "3d")))
    def edit_key_policy(self, usage: str, alg: str, overlap: str, every: str) -> None:
        self._write(usage, key_policy(usage, alg=alg, overlap=overlap, every=every))

    @rule(overlap=st.sampled_from(("1h", "5h")))
    def edit_secret_policy(self, overlap: str) -> None:
        self._write(SECRET, secret_policy(overlap))

    @rule(usage=st.sampled_from((*KEY_USAGES, SECRET)))
    def break_a_policy_file(self, usage: str) -> None:
        """A file that does not validate: the last good version stays in force."""
        self._write(usage, key_policy("private_key_jwt").replace("every: 2d", "every: soon"))

    # --- an operator at the command line -----------------------------------------------------

    def _refusable(self, action: object) -> None:
        """Run an operator's command; a refusal is one of the domain's errors (one line)."""
        try:
            action()  # type: ignore[operator]
        except OrchestratorError as exc:
            assert str(exc) and "\n" not in str(exc), repr(exc)

    def _credentials(self, app: str) -> list[str]:
        return sorted(c for c, cred in self.ops.service.load(app).credentials.items() if cred.live)

    @rule(app=st.sampled_from(APPS), usage=st.sampled_from(KEY_USAGES), activate=st.booleans())
    def credential_add(self, app: str, usage: str, activate: bool) -> None:
        self._refusable(lambda: self.manual.add(
            app, usage, CredentialSource(generate=True), activate=activate,
            expires_at=self.now + timedelta(days=5)))

    @rule(app=st.sampled_from(APPS), pick=st.integers(0, 7))
    def credential_activate(self, app: str, pick: int) -> None:
        creds = self._credentials(app)
        if creds:
            self._refusable(lambda: self.manual.activate(app, creds[pick % len(creds)]))

    @rule(app=st.sampled_from(APPS), pick=st.integers(0, 7), force=st.booleans())
    def credential_disable(self, app: str, pick: int, force: bool) -> None:
        creds = self._credentials(app)
        if creds:
            cid = creds[pick % len(creds)]
            if force:
                self.excused.add((app, self.ops.service.load(app).credentials[cid].usage.value))
            self._refusable(lambda: self.manual.disable(app, cid, force))

    @rule(app=st.sampled_from(APPS), pick=st.integers(0, 7), force=st.booleans())
    def credential_delete(self, app: str, pick: int, force: bool) -> None:
        creds = self._credentials(app)
        if creds:
            cid = creds[pick % len(creds)]
            if force:
                self.excused.add((app, self.ops.service.load(app).credentials[cid].usage.value))
            self._refusable(lambda: self.manual.delete(app, cid, force))

    @rule(app=st.sampled_from(APPS), usage=st.sampled_from(KEY_USAGES), fault=FAULTS)
    def rotate_now(self, app: str, usage: str, fault: tuple[str, str, int] | None) -> None:
        self._fault(fault)

        def rotate() -> None:
            policy = policy_for(self.ops.service.load(app), self.source.current(), usage)
            rid = self.ops.rotator.start_manual(app, usage, policy.name if policy else None,
                                               actor="cli:ops")
            assert policy is not None
            self.ops.rotator.advance(app, rid, policy.params)
        self._refusable(rotate)

    @rule(app=st.sampled_from(APPS), grace=st.sampled_from((None, timedelta(minutes=30))),
          fault=FAULTS)
    def secret_rotate(self, app: str, grace: timedelta | None,
                      fault: tuple[str, str, int] | None) -> None:
        self._fault(fault)
        self._refusable(lambda: rotate_secret_now(self.ops.rotator, app,
                                                  policies=self.source.current(), grace=grace,
                                                  actor="cli:ops"))

    @rule(app=st.sampled_from(APPS), retry=st.booleans())
    def parked_rotation(self, app: str, retry: bool) -> None:
        """rotations retry|abandon APP ROTATION, on whatever is parked."""
        state = self.ops.service.load(app)
        parked = [rid for rid, rot in state.rotations.items() if rot.status.value == "parked"]
        if parked:
            rid, decide = parked[0], decide_retry if retry else decide_abandon
            self._refusable(lambda: self.ops.service.append_decided(
                app, lambda s: (decide(s, rid), self.now), correlation_id=rid, actor="cli:ops"))

    @rule()
    def expire(self) -> None:
        self.ops.service.expire_due()

    # --- judged after every step -------------------------------------------------------------

    @invariant()
    def judged(self) -> None:
        log = read_log(self.db)
        for app in APPS:
            creds = log.creds.get(app, {})
            for usage in KEY_USAGES:
                live = [c for c in creds.values() if c.usage == usage
                        and not any(r["type"] == "credential.deleted"
                                    and r["payload"]["credential_id"] == c.id
                                    for r in log.rows)]
                assert len(live) <= 2, f"{app}: {len(live)} live {usage} credentials"
                usable = any(a <= self.now < b for c in creds.values() if c.usage == usage
                             for a, b in c.usable_intervals(self.now + timedelta(seconds=1)))
                self._usability(app, usage, usable)
            self._usability(app, SECRET, self._secret_accepted(app))
        self.excused.clear()
        assert isinstance(verify(self.ops.store.read()), Verified)
        self.projector.catch_up()
        records = list(self.ops.store.read())
        for state in self.projector.states():
            folded = fold(state.app, [(r.event, r.occurred_at) for r in records
                                      if r.stream_id == stream_id(state.app)])
            assert state_to_json(state) == state_to_json(folded), state.app

    def _usability(self, app: str, usage: str, usable: bool) -> None:
        if usable:
            self.had.add((app, usage))
        elif (app, usage) in self.had:
            assert (app, usage) in self.excused, (
                f"{app} lost its last usable {usage} credential, not by force nor by time")
            self.had.discard((app, usage))

    def _secret_accepted(self, app: str) -> bool:
        """Whether the provider accepts the client secret the application's files hold."""
        held = self.folder / "delivery" / app / SECRET / "client_secret"
        if not held.exists():
            return False
        assert self.provider is not None
        local = self.provider.inner
        assert isinstance(local, LocalProvider)
        try:
            local.verify_secret(app, held.read_text(), self.now)
        except ProviderError:
            return False
        return True


Orchestration.TestCase.settings = settings(
    max_examples=12, stateful_step_count=30, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
class TestOrchestration(Orchestration.TestCase):  # type: ignore[valid-type,misc]
    """The machine above, as a test case."""


def test_the_machine_reads_the_log_it_writes() -> None:
    """The oracle sees what the machine writes (so that its judgement is not vacuous)."""
    machine = Orchestration()
    try:
        machine.register()
        machine.daemon_tick(timedelta(0), None)
        log = read_log(machine.db)
        assert {app for app, creds in log.creds.items() if creds} == set(APPS)
        machine.judged()
        assert {(a, u) for a in APPS for u in (*KEY_USAGES, SECRET)} == machine.had
        assert list(machine.ops.store.read(ReadFilter(types=("rotation.completed",))))
    finally:
        machine.teardown()


def test_the_old_credential_cannot_be_disabled_while_its_successor_is_undelivered() -> None:
    """Defect found by this machine's checks: while a rotation's new key was active but not yet
    delivered (its test failing), an operator's ``credential disable`` of the old one, without
    --force, was accepted (the new one counted as usable); the rotation then parked, disabling
    its untested key, and the application had no usable credential, nobody having forced it.
    The path, step by step, judged after each."""
    machine = Orchestration()
    try:
        machine.register()
        machine.daemon_tick(timedelta(0), None)  # everything provisioned
        machine.judged()
        machine.daemon_tick(timedelta(days=2, hours=1), ("authenticate", "fail", 100))
        machine.judged()
        rotation = next(r for r in machine.ops.service.load("shop").rotations.values()
                        if r.usage == "private_key_jwt" and r.status.value == "running")
        assert rotation.done("registered") and not rotation.done("tested")
        with pytest.raises(OrchestratorError, match="is not delivered yet"):
            machine.manual.disable("shop", rotation.old_credential_id or "", False)
        machine.judged()
        machine.daemon_tick(timedelta(minutes=11), None)  # the test fails again: parked
        machine.judged()
        state = machine.ops.service.load("shop")
        assert state.rotations[rotation.id].status.value == "parked"
        assert state.credentials[rotation.old_credential_id or ""].status.value == "active"
    finally:
        machine.teardown()
