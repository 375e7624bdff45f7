"""What the daemon should do now, and why: ``plan(policies, fleet, now) -> Plan``. Pure.

For each application and each policy that selects it, an ordered chain of small named checks
reads an immutable input; the first that fires wins and gives a reason and a message (the way
cert-manager decides re-issuance):

    running rotation  -> resume it when its next step is due (overdue-step), else nothing
    no usable credential, never had one            -> provision
    no usable credential, the last ones expired    -> expired
    the newest usable credential expires soon      -> expiring
    it no longer matches the policy (alg, size)    -> policy-changed
    it is older than the rotation age              -> age

Independently: credentials past their expiry are expired (every app, policy or not), and
disabled or expired credentials past the policy's retention are deleted.

A maintenance window only restricts when a *routine* rotation (age, policy-changed) starts; an
expiring credential rotates outside the window when waiting for the next one would leave less
than the overlap before it expires, and provisioning never waits. Rotations due together are
spread over the window by a deterministic per-application offset, and capped per policy per tick
(most urgent first).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from events.state import AppState, Credential, RotationStatus, Status
from orchestrator.domain.rotation import (
    SECRET_USAGE,
    Params,
    Reason,
    Step,
    replaced_credential,
    resume,
)
from orchestrator.domain.timemath import earlier, later
from orchestrator.domain.window import Window

__all__ = ["Action", "Kind", "Plan", "PlanPolicy", "Reason", "next_due", "plan"]


class Kind(StrEnum):
    START = "start"  # start a rotation
    RESUME = "resume"  # advance an in-flight rotation
    RETRY = "retry"  # send a parked rotation back to work: its old credential is expiring
    EXPIRE = "expire"  # record credential.expired
    DELETE = "delete"  # delete a credential past retention


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """What the planner needs of a policy (built from the policy file by the shell)."""

    name: str
    params: Params
    every: timedelta
    before_expiry: timedelta
    retention: timedelta
    apps: tuple[str, ...] = ("*",)
    labels: Mapping[str, str] = field(default_factory=dict)
    window: Window | None = None
    max_per_tick: int = 50
    matches: Callable[[str, Mapping[str, str]], bool] | None = None

    @property
    def usage(self) -> str:
        return self.params.usage

    def selects(self, app: AppState) -> bool:
        if self.matches is not None:
            return self.matches(app.app, app.labels)
        from fnmatch import fnmatchcase

        return any(fnmatchcase(app.app, p) for p in self.apps) and all(
            app.labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    app: str
    reason: Reason
    message: str
    usage: str | None = None
    policy: str | None = None
    credential_id: str | None = None
    rotation_id: str | None = None
    urgent: bool = False
    not_before: datetime | None = None  # START: deferred inside the window until then

    def due(self, now: datetime) -> bool:
        return self.not_before is None or self.not_before <= now


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    deferred: tuple[Action, ...] = ()  # due but waiting: window, jitter or the per-tick cap
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Input:
    state: AppState
    policy: PlanPolicy
    now: datetime

    @property
    def newest(self) -> Credential | None:
        return replaced_credential(self.state, self.policy.usage, self.now)


# --- the chain of checks -----------------------------------------------------------------------


def _running(i: _Input) -> Action | None:
    rot = i.state.running_rotation(i.policy.usage)
    if rot is None:
        return None
    if rot.status is RotationStatus.PARKED:
        old = i.state.credentials.get(rot.old_credential_id or "")
        if (old is not None and old.usable(i.now) and old.expires_at is not None
                and old.expires_at - i.now <= i.policy.before_expiry):
            return Action(Kind.RETRY, i.state.app, Reason.EXPIRING,
                          f"rotation {rot.id} is parked and {old.id} expires in "
                          f"{_human(old.expires_at - i.now)}: retrying rather than let it expire",
                          usage=rot.usage, policy=i.policy.name, rotation_id=rot.id, urgent=True)
        return _NOTHING  # a human decides: orchestrator rotations retry|abandon
    if resume(i.state, rot, i.policy.params, i.now).step is Step.WAIT:
        return _NOTHING  # its backoff or its overlap runs; next_due knows when it ends
    return Action(Kind.RESUME, i.state.app, Reason.OVERDUE_STEP,
                  f"rotation {rot.id} has a step due", usage=rot.usage, policy=i.policy.name,
                  rotation_id=rot.id, urgent=True)


def _no_usable(i: _Input) -> Action | None:
    if i.policy.usage == SECRET_USAGE:
        if i.state.secret is None:
            return _start(i, Reason.PROVISION, "the application has no client secret yet", True)
        return None
    if i.newest is not None:
        return None
    had = [c for c in i.state.credentials.values() if c.usage == i.policy.usage]
    if any(c.status is Status.EXPIRED or c.expired_by(i.now) for c in had):
        return _start(i, Reason.EXPIRED, f"every {i.policy.usage} credential has expired", True)
    return _start(i, Reason.PROVISION, f"no usable {i.policy.usage} credential yet", True)


def _expiring(i: _Input) -> Action | None:
    cred = i.newest
    if cred is None or cred.expires_at is None:
        return None
    left = cred.expires_at - i.now
    if left > i.policy.before_expiry:
        return None
    return _start(i, Reason.EXPIRING, f"{cred.id} expires in {_human(left)}",
                  _must_not_wait(i, cred.expires_at))


def _policy_changed(i: _Input) -> Action | None:
    cred = i.newest
    params = i.policy.params
    if cred is None or i.policy.usage in (SECRET_USAGE, "mtls"):
        return None
    if cred.alg != params.algorithm or cred.key_size != params.key_size:
        return _start(i, Reason.POLICY_CHANGED,
                      f"{cred.id} is {cred.alg}/{cred.key_size}, the policy wants "
                      f"{params.algorithm}/{params.key_size}", False)
    return None


def _age(i: _Input) -> Action | None:
    if i.policy.usage == SECRET_USAGE:
        if i.state.secret is None:
            return None
        since = i.state.secret.rotated_at
        subject = f"client secret v{i.state.secret.version}"
    else:
        cred = i.newest
        if cred is None:
            return None
        since = cred.activated_at or cred.added_at
        subject = cred.id
    age = i.now - since
    if age < i.policy.every:
        return None
    return _start(i, Reason.AGE, f"{subject} is {_human(age)} old (rotate every "
                  f"{_human(i.policy.every)})", False)


CHECKS: tuple[Callable[[_Input], Action | None], ...] = (
    _running, _no_usable, _expiring, _policy_changed, _age,
)
_NOTHING = Action(Kind.RESUME, "", Reason.OVERDUE_STEP, "")  # sentinel: stop the chain


def _start(i: _Input, reason: Reason, message: str, urgent: bool) -> Action:
    return Action(Kind.START, i.state.app, reason, message, usage=i.policy.usage,
                  policy=i.policy.name, urgent=urgent)


def _must_not_wait(i: _Input, expires_at: datetime) -> bool:
    """True when waiting for this application's slot in the next window would leave less
    than the overlap before ``expires_at``."""
    window = i.policy.window
    if window is None or window.is_open(i.now):
        return True
    nxt = window.current_or_next(i.now)
    return nxt is None or (
        _slot(nxt, i.state.app, i.policy.name) + i.policy.params.overlap >= expires_at)


def _jitter(app: str, policy: str) -> float:
    digest = hashlib.sha256(f"{policy}/{app}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def _slot(window: tuple[datetime, datetime], app: str, policy: str) -> datetime:
    """Where a routine start of ``app`` goes in ``window``: a deterministic offset in its
    first half."""
    return window[0] + (window[1] - window[0]) / 2 * _jitter(app, policy)


def _gate(action: Action, policy: PlanPolicy, now: datetime) -> Action | None:
    """Place a routine start inside the window, at a deterministic offset in the first half of
    the current (or next) window; None when the window never opens."""
    if action.urgent or policy.window is None:
        return action
    window = policy.window.current_or_next(now)
    if window is None:
        return None
    not_before = _slot(window, action.app, policy.name)
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
                              f"{cred.id} is {cred.status.value} since {_human(now - since)}",
                              usage=cred.usage.value, policy=policy.name, credential_id=cred.id))
    return out


def plan(policies: Sequence[PlanPolicy], fleet: Sequence[AppState], now: datetime) -> Plan:
    """Everything due at ``now`` for ``fleet`` under ``policies``, most urgent first."""
    actions: list[Action] = []
    deferred: list[Action] = []
    problems: list[str] = []
    starts: dict[str, list[Action]] = {}
    for state in fleet:
        if not state.registered:
            continue
        applied, conflicts = _select(state, policies)
        problems.extend(conflicts)
        actions.extend(_housekeeping(state, applied, now))
        for policy in applied:
            i = _Input(state, policy, now)
            for check in CHECKS:
                action = check(i)
                if action is _NOTHING:
                    break
                if action is None:
                    continue
                if action.kind is Kind.START:
                    gated = _gate(action, policy, now)
                    if gated is None or not gated.due(now):
                        deferred.append(gated or action)
                    else:
                        starts.setdefault(policy.name, []).append(gated)
                else:
                    actions.append(action)
                break
    caps = {p.name: p.max_per_tick for p in policies}
    for name, due in starts.items():
        due.sort(key=lambda a: (not a.urgent, a.reason != Reason.EXPIRING, a.app))
        actions.extend(due[: caps[name]])
        deferred.extend(due[caps[name]:])
    order = {Kind.EXPIRE: 0, Kind.RETRY: 1, Kind.RESUME: 1, Kind.START: 2, Kind.DELETE: 3}
    actions.sort(key=lambda a: (order[a.kind], not a.urgent, a.app))
    return Plan(tuple(actions), tuple(deferred), tuple(problems))


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


def next_due(state: AppState, policies: Sequence[PlanPolicy], now: datetime) -> datetime | None:
    """The earliest instant after ``now`` at which a check could fire for ``state`` by time
    alone (a change of state is noticed separately)."""
    times: list[datetime | None] = []
    for cred in state.credentials.values():
        if cred.live and cred.status is not Status.EXPIRED:
            times.append(cred.expires_at)
    applied, _ = _select(state, policies) if state.registered else ([], [])
    for policy in applied:
        rot = state.running_rotation(policy.usage)
        if rot is not None:
            old = state.credentials.get(rot.old_credential_id or "")
            if rot.status is RotationStatus.PARKED and old is not None and old.expires_at:
                times.append(earlier(old.expires_at, policy.before_expiry))
            if rot.status is RotationStatus.RUNNING:
                times.append(rot.next_attempt_at or now)
                if rot.tested_at is not None:
                    times.append(later(rot.tested_at, policy.params.overlap))
            continue
        if policy.usage == SECRET_USAGE:
            if state.secret is not None:
                times.append(later(state.secret.rotated_at, policy.every))
        else:
            newest = replaced_credential(state, policy.usage, now)
            if newest is not None:
                if newest.expires_at is not None:
                    times.append(earlier(newest.expires_at, policy.before_expiry))
                times.append(later(newest.activated_at or newest.added_at, policy.every))
        for cred in state.live(policy.usage):
            if cred.status is Status.DISABLED and cred.disabled_at is not None:
                times.append(later(cred.disabled_at, policy.retention))
            elif cred.expires_at is not None:
                times.append(later(cred.expires_at, policy.retention))
    future = [t for t in times if t is not None and t > now]
    return min(future) if future else None


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds // size}{unit}"
    return f"{sign}{seconds}s"
