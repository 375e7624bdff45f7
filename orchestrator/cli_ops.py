"""The command line, part two: policies, planning, rotations, the daemon and the simulator.

Registered on ``orchestrator.cli.cli`` when that module imports this one.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from events.codec import format_time
from events.state import AppState
from orchestrator.cli import TIME, USAGES, _system, cli
from orchestrator.errors import InputError, OrchestratorError
from orchestrator.output import print_table

# --- policies, planning, rotations, daemon, simulator ---------------------------------------


@cli.group()
def policy() -> None:
    """Check policy files."""


@policy.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.pass_context
def policy_validate(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Validate policy files or folders (default: the policies folder); for ops' own CI."""
    from orchestrator.policy import load_policies

    targets = list(paths) or [ctx.obj["settings"].policies]
    missing = [p for p in targets if not p.exists()]
    if missing:
        raise InputError(f"{missing[0]}: no such file or folder")
    result = load_policies(targets)
    for loaded in result.policies:
        click.echo(f"ok      {loaded.path}  {loaded.policy.metadata.name}  {loaded.content_hash[:19]}")
    for error in result.errors:
        click.echo(f"error   {error}", err=True)
    if result.errors:
        raise click.exceptions.Exit(1)
    if not result.policies:
        raise InputError(f"no policy files (*.yaml) in {', '.join(map(str, targets))}")


def _action_json(action: Any) -> dict[str, Any]:
    return {
        "kind": action.kind.value, "app": action.app, "usage": action.usage,
        "reason": action.reason.value, "message": action.message, "policy": action.policy,
        "credential_id": action.credential_id, "rotation_id": action.rotation_id,
        "urgent": action.urgent,
        "not_before": format_time(action.not_before) if action.not_before else None,
    }


@cli.command()
@click.option("--at", type=TIME, help="Plan as of this time (default: now).")
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder [env ORCHESTRATOR_POLICIES; default ./policies].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def plan(ctx: click.Context, at: datetime | None, policies_dir: Path | None,
         as_json: bool) -> None:
    """What the daemon would do now (or at --at), and why. Changes nothing."""
    system = _system(ctx, policies=policies_dir, record_policies=False)
    the_plan = system.ticker.plan(at)
    when = at or system.clock()
    if as_json:
        click.echo(json.dumps({
            "at": format_time(when),
            "actions": [_action_json(a) for a in the_plan.actions],
            "deferred": [_action_json(a) for a in the_plan.deferred],
            "problems": list(the_plan.problems),
            "policy_errors": list(system.policies.errors),
        }, indent=2))
        return
    for error in system.policies.errors:
        click.echo(f"policy error: {error}", err=True)
    for problem in the_plan.problems:
        click.echo(f"conflict: {problem}", err=True)
    rows = [(a.kind.value, a.app, a.usage or "-", a.reason.value, a.policy or "-", a.message)
            for a in the_plan.actions]
    rows += [("deferred", a.app, a.usage or "-", a.reason.value, a.policy or "-",
              f"{a.message}; not before {format_time(a.not_before)}" if a.not_before
              else f"{a.message}; over this tick's cap")
             for a in the_plan.deferred]
    print_table(["ACTION", "APP", "USAGE", "REASON", "POLICY", "WHY"], rows,
                empty=f"nothing to do at {format_time(when)}")


@cli.command()
@click.argument("app_name", metavar="APP")
@click.option("--usage", required=True,
              type=click.Choice([*USAGES, "client_secret"]))
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder (the matching policy's settings are used).")
@click.pass_context
def rotate(ctx: click.Context, app_name: str, usage: str, policies_dir: Path | None) -> None:
    """Rotate APP's USAGE credential now (reason: manual), with zero downtime."""
    from orchestrator.rotation import Reason, Step

    system = _system(ctx, policies=policies_dir, record_policies=False)
    if not system.service.load(app_name).registered:
        raise InputError(f"application {app_name!r} is not registered "
                         f"(register it with: orchestrator app register {app_name})")
    policy = next((p for p in system.policies.current()
                   if p.usage == usage and p.selects(system.service.load(app_name))), None)
    params = policy.params if policy else system.ticker.params_for(None, usage, {})
    rotation_id = system.rotator.start(app_name, usage, Reason.MANUAL,
                                       policy.name if policy else None,
                                       actor=system.settings.actor)
    if rotation_id is None:
        running = system.service.load(app_name).running_rotation(usage)
        raise InputError(f"{app_name} already has a {usage} rotation in flight "
                         f"({running.id if running else '?'}, {running.status.value if running else '?'}); "
                         "see: orchestrator rotations")
    outcome = system.rotator.advance(app_name, rotation_id, params)
    state = system.service.load(app_name)
    rot = state.rotations[rotation_id]
    if outcome.failed:
        raise OrchestratorError(f"rotation {rotation_id} failed at {outcome.last.step.value}: "
                                f"{rot.last_error}; the daemon retries it (attempt {rot.attempts})")
    if outcome.last.step is Step.WAIT and outcome.last.not_before:
        click.echo(f"rotation {rotation_id}: new credential {rot.new_credential_id} active and "
                   f"tested; the old one is disabled after the overlap, at "
                   f"{format_time(outcome.last.not_before)} (by the daemon)")
    else:
        click.echo(f"rotation {rotation_id}: {rot.status.value}; new credential "
                   f"{rot.new_credential_id}")


@cli.group(invoke_without_command=True)
@click.option("--app", "app_name", help="Only this application.")
@click.option("--all", "show_all", is_flag=True, help="Include completed and abandoned ones.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def rotations(ctx: click.Context, app_name: str | None, show_all: bool, as_json: bool) -> None:
    """Rotations in flight and parked ones waiting for a human (retry, abandon)."""
    if ctx.invoked_subcommand is not None:
        return
    system = _system(ctx)
    system.projector.catch_up()
    rows = []
    for state in system.projector.states():
        if app_name and state.app != app_name:
            continue
        for r in state.rotations.values():
            if show_all or r.status.value in ("running", "parked"):
                rows.append((state.app, r))
    if as_json:
        click.echo(json.dumps([{
            "app": a, "rotation_id": r.id, "usage": r.usage, "reason": r.reason,
            "status": r.status.value, "steps": list(r.steps), "attempts": r.attempts,
            "last_error": r.last_error, "policy": r.policy,
            "new_credential_id": r.new_credential_id, "old_credential_id": r.old_credential_id,
            "started_at": format_time(r.started_at),
            "next_attempt_at": format_time(r.next_attempt_at) if r.next_attempt_at else None,
        } for a, r in rows], indent=2))
        return
    print_table(["APP", "ROTATION", "USAGE", "STATUS", "REASON", "LAST STEP", "ATTEMPTS", "ERROR"],
                [(a, r.id, r.usage, r.status.value, r.reason, r.steps[-1] if r.steps else "-",
                  r.attempts, r.last_error or "-") for a, r in rows],
                empty="no rotations in flight")


def _rotation_admin(verb: str) -> None:
    @click.argument("app_name", metavar="APP")
    @click.argument("rotation_id", metavar="ROTATION")
    @click.pass_context
    def command(ctx: click.Context, app_name: str, rotation_id: str) -> None:
        from events import catalog as ev

        system = _system(ctx)

        def decide(state: AppState) -> tuple[list[Any], datetime]:
            rot = state.rotations.get(rotation_id)
            if rot is None:
                raise InputError(f"{app_name} has no rotation {rotation_id} "
                                 "(see: orchestrator rotations --all)")
            if rot.status.value not in ("parked", "running") or (
                    verb == "retry" and rot.status.value != "parked"):
                raise InputError(f"rotation {rotation_id} is {rot.status.value}; only a parked "
                                 f"rotation can be retried, and a running or parked one abandoned")
            event = (ev.RotationRetried(rotation_id=rotation_id) if verb == "retry"
                     else ev.RotationAbandoned(rotation_id=rotation_id))
            return [event], system.clock()

        system.service.append_decided(app_name, decide, correlation_id=rotation_id)
        click.echo(f"rotation {rotation_id}: {'retrying' if verb == 'retry' else 'abandoned'}")

    command.__doc__ = ("Send a parked rotation back to the daemon with a fresh retry budget."
                       if verb == "retry" else
                       "Give up a rotation; its new credential stays for you to delete.")
    rotations.command(verb)(command)


_rotation_admin("retry")
_rotation_admin("abandon")


@cli.command()
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder [env ORCHESTRATOR_POLICIES; default ./policies].")
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds between ticks.")
@click.option("--json-logs/--pretty-logs", default=None,
              help="Log format (default: pretty on a terminal, JSON lines otherwise).")
@click.pass_context
def daemon(ctx: click.Context, policies_dir: Path | None, once: bool, interval: float,
           json_logs: bool | None) -> None:
    """Apply the rotation policies: rotate on schedule, enforce expiry, until SIGTERM."""
    from datetime import timedelta

    from orchestrator.daemon import Daemon, Lease
    from orchestrator.logs import configure

    configure(json_logs)
    stop_flag: dict[str, Any] = {}
    system = _system(ctx, policies=policies_dir, daemon=True,
                     should_stop=lambda: bool(stop_flag.get("daemon")
                                              and stop_flag["daemon"].stopping.is_set()))

    def tick() -> None:
        system.projector.catch_up()
        system.ticker.tick()

    runner = Daemon(tick, system.projector.next_expiry, Lease(system.engine), system.clock,
                    interval=timedelta(seconds=interval))
    stop_flag["daemon"] = runner
    if once:
        if not runner.run_once():
            raise OrchestratorError("another daemon holds the leader lease; nothing done")
        runner.lease.release()
        return
    runner.run()


@cli.command()
@click.option("--days", type=click.IntRange(min=1, max=3660), default=365, show_default=True)
@click.option("--apps", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder [env ORCHESTRATOR_POLICIES; default ./policies].")
@click.option("--start", type=TIME, help="Virtual start time (default: now).")
@click.option("--tick", "tick_minutes", type=click.IntRange(min=1), default=60, show_default=True,
              help="Virtual minutes between ticks.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Share of provider calls that fail.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def simulate(ctx: click.Context, days: int, apps: int, policies_dir: Path | None,
             start: datetime | None, tick_minutes: int, fault_rate: float,
             as_json: bool) -> None:
    """Run the policies over a virtual fleet for DAYS in memory; check every invariant."""
    import logging
    from datetime import timedelta

    from orchestrator.logs import configure
    from orchestrator.policy import load_policies
    from orchestrator.policy_source import to_plan_policy
    from orchestrator.simulate import simulate as run

    configure(json_logs=True, level=logging.ERROR)
    directory = policies_dir or ctx.obj["settings"].policies
    loaded = load_policies([directory])
    if loaded.errors:
        raise InputError(str(loaded.errors[0]))
    if not loaded.policies:
        raise InputError(f"no policy files (*.yaml) in {directory}")
    policies = [to_plan_policy(p) for p in loaded.policies]
    from orchestrator.bootstrap import utc_now

    result = run(policies, apps, days, start or utc_now(), timedelta(minutes=tick_minutes),
                 fault_rate=fault_rate)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        click.echo(f"simulated {days} days, {apps} applications, {len(policies)} policies: "
                   f"{result.ticks} ticks, {result.events} events in "
                   f"{result.elapsed_seconds:.1f} s")
        kinds = ["rotations", "secret_rotations", "expiries", "deletions", "failures", "parked"]
        print_table(["MONTH", *[k.upper().replace("_", " ") for k in kinds]],
                    [(m, *[c.get(k, 0) for k in kinds]) for m, c in sorted(result.by_month.items())],
                    empty="nothing happened")
        for name, held in {**result.invariants, **result.liveness}.items():
            click.echo(f"{'held  ' if held else 'BROKEN'}  {name.replace('_', ' ')}")
        for violation in result.violations[:20]:
            click.echo(f"  {violation}")
    if not result.ok:
        raise click.exceptions.Exit(1)
