"""The daemon process's own series: what it asked of its identity providers, how long its
ticks take, whether it leads, and when it last completed a tick.

``orchestrator_provider_requests_total`` and ``orchestrator_tick_duration_seconds`` count what
this process did since it started (a restart begins again at zero: Prometheus' ``rate`` and
``increase`` take that as a counter reset). ``orchestrator_last_tick_timestamp_seconds`` is
absent until the process completed a tick (a standby that never led has none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["TICK_BUCKETS", "DaemonCollector", "DaemonMetrics", "DaemonStatus"]

TICK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class DaemonMetrics:
    """The registry the daemon serves, with the counters the process feeds as it works."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: noise
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "orchestrator_provider_requests",
            "Calls made of the identity providers (register, activate, deactivate, remove, "
            "set_secret, authenticate, and the drift check's read of a client), by provider "
            "and outcome (ok, error, unavailable)",
            ["provider", "outcome"], registry=self.registry)
        self._ticks = Histogram(
            "orchestrator_tick_duration_seconds", "How long each tick of the leader took",
            buckets=TICK_BUCKETS, registry=self.registry)

    def provider_call(self, provider: str, outcome: str) -> None:
        self._requests.labels(provider, outcome).inc()

    def tick(self, seconds: float) -> None:
        self._ticks.observe(seconds)

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)


@dataclass(frozen=True)
class DaemonStatus:
    leader: bool
    last_tick_at: datetime | None


class DaemonCollector(Collector):
    """``orchestrator_leader`` and ``orchestrator_last_tick_timestamp_seconds``, read from the
    daemon at each scrape."""

    def __init__(self, status: Callable[[], DaemonStatus]) -> None:
        self._status = status

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("orchestrator_leader", "", labels=[])
        yield GaugeMetricFamily("orchestrator_last_tick_timestamp_seconds", "", labels=[])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self._status()
        yield GaugeMetricFamily("orchestrator_leader",
                                "1 while this process holds the leader lease, 0 as a standby",
                                value=1.0 if status.leader else 0.0)
        last = GaugeMetricFamily("orchestrator_last_tick_timestamp_seconds",
                                 "When this process last completed a tick (Unix time)")
        if status.last_tick_at is not None:
            last.add_metric([], status.last_tick_at.timestamp())
            yield last
