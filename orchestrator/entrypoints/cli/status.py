"""``orchestrator status``: the fleet, the rotations, the leader and its last tick on one screen."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from events.codec import format_time
from orchestrator.domain.checks import human
from orchestrator.entrypoints.cli.context import only_the_error_line, system_of
from orchestrator.entrypoints.cli.output import print_table, printable

if TYPE_CHECKING:
    from orchestrator.adapters.daemon_status import LeaseHolder, StatusRow
    from orchestrator.app.fleet_status import FleetStatus

STATUSES = ("active", "added", "disabled", "expired")  # deleted ones are history, not shown


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Rows of the soonest expiries and the next rotations.")
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder, for the next rotations [env ORCHESTRATOR_POLICIES; "
                   "default ./policies].")
@click.pass_context
def status(ctx: click.Context, as_json: bool, limit: int, policies_dir: Path | None) -> None:
    """The fleet on one screen: applications and credentials by state, rotations in flight
    and parked, what expires soonest, the rotations due next, the applications the daemon's
    drift check holds, the leader (its epoch) and its last tick. Reads the read model and the
    daemon's status row; changes nothing."""
    from orchestrator.adapters.daemon_status import DaemonStatus, lease_holder
    from orchestrator.app.fleet_status import summarize

    only_the_error_line()  # a broken policy file is shown below, not logged beside
    system = system_of(ctx, policies=policies_dir, record_policies=False)
    projector = system.projector
    projector.catch_up()
    now = system.clock()
    policies = system.policies.current()
    fleet = summarize(projector.states(), policies, now, limit)
    row = DaemonStatus(system.engine).read()
    holder = lease_holder(system.engine)
    document = _document(fleet, row, holder, projector.status(), list(system.policies.errors))
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        _show(document)


def _document(fleet: FleetStatus, row: StatusRow, holder: LeaseHolder, projection: Any,
              policy_errors: list[str]) -> dict[str, Any]:
    by_usage: dict[str, dict[str, int]] = {}
    for (usage, state), count in sorted(fleet.credentials.items()):
        by_usage.setdefault(usage, {})[state] = count
    totals = {s: sum(c for (_, st), c in fleet.credentials.items() if st == s)
              for s in (*STATUSES, "deleted")}
    summary = row.summary if row.current else {}
    return {
        "at": format_time(fleet.at),
        "applications": {"registered": fleet.apps,
                         "with_usable_credential": fleet.apps - fleet.apps_without_usable,
                         "without_usable_credential": fleet.apps_without_usable,
                         "by_provider": dict(sorted(fleet.apps_bound.items()))},
        "credentials": {"by_status": totals, "by_usage": by_usage,
                        "client_secrets": fleet.secrets},
        "rotations": {"in_flight": len(fleet.running), "parked": len(fleet.parked),
                      "list": [_rotation(app, r) for app, r in [*fleet.parked, *fleet.running]]},
        "expiring_soonest": [{
            "app": app, "credential_id": c.id, "usage": c.usage.value, "kid": c.kid,
            "expires_at": _t(c.expires_at),
            "expires_in_seconds": int((c.expires_at - fleet.at).total_seconds())
            if c.expires_at else None,
        } for app, c in fleet.expiring],
        "next_rotations": [{"app": d.app, "usage": d.usage, "policy": d.policy,
                            "due_at": _t(d.at), "check": d.check}
                           for d in fleet.next_rotations],
        "without_usable_credential": [{
            "app": a.app, "usage": a.usage, "since": _t(a.since), "rotation_id": a.rotation_id,
            "message": a.message} for a in fleet.alarms],
        "drift": {"held": summary.get("drift_held", {}),
                  "checked": summary.get("drift_every") is not None,
                  "as_of": _t(row.last_tick_at) if row.current else None},
        "leader": {"lease_held": holder.held, "epoch": row.current_epoch if row.current_epoch
                   else None, "holder": row.holder if row.current else None,
                   "since": _t(row.leader_since) if row.current else None,
                   "backend_pid" if holder.where else "pid": holder.pid,
                   **({"address": holder.where} if holder.where else {})},
        "last_tick": None if row.last_tick_at is None else {
            "at": _t(row.last_tick_at), "epoch": row.epoch, "holder": row.holder,
            "ago_seconds": int((fleet.at - row.last_tick_at).total_seconds()),
            "did": row.summary.get("tick", {}), "last_error": row.summary.get("last_error")},
        "projection": {"position": projection.position, "head": projection.head,
                       "lag": projection.lag},
        "policy_errors": policy_errors,
    }


def _rotation(app: str, r: Any) -> dict[str, Any]:
    return {"app": app, "rotation_id": r.id, "usage": r.usage, "status": r.status.value,
            "reason": r.reason, "policy": r.policy, "last_step": r.steps[-1] if r.steps else None,
            "attempts": r.attempts, "error": r.error, "started_at": _t(r.started_at),
            "next_attempt_at": _t(r.next_attempt_at)}


def _show(doc: dict[str, Any]) -> None:
    apps, creds, rots = doc["applications"], doc["credentials"], doc["rotations"]
    providers = ", ".join(f"{n} {p}" for p, n in apps["by_provider"].items())
    click.echo(printable(f"Fleet at {doc['at']}: {apps['registered']} applications"
                         + (f" ({providers})" if providers else "")
                         + f", {apps['without_usable_credential']} without a usable credential"))
    click.echo(printable(_leader_line(doc)))
    for error in doc["policy_errors"]:
        click.echo(printable(f"policy error: {error}"))
    click.echo()
    click.echo(f"Credentials ({creds['client_secrets']} client secrets besides):")
    print_table(["USAGE", *(s.upper() for s in STATUSES)],
                [(u, *(c.get(s, 0) for s in STATUSES)) for u, c in creds["by_usage"].items()
                 if any(c.get(s) for s in STATUSES)] +
                [("all", *(creds["by_status"][s] for s in STATUSES))],
                empty="no credentials")
    click.echo()
    click.echo(f"Rotations: {rots['in_flight']} in flight, {rots['parked']} parked")
    if rots["list"]:
        print_table(["APP", "ROTATION", "USAGE", "STATUS", "LAST STEP", "ATTEMPTS", "ERROR"],
                    [(r["app"], r["rotation_id"], r["usage"], r["status"], r["last_step"],
                      r["attempts"], r["error"]) for r in rots["list"]], empty="")
    click.echo()
    click.echo("Expiring soonest:")
    print_table(["APP", "CREDENTIAL", "USAGE", "EXPIRES", "IN"],
                [(e["app"], e["credential_id"], e["usage"], e["expires_at"],
                  _in(e["expires_in_seconds"])) for e in doc["expiring_soonest"]],
                empty="no credential expires")
    click.echo()
    click.echo("Next rotations:")
    print_table(["APP", "USAGE", "POLICY", "DUE", "CHECK"],
                [(d["app"], d["usage"], d["policy"],
                  "now" if d["due_at"] == doc["at"] else d["due_at"], d["check"])
                 for d in doc["next_rotations"]],
                empty="no rotation due (no policy selects an application, or none is due)")
    click.echo()
    drift = doc["drift"]
    if drift["held"]:
        click.echo(f"Drift: {len(drift['held'])} held by the daemon's drift check "
                   f"(as of {drift['as_of']}; orchestrator drift --app APP compares again):")
        print_table(["APP", "WHY"], sorted(drift["held"].items()), empty="")
    elif drift["as_of"] is None:
        click.echo("Drift: not known (no tick of the current leader recorded; "
                   "orchestrator drift compares now)")
    else:
        click.echo("Drift: none held" + ("" if drift["checked"] else
                                         " (the daemon runs with --drift-every 0)")
                   + f" as of {drift['as_of']}")
    for alarm in doc["without_usable_credential"]:
        click.echo(printable(f"NO USABLE CREDENTIAL: {alarm['message']}"))


def _in(seconds: int | None) -> str:
    from datetime import timedelta

    return "-" if seconds is None else human(timedelta(seconds=seconds))


def _leader_line(doc: dict[str, Any]) -> str:
    leader, tick = doc["leader"], doc["last_tick"]
    ticked = "" if tick is None else (
        f"; last tick {tick['at']} ({_in(tick['ago_seconds'])} ago)"
        + (f", did {_did(tick['did'])}" if tick["did"] else ", nothing to do"))
    error = tick and tick.get("last_error")
    if error:
        ticked += f"; last error: {error.get('event')}" + (
            f" ({error['app']})" if error.get("app") else "")
    if leader["lease_held"] is False:
        last = "" if tick is None else f" (the last leader: epoch {tick['epoch']}, {tick['holder']}"
        return (f"Leader: none, no daemon holds the lease{last}" + (")" if last else "")
                + (f"; its last tick {tick['at']}" if tick else "; no tick ever recorded"))
    who = leader["holder"] or ("a daemon" + (f" (pid {leader['pid']})" if leader.get("pid")
                                              else ""))
    since = f" since {leader['since']}" if leader["since"] else ""
    held = "" if leader["lease_held"] else " (the lease could not be looked at)"
    if leader["holder"] is None and tick is not None:
        ticked = f"; no tick at this epoch yet (the last: epoch {tick['epoch']}, {tick['at']})"
    return f"Leader: {who}, epoch {leader['epoch']}{since}{held}{ticked}"


def _did(did: dict[str, Any]) -> str:
    parts = [f"{k} {v}" for k, v in sorted(did.get("done", {}).items())]
    parts += [f"{k} {did[k]}" for k in ("failed", "parked", "refused", "held") if did.get(k)]
    return ", ".join(parts) or "nothing"
