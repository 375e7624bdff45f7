"""Prometheus metrics of the daemon (``prometheus_client``), read at scrape time.

* ``fleet``: the fleet's series, from the projector's read model (credential expiry, next
  rotation, parked rotations, applications without a usable credential) and the drift watch;
  a deleted credential's series is gone from the next scrape.
* ``rotations``: ``orchestrator_rotations_total``, counted from the event log itself, so every
  replica says the same and a restart resets nothing.
* ``daemon``: the process's own: provider requests, tick duration, leadership, the last tick.
"""

from orchestrator.adapters.metrics.daemon import DaemonCollector, DaemonMetrics, DaemonStatus
from orchestrator.adapters.metrics.fleet import FleetCollector, FleetStates
from orchestrator.adapters.metrics.rotations import RotationCounts

__all__ = [
    "DaemonCollector",
    "DaemonMetrics",
    "DaemonStatus",
    "FleetCollector",
    "FleetStates",
    "RotationCounts",
]
