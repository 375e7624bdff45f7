"""One tick of the daemon: gather the world, plan, carry the plan out.

    catch up projections -> reload policies -> plan(policies, fleet, now)
    -> expire what is due -> advance in-flight rotations -> start due ones -> delete past retention

Each action is carried out on its own; one that fails is logged and the tick goes on. A stop
request (SIGTERM) is honoured between actions: the current step finishes, nothing is cut in half.
Every tick logs, at error level, each application left without a usable credential of a usage
it had (``app_without_usable_credential``): the planner's alarms, kept for the apps it planned.
A *gate* (``gate_with``: the daemon's drift check, ``app.drift_watch``) is asked right before
each action that touches an application's identity provider (a start, resume, retry or
deletion: ``HELD_KINDS``); when it gives a reason, the action waits, is counted ``held``, and the
application is planned again at the next tick. Expiry is never held.

No rotation is started for an application whose identity provider cannot be had (its
IdentityProvider resource was removed, or its file or secret is broken), nor a client-secret
rotation of one whose client takes no secret (Auth0, a client that authenticates with the keys
the log holds: ``domain.client_auth``): nothing would come of it but material generated into
the keystore and a step that fails and parks. The tick logs one error line per such
application (``rotation_not_started``: app, provider, usage, why, and the fix) and starts
nothing; the start stays due and is made at the first tick after the cause is gone.

A client-secret rotation is not started for an application whose identity provider holds one
secret (``Capabilities.secret_overlap`` False: Auth0, RFC 7592) unless its policy accepts the gap
(``acceptSecretGap``): the old secret would stop working before the application has the new
one. The loader refuses such a policy beside such a provider; this guard holds wherever a
provider comes from. The applications refused are logged at error level in one line per tick
(``client_secret_rotation_refused``), and stay due, so the line comes back each tick until the
policy or the application's provider changes.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from events import catalog as ev
from events.state import AppState, Status
from orchestrator.app.fleet import FleetView
from orchestrator.app.ports import Providers
from orchestrator.app.rotator import Rotator, StepOutcome
from orchestrator.app.service import Service
from orchestrator.domain import rules
from orchestrator.domain.client_auth import secret_refused
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.planner import (
    Action,
    Alarm,
    Assessment,
    Kind,
    Plan,
    PlanPolicy,
    assess,
    plan,
    plan_of,
    stranded,
)
from orchestrator.domain.rotation import Params
from orchestrator.domain.rotation_events import decide_abandon, decide_retry
from orchestrator.domain.vocabulary import SECRET_USAGE

__all__ = ["Gate", "TickReport", "Ticker"]

log = structlog.get_logger("orchestrator.tick")
MIN_RECHECK = timedelta(seconds=1)  # something due now but not done (cap, failure): next tick
HELD_KINDS = frozenset({Kind.START, Kind.RESUME, Kind.RETRY, Kind.DELETE})  # touch the provider
Gate = Callable[[str], str | None]  # app -> why its provider must not be touched now (None: go)
URGENT_SPLIT = 1000  # a tick planning more apps carries out the expired ones' actions first
NAMED_AT_MOST = 20  # applications named in one log line; the count says how many in all
SECRET_GAP_FIX = ("its identity provider holds one client secret, so the old secret stops "
                  "working when the new one is set, before the application reads it; set "
                  "acceptSecretGap: true in the client_secret policy to accept that gap, or "
                  "authenticate the application with private_key_jwt, whose keys overlap")
PROVIDER_FIX = ("restore the IdentityProvider resource {provider!r} in the policies folder, or "
                "fix its file (orchestrator policy validate says what is wrong); the rotation "
                "starts at the first tick after")
SECRET_KEYS_FIX = ("leave the application out of the client_secret policy's selector (its keys "
                   "rotate by their own policy), or switch its client to a client secret first")


def _stranded_fix(alarm: Alarm) -> str:
    """What the operator does for an application left without a usable credential."""
    if alarm.rotation_id is not None:
        return (f"orchestrator rotations --app {alarm.app} shows why rotation "
                f"{alarm.rotation_id} is held; fix that cause (the daemon retries it), or "
                f"orchestrator rotations retry {alarm.app} {alarm.rotation_id}")
    return (f"give {alarm.app} a policy for {alarm.usage} (the daemon provisions it), or "
            f"orchestrator credential add {alarm.app} --usage {alarm.usage} --generate "
            "--activate")


@dataclass
class TickReport:
    at: datetime
    planned: int = 0
    deferred: int = 0
    done: Counter[str] = field(default_factory=Counter)
    failed: int = 0  # actions that failed: an error, or a rotation step that failed
    parked: int = 0  # of those, rotations whose failure used up the retry budget
    refused: int = 0  # starts refused: provider not configured, no secret taken, secret gap
    problems: tuple[str, ...] = ()
    planned_apps: int = 0
    alarms: tuple[Alarm, ...] = ()
    held: int = 0  # actions the gate kept back (the app's provider contradicts the log, or has
    # not been compared with it yet)
    capped: int = 0  # starts due now that the per-tick cap left for the next tick

    def merged(self, later: TickReport) -> TickReport:
        """This part of a tick and its ``later`` part, as one report."""
        return TickReport(
            self.at, self.planned + later.planned, self.deferred + later.deferred,
            self.done + later.done, self.failed + later.failed, self.parked + later.parked,
            self.refused + later.refused, self.problems + later.problems,
            self.planned_apps + later.planned_apps, self.alarms + later.alarms,
            self.held + later.held, self.capped + later.capped)


class Ticker:
    """Plans the applications that changed or fell due, not the whole fleet, each tick.

    After planning an application it notes when it is next due by time alone
    (``planner.next_due``, or a deferred start's not-before); a heap hands it back then. Each
    application is looked at once for each state it has in a tick (``planner.assess``): an
    application the tick did not change gets its next instant and alarms from the inputs its
    plan read; one it changed is assessed again after its actions. Any
    change to an application (its stream moved) or to the policies plans it again at once. A
    tick that fails part way (it raises) leaves every application it took due at the next.

    ``next_wake`` tells the daemon when to tick before its interval ends: at once when the
    per-tick cap left starts due now (a fleet due together runs tick after tick, at the pace
    of its provider, not one cap's worth per interval), else the earliest instant planned by
    time (an overlap ending, a retry's backoff, a start's slot in its window). An application
    looked at again only because something due was not done (held by the gate, a failed
    action) wakes nobody: it waits for the next tick, or a provider that is down would be
    asked every second.
    """

    def __init__(
        self,
        service: Service,
        rotator: Rotator,
        fleet: FleetView,
        policies: Callable[[], Sequence[PlanPolicy]],
        clock: Callable[[], datetime],
        should_stop: Callable[[], bool] = lambda: False,
        urgent: Callable[[datetime], Iterable[str]] | None = None,
    ) -> None:
        self.service = service
        self._urgent = urgent  # the apps holding a credential past its expiry (an index)
        self.rotator = rotator
        self.fleet = fleet
        self.policies = policies
        self.clock = clock
        self.should_stop = should_stop
        self._due: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._wakes: list[tuple[datetime, str]] = []  # the instants planned by time (lazy)
        self._capped = False  # the last tick's cap left starts due now
        self._last_policies: Sequence[PlanPolicy] | None = None
        self._alarms: dict[str, tuple[Alarm, ...]] = {}  # by app, for the apps planned so far
        self._gate: Gate | None = None
        # each action's lines: the module's lazy ``log`` binds a new logger at every call (about
        # 10 us, even for a line its level drops); bound once a tick instead (``tick``)
        self._log: Any = log

    def gate_with(self, gate: Gate | None) -> None:
        """Ask ``gate`` before each action of ``HELD_KINDS`` (None: carry every one out)."""
        self._gate = gate

    def next_due(self) -> datetime | None:
        """The earliest instant an application planned so far falls due by time alone."""
        return min(self._due.values(), default=None)

    def due_next(self, count: int) -> list[tuple[datetime, str]]:
        """The ``count`` applications planned so far that fall due first, with when."""
        return heapq.nsmallest(count, ((at, app) for app, at in self._due.items()))

    def next_wake(self, now: datetime) -> datetime | None:
        """When the next tick has work (class docstring): ``now``, an instant planned by time,
        or None."""
        if self._capped:
            return now
        while self._wakes and self._due.get(self._wakes[0][1]) != self._wakes[0][0]:
            heapq.heappop(self._wakes)  # replanned since, or taken
        return self._wakes[0][0] if self._wakes else None

    def plan(self, at: datetime | None = None) -> Plan:
        """The whole fleet's plan at ``at`` (for ``orchestrator plan``)."""
        return plan(self.policies(), self.fleet.all(), at or self.clock())

    def _candidates(self, policies: Sequence[PlanPolicy], now: datetime) -> set[str]:
        changed = self.fleet.take_changed()
        if policies is not self._last_policies:
            self._last_policies = policies
            self._due.clear()
            self._heap.clear()
            self._wakes.clear()
            return self.fleet.apps()
        while self._heap and self._heap[0][0] <= now:
            due, app = heapq.heappop(self._heap)
            if self._due.get(app) == due:
                del self._due[app]
                changed.add(app)
        return changed

    def _note_due(self, after: list[Assessment], the_plan: Plan, now: datetime,
                  held: set[str]) -> None:
        """Note when each application of ``after`` (assessed after the tick's actions) is next
        due."""
        waiting: dict[str, datetime] = dict.fromkeys(held, now)  # the gate may let them go
        capped = {a.app for a in the_plan.capped}
        for action in the_plan.deferred:
            at = action.not_before if action.not_before and action.not_before > now else now
            waiting[action.app] = min(at, waiting.get(action.app, at))
        for one in after:
            app = one.state.app
            times = [t for t in (one.next_due(), waiting.get(app)) if t]
            if not times:
                self._due.pop(app, None)
                continue
            due = max(min(times), now + MIN_RECHECK) if min(times) <= now else min(times)
            if app in capped:
                due = now  # the cap's leftovers: the next tick takes them, however soon
            self._due[app] = due
            heapq.heappush(self._heap, (due, app))
            if min(times) > now:
                heapq.heappush(self._wakes, (due, app))

    def _reassess(self, apps: set[str], before: dict[str, Assessment],
                  policies: Sequence[PlanPolicy], now: datetime) -> list[Assessment]:
        """``apps`` as they are after the tick's actions: an application whose state is the one
        planned keeps its assessment (its next instant and alarms come from the inputs its
        plan read); one that changed is assessed again (its selection kept)."""
        out = []
        for state in self.fleet.states(apps):
            planned = before.get(state.app)
            out.append(planned if planned is not None and planned.state is state
                       else assess(state, policies, now, like=planned))
        return out

    def tick(self) -> TickReport:
        now = self.clock()
        self._log = log.bind()
        policies = self.policies()
        apps = self._candidates(policies, now)
        self._capped = False
        try:
            first = self._urgent_first(apps, now)
            if not first:
                return self._carry(policies, apps, now)
            early = self._carry(policies, first, now, judged=set())
            return early.merged(self._carry(policies, apps - first, now, judged=apps))
        except BaseException:
            # taken off the heap and the changed set: due again at the next tick, or a tick that
            # fails (the database away, a lost lease) would forget them until their log moves
            for app in apps:
                self._due[app] = now
                heapq.heappush(self._heap, (now, app))
            raise

    def _urgent_first(self, apps: set[str], now: datetime) -> set[str]:
        """Of a large tick's ``apps`` (a new leader's first: the whole fleet), those holding a
        credential past its expiry, planned and carried out before the rest are even decoded:
        expiry is enforced without waiting for the fleet. Empty for a tick of the usual size."""
        if self._urgent is None or len(apps) <= URGENT_SPLIT:
            return set()
        return apps.intersection(self._urgent(now))

    def _carry(self, policies: Sequence[PlanPolicy], apps: set[str], now: datetime,
               judged: set[str] | None = None) -> TickReport:
        """Plan ``apps`` and carry the plan out; then judge ``judged`` (default: ``apps``) for
        alarms, and log them (an empty set: none judged, none logged: a later part of the same
        tick does it)."""
        before = {s.app: assess(s, policies, now) for s in self.fleet.states(apps)}
        the_plan = plan_of(before.values(), policies, now, judge=False)  # judged after, below
        report = TickReport(now, len(the_plan.actions), len(the_plan.deferred),
                            problems=the_plan.problems, planned_apps=len(apps),
                            capped=len(the_plan.capped))
        for problem in the_plan.problems:
            log.warning("policy_conflict_found", problem=problem)
        by_name = {p.name: p for p in policies}
        gaps: list[str] = []
        held: set[str] = set()
        for action in the_plan.actions:
            if self.should_stop():
                log.info("tick_interrupted", remaining=report.planned - sum(report.done.values()))
                apps.update(a.app for a in the_plan.actions)
                break
            if self._kept_back(action):
                report.held += 1
                held.add(action.app)
                continue
            try:
                if self.start_refused(action):
                    report.refused += 1
                    continue
                if self.secret_gap_refused(action, by_name):
                    gaps.append(action.app)
                    continue
                with self.service.projected_once():  # one catch-up per action
                    outcome = self.carry_out(action, by_name)
            except OrchestratorError as exc:
                report.failed += 1
                log.warning("action_failed", app=action.app, kind=action.kind.value,
                            reason=action.reason.value, error=str(exc),
                            fix="the next tick tries again; if it keeps failing, fix what the "
                                f"error names (orchestrator plan --json shows {action.app}'s "
                                "due actions)")
                continue
            if outcome is not None and outcome.failed:
                report.failed += 1
                report.parked += outcome.parked
            else:
                report.done[action.kind.value] += 1
        if gaps:
            report.refused += len(gaps)
            log.error("client_secret_rotation_refused", apps=sorted(gaps)[:NAMED_AT_MOST],
                      count=len(gaps), fix=SECRET_GAP_FIX)
        self.fleet.refresh()
        after = self._reassess(apps, before, policies, now)
        self._note_due(after, the_plan, now, held)
        self._capped = self._capped or bool(the_plan.capped)  # either part of a tick
        if judged is None or judged:
            report.alarms = self._raise_alarms(apps if judged is None else judged, now,
                                               {one.state.app: one for one in after})
        if report.planned or report.failed or report.problems:
            (log.warning if report.failed or report.refused else log.info)(
                "tick_completed", planned=report.planned, deferred=report.deferred,
                failed=report.failed, parked=report.parked, refused=report.refused,
                held=report.held, capped=report.capped, apps=len(apps),
                **{k: v for k, v in report.done.items()})
        return report

    def _kept_back(self, action: Action) -> bool:
        """Whether the gate keeps ``action`` back (it says why in its own log lines)."""
        if self._gate is None or action.kind not in HELD_KINDS:
            return False
        why = self._gate(action.app)
        if why is not None:
            self._log.debug("action_held", app=action.app, kind=action.kind.value, reason=why)
        return why is not None

    def start_refused(self, action: Action) -> bool:
        """Whether ``action`` starts a rotation that must not start: the application's
        identity provider is not configured (the router says so: no resource of that name, its
        file does not load, its secret cannot be had), or it is a client-secret rotation of a
        client that takes no secret (the log's usable keys); if so it is logged, once, at error
        level."""
        if action.kind is not Kind.START:
            return False
        state = self.service.load(action.app)
        provider = self.rotator.provider
        try:
            if state.provider is not None and isinstance(provider, Providers):
                provider.named(state.provider)
            why = secret_refused(state, provider.capabilities(action.app),
                                 self.clock()) if action.usage == SECRET_USAGE else None
            fix = SECRET_KEYS_FIX
        except OrchestratorError as exc:
            why, fix = str(exc), PROVIDER_FIX.format(provider=state.provider)
        if why is None:
            return False
        log.error("rotation_not_started", app=action.app, provider=state.provider,
                  usage=action.usage, error=why, fix=fix)
        return True

    def secret_gap_refused(self, action: Action, by_name: dict[str, PlanPolicy]) -> bool:
        """Whether ``action`` starts a client-secret rotation that the application's provider
        cannot overlap, under a policy that does not accept the gap."""
        if action.kind is not Kind.START or action.usage != SECRET_USAGE:
            return False
        if self.params_for(action.policy, action.usage, by_name).accept_secret_gap:
            return False
        return not self.rotator.provider.capabilities(action.app).secret_overlap

    def _raise_alarms(self, apps: set[str], now: datetime,
                      assessed: dict[str, Assessment]) -> tuple[Alarm, ...]:
        """Judge again the apps just planned, after what was carried out (their state changed,
        or their next_due came: an expiry is one), and log every alarm still raised, each
        tick. ``assessed``: the applications assessed after the actions (the others are
        judged here)."""
        for state in self.fleet.states(apps):
            self._alarms.pop(state.app, None)
            one = assessed.get(state.app)
            judged = one.alarms() if one is not None and one.state is state else stranded(
                state, now)
            if alarms := tuple(judged):
                self._alarms[state.app] = alarms
        raised = tuple(a for alarms in self._alarms.values() for a in alarms)
        for alarm in raised:
            log.error("app_without_usable_credential", app=alarm.app, usage=alarm.usage,
                      since=alarm.since.isoformat() if alarm.since else None,
                      rotation_id=alarm.rotation_id, detail=alarm.message,
                      fix=_stranded_fix(alarm))
        return raised

    def params_for(self, policy_name: str | None, usage: str,
                   by_name: dict[str, PlanPolicy]) -> Params:
        policy = by_name.get(policy_name or "")
        return policy.params if policy is not None else Params(usage=usage)

    def _delete(self, action: Action) -> None:
        """Retention: the credential removed at the provider, its private key forgotten, then
        its deletion recorded. Whether it is still there is first asked of the fleet as the
        tick planned it (no read of the log), and decided again on the state the write path
        reads fresh: a credential gone by then (a rotation of the same tick freed its slot, or
        another process deleted it between plan and act) is nothing to do, not a failure; the
        provider's ``remove`` and the keystore's ``delete`` find nothing to remove."""
        app, cid = action.app, action.credential_id
        assert cid is not None
        if _gone(self.service.peek(app), cid):
            self._log.debug("credential_already_deleted", app=app, credential_id=cid)
            return
        if action.at_provider:  # not when another credential shares its registration
            self.rotator.provider.remove(app, cid)
        # before the record: a crash right after it must not leave the private key behind
        self.service.forget_private(cid)

        def decided(state: AppState) -> tuple[list[ev.Event], datetime]:
            at = self.clock()
            if _gone(state, cid):
                return [], at
            return rules.decide(rules.DeleteCredential(app, cid, at), state), at

        _, records = self.service.append_decided(app, decided, actor="scheduler")
        if not records:
            self._log.debug("credential_already_deleted", app=app, credential_id=cid)
            return
        self._log.info("credential_deleted", app=app, credential_id=cid,
                       reason=action.reason.value)

    def carry_out(self, action: Action, by_name: dict[str, PlanPolicy]) -> StepOutcome | None:
        """Carry one action out; a rotation's outcome (a failed step is recorded, not raised)."""
        app = action.app
        if action.kind is Kind.EXPIRE:
            self.service.execute(app, lambda s: rules.ExpireDue(app, self.clock()),
                                 actor="scheduler")
            self._log.info("credential_expired", app=app, credential_id=action.credential_id)
        elif action.kind is Kind.DELETE:
            self._delete(action)
        elif action.kind is Kind.ABANDON:
            rid = action.rotation_id or ""
            self.service.append_decided(
                app, lambda s: (decide_abandon(s, rid, action.message), self.clock()),
                correlation_id=rid, actor="scheduler")
            self._log.warning("rotation_abandoned", app=app, rotation_id=rid,
                              detail=action.message)
        elif action.kind is Kind.RETRY:
            rid = action.rotation_id or ""
            self.service.append_decided(
                app, lambda s: (decide_retry(s, rid), self.clock()),
                correlation_id=rid, actor="scheduler")
            self._log.warning("rotation_retried", app=app, rotation_id=rid,
                              reason=action.reason.value, detail=action.message)
            rot = self.service.load(app).rotations[rid]
            return self.rotator.advance(app, rid, self.params_for(rot.policy, rot.usage, by_name))
        elif action.kind is Kind.RESUME:
            assert action.rotation_id is not None
            state = self.service.load(app)
            rot = state.rotations[action.rotation_id]
            return self.rotator.advance(app, rot.id,
                                        self.params_for(rot.policy, rot.usage, by_name))
        elif action.kind is Kind.START:
            assert action.usage is not None
            params = self.params_for(action.policy, action.usage, by_name)
            rotation_id = self.rotator.start(app, action.usage, action.reason,
                                             action.policy, actor=f"policy:{action.policy}")
            if rotation_id is not None:
                return self.rotator.advance(app, rotation_id, params)
        return None


def _gone(state: AppState, credential_id: str) -> bool:
    """Whether ``credential_id`` is deleted (or unknown) in ``state``."""
    held = state.credentials.get(credential_id)
    return held is None or held.status is Status.DELETED
