"""The daemon's drift hold: no action touches a provider for an app the daemon has not compared
with it, or that contradicts the log; the rotation's own steps ahead of their records do not
count; a client deleted at the provider holds its app and says so at error level.

Wired as the daemon wires it (the ticker gated by a ``DriftWatch``; each tick the ticker, then
the watch's checks due by time) over ``bootstrap.in_memory`` on a virtual clock, beside an
identity provider in memory that keeps its own record of each client
(``tests/support/memory_tenant.py``), so it can be changed behind the orchestrator's back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from events import catalog as ev
from events.state import Credential, RotationStatus, Status
from events.store import ReadFilter
from orchestrator.app.drift import DriftChecker
from orchestrator.app.drift_watch import BATCH, RETRY_FAILED, DriftWatch
from orchestrator.app.ports import Provider
from orchestrator.app.service import CredentialSource
from orchestrator.app.tick import TickReport
from orchestrator.bootstrap import Core, fast_keys, in_memory
from orchestrator.domain.drift import DriftKind, compare
from orchestrator.domain.identity_provider import RemoteClient, RemoteCredential
from orchestrator.domain.planner import PlanPolicy
from orchestrator.domain.rotation import Params, Recorded
from orchestrator.domain.rotation_events import decide_abandon
from tests.conftest import NOW
from tests.support.memory_tenant import MemoryTenant

MEM, PKJWT = "mem", "private_key_jwt"
MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
EVERY = HOUR


@dataclass
class World:
    core: Core
    tenant: MemoryTenant
    watch: DriftWatch
    now: list[datetime]
    logs: list[dict[str, Any]] = field(default_factory=list)

    def tick(self) -> TickReport:
        """One daemon tick: the ticker (gated), then the checks due by time."""
        with capture_logs() as logs:
            report = self.core.ticker.tick()
            self.watch.run()
        self.logs = logs
        return report

    def advance(self, by: timedelta) -> None:
        self.now[0] += by

    def bind(self, app: str) -> None:
        self.tenant.add_client(app)
        self.core.service.register_app(app, {}, provider=MEM)

    def keyed(self, app: str, age: timedelta = 40 * DAY,
              expires_at: datetime | None = None) -> Credential:
        """An active key of ``app``, activated ``age`` ago, uploaded and attached at the
        tenant as a rotation would leave it."""
        now, self.now[0] = self.now[0], self.now[0] - age
        cred = self.core.service.add_credential(app, PKJWT, CredentialSource(generate=True),
                                                activate=True, expires_at=expires_at)
        pid = self.tenant.register(app, cred)
        assert pid is not None
        self.core.service.append_decided(app, lambda s: ([ev.CredentialRegistered(
            credential_id=cred.id, provider=MEM, provider_credential_id=pid)], self.now[0]))
        self.tenant.activate(app, cred.id)
        self.now[0] = now
        self.tenant.journal.clear()
        return self.core.service.load(app).credentials[cred.id]

    def lines(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e["event"] == event]

    def started(self) -> set[str]:
        return {r.stream_id.removeprefix("app:") for r in self.core.store.read(ReadFilter(
            types=("rotation.started",)))}

    def rotation(self, app: str) -> Any:
        (only,) = self.core.service.load(app).rotations.values()
        return only


def world(*, batch: int = BATCH, overlap: timedelta = HOUR) -> World:
    now = [NOW]
    named: dict[str, Provider] = {}
    policies = (PlanPolicy("keys", Params(PKJWT, overlap=overlap), every=30 * DAY,
                           before_expiry=10 * DAY, retention=7 * DAY, max_per_tick=10_000),)
    core = in_memory(lambda: now[0], lambda: policies, crypto=fast_keys(),
                     identity_providers=lambda: named)
    tenant = MemoryTenant(MEM, core.service.load, core.keystore)
    named[MEM] = tenant
    checker = DriftChecker(core.service, core.provider, core.service.crypto, core.fleet.all,
                           lambda: now[0])
    watch = DriftWatch(checker, EVERY, lambda: now[0], batch)
    core.ticker.gate_with(watch.gate)
    return World(core, tenant, watch, now)


# --- after the daemon starts ---------------------------------------------------------------------


def test_no_app_is_rotated_before_it_is_compared_and_every_one_is_after() -> None:
    w = world()
    apps = [f"app-{n:03d}" for n in range(200)]
    for app in apps:  # none has a key yet: all 200 are due at once
        w.bind(app)
    read, started, held, backlog = [], [], [], []
    for _ in range(6):
        before, seen = len(w.tenant.journal), w.started()
        held.append(w.tick().held)
        backlog.append(w.watch.backlog)
        read.append({c for m, c in w.tenant.journal[before:] if m == "client"})
        started.append(w.started() - seen)
        w.advance(MINUTE)
    assert [len(r) for r in read] == [50, 50, 50, 50, 0, 0]  # the budget: 50 checks a tick
    assert started == read  # each tick rotated exactly the apps it compared
    assert held == [150, 100, 50, 0, 0, 0]
    assert backlog == [True, True, True, False, False, False]  # the daemon ticks again soon
    first: dict[str, str] = {}
    for method, client_id in w.tenant.journal:
        first.setdefault(client_id, method)
    assert first == dict.fromkeys(apps, "client")  # for every app, a read before any change
    assert w.tenant.calls("client") == 200  # each compared once: its rotation is no reason
    for app in apps:
        assert w.rotation(app).status is RotationStatus.COMPLETED
        assert w.core.service.load(app).usable(PKJWT, w.now[0])


def test_apps_of_the_local_provider_are_never_gated_and_expiry_is_never_held() -> None:
    w = world(batch=0)  # no check at all: every app bound to the tenant waits
    w.core.service.register_app("here", {})
    w.bind("there")
    w.keyed("there", age=DAY, expires_at=NOW - MINUTE)
    report = w.tick()
    assert w.started() == {"here"}
    assert report.held == 1 and report.done["expire"] == 1
    cred = next(iter(w.core.service.load("there").credentials.values()))
    assert cred.status is Status.EXPIRED
    assert w.tenant.journal == []


# --- a rotation in flight ------------------------------------------------------------------------


def test_a_rotation_whose_old_key_was_deleted_at_the_provider_is_held_until_an_operator_acts(
        ) -> None:
    w = world()
    w.bind("pay")
    old = w.keyed("pay")
    w.tick()  # compared, started, delivered: the overlap runs
    rot = w.rotation("pay")
    assert rot.status is RotationStatus.RUNNING and rot.done(Recorded.DELIVERED)
    assert old.provider_id is not None
    w.tenant.delete_record("pay", old.provider_id)  # behind the orchestrator's back
    version = w.core.service.load("pay").version
    w.advance(2 * HOUR)  # past the overlap, and past the last check's `every`
    report = w.tick()
    assert report.held == 1
    assert w.core.service.load("pay").version == version  # not resumed: nothing recorded
    assert w.tenant.calls("deactivate") == 0
    assert w.tenant.calls("client") == 2  # once a tick: before the start, before the resume
    (line,) = w.lines("app_drifted")
    assert line["log_level"] == "error" and line["app"] == "pay"
    assert line["rotation_id"] == rot.id
    assert line["differences"] == [f"credential {old.id} / {old.provider_id} (private_key_jwt, "
                                   "active in the log) is not at the provider"]
    assert line["fix"] == (f"orchestrator rotations abandon pay {rot.id}, then orchestrator "
                           "drift --app pay --adopt|--repair")
    w.advance(MINUTE)  # held, and said once per check: not again before the next one
    assert w.tick().held == 1
    assert w.lines("app_drifted") == [] and w.tenant.calls("client") == 2
    # the operator follows the fix: the rotation given up, then the provider's side adopted
    w.core.service.append_decided("pay", lambda s: (decide_abandon(s, rot.id), w.now[0]))
    w.advance(MINUTE)
    w.tick()
    (again,) = w.lines("app_drifted")  # its log moved: compared at once, still differing
    assert again["fix"] == "orchestrator drift --app pay --adopt|--repair"
    checker = w.watch.checker
    assert all(f.done for f in checker.adopt(checker.check(w.core.service.load("pay"))))
    w.advance(MINUTE)
    w.tick()
    assert [e["app"] for e in w.lines("app_drift_cleared")] == ["pay"]
    assert "pay" not in w.watch.held


def remote_of(tenant: MemoryTenant, client_id: str) -> RemoteClient:
    return RemoteClient(client_id, client_id, credentials=tuple(tenant.records[client_id].values()))


@pytest.mark.parametrize("lost", ["register", "activate", "deactivate"])
def test_a_rotation_ahead_of_its_record_at_the_provider_is_not_held(lost: str) -> None:
    """The step's work done at the provider, its answer lost: the check in between finds the
    provider one step ahead of the log, and lets the rotation go on to record it."""
    w = world()
    w.bind("pay")
    w.keyed("pay")
    w.tenant.lose.add(lost)
    ahead: list[tuple[str, ...]] = []  # at each read during the rotation: what differs

    def read(client_id: str) -> None:
        state = w.core.service.load(client_id)
        running = [r for r in state.rotations.values() if r.status is RotationStatus.RUNNING]
        if running and not w.tenant.down:
            new = state.credentials.get(running[0].new_credential_id)
            uploaded = new is not None and any(
                r.kid == new.kid for r in w.tenant.records[client_id].values())
            unrecorded = uploaded and not running[0].done(Recorded.REGISTERED)
            kinds = tuple(str(d.kind) for d in compare(state, remote_of(w.tenant, client_id),
                                                       w.now[0]))
            ahead.append(("uploaded-unrecorded",) * unrecorded + kinds)

    w.tenant.on_read = read
    held, failed = [], []
    for _ in range(5):
        report = w.tick()
        held.append(report.held)
        failed += w.lines("rotation_step_failed")
        assert w.lines("app_drifted") == []
        w.advance(2 * HOUR)  # past the backoff, the overlap and `every`: compared each tick
    assert lost not in w.tenant.lose and [f["step"] for f in failed] == [
        {"deactivate": "disable_old"}.get(lost, lost)]  # the answer was lost, once
    expected = {"register": ("uploaded-unrecorded",), "activate": (str(DriftKind.ATTACHED),),
                "deactivate": (str(DriftKind.DETACHED),)}[lost]
    assert expected in ahead  # a check saw the provider one step ahead
    assert held == [0] * 5
    assert w.rotation("pay").status is RotationStatus.COMPLETED
    assert len(w.tenant.records["pay"]) == 2  # uploaded once: the old key and the new
    assert compare(w.core.service.load("pay"), remote_of(w.tenant, "pay"), w.now[0]) == ()


# --- a client gone, a provider unreachable --------------------------------------------------------


def test_an_app_whose_client_was_deleted_is_held_and_said_until_a_check_finds_it() -> None:
    w = world()
    for app in ("kept", "gone"):
        w.bind(app)
        w.keyed(app)
    records = w.tenant.records["gone"]
    w.tenant.delete_client("gone")  # deleted at the provider, behind the orchestrator's back
    report = w.tick()
    assert report.held == 1 and w.started() == {"kept"}
    assert [m for m, c in w.tenant.journal if c == "gone"] == ["client"]  # read, nothing else
    (line,) = w.lines("app_client_missing")
    assert line["log_level"] == "error" and line["app"] == "gone"
    assert line["client_id"] == "gone" and line["provider"] == MEM
    assert line["fix"].startswith("client 'gone' no longer exists at identity provider 'mem' "
                                  "(deleted there; 404 from the tenant): nothing the "
                                  "orchestrator does can recreate it (drift --repair neither)")
    assert "orchestrator app register NAME --provider mem --client-id ID" in line["fix"]
    assert w.lines("drift_check_failed") == [] and w.lines("app_drifted") == []
    w.advance(MINUTE)  # still held; said once per check
    assert w.tick().held == 1
    assert w.lines("app_client_missing") == [] and w.tenant.calls("client", "gone") == 1
    w.advance(EVERY)  # the next check: still missing, said again
    assert w.tick().held == 1
    assert len(w.lines("app_client_missing")) == 1 and w.tenant.calls("client", "gone") == 2
    w.tenant.records["gone"] = records  # given back at the provider (by its administrator)
    w.advance(EVERY)
    assert w.tick().held == 0
    assert [e["app"] for e in w.lines("app_drift_cleared")] == ["gone"]
    assert w.started() == {"kept", "gone"}


def test_an_app_never_compared_waits_while_its_provider_cannot_be_reached() -> None:
    w = world()
    for app in ("a", "b", "c"):
        w.bind(app)
        w.keyed(app)
    w.tenant.down = True
    for _ in range(3):
        before = len(w.tenant.journal)
        report = w.tick()
        assert report.held == 3 and w.started() == set()
        calls = w.tenant.journal[before:]
        assert [m for m, _ in calls] == ["client"]  # one read a tick, then none of that tick
        (line,) = w.lines("drift_check_failed")
        assert line["log_level"] == "warning" and line["app"] == calls[0][1]
        assert "cannot connect" in line["error"]
        assert "not rotated until a check succeeds" in line["detail"]
        w.advance(MINUTE)
    w.tenant.down = False
    w.advance(RETRY_FAILED)
    assert w.tick().held == 0
    assert w.started() == {"a", "b", "c"}


def test_a_held_app_stays_held_while_its_provider_cannot_be_reached() -> None:
    w = world()
    w.bind("pay")
    w.keyed("pay")
    w.tenant.records["pay"]["cred_x"] = RemoteCredential(
        "cred_x", ev.CredentialKind.PUBLIC_KEY, kid="made-by-hand-at-the-tenant")
    assert w.tick().held == 1 and len(w.lines("app_drifted")) == 1
    w.tenant.down = True
    w.advance(EVERY)
    assert w.tick().held == 1
    (line,) = w.lines("drift_check_failed")
    assert line["app"] == "pay" and "it stays held" in line["detail"]
    assert w.started() == set()
