"""The simulator: the same planner, rotation process and provider, under a virtual clock.

``simulate`` is given a fresh in-memory log, keystore and local provider (wired by the
composition root, ``bootstrap.in_memory``), registers a fleet of
applications the policies select, and runs the production ``Ticker`` every ``tick`` of virtual
time for ``days``. It then checks the invariants on the log it produced:

* never more than 2 live credentials per application and usage;
* never an instant without a usable credential, for an application and usage that had one;
* never an old credential disabled before its successor passed the provider's test;
* no rotation completed twice;
* the hash chain verifies;

and, as liveness, that every rotation that started completed (none parked, none still running
unless it started within the longest overlap of the end). ``ok`` needs every safety invariant,
and liveness too unless the provider was told to fail (``fault_rate``).

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
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, Protocol

from events import catalog as ev
from events.chain import Verified, verify
from events.state import AppState
from events.store import EventStore, Recorded
from orchestrator.app.fleet import FleetView
from orchestrator.app.service import Service
from orchestrator.app.tick import Ticker
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
    v = result.violations
    by_stream: dict[str, list[Recorded]] = defaultdict(list)
    for rec in records:
        by_stream[rec.stream_id].append(rec)
    max_two = coverage = tested_first = once = finished = True
    grace = max((p.params.overlap for p in policies), default=timedelta(0)) + IN_FLIGHT_MARGIN
    for state in fleet.all():
        stream = by_stream[f"app:{state.app}"]
        max_two &= _at_most_two(stream, state.app, v)
        coverage &= _always_usable(state, end, v)
        tested_first &= _disabled_after_tested(stream, state.app, v)
        for rot in state.rotations.values():
            in_flight = rot.status.value == "running" and end - rot.started_at < grace
            if rot.status.value != "completed" and not in_flight:
                finished = False
                v.append(f"{state.app}: rotation {rot.id} ended {rot.status.value}")
        completions = Counter(r.payload["rotation_id"] for r in stream
                              if r.type == ev.RotationCompleted.type_name)
        for rid, n in completions.items():
            if n != 1:
                once = False
                v.append(f"{state.app}: rotation {rid} completed {n} times")
    chain = verify(records)
    result.invariants = {
        "at_most_two_live_per_usage": max_two,
        "always_a_usable_credential": coverage,
        "old_disabled_only_after_new_tested": tested_first,
        "no_rotation_completed_twice": once,
        "hash_chain_verifies": isinstance(chain, Verified),
    }
    result.liveness = {"every_rotation_completed": finished}


def _at_most_two(stream: list[Recorded], app: str, v: list[str]) -> bool:
    live: dict[str, set[str]] = defaultdict(set)
    usage_of: dict[str, str] = {}
    for rec in stream:
        data = rec.payload
        if rec.type == ev.CredentialAdded.type_name:
            usage_of[data["credential_id"]] = data["usage"]
            live[data["usage"]].add(data["credential_id"])
            if len(live[data["usage"]]) > 2:
                v.append(f"{app}: {len(live[data['usage']])} live {data['usage']} credentials "
                         f"at position {rec.position}")
                return False
        elif rec.type == ev.CredentialDeleted.type_name:
            live[usage_of[data["credential_id"]]].discard(data["credential_id"])
    return True


def _always_usable(state: AppState, end: datetime, v: list[str]) -> bool:
    """Usable intervals [activated, min(disabled, deleted, expires)) of each usage cover the
    time from the first activation to the end, without a gap."""
    ok = True
    intervals: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for c in state.credentials.values():
        if c.activated_at is None:
            continue
        stops = [t for t in (c.disabled_at, c.deleted_at, c.expires_at) if t is not None]
        intervals[c.usage.value].append((c.activated_at, min(stops) if stops else end))
    for usage, spans in intervals.items():
        spans.sort()
        covered = spans[0][1]
        for begin, stop in spans[1:]:
            if begin > covered:
                ok = False
                v.append(f"{state.app}: no usable {usage} credential from {covered} to {begin}")
            covered = max(covered, stop)
        if covered < end:
            ok = False
            v.append(f"{state.app}: no usable {usage} credential from {covered} to the end")
    return ok


def _disabled_after_tested(stream: list[Recorded], app: str, v: list[str]) -> bool:
    tested: set[str] = set()
    ok = True
    for rec in stream:
        data = rec.payload
        if rec.type == ev.RotationStepRecorded.type_name and data["step"] == "tested":
            tested.add(data["rotation_id"])
        elif (rec.type == ev.CredentialDisabled.type_name and rec.correlation_id
              and rec.correlation_id not in tested):
            ok = False
            v.append(f"{app}: {data['credential_id']} disabled by rotation "
                     f"{rec.correlation_id} before the new credential was tested")
    return ok

