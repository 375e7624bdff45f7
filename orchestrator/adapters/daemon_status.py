"""What the leading daemon says about itself (table ``daemon_status``), and who holds the lease.

``DaemonStatus.record`` is the leader's write after each tick: its epoch, who it is, since when
it leads, its last tick's instant and summary. It is fenced like an append: the row changes only
while the writer's epoch is the database's (``leader_epoch``), so a deposed leader never
overwrites its successor. ``read`` gives the row to ``orchestrator status``.

``lease_holder`` looks at the leader lease without taking it (taking it, even for an instant,
could make a daemon starting then wait a whole interval as a standby): on PostgreSQL the
advisory lock in ``pg_locks`` (its backend's pid, client address and start); on SQLite the
``flock`` on the database file in ``/proc/locks`` (Linux; elsewhere the holder is unknown).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from events.codec import format_time, parse_time
from events.sql import is_postgres
from orchestrator.adapters.lease import LEASE_KEY

__all__ = ["DaemonStatus", "LeaseHolder", "StatusRow", "lease_holder"]

_FENCED_UPDATE = sa.text(
    "UPDATE daemon_status SET epoch = :epoch, holder = :holder, leader_since = :since, "
    "last_tick_at = :at, summary = :summary "
    "WHERE id = 1 AND :epoch = (SELECT epoch FROM leader_epoch WHERE id = 1)")
_READ = sa.text("SELECT d.epoch, d.holder, d.leader_since, d.last_tick_at, d.summary, "
                "e.epoch FROM daemon_status d, leader_epoch e WHERE d.id = 1 AND e.id = 1")
# the leader's advisory lock: its bigint key is (classid << 32) | objid, objsubid 1
_PG_HOLDER = sa.text(
    "SELECT l.pid, host(a.client_addr), a.backend_start FROM pg_locks l "
    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND ((l.classid::bigint << 32) | l.objid::bigint) "
    "= hashtextextended(current_schema(), :key)")


@dataclass(frozen=True, slots=True)
class StatusRow:
    """The leading daemon's last word, and the database's epoch now."""

    epoch: int | None  # the epoch it wrote at
    holder: str | None  # host and process
    leader_since: datetime | None
    last_tick_at: datetime | None
    summary: dict[str, Any]
    current_epoch: int  # leader_epoch now: another than ``epoch`` means a newer leader

    @property
    def current(self) -> bool:
        """Whether it was written by the leader of the current epoch."""
        return self.epoch is not None and self.epoch == self.current_epoch


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """The lease now: ``held`` True / False, or None when it cannot be told (no /proc/locks)."""

    held: bool | None
    pid: int | None = None
    where: str | None = None  # PostgreSQL: the holder's client address
    since: datetime | None = None  # PostgreSQL: when its session began


class DaemonStatus:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, epoch: int, holder: str, since: datetime, at: datetime,
               summary: dict[str, Any]) -> bool:
        """Write the leader's row; False (nothing written) when ``epoch`` is over."""
        with self.engine.begin() as conn:
            changed = conn.execute(_FENCED_UPDATE, {
                "epoch": epoch, "holder": holder, "since": format_time(since),
                "at": format_time(at),
                "summary": json.dumps(summary, sort_keys=True, default=_plain)}).rowcount
        return bool(changed)

    def read(self) -> StatusRow:
        with self.engine.connect() as conn:
            epoch, holder, since, at, summary, now = conn.execute(_READ).one()
        return StatusRow(epoch, holder, parse_time(since) if since else None,
                         parse_time(at) if at else None, json.loads(summary) if summary else {},
                         int(now))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def lease_holder(engine: Engine) -> LeaseHolder:
    """Who holds the leader lease of ``engine``'s database, without taking it."""
    if is_postgres(engine):
        with engine.connect() as conn:
            row = conn.execute(_PG_HOLDER, {"key": LEASE_KEY}).first()
        if row is None:
            return LeaseHolder(False)
        return LeaseHolder(True, int(row[0]), row[1] or "local socket", row[2])
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return LeaseHolder(False)  # a private database: no daemon of another process leads it
    try:
        found = os.stat(database)
        with open("/proc/locks", encoding="ascii") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return LeaseHolder(None)
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue  # "->": a waiter, not a holder
        if fields[5] == _file_id(found) and fields[3] == "WRITE":
            return LeaseHolder(True, int(fields[4]) or None)
    return LeaseHolder(False)


def _file_id(found: os.stat_result) -> str:
    """A file as /proc/locks names it: ``major:minor:inode``, the device in hex."""
    return f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
