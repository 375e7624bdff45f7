"""``orchestrator_rotations_total{usage,result}``: rotations ended, counted from the event log.

Each scrape reads only the rotation events recorded since the last one (``rotation.started``
for the usage, then ``rotation.completed``, ``rotation.failed``, ``rotation.parked``,
``rotation.abandoned``), so the counts are the log's: the same on every replica, leader or
standby, and never reset by a restart. ``result`` is ``completed``, ``failed`` (a step that
failed and is retried or parked), ``parked`` (the retry budget used up; a human decides) or
``abandoned``. While the database cannot be read, a scrape gives the counts as last read.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import structlog
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from events import catalog as ev
from events.store import EventStore, ReadFilter

__all__ = ["RESULTS", "RotationCounts"]

log = structlog.get_logger("orchestrator.metrics")

RESULTS = {ev.RotationCompleted.type_name: "completed", ev.RotationFailed.type_name: "failed",
           ev.RotationParked.type_name: "parked", ev.RotationAbandoned.type_name: "abandoned"}
ENDED = (ev.RotationCompleted.type_name, ev.RotationAbandoned.type_name)
TYPES = (ev.RotationStarted.type_name, *RESULTS)


class RotationCounts(Collector):
    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._position = 0
        self._usage: dict[str, str] = {}  # rotation id -> usage, while it may still count
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()  # two scrapes at once read on from one position

    def _catch_up(self) -> None:
        for rec in self._store.read(ReadFilter(after=self._position, types=TYPES)):
            self._position = rec.position
            rid = rec.payload.get("rotation_id", "")
            if rec.type == ev.RotationStarted.type_name:
                self._usage[rid] = rec.payload.get("usage", "")
                continue
            self._counts[(self._usage.get(rid, "unknown"), RESULTS[rec.type])] += 1
            if rec.type in ENDED:
                self._usage.pop(rid, None)

    def describe(self) -> Iterator[CounterMetricFamily]:
        """The family without reading the log (the registry asks when it is registered)."""
        yield _family()

    def collect(self) -> Iterator[CounterMetricFamily]:
        with self._lock:
            try:
                self._catch_up()
            except Exception as exc:  # the database away: the counts as last read
                log.warning("metrics_unavailable", series="rotations",
                            error=str(exc).splitlines()[0])
            counts = dict(self._counts)
        family = _family()
        for (usage, result), n in sorted(counts.items()):
            family.add_metric([usage, result], n)
        yield family


def _family() -> CounterMetricFamily:
    return CounterMetricFamily("orchestrator_rotations",
                               "Rotations by usage and result, as the event log records them",
                               labels=["usage", "result"])
