"""The fleet on one screen (``orchestrator status``): counts and the few rows that need an eye.

``summarize(states, policies, now)`` reads application states (the projector's read model, one
pass) and the policies, and says: applications (registered, with a usable credential of every
usage they had, without one), credentials by usage and effective status, the client secrets,
the rotations in flight and parked, the credentials that expire soonest, the rotations due
next (``planner.next_rotations``) and the applications left without a usable credential. No
I/O: the caller gathers, this counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from events.state import AppState, Credential, Rotation, RotationStatus
from orchestrator.domain.planner import Alarm, PlanPolicy, RotationDue, next_rotations, stranded

__all__ = ["FleetStatus", "summarize"]


@dataclass
class FleetStatus:
    at: datetime
    apps: int = 0
    apps_bound: Counter[str] = field(default_factory=Counter)  # by identity provider
    credentials: Counter[tuple[str, str]] = field(default_factory=Counter)  # (usage, status)
    secrets: int = 0
    running: list[tuple[str, Rotation]] = field(default_factory=list)
    parked: list[tuple[str, Rotation]] = field(default_factory=list)
    expiring: list[tuple[str, Credential]] = field(default_factory=list)  # soonest first
    next_rotations: list[RotationDue] = field(default_factory=list)  # soonest first
    alarms: list[Alarm] = field(default_factory=list)

    @property
    def apps_without_usable(self) -> int:
        return len({a.app for a in self.alarms})


def summarize(states: Iterable[AppState], policies: Sequence[PlanPolicy], now: datetime,
              limit: int = 10) -> FleetStatus:
    """The fleet at ``now``; ``expiring`` and ``next_rotations`` keep the ``limit`` soonest
    (the rotations in flight, parked ones and alarms are all kept: each needs an eye)."""
    out = FleetStatus(now)
    expiring: list[tuple[datetime, str, Credential]] = []
    due: list[RotationDue] = []
    for state in states:
        if not state.registered:
            continue
        out.apps += 1
        out.apps_bound[state.provider or "local"] += 1
        out.secrets += state.secret is not None
        for cred in state.credentials.values():
            status = cred.effective_status(now)
            out.credentials[(cred.usage.value, status.value)] += 1
            if cred.live and cred.expires_at is not None and status.value in ("added", "active"):
                expiring.append((cred.expires_at, state.app, cred))
        for rot in state.rotations.values():
            if rot.status is RotationStatus.RUNNING:
                out.running.append((state.app, rot))
            elif rot.status is RotationStatus.PARKED:
                out.parked.append((state.app, rot))
        out.alarms.extend(stranded(state, now))
        due.extend(next_rotations(state, policies, now))
        if len(expiring) > 4 * limit:  # keep memory flat on a large fleet
            expiring = sorted(expiring, key=lambda e: (e[0], e[1], e[2].id))[:limit]
        if len(due) > 4 * limit:
            due = sorted(due, key=lambda d: (d.at, d.app, d.usage))[:limit]
    out.expiring = [(app, cred) for _, app, cred in
                    sorted(expiring, key=lambda e: (e[0], e[1], e[2].id))[:limit]]
    out.next_rotations = sorted(due, key=lambda d: (d.at, d.app, d.usage))[:limit]
    out.running.sort(key=lambda r: (r[1].started_at, r[0]))
    out.parked.sort(key=lambda r: (r[1].updated_at, r[0]))
    return out
