"""``orchestrator audit`` and ``state``: what happened, and what an application had at T."""

from __future__ import annotations

import csv
import json
import sys
from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import click

from events.codec import format_time
from events.state import AppState
from events.store import ReadFilter, Recorded
from orchestrator.domain.errors import InputError
from orchestrator.entrypoints.cli.context import system_of
from orchestrator.entrypoints.cli.export import export
from orchestrator.entrypoints.cli.output import credential_table, print_table, state_json
from orchestrator.entrypoints.cli.params import TIME


@click.group(invoke_without_command=True)
@click.option("--app", "app_name", help="Only this application.")
@click.option("--credential", "credential_id", help="Only events about this credential.")
@click.option("--type", "types", multiple=True, help="Event type, e.g. credential.added (repeatable).")
@click.option("--actor", help="Only events by this actor, e.g. cli:alice or scheduler.")
@click.option("--since", type=TIME, help="Occurred at or after this time.")
@click.option("--until", type=TIME, help="Occurred before this time.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many events.")
@click.option("--last", type=click.IntRange(min=1),
              help="Only the newest N matching events (still oldest first).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="json is JSON Lines, one event per line.")
@click.pass_context
def audit(ctx: click.Context, app_name: str | None, credential_id: str | None,
          types: tuple[str, ...], actor: str | None, since: datetime | None,
          until: datetime | None, limit: int | None, last: int | None, fmt: str) -> None:
    """What happened, when, and by whom (``audit export``: the whole log for a SIEM)."""
    if ctx.invoked_subcommand is not None:
        return
    from events.catalog import event_types
    from events.state import stream_id

    unknown = [t for t in types if t not in event_types()]
    if unknown:
        raise InputError(f"--type {unknown[0]} is not an event type; known: "
                         f"{', '.join(sorted(event_types()))}")
    if limit is not None and last is not None:
        raise InputError("--limit and --last: give one of them (--last N shows the newest N)")
    by_credential = credential_id is not None
    where = ReadFilter(
        stream_id=stream_id(app_name) if app_name else None, types=types, actor=actor,
        since=since, until=until, limit=None if by_credential else limit,
        last=None if by_credential else last,  # the store reads from the end of the log
    )
    records: Iterable[Recorded] = system_of(ctx).service.audit(where)
    if credential_id:
        records = _only_credential(records, credential_id, limit)
        if last is not None:  # payload filter: keep the newest N while streaming
            records = deque(records, maxlen=last)
    _print_records(records, fmt)


audit.add_command(export)


def _only_credential(records: Iterable[Recorded], cid: str, limit: int | None) -> Iterable[Recorded]:
    count = 0
    for rec in records:
        data = rec.payload
        if cid in (data.get("credential_id"), data.get("new_credential_id"),
                   data.get("old_credential_id")):
            yield rec
            count += 1
            if limit is not None and count >= limit:
                return


def _audit_row(rec: Recorded) -> dict[str, Any]:
    return {
        "position": rec.position, "type": rec.type, "stream": rec.stream_id,
        "stream_version": rec.stream_version, "occurred_at": format_time(rec.occurred_at),
        "recorded_at": format_time(rec.recorded_at), "actor": rec.actor,
        "correlation_id": rec.correlation_id, "event_id": rec.event_id, "payload": rec.payload,
    }


def _print_records(records: Iterable[Recorded], fmt: str) -> None:
    out = sys.stdout
    if fmt == "json":
        for rec in records:
            out.write(json.dumps(_audit_row(rec), sort_keys=True) + "\n")
        return
    if fmt == "csv":
        fields = ["position", "occurred_at", "type", "stream", "actor", "correlation_id",
                  "payload"]
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for rec in records:
            row = _audit_row(rec)
            row["payload"] = rec.payload_json
            writer.writerow(row)
        return
    rows = [
        (rec.position, format_time(rec.occurred_at), rec.type, rec.stream_id, rec.actor,
         _summary(rec.payload))
        for rec in records
    ]
    print_table(["POS", "OCCURRED AT", "TYPE", "STREAM", "ACTOR", "DETAIL"], rows,
                empty="no events match")


def _summary(payload: dict[str, Any]) -> str:
    keys = ("credential_id", "usage", "kind", "kid", "version", "rotation_id", "reason", "step",
            "expires_at", "name", "error")
    return " ".join(f"{k}={payload[k]}" for k in keys if payload.get(k) is not None)


@click.command()
@click.argument("app_name", metavar="APP")
@click.option("--at", type=TIME, help="Rebuild the state as it was at this time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def state(ctx: click.Context, app_name: str, at: datetime | None, as_json: bool) -> None:
    """APP's credentials as they were at a time, rebuilt from the log."""
    system = system_of(ctx)
    app_state: AppState = system.service.state_at(app_name, at)
    when = at or system.clock()
    if as_json:
        click.echo(json.dumps(state_json(app_state, when, include_deleted=True), indent=2))
        return
    click.echo(f"{app_name} at {format_time(when)} (version {app_state.version})")
    credential_table(app_name, [c for c in app_state.credentials.values() if c.live], when)
    if app_state.secret:
        click.echo(f"client secret: version {app_state.secret.version} "
                   f"({app_state.secret.fingerprint[:23]}…)")
