"""``daemon --listen``: the metrics and health endpoints beside a running daemon.

Ready (``/readyz`` 200) when the daemon has tried the lease (it knows its role), the database
answers a query now and the daemon is not riding out an outage, and the policies are loaded
(the daemon refuses to start on a broken set; a file broken since keeps its last good version
and is counted in ``policy_errors``). A standby is ready: it is the hot spare. The body names
the role, so a probe or a human tells the leader from a standby.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from orchestrator.bootstrap import System
from orchestrator.domain.errors import InputError
from orchestrator.entrypoints.daemon import Daemon

__all__ = ["readiness", "serve"]

log = structlog.get_logger("orchestrator.daemon")


def readiness(system: System, runner: Daemon) -> tuple[bool, dict[str, Any]]:
    from events import connections

    role = runner.role
    try:
        with system.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        database = "ok"
    except Exception as exc:
        database = connections.fault(system.engine, exc) or str(exc).splitlines()[0]
    if database == "ok" and runner.unavailable_since is not None:
        database = f"unavailable since {runner.unavailable_since.isoformat()}"
    policies = system.policies
    body = {"role": role, "database": database, "policies": len(policies.in_force()),
            "identity_providers": len(policies.identity_providers_in_force()),
            "policy_errors": len(policies.errors), "ticks": runner.ticks,
            "last_tick_at": None if runner.last_tick_at is None
            else runner.last_tick_at.isoformat()}
    return role != "starting" and database == "ok", body


@contextmanager
def serve(listen: tuple[str, int], system: System, metrics: Any, runner: Daemon,
          watch: Any) -> Iterator[None]:
    """Serve while the block runs; an address that cannot be had is one ``error:`` line."""
    from orchestrator.entrypoints.health import HealthServer

    system.serve_metrics(metrics, lambda: (runner.leader, runner.last_tick_at),
                         drift=dict if watch is None else watch.drifted)
    host, port = listen
    server = HealthServer(host, port, metrics.registry, lambda: readiness(system, runner))
    try:
        server.start()
    except OSError as exc:
        raise InputError(f"--listen {host}:{port}: cannot listen there "
                         f"({exc.strerror or exc})") from None
    log.info("metrics_serving", address=f"{host}:{server.port}",
             endpoints=["/metrics", "/healthz", "/readyz"])
    try:
        yield
    finally:
        server.stop()
