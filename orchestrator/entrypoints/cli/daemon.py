"""``orchestrator daemon``: apply the policies until SIGTERM."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from orchestrator.domain.errors import InputError, OrchestratorError
from orchestrator.entrypoints.cli.context import system_of
from orchestrator.entrypoints.cli.params import DurationOrOff, ListenAddress, Seconds

DUE_NEXT_SHOWN = 5  # applications the heartbeat names as due next


@click.command()
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder [env ORCHESTRATOR_POLICIES; default ./policies].")
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@click.option("--interval", type=Seconds(0.1, 86_400), default=30.0, show_default=True,
              help="Seconds between ticks (0.1 to 86400).")
@click.option("--drift-every", type=DurationOrOff(), default="1h", show_default=True,
              help="Compare each application with its identity provider this often (0: never); "
                   "an application is rotated only once compared, and not while they differ.")
@click.option("--checkpoint-every", type=DurationOrOff(), default="1h", show_default=True,
              help="Sign the log's head this often (0: never), once a key and a folder are "
                   "configured; the first at the first tick.")
@click.option("--checkpoint-key", type=click.Path(dir_okay=False, path_type=Path),
              help="The Ed25519 key that signs checkpoints [env ORCHESTRATOR_CHECKPOINT_KEY].")
@click.option("--checkpoint-out", type=click.Path(file_okay=False, path_type=Path),
              help="The folder checkpoints go to [env ORCHESTRATOR_CHECKPOINTS].")
@click.option("--lease-timeout", type=DurationOrOff(), default="30s", show_default=True,
              help="PostgreSQL: a leader that stops running (paused, frozen, cut off) loses the "
                   "lease this long after, and another daemon takes over (0: never).")
@click.option("--json-logs/--pretty-logs", default=None,
              help="Log format (default: pretty on a terminal, JSON lines otherwise).")
@click.option("--listen", type=ListenAddress(), default=None,
              help="Serve Prometheus metrics at /metrics and health at /healthz and /readyz on "
                   "this address (a bare port: 127.0.0.1; 0.0.0.0:PORT: every interface). "
                   "Default: off.")
@click.pass_context
def daemon(ctx: click.Context, policies_dir: Path | None, once: bool, interval: float,
           drift_every: timedelta, checkpoint_every: timedelta, checkpoint_key: Path | None,
           checkpoint_out: Path | None, lease_timeout: timedelta,
           json_logs: bool | None, listen: tuple[str, int] | None) -> None:
    """Apply the rotation policies: rotate on schedule, enforce expiry, until SIGTERM."""
    if listen is not None and once:
        raise InputError("--listen serves a running daemon; it has no use with --once")
    settings = ctx.find_root().obj["settings"]
    if timedelta(0) < lease_timeout < timedelta(seconds=2):
        raise InputError(f"--lease-timeout {lease_timeout.total_seconds():g}s is too short for "
                         "a leader to keep its lease; give 2s or more, or 0 for no limit")
    anchoring = _anchoring(ctx, checkpoint_every, checkpoint_key or settings.checkpoint_key,
                           checkpoint_out or settings.checkpoints)

    import os
    import socket

    from events import connections
    from events.store import LeaseLost
    from orchestrator.adapters.daemon_status import DaemonStatus
    from orchestrator.app.tick import MIN_RECHECK
    from orchestrator.entrypoints.daemon import Daemon
    from orchestrator.entrypoints.logs import configure, last_problem

    configure(json_logs, capture_uncaught=True)
    stop_flag: dict[str, Any] = {}
    metrics = None
    if listen is not None:
        from orchestrator.bootstrap import daemon_metrics

        metrics = daemon_metrics()
    system = system_of(ctx, policies=policies_dir, daemon=True,
                       lease_timeout=lease_timeout if lease_timeout > timedelta(0) else None,
                     should_stop=lambda: bool(stop_flag.get("daemon")
                                              and stop_flag["daemon"].stopping.is_set()),
                     provider_calls=None if metrics is None else metrics.provider_call)

    projector, lease = system.projector, system.lease
    assert projector is not None and lease is not None  # bootstrap() always sets both
    system.policies.check()  # nothing in memory to fall back on yet: a broken set is refused

    watch = _drift_watch(system, drift_every,
                         None if metrics is None else metrics.provider_call)
    anchors = _anchor_watch(system, checkpoint_every, anchoring)
    import structlog

    log = structlog.get_logger("orchestrator.daemon")
    if watch is not None:  # asked before every action at a provider: compared, and agreeing
        system.ticker.gate_with(watch.gate)
    notices = system.notifications(held=(lambda: watch.held) if watch is not None else dict)

    def fault(exc: BaseException) -> str | None:
        return connections.fault(system.engine, exc)

    def check_drift() -> None:
        """The rest of the tick's budget (the apps due by time), then the next's."""
        if watch is None:
            return
        try:
            watch.run()
        except LeaseLost:
            raise
        except Exception as exc:  # the check never stops the rotations of other apps
            if fault(exc) is not None:
                raise  # the database is away: the daemon says so, once
            log.exception("drift_check_failed", error=str(exc))

    def tell() -> None:
        """The Notifier resources told what the log and the fleet say (leader only)."""
        try:
            notices.poll()
        except LeaseLost:
            raise
        except Exception as exc:  # never stops the rotations; the outbox keeps what is due
            if fault(exc) is not None:
                raise
            log.exception("notifications_failed", error=str(exc))

    def tick() -> dict[str, Any] | None:
        """One tick; what it did (None: nothing), for the heartbeat and the status row."""
        projector.catch_up()
        system.policies.current()  # a notifier new in the folder ...
        notices.start()  # ... is told from here on: what this tick records too
        try:
            report = system.ticker.tick()
        except Exception as exc:
            # nothing more from this tick when the daemon is a standby again or the database
            # is away; after any other failure the drift check and notifications have a turn
            if not isinstance(exc, LeaseLost) and fault(exc) is None:
                check_drift()
                tell()
            raise
        check_drift()
        if anchors is not None:
            anchors.run()  # after the tick: its checkpoint covers what the tick recorded
        tell()
        did = {"done": dict(report.done), "failed": report.failed, "parked": report.parked,
               "refused": report.refused, "held": report.held}
        return did if any(did.values()) else None

    def describe(now: datetime) -> dict[str, Any]:
        """What the heartbeat says: what comes next, and what waits for a human."""
        rotations = [r for s in system.fleet.all() for r in s.rotations.values()]
        return {"next_expiry": projector.next_expiry(now),
                "next_rotation_due": system.ticker.next_due(),
                "apps_due_next": [{"app": app, "at": at.isoformat()}
                                  for at, app in system.ticker.due_next(DUE_NEXT_SHOWN)],
                "in_flight": sum(1 for r in rotations if r.status.value == "running"),
                "parked": sum(1 for r in rotations if r.status.value == "parked"),
                "drift_held": sorted(watch.held) if watch is not None else []}

    status = DaemonStatus(system.engine)
    holder = f"{socket.gethostname()} pid {os.getpid()}"

    def record(epoch: int | None, since: datetime, at: datetime, did: Any) -> None:
        """The status row ``orchestrator status`` reads (fenced: only at the current epoch)."""
        if epoch is None:
            return
        status.record(epoch, holder, since, at, {
            "tick": did or {}, "next_rotation_due": system.ticker.next_due(),
            "drift_held": dict(watch.held) if watch is not None else {},
            "drift_every": None if watch is None else drift_every.total_seconds(),
            "last_error": last_problem()})

    poll = ctx.find_root().obj.get("daemon_poll")  # main()'s daemon_poll=, for a virtual clock
    def next_wake(now: datetime) -> datetime | None:
        """A credential's expiry, or work the ticker has before the interval ends: its own,
        or the apps the drift gate kept back for lack of budget (due again a second after they
        were held: ``tick.MIN_RECHECK``)."""
        checks = now + MIN_RECHECK if watch is not None and watch.backlog else None
        return min((at for at in (projector.next_expiry(now), system.ticker.next_wake(now),
                                  checks) if at is not None), default=None)

    runner = Daemon(tick, next_wake, lease, system.clock,
                    interval=timedelta(seconds=interval), describe=describe, fault=fault,
                    database=connections.named(system.engine), record=record,
                    on_tick=(lambda _seconds: None) if metrics is None else metrics.tick,
                    **({"poll": poll} if poll is not None else {}))
    stop_flag["daemon"] = runner
    if once:
        if not runner.run_once():
            raise OrchestratorError("another daemon holds the leader lease; nothing done")
        runner.lease.release()
        return
    if listen is None:
        runner.run()
        return
    from orchestrator.entrypoints.cli.serving import serve

    with serve(listen, system, metrics, runner, watch):
        runner.run()


def _anchoring(ctx: click.Context, every: timedelta, key: Path | None, out: Path | None
               ) -> tuple[Path, Path] | None:
    """The checkpoint key and folder when checkpoints are on; None when they are off. Half a
    configuration, or --checkpoint-every asked for without one, is refused."""
    if every <= timedelta(0):
        return None
    if key is not None and out is not None:
        return key, out
    explicit = (ctx.get_parameter_source("checkpoint_every")
                is not click.core.ParameterSource.DEFAULT)
    if key is None and out is None and not explicit:
        return None
    missing = ("a key (--checkpoint-key or ORCHESTRATOR_CHECKPOINT_KEY)" if key is None else
               "a folder (--checkpoint-out or ORCHESTRATOR_CHECKPOINTS)")
    raise InputError(f"checkpoints need a key and a folder; {missing} is missing (or "
                     "--checkpoint-every 0 for none)")


def _anchor_watch(system: Any, every: timedelta, anchoring: tuple[Path, Path] | None) -> Any:
    """The checkpoints on the daemon's own clock (None: off). The key is loaded here, so a
    missing or exposed one refuses the start."""
    if anchoring is None:
        return None
    from orchestrator.app.anchoring import AnchorWatch

    return AnchorWatch(system.anchorer(*anchoring), every, system.clock)


def _drift_watch(system: Any, every: timedelta,
                 observe: Callable[[str, str], None] | None) -> Any:
    """The drift check on the daemon's own clock (None: off); ``observe`` is told each read of
    a client at a provider (the metrics)."""
    if every <= timedelta(0):
        return None
    from orchestrator.app.drift import DriftChecker
    from orchestrator.app.drift_watch import DriftWatch

    checker = DriftChecker(system.service, system.provider, system.service.crypto,
                           system.fleet.all, system.clock,
                           **({} if observe is None else {"observe": observe}))
    return DriftWatch(checker, every, system.clock)
