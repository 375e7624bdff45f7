"""``orchestrator daemon``: apply the policies until SIGTERM."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from orchestrator.domain.errors import OrchestratorError
from orchestrator.entrypoints.cli.context import system_of
from orchestrator.entrypoints.cli.params import DurationOrOff, Seconds


@click.command()
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder [env ORCHESTRATOR_POLICIES; default ./policies].")
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@click.option("--interval", type=Seconds(0.1, 86_400), default=30.0, show_default=True,
              help="Seconds between ticks (0.1 to 86400).")
@click.option("--drift-every", type=DurationOrOff(), default="1h", show_default=True,
              help="Compare each application with its identity provider this often (0: never); "
                   "an application is rotated only once compared, and not while they differ.")
@click.option("--json-logs/--pretty-logs", default=None,
              help="Log format (default: pretty on a terminal, JSON lines otherwise).")
@click.pass_context
def daemon(ctx: click.Context, policies_dir: Path | None, once: bool, interval: float,
           drift_every: timedelta, json_logs: bool | None) -> None:
    """Apply the rotation policies: rotate on schedule, enforce expiry, until SIGTERM."""

    from orchestrator.entrypoints.daemon import Daemon
    from orchestrator.entrypoints.logs import configure

    configure(json_logs, capture_uncaught=True)
    stop_flag: dict[str, Any] = {}
    system = system_of(ctx, policies=policies_dir, daemon=True,
                     should_stop=lambda: bool(stop_flag.get("daemon")
                                              and stop_flag["daemon"].stopping.is_set()))

    projector, lease = system.projector, system.lease
    assert projector is not None and lease is not None  # bootstrap() always sets both
    system.policies.check()  # nothing in memory to fall back on yet: a broken set is refused

    watch = _drift_watch(system, drift_every)
    import structlog

    log = structlog.get_logger("orchestrator.daemon")
    if watch is not None:  # asked before every action at a provider: compared, and agreeing
        system.ticker.gate_with(watch.gate)

    def tick() -> None:
        projector.catch_up()
        try:
            system.ticker.tick()
        finally:  # the rest of the tick's budget (the apps due by time), then the next's
            if watch is not None:
                try:
                    watch.run()
                except Exception as exc:  # the check never stops the rotations of other apps
                    log.exception("drift_check_failed", error=str(exc))

    def describe(now: datetime) -> dict[str, Any]:
        return {"next_expiry": projector.next_expiry(now),
                "next_rotation_due": system.ticker.next_due()}

    poll = ctx.find_root().obj.get("daemon_poll")  # main()'s daemon_poll=, for a virtual clock
    runner = Daemon(tick, projector.next_expiry, lease, system.clock,
                    interval=timedelta(seconds=interval), describe=describe,
                    **({"poll": poll} if poll is not None else {}))
    stop_flag["daemon"] = runner
    if once:
        if not runner.run_once():
            raise OrchestratorError("another daemon holds the leader lease; nothing done")
        runner.lease.release()
        return
    runner.run()


def _drift_watch(system: Any, every: timedelta) -> Any:
    """The drift check on the daemon's own clock (None: off)."""
    if every <= timedelta(0):
        return None
    from orchestrator.app.drift import DriftChecker
    from orchestrator.app.drift_watch import DriftWatch

    checker = DriftChecker(system.service, system.provider, system.service.crypto,
                           system.fleet.all, system.clock)
    return DriftWatch(checker, every, system.clock)
