"""When each application's next rotation is due, by usage. Pure: ``now`` is an argument.

Read from the planner's own chain of checks (``checks.CHAIN``), so what the metrics say agrees
with what the daemon does:

* a rotation of the usage in flight (running, or parked for a human): the instant it started
  (it is the rotation that was due; it lies in the past);
* none in flight: the earliest instant a check that starts one fires by time alone (the newest
  usable credential's age, its ``beforeExpiry``, its expiry); ``now`` when one fires already
  (say, the policy changed the algorithm); none when only a change of state could start one.

It is the instant the rotation is *due*; a maintenance window may start a routine one later.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from events.state import AppState
from orchestrator.domain.checks import CHAIN, Input, Kind, PlanPolicy
from orchestrator.domain.planner import policy_for

__all__ = ["next_rotations"]


def next_rotations(state: AppState, policies: Sequence[PlanPolicy], now: datetime
                   ) -> dict[str, datetime]:
    """usage -> when its next rotation is (or was) due, for each usage a policy applies to
    ``state`` for (none for an unregistered application, or a usage two policies claim)."""
    out: dict[str, datetime] = {}
    for usage in sorted({p.usage for p in policies}):
        policy = policy_for(state, policies, usage)
        if policy is None:
            continue
        at = _next(Input(state, policy, now))
        if at is not None:
            out[usage] = at
    return out


def _next(i: Input) -> datetime | None:
    rot = i.state.running_rotation(i.policy.usage)
    if rot is not None:
        return rot.started_at
    times: list[datetime] = []
    for check in CHAIN:
        if not check.idle_only:
            continue
        action = check.fires(i)
        if action is not None and action.kind is Kind.START:
            times.append(i.now)
        due = check.due(i)
        if due is not None:
            times.append(due)
    return min(times, default=None)
