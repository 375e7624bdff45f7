"""``orchestrator rotate`` and ``rotations``: start, list, retry and abandon rotations."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from events.codec import format_time
from events.state import AppState
from orchestrator.domain.errors import InputError, OrchestratorError
from orchestrator.entrypoints.cli.context import system_of
from orchestrator.entrypoints.cli.output import print_table
from orchestrator.entrypoints.cli.params import ROTATED


@click.command()
@click.argument("app_name", metavar="APP")
@click.option("--usage", required=True,
              type=click.Choice(ROTATED))
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder (the matching policy's settings are used).")
@click.pass_context
def rotate(ctx: click.Context, app_name: str, usage: str, policies_dir: Path | None) -> None:
    """Rotate APP's USAGE credential now (reason: manual), with zero downtime."""
    from orchestrator.domain.rotation import Reason, Step

    system = system_of(ctx, policies=policies_dir, record_policies=False)
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


@click.group(invoke_without_command=True)
@click.option("--app", "app_name", help="Only this application.")
@click.option("--all", "show_all", is_flag=True, help="Include completed and abandoned ones.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def rotations(ctx: click.Context, app_name: str | None, show_all: bool, as_json: bool) -> None:
    """Rotations in flight and parked ones waiting for a human (retry, abandon)."""
    if ctx.invoked_subcommand is not None:
        return
    system = system_of(ctx)
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

        system = system_of(ctx)

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
