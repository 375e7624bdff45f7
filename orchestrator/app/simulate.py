"""The simulator: the same planner, rotation process and provider, under a virtual clock.

``simulate`` is given a fresh in-memory log, keystore and local provider (wired by the
composition root, ``bootstrap.in_memory``), registers a fleet of
applications the policies select, and runs the production ``Ticker`` every ``tick`` of virtual
time for ``days``. It then checks the invariants on the log it produced:

* never more than 2 live credentials per application and usage;
* never an instant without a usable credential *held by the application* (delivered to it), for
  an application and usage that had one;
* never an old credential disabled before its successor passed the provider's test;
* no rotation completed twice;
* the hash chain verifies;

each checked at every event instant, not once per tick (``orchestrator.app.invariants``): a
rotation parked between two ticks while the old credential expires shows as the gap it is

and, as liveness, that every rotation that started completed (none parked, none still running
unless it started within the longest overlap of the end). ``ok`` needs every safety invariant,
always, and liveness too unless the provider was told to fail (``fault_rate``), when parked
rotations are expected.

The one thing that differs from production is where RSA keys come from: generating ~5,000
2048-bit keys would take minutes, so the simulator multiplies pairs from a pool of primes
(``PrimePairKeys``). Those keys are real RSA keys (real signatures, real verification by the
provider, unique fingerprints) but weak, since they share primes: they never leave the
simulation, and nothing else may use this key source. Nor does the simulator write delivery
files: it delivers to nobody (the step is still recorded).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, Protocol

from events import catalog as ev
from events.chain import Verified, verify
from events.store import EventStore, Recorded
from orchestrator.app.fleet import FleetView
from orchestrator.app.invariants import check
from orchestrator.app.service import Service
from orchestrator.app.tick import Ticker
from orchestrator.domain.errors import InputError
from orchestrator.domain.planner import PlanPolicy

__all__ = ["Simulated", "SimulationResult", "fleet_for", "simulate"]

IN_FLIGHT_MARGIN = timedelta(days=1)  # beyond the longest overlap, for steps and backoff


@dataclass
class SimulationResult:
    days: int
    apps: int
    ticks: int
    elapsed_seconds: float
    events: int
    by_month: dict[str, Counter[str]] = field(default_factory=dict)
    totals: Counter[str] = field(default_factory=Counter)
    invariants: dict[str, bool] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    liveness: dict[str, bool] = field(default_factory=dict)
    faults: bool = False

    @property
    def ok(self) -> bool:
        """Every safety invariant held; and, without injected faults, every rotation finished."""
        return all(self.invariants.values()) and (self.faults or all(self.liveness.values()))

    def as_json(self) -> dict[str, Any]:
        return {
            "days": self.days, "apps": self.apps, "ticks": self.ticks, "events": self.events,
            "elapsed_seconds": round(self.elapsed_seconds, 2),
            "totals": dict(self.totals),
            "by_month": {m: dict(c) for m, c in sorted(self.by_month.items())},
            "invariants": self.invariants, "liveness": self.liveness, "faults": self.faults,
            "violations": self.violations[:50], "ok": self.ok,
        }


def fleet_for(policies: Sequence[PlanPolicy], count: int) -> list[tuple[str, dict[str, str]]]:
    """``count`` application names and labels that the policies' selectors choose, spread
    round-robin over the policies' name patterns."""
    patterns: list[tuple[str, dict[str, str]]] = []
    for policy in policies:
        for pattern in policy.apps:
            patterns.append((pattern, dict(policy.labels)))
    if not patterns:
        patterns = [("app-*", {})]
    fleet: list[tuple[str, dict[str, str]]] = []
    seen: set[str] = set()
    for n in itertools.count():
        if len(fleet) >= count:
            break
        if n >= 100 * (count + len(patterns)):  # a name per try or two is usual: no progress
            raise InputError(
                f"the selectors' app patterns ({', '.join(p for p, _ in patterns)}) match too "
                "few names made of letters, digits, '.', '_' and '-' to simulate "
                f"{count} applications; simulate fewer, or fix the patterns")
        pattern, labels = patterns[n % len(patterns)]
        name = pattern.replace("*", f"{n:05d}").replace("?", "x")
        name = "".join(ch if ch.isalnum() or ch in "._-" else "x" for ch in name)
        if name in seen or not fnmatchcase(name, pattern):
            continue
        seen.add(name)
        labels = dict(labels)
        for policy in policies:  # make every label selector that names this app hold
            if any(fnmatchcase(name, p) for p in policy.apps):
                for k, v in policy.labels.items():
                    labels.setdefault(k, v)
        fleet.append((name, labels))
    return fleet


class Simulated(Protocol):
    """What the simulator drives: a system wired over an in-memory log (``bootstrap.in_memory``)."""

    store: EventStore
    service: Service
    fleet: FleetView
    ticker: Ticker


def simulate(
    build: Callable[[Callable[[], datetime]], Simulated],
    policies: Sequence[PlanPolicy],
    apps: int,
    days: int,
    start: datetime,
    tick: timedelta = timedelta(hours=1),
    faults: bool = False,
) -> SimulationResult:
    """Register a fleet, tick it for ``days`` of virtual time, and check the log it produced.

    ``build`` wires the system given the virtual clock (the composition root does that)."""
    began = time.perf_counter()
    now = [start]

    def clock() -> datetime:
        return now[0]

    system = build(clock)
    store, service, fleet, ticker = system.store, system.service, system.fleet, system.ticker
    for name, labels in fleet_for(policies, apps):
        service.register_app(name, labels)
    end = start + timedelta(days=days)
    ticks = 0
    while now[0] <= end:
        ticker.tick()
        ticks += 1
        now[0] += tick
    records = list(store.read())
    result = SimulationResult(days, apps, ticks, 0.0, len(records), faults=faults)
    _tally(records, result)
    _check(records, fleet, policies, end, result)
    result.elapsed_seconds = time.perf_counter() - began
    return result


def _tally(records: list[Recorded], result: SimulationResult) -> None:
    counted = {
        ev.RotationCompleted.type_name: "rotations", ev.CredentialExpired.type_name: "expiries",
        ev.CredentialDeleted.type_name: "deletions", ev.RotationFailed.type_name: "failures",
        ev.RotationParked.type_name: "parked", ev.SecretRotated.type_name: "secret_rotations",
        ev.CredentialAdded.type_name: "credentials_added",
    }
    for rec in records:
        name = counted.get(rec.type)
        if name is None:
            continue
        month = rec.occurred_at.strftime("%Y-%m")
        result.by_month.setdefault(month, Counter())[name] += 1
        result.totals[name] += 1


def _check(records: list[Recorded], fleet: FleetView, policies: Sequence[PlanPolicy],
           end: datetime, result: SimulationResult) -> None:
    """The safety invariants at every event instant (``invariants.check``), the chain, and
    liveness on the final state."""
    checked = check(((r.stream_id, r.event, r.occurred_at, r.correlation_id, r.position)
                     for r in records), end)
    v = result.violations
    v.extend(checked.violations)
    finished = True
    grace = max((p.params.overlap for p in policies), default=timedelta(0)) + IN_FLIGHT_MARGIN
    for state in fleet.all():
        for rot in state.rotations.values():
            in_flight = rot.status.value == "running" and end - rot.started_at < grace
            if rot.status.value != "completed" and not in_flight:
                finished = False
                v.append(f"{state.app}: rotation {rot.id} ended {rot.status.value}")
    chain = verify(records)
    result.invariants = {**checked.invariants, "hash_chain_verifies": isinstance(chain, Verified)}
    result.liveness = {"every_rotation_completed": finished}
