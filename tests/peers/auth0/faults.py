"""Injected faults: a seeded RNG draws, per request and in a fixed order, added latency, a 5xx
answer, a 409 "under load" and a lost answer; scripted faults (``script``) come first and hit
the next matching requests exactly.

- 5xx and 409 answer BEFORE any work is done (nothing changes at the tenant), and so does a
  scripted 429 (an empty bucket's answer, whatever the bucket holds: a rate-limited route
  without staging a race for its last token);
- a lost answer does the work, then closes the connection without writing a byte, so the client
  sees a connection error while the state has changed (the case that makes a repeat create a
  duplicate);
- latency sleeps before the work (the sleeping function is injectable).

Faults apply to Management API calls; to ``/oauth/*`` only with ``apply_to_oauth`` (rates) or
a script entry naming the route.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.peers.auth0.config import FaultRates

__all__ = ["FAULT_KINDS", "Fault", "Faults"]

FAULT_KINDS = ("500", "502", "503", "409", "429", "lost", "latency")


@dataclass(frozen=True)
class Fault:
    latency: float = 0.0
    status: int | None = None  # 5xx, 409 or 429, answered before the work
    lost: bool = False  # work done, answer never written
    retry_after: int = 1  # a 429's Retry-After (when the switch adds one), in seconds

    @property
    def kinds(self) -> list[str]:
        kinds = ["latency"] if self.latency else []
        if self.status is not None:
            kinds.append(str(self.status))
        if self.lost:
            kinds.append("lost")
        return kinds


@dataclass
class _Scripted:
    fault: str
    method: str | None
    route: str | None
    count: int
    seconds: float

    def matches(self, method: str, route: str) -> bool:
        return ((self.method is None or self.method.upper() == method)
                and (self.route is None or self.route == route))


class Faults:
    def __init__(self, rates: FaultRates, sleep: Callable[[float], None]) -> None:
        self.sleep = sleep
        self._lock = threading.Lock()
        self._script: list[_Scripted] = []
        self.set_rates(rates)

    def set_rates(self, rates: FaultRates) -> None:
        with self._lock:
            self.rates = rates
            self._rng = random.Random(rates.seed)

    def script(self, fault: str, *, method: str | None = None, route: str | None = None,
               count: int = 1, seconds: float = 0.0) -> None:
        """The next ``count`` requests matching ``method`` and ``route`` (a template such as
        ``/api/v2/clients/{id}/credentials``; None matches any) get ``fault``."""
        if fault not in FAULT_KINDS:
            raise ValueError(f"fault must be one of {FAULT_KINDS}, not {fault!r}")
        with self._lock:
            self._script.append(_Scripted(fault, method, route, count, seconds))

    def scripted(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(item.__dict__) for item in self._script]

    def clear_script(self) -> None:
        with self._lock:
            self._script.clear()

    def decide(self, method: str, route: str, *, oauth: bool, under_load: bool) -> Fault:
        with self._lock:
            for item in self._script:
                if item.matches(method, route):
                    item.count -= 1
                    if item.count <= 0:
                        self._script.remove(item)
                    return _from_script(item)
            rates = self.rates
            if oauth and not rates.apply_to_oauth:
                return Fault()
            if rates.methods and method not in {m.upper() for m in rates.methods}:
                return Fault()
            draws = [self._rng.random() for _ in range(4)]
            status_pick = self._rng.choice(rates.error_statuses or [500])
        latency = rates.latency_seconds if draws[0] < rates.latency_rate else 0.0
        status: int | None = None
        if draws[1] < rates.error_rate:
            status = status_pick
        elif draws[2] < rates.conflict_rate and (under_load or not rates.conflict_under_load):
            status = 409
        lost = status is None and draws[3] < rates.lost_rate
        return Fault(latency=latency, status=status, lost=lost)


def _from_script(item: _Scripted) -> Fault:
    if item.fault == "lost":
        return Fault(lost=True)
    if item.fault == "latency":
        return Fault(latency=item.seconds)
    if item.fault == "429":
        return Fault(status=429, retry_after=max(1, math.ceil(item.seconds)))
    return Fault(status=int(item.fault))
