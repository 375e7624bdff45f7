"""``orchestrator rotate`` and ``rotations``: start, list, retry, abandon and roll back
rotations."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from events.codec import format_time
from events.state import AppState
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.hooks import Hook
from orchestrator.entrypoints.cli.context import only_the_error_line, system_of
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
    """Rotate APP's USAGE credential now (reason: manual), with zero downtime.

    The policy that selects APP for USAGE gives the rotation its settings, and the daemon
    finishes it (the overlap); without one the rotation is refused."""
    from orchestrator.domain.rotation import Step

    only_the_error_line()
    system = system_of(ctx, policies=policies_dir, record_policies=False)
    from orchestrator.domain.planner import policy_for

    policy = policy_for(system.service.load(app_name), system.policies.current(), usage)
    rotation_id = system.rotator.start_manual(app_name, usage, policy.name if policy else None,
                                              actor=system.settings.actor)
    assert policy is not None  # start_manual refuses without one
    params = policy.params
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
    """Rotations in flight and parked ones waiting for a human (retry, abandon), and every
    application left without a usable credential of a usage it had.

    ERROR is the error holding a rotation now (parked, or waiting to retry a failed step); a
    rotation that got past its failures shows none (--json: ``error`` null, ``last_error`` the
    last one recorded)."""
    if ctx.invoked_subcommand is not None:
        return
    from orchestrator.domain.planner import stranded
    from orchestrator.domain.rotation import held_usable
    from orchestrator.domain.vocabulary import SECRET_USAGE

    system = system_of(ctx)
    system.projector.catch_up()
    now = system.clock()
    rows = []
    alarms = []
    for state in system.projector.states():
        if app_name and state.app != app_name:
            continue
        alarms.extend(stranded(state, now))
        for r in state.rotations.values():
            if show_all or r.status.value in ("running", "parked"):
                rows.append((state.app, r, state.secret is not None if r.usage == SECRET_USAGE
                             else bool(held_usable(state, r.usage, now))))
    if as_json:
        click.echo(json.dumps([{
            "app": a, "rotation_id": r.id, "usage": r.usage, "reason": r.reason,
            "status": r.status.value, "steps": list(r.steps), "attempts": r.attempts,
            "error": r.error, "last_error": r.last_error, "policy": r.policy,
            "new_credential_id": r.new_credential_id, "old_credential_id": r.old_credential_id,
            "started_at": format_time(r.started_at),
            "next_attempt_at": format_time(r.next_attempt_at) if r.next_attempt_at else None,
            "usable_credential": usable,
        } for a, r, usable in rows], indent=2))
        return
    print_table(["APP", "ROTATION", "USAGE", "STATUS", "REASON", "LAST STEP", "ATTEMPTS", "ERROR"],
                [(a, r.id, r.usage, r.status.value, r.reason, r.steps[-1] if r.steps else "-",
                  r.attempts, r.error or "-") for a, r, _ in rows],
                empty="no rotations in flight")
    for alarm in alarms:
        click.echo(f"NO USABLE CREDENTIAL: {alarm.message}")


def _rotation_admin(verb: str) -> None:
    @click.argument("app_name", metavar="APP")
    @click.argument("rotation_id", metavar="ROTATION")
    @click.pass_context
    def command(ctx: click.Context, app_name: str, rotation_id: str) -> None:
        from orchestrator.domain.rotation_events import decide_abandon, decide_retry

        system = system_of(ctx)

        def decide(state: AppState) -> tuple[list[Any], datetime]:
            events = (decide_retry(state, rotation_id) if verb == "retry"
                      else decide_abandon(state, rotation_id))
            return events, system.clock()

        system.service.append_decided(app_name, decide, correlation_id=rotation_id)
        click.echo(f"rotation {rotation_id}: {'retrying' if verb == 'retry' else 'abandoned'}")

    command.__doc__ = ("Send a parked rotation back to the daemon with a fresh retry budget."
                       if verb == "retry" else
                       "Give up a rotation; its new credential stays for you to delete.")
    rotations.command(verb)(command)


_rotation_admin("retry")


_rotation_admin("abandon")


@rotations.command("rollback")
@click.argument("app_name", metavar="APP")
@click.argument("rotation_id", metavar="ROTATION")
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder (the delivery hook of the policy that selects APP runs).")
@click.pass_context
def rollback(ctx: click.Context, app_name: str, rotation_id: str,
             policies_dir: Path | None) -> None:
    """Put back the credential a completed rotation replaced, while it exists and is unexpired.

    The previous credential is attached again at the identity provider, its files are
    delivered again (then the policy's delivery hook runs), and only then the rotation's new
    credential is disabled; recorded as rotation.rolled_back. Refused, with nothing changed,
    when that cannot be done: a rotation not completed, not the latest of its usage, or with
    one in flight, a previous credential deleted, expired or imported, a client secret. The
    daemon does not rotate the restored credential for its age until a full rotation period
    after the rollback; it still does before it expires."""
    from orchestrator.app.manual_credentials import ManualCredentials
    from orchestrator.app.rollback import Rollback
    from orchestrator.domain.planner import policy_for

    system = system_of(ctx, policies=policies_dir, record_policies=False)
    rotator = system.rotator
    rollback = Rollback(system.service, ManualCredentials(system.service, system.provider),
                        system.keystore, rotator.work, rotator.deliverer)

    def hook_for(usage: str) -> Hook | None:
        if not system.settings.policies.is_dir():
            return None
        policy = policy_for(system.service.load(app_name), system.policies.current(), usage)
        return policy.params.hook if policy is not None else None

    done = rollback.run(app_name, rotation_id, hook_for)
    where = f"; its files delivered to {done.delivered_to}" if done.delivered_to else ""
    click.echo(f"rotation {rotation_id}: rolled back; {done.restored} is in service again"
               f"{where}; {done.retired} is disabled")
