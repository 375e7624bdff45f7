"""What the daemon should do now, and why: ``plan(policies, fleet, now) -> Plan``. Pure.

For each application and each policy that selects it, the chain of checks
(``orchestrator.domain.checks.CHAIN``) reads an immutable input; the first that fires wins.
``next_due`` is the earliest instant any check (or housekeeping) could fire by time alone, read
from the same table. ``assess`` looks at one application once: its part of the plan, its next
instant and its alarms come from the same inputs (``plan`` and ``next_due`` are made of it), so
the tick, which needs the plan before its actions and the next instant and alarms after them,
reads each application's facts once for each state it has.

Independently: credentials past their expiry are expired (every app, policy or not), and
disabled or expired credentials past the policy's retention are deleted. Every application left
without a usable credential of a usage it had is reported as an ``Alarm`` (policy or not).

A maintenance window only restricts when a *routine* rotation (age, policy-changed) starts; an
expiring credential rotates outside the window when waiting for the next one would leave less
than the overlap before it expires, and provisioning never waits. Rotations due together are
spread over the window by a deterministic per-application offset, and capped per policy per tick
(most urgent first).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from events.state import AppState, Credential, RotationStatus, Status
from orchestrator.domain.checks import (
    CHAIN,
    NOTHING,
    Action,
    Check,
    Input,
    Kind,
    PlanPolicy,
    human,
    slot,
)
from orchestrator.domain.rotation import Reason, held_usable, shares_registration, undelivered
from orchestrator.domain.timemath import later

__all__ = ["CHAIN", "Action", "Alarm", "Assessment", "Check", "Kind", "Plan", "PlanPolicy",
           "Reason", "RotationDue", "assess", "next_due", "next_rotations", "plan", "plan_of",
           "policy_for", "stranded"]


@dataclass(frozen=True, slots=True)
class Alarm:
    """An application without a usable credential of a usage it had: the worst state."""

    app: str
    usage: str
    message: str
    since: datetime | None = None  # when its last usable credential stopped being usable
    rotation_id: str | None = None  # the rotation in flight for it, if any


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    deferred: tuple[Action, ...] = ()  # due but waiting: window, jitter or the per-tick cap
    problems: tuple[str, ...] = ()
    alarms: tuple[Alarm, ...] = ()
    capped: tuple[Action, ...] = ()  # of ``deferred``, the starts due now the per-tick cap left


def _gate(action: Action, policy: PlanPolicy, now: datetime) -> Action | None:
    """Place a routine start inside the window, at a deterministic offset in the first half of
    the current (or next) window; None when the window never opens."""
    if action.urgent or policy.window is None:
        return action
    window = policy.window.current_or_next(now)
    if window is None:
        return None
    not_before = slot(window, action.app, policy.name)
    return Action(action.kind, action.app, action.reason, action.message, action.usage,
                  action.policy, urgent=False, not_before=not_before)


def _housekeeping(state: AppState, policies: Sequence[PlanPolicy], now: datetime) -> list[Action]:
    out: list[Action] = []
    busy = {cid for r in state.rotations.values()
            if r.status in (RotationStatus.RUNNING, RotationStatus.PARKED)
            for cid in (r.old_credential_id, r.new_credential_id)}
    retention = {p.usage: p for p in policies}
    for cred in state.credentials.values():
        if not cred.live:
            continue
        if cred.status is not Status.EXPIRED and cred.expired_by(now):
            out.append(Action(Kind.EXPIRE, state.app, Reason.EXPIRED,
                              f"{cred.id} expired at {cred.expires_at}", usage=cred.usage.value,
                              credential_id=cred.id, urgent=True))
            continue
        policy = retention.get(cred.usage.value)
        if policy is None or cred.id in busy:
            continue
        since = cred.disabled_at if cred.status is Status.DISABLED else (
            cred.expires_at if cred.status is Status.EXPIRED else None)
        if since is not None and now - since >= policy.retention:
            out.append(Action(Kind.DELETE, state.app, Reason.RETENTION,
                              f"{cred.id} is {cred.status.value} since {human(now - since)}",
                              usage=cred.usage.value, policy=policy.name, credential_id=cred.id,
                              at_provider=shares_registration(state, cred) is None))
    return out


class Assessment:
    """One application under ``policies`` at ``now``, looked at once: its part of the plan
    (``part``), when it is next due (``next_due``) and its alarms (``alarms``), each computed
    on first use from the same inputs (one ``checks.Input`` per applied policy, whose facts the
    checks share), so a caller that needs two of them walks the chain's facts once. ``like``:
    an assessment of an earlier state of the same application under the same policies, whose
    selection is taken when the application's labels are unchanged."""

    __slots__ = ("_alarms", "_next", "_part", "inputs", "now", "policies", "problems", "state")
    state: AppState
    policies: Sequence[PlanPolicy]
    now: datetime
    problems: tuple[str, ...]
    inputs: tuple[Input, ...]

    def __init__(self, state: AppState, policies: Sequence[PlanPolicy], now: datetime,
                 like: Assessment | None = None) -> None:
        self.state, self.policies, self.now = state, policies, now
        if like is not None and _same_selection(like, state, policies):
            applied, problems = [i.policy for i in like.inputs], list(like.problems)
        else:
            applied, problems = _select(state, policies) if state.registered else ([], [])
        self.problems = tuple(problems)
        self.inputs = tuple(Input(state, policy, now) for policy in applied)
        self._part: tuple[list[Action], list[tuple[str, Action]], list[Action]] | None = None
        self._next: tuple[datetime | None] | None = None
        self._alarms: list[Alarm] | None = None

    def part(self) -> tuple[list[Action], list[tuple[str, Action]], list[Action]]:
        """What is due now: the actions (housekeeping first, then each policy's check that
        fires), the starts due now by policy name (before the per-tick cap), and the starts
        deferred to their window's slot."""
        if self._part is None:
            state, now = self.state, self.now
            actions = _housekeeping(state, [i.policy for i in self.inputs], now)
            starts: list[tuple[str, Action]] = []
            deferred: list[Action] = []
            for i in self.inputs:
                for check in CHAIN:
                    action = check.fires(i)
                    if action is NOTHING:
                        break
                    if action is None:
                        continue
                    if action.kind is Kind.START:
                        gated = _gate(action, i.policy, now)
                        if gated is None or not gated.due(now):
                            deferred.append(gated or action)
                        else:
                            starts.append((i.policy.name, gated))
                    else:
                        actions.append(action)
                    break
            self._part = actions, starts, deferred
        return self._part

    def next_due(self) -> datetime | None:
        """The earliest instant after ``now`` at which a check of ``CHAIN`` (or housekeeping)
        could fire for the application by time alone (a change of state is noticed
        separately)."""
        if self._next is None:
            state, now = self.state, self.now
            times: list[datetime | None] = [
                cred.expires_at for cred in state.credentials.values()
                if cred.live and cred.status is not Status.EXPIRED]
            for i in self.inputs:
                busy = i.running is not None
                times.extend(check.due(i) for check in CHAIN if not (busy and check.idle_only))
                retention = i.policy.retention
                for cred in state.live(i.policy.usage):
                    if cred.status is Status.DISABLED and cred.disabled_at is not None:
                        times.append(later(cred.disabled_at, retention))
                    elif cred.expires_at is not None:
                        times.append(later(cred.expires_at, retention))
            future = [t for t in times if t is not None and t > now]
            self._next = (min(future) if future else None,)
        return self._next[0]

    def alarms(self) -> list[Alarm]:
        """``stranded(state, now)``."""
        if self._alarms is None:
            self._alarms = stranded(self.state, self.now)
        return self._alarms


def _same_selection(like: Assessment, state: AppState, policies: Sequence[PlanPolicy]) -> bool:
    """Whether ``like``'s selection holds for ``state``: the same application, registered as
    it was, with the same labels, under the same policies."""
    before = like.state
    return (like.policies is policies and before.app == state.app
            and before.registered == state.registered
            and (before.labels is state.labels or before.labels == state.labels))


def assess(state: AppState, policies: Sequence[PlanPolicy], now: datetime,
           like: Assessment | None = None) -> Assessment:
    """``state`` under ``policies`` at ``now`` (``Assessment``)."""
    return Assessment(state, policies, now, like)


def plan(policies: Sequence[PlanPolicy], fleet: Sequence[AppState], now: datetime) -> Plan:
    """Everything due at ``now`` for ``fleet`` under ``policies``, most urgent first."""
    return plan_of([assess(state, policies, now) for state in fleet if state.registered],
                   policies, now)


def plan_of(assessed: Iterable[Assessment], policies: Sequence[PlanPolicy], now: datetime,
            judge: bool = True) -> Plan:
    """The plan made of these assessments (of registered applications; others are left out)
    at ``now``: their parts, capped per policy and ordered, most urgent first; with their
    alarms when ``judge``."""
    actions: list[Action] = []
    deferred: list[Action] = []
    problems: list[str] = []
    alarms: list[Alarm] = []
    starts: dict[str, list[Action]] = {}
    for one in assessed:
        if not one.state.registered:
            continue
        if judge:
            alarms.extend(one.alarms())
        problems.extend(one.problems)
        due, due_starts, waiting = one.part()
        actions.extend(due)
        deferred.extend(waiting)
        for name, start in due_starts:
            starts.setdefault(name, []).append(start)
    caps = {p.name: p.max_per_tick for p in policies}
    capped: list[Action] = []
    for name, due in starts.items():
        due.sort(key=lambda a: (not a.urgent, a.reason != Reason.EXPIRING, a.app))
        actions.extend(due[: caps[name]])
        deferred.extend(due[caps[name]:])
        capped.extend(due[caps[name]:])
    order = {Kind.EXPIRE: 0, Kind.ABANDON: 1, Kind.RETRY: 1, Kind.RESUME: 1, Kind.START: 2,
             Kind.DELETE: 3}
    actions.sort(key=lambda a: (order[a.kind], not a.urgent, a.app))
    return Plan(tuple(actions), tuple(deferred), tuple(problems), tuple(alarms), tuple(capped))


def _select(state: AppState, policies: Sequence[PlanPolicy]) -> tuple[list[PlanPolicy], list[str]]:
    """The policies that apply to ``state``: one per usage; two for one usage is a conflict
    and neither applies."""
    chosen: dict[str, PlanPolicy] = {}
    conflicted: set[str] = set()
    problems: list[str] = []
    for policy in policies:
        if not policy.selects(state):
            continue
        other = chosen.get(policy.usage)
        if other is not None:
            problems.append(f"application {state.app!r} is selected by policies {other.name!r} "
                            f"and {policy.name!r} for {policy.usage}; neither is applied to it "
                            "until one selector is narrowed")
            conflicted.add(policy.usage)
            continue
        chosen[policy.usage] = policy
    return [p for u, p in chosen.items() if u not in conflicted], problems


def policy_for(state: AppState, policies: Sequence[PlanPolicy], usage: str) -> PlanPolicy | None:
    """The policy the daemon applies to ``state`` for ``usage`` (None: none, or a conflict)."""
    if not state.registered:
        return None
    return next((p for p in _select(state, policies)[0] if p.usage == usage), None)


def next_due(state: AppState, policies: Sequence[PlanPolicy], now: datetime) -> datetime | None:
    """The earliest instant after ``now`` at which a check of ``CHAIN`` (or housekeeping) could
    fire for ``state`` by time alone (a change of state is noticed separately)."""
    return assess(state, policies, now).next_due()


@dataclass(frozen=True, slots=True)
class RotationDue:
    """When a rotation of ``app``'s ``usage`` falls due by time alone, and which check says so
    (``at`` may be past: due now, held back by a window, the cap or a failing provider)."""

    app: str
    usage: str
    policy: str
    at: datetime
    check: str


def next_rotations(state: AppState, policies: Sequence[PlanPolicy], now: datetime
                   ) -> list[RotationDue]:
    """For each policy applied to ``state``, the first instant a check of ``CHAIN`` fires by
    time (a start, a retry or the next step of one in flight), earliest first; a usage none
    fires for by time alone (it waits for a human, or for nothing) is left out."""
    out = []
    applied, _ = _select(state, policies) if state.registered else ([], [])
    for policy in applied:
        i = Input(state, policy, now)
        busy = state.running_rotation(policy.usage) is not None
        fired = _fired(i)
        if fired is not None:  # due now, or at its slot in the window
            check, action = fired
            gated = _gate(action, policy, now) if action.kind is Kind.START else action
            at = gated.not_before if gated is not None and gated.not_before else now
            out.append(RotationDue(state.app, policy.usage, policy.name, max(at, now), check))
            continue
        times = [(at, check.name) for check in CHAIN if not (busy and check.idle_only)
                 for at in (check.due(i),) if at is not None and at > now]
        if times:
            at, name = min(times)
            out.append(RotationDue(state.app, policy.usage, policy.name, at, name))
    return sorted(out, key=lambda due: (due.at, due.app, due.usage))


def _fired(i: Input) -> tuple[str, Action] | None:
    """The check of ``CHAIN`` that fires for ``i`` and its action, as ``plan`` reads it."""
    for check in CHAIN:
        action = check.fires(i)
        if action is NOTHING:
            return None
        if action is not None:
            return check.name, action
    return None


def stranded(state: AppState, now: datetime) -> list[Alarm]:
    """Each usage for which ``state`` held a usable credential and holds none at ``now`` (a
    new credential not yet delivered is not held)."""
    pending = undelivered(state)
    had: dict[str, list[Credential]] = {}
    for cred in state.credentials.values():
        if cred.activated_at is not None and cred.id not in pending:
            had.setdefault(cred.usage.value, []).append(cred)
    out: list[Alarm] = []
    for usage, creds in sorted(had.items()):
        if held_usable(state, usage, now):
            continue
        ends = [t for c in creds for t in (_unusable_since(c),) if t is not None and t <= now]
        since = max(ends) if ends else None
        rot = state.running_rotation(usage)
        doing = (f"rotation {rot.id} is {rot.status.value}" if rot is not None
                 else "no rotation in flight")
        out.append(Alarm(state.app, usage,
                         f"application {state.app!r} has no usable {usage} credential"
                         + (f" since {since.isoformat()}" if since else "") + f"; {doing}",
                         since=since, rotation_id=rot.id if rot is not None else None))
    return out


def _unusable_since(cred: Credential) -> datetime | None:
    if cred.status is Status.DELETED:
        return cred.deleted_at
    if cred.status is Status.DISABLED:
        return cred.disabled_at
    return cred.expires_at
