"""The fleet's series, computed at each scrape from the projector's read model.

``FleetStates`` keeps the projected application states in memory and reads again only those
whose stream version moved since the last scrape (a query of every app's version otherwise).
The read model is the leader's projection, brought up to date at the start of each tick; a
standby reads the same tables, so it serves the same series.

Series (cert-manager's timestamp style: an alert is ``expiry - time()``):

* ``orchestrator_credential_expiration_timestamp_seconds{app,usage,credential_id,kid}``: each
  active credential (one the provider accepts) that has an expiry; one added and not yet active
  (a rotation's new key before its upload), disabled, expired or deleted has no series;
* ``orchestrator_credential_next_rotation_timestamp_seconds{app,usage}``: when the next rotation
  is due (``domain.outlook``), for each usage a policy applies to;
* ``orchestrator_rotations_parked{app,usage}``: rotations parked for a human (only where some);
* ``orchestrator_apps_without_usable_credential``: applications holding no usable credential
  of a usage they had (the planner's alarm);
* ``orchestrator_drift{app}``: 1 while the drift watch holds the app (its provider contradicts
  the log, or its client is missing), 0 once compared and agreeing; only apps it compares.

While the database cannot be read, a scrape has none of these (``metrics_unavailable`` is
logged at warning level); the daemon's own series (leadership, the last tick) still answer.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from events.projector import Projector
from events.state import AppState, RotationStatus, Status
from orchestrator.domain.outlook import next_rotations
from orchestrator.domain.planner import PlanPolicy, stranded

__all__ = ["FleetCollector", "FleetStates"]

log = structlog.get_logger("orchestrator.metrics")



class FleetStates:
    """The read model's application states, read again only where their version moved."""

    def __init__(self, projector: Projector) -> None:
        self._projector = projector
        self._states: dict[str, AppState] = {}
        self._lock = threading.Lock()

    def current(self) -> list[AppState]:
        with self._lock:
            versions = self._projector.versions()
            moved = [app for app, version in versions.items()
                     if (known := self._states.get(app)) is None or known.version != version]
            if moved:
                for state in self._projector.states_of(moved):
                    self._states[state.app] = state
            for gone in self._states.keys() - versions.keys():
                del self._states[gone]  # the read model was rebuilt without it
            return [self._states[app] for app in sorted(self._states)]


class FleetCollector(Collector):
    def __init__(self, states: FleetStates, policies: Callable[[], Sequence[PlanPolicy]],
                 clock: Callable[[], datetime],
                 drift: Callable[[], Mapping[str, bool]] = dict) -> None:
        self._states = states
        self._policies = policies
        self._clock = clock
        self._drift = drift

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without reading anything (the registry asks when it is registered)."""
        return iter(_families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._clock()
        try:
            states = [s for s in self._states.current() if s.registered]
        except Exception as exc:  # the database away: the process's own series still answer
            log.warning("metrics_unavailable", series="fleet", error=str(exc).splitlines()[0])
            return
        policies = self._policies()
        expiration, next_rotation, parked, without_family, drift = _families()
        without = 0
        for state in states:
            for cred in sorted(state.credentials.values(), key=lambda c: c.id):
                if cred.status is Status.ACTIVE and cred.expires_at is not None:
                    expiration.add_metric([state.app, cred.usage.value, cred.id, cred.kid],
                                          cred.expires_at.timestamp())
            for usage, at in next_rotations(state, policies, now).items():
                next_rotation.add_metric([state.app, usage], at.timestamp())
            stuck = Counter(r.usage for r in state.rotations.values()
                            if r.status is RotationStatus.PARKED)
            for usage, count in sorted(stuck.items()):
                parked.add_metric([state.app, usage], count)
            without += bool(stranded(state, now))
        without_family.add_metric([], without)
        for app, drifted in sorted(self._drift().items()):
            drift.add_metric([app], 1.0 if drifted else 0.0)
        yield from (expiration, next_rotation, parked, without_family, drift)


def _families() -> tuple[GaugeMetricFamily, ...]:
    """The fleet's families, empty."""
    return (
        GaugeMetricFamily("orchestrator_credential_expiration_timestamp_seconds",
                          "When each active credential expires (Unix time)",
                          labels=["app", "usage", "credential_id", "kid"]),
        GaugeMetricFamily("orchestrator_credential_next_rotation_timestamp_seconds",
                          "When the next rotation of the application's usage is due (Unix "
                          "time; in the past while one is due or in flight)",
                          labels=["app", "usage"]),
        GaugeMetricFamily("orchestrator_rotations_parked",
                          "Rotations parked for a human (orchestrator rotations retry|abandon)",
                          labels=["app", "usage"]),
        GaugeMetricFamily("orchestrator_apps_without_usable_credential",
                          "Applications holding no usable credential of a usage they had",
                          labels=[]),
        GaugeMetricFamily("orchestrator_drift",
                          "1 while the application's identity provider contradicts the log (or "
                          "its client is missing) and its rotations are held; 0 once compared "
                          "and agreeing", labels=["app"]),
    )
