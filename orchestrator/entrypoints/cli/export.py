"""``orchestrator audit export``: the log as evidence a SIEM re-verifies on its own.

JSON Lines, one event a line, in position order: ``position``, ``prev_hash``, ``hash`` and
``record``, the exact text whose UTF-8 bytes the hash covers, so that

    hash == SHA-256(bytes.fromhex(prev_hash) || position as 8 bytes big-endian || record UTF-8)

and each line's ``prev_hash`` is the previous line's ``hash`` (64 zeros before position 1).
``record`` is a JSON array: stream, stream version, event id, type, schema version, occurred
at, recorded at, actor, correlation id, causation id, payload (canonical JSON text).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import click

from events.store import ReadFilter, Recorded
from orchestrator.domain.errors import OrchestratorError
from orchestrator.entrypoints.cli.context import system_of

__all__ = ["export", "export_line"]


def export_line(rec: Recorded) -> str:
    return json.dumps({"position": rec.position, "prev_hash": rec.prev_hash, "hash": rec.hash,
                       "record": rec.record_bytes().decode("utf-8")},
                      separators=(",", ":")) + "\n"


@click.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write FILE, whole or not at all, instead of stdout.")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True,
              help="Only the events after this position (to go on from an earlier export: "
                   "its last hash is the first line's prev_hash).")
@click.pass_context
def export(ctx: click.Context, out: Path | None, after: int) -> None:
    """The log as JSON Lines with its hash chain, for a SIEM to re-verify independently."""
    records = system_of(ctx).sql_store.read(ReadFilter(after=after))
    if out is None:
        _write(records, sys.stdout)
        return
    from orchestrator.adapters.files import atomic_stream

    try:
        with atomic_stream(out) as handle:
            count, last = _write(records, handle)
    except OSError as exc:
        raise OrchestratorError(f"--out {out}: cannot write it ({exc.strerror}); nothing "
                                "written") from None
    span = f"positions {after + 1} to {last}" if count else f"none after position {after}"
    click.echo(f"exported {count} events ({span}) to {out}")


def _write(records: Iterable[Recorded], handle: IO[str]) -> tuple[int, int]:
    count = last = 0
    for rec in records:
        handle.write(export_line(rec))
        count, last = count + 1, rec.position
    return count, last
