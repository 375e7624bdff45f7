"""Request counters for tests and the bench: answers by route and status, 429s, and faults
injected by kind. A lost answer is counted under the status ``"lost"`` (its work was done)."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any

__all__ = ["Counters"]


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._by_route: defaultdict[str, Counter[str]] = defaultdict(Counter)
            self._faults: Counter[str] = Counter()

    def answered(self, route: str, status: int | str) -> None:
        with self._lock:
            self._by_route[route][str(status)] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def count(self, route: str | None = None, status: int | str | None = None) -> int:
        with self._lock:
            routes = [self._by_route.get(route, Counter())] if route else list(
                self._by_route.values())
            return sum(c[str(status)] if status is not None else sum(c.values())
                       for c in routes)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_status: Counter[str] = Counter()
            for statuses in self._by_route.values():
                by_status.update(statuses)
            return {
                "total": sum(by_status.values()),
                "by_status": dict(sorted(by_status.items())),
                "by_route": {route: dict(sorted(c.items()))
                             for route, c in sorted(self._by_route.items())},
                "rate_limited": by_status.get("429", 0),
                "faults": dict(sorted(self._faults.items())),
            }
