"""``orchestrator plan``: what the daemon would do, and why."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from events.codec import format_time
from orchestrator.entrypoints.cli.context import system_of
from orchestrator.entrypoints.cli.output import print_table
from orchestrator.entrypoints.cli.params import TIME


def _action_json(action: Any) -> dict[str, Any]:
    return {
        "kind": action.kind.value, "app": action.app, "usage": action.usage,
        "reason": action.reason.value, "message": action.message, "policy": action.policy,
        "credential_id": action.credential_id, "rotation_id": action.rotation_id,
        "urgent": action.urgent,
        "not_before": format_time(action.not_before) if action.not_before else None,
    }


@click.command()
@click.option("--at", type=TIME, help="Plan as of this time (default: now).")
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder [env ORCHESTRATOR_POLICIES; default ./policies].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def plan(ctx: click.Context, at: datetime | None, policies_dir: Path | None,
         as_json: bool) -> None:
    """What the daemon would do now (or at --at), and why. Changes nothing."""
    system = system_of(ctx, policies=policies_dir, record_policies=False)
    the_plan = system.ticker.plan(at)
    when = at or system.clock()
    if as_json:
        click.echo(json.dumps({
            "at": format_time(when),
            "actions": [_action_json(a) for a in the_plan.actions],
            "deferred": [_action_json(a) for a in the_plan.deferred],
            "problems": list(the_plan.problems),
            "without_usable_credential": [{
                "app": a.app, "usage": a.usage, "message": a.message,
                "since": format_time(a.since) if a.since else None,
                "rotation_id": a.rotation_id,
            } for a in the_plan.alarms],
            "policy_errors": list(system.policies.errors),
        }, indent=2))
        return
    for error in system.policies.errors:
        click.echo(f"policy error: {error}", err=True)
    for problem in the_plan.problems:
        click.echo(f"conflict: {problem}", err=True)
    rows = [("NO USABLE CREDENTIAL", a.app, a.usage, "-", "-", a.message)
            for a in the_plan.alarms]
    rows += [(a.kind.value, a.app, a.usage or "-", a.reason.value, a.policy or "-", a.message)
             for a in the_plan.actions]
    rows += [("deferred", a.app, a.usage or "-", a.reason.value, a.policy or "-",
              f"{a.message}; not before {format_time(a.not_before)}" if a.not_before
              else f"{a.message}; over this tick's cap")
             for a in the_plan.deferred]
    print_table(["ACTION", "APP", "USAGE", "REASON", "POLICY", "WHY"], rows,
                empty=f"nothing to do at {format_time(when)}")
