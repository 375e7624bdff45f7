"""The notifications outbox: each notifier's checkpoint on the log and its rows, in the
database (migration 0005), beside its in-memory double.

``take`` adds rows and moves the checkpoint in one transaction, with a compare-and-set (the
projector's way), so an event is taken once even if two processes raced; ``add`` skips ids the
notifier's outbox holds (``INSERT ... ON CONFLICT DO NOTHING`` on its unique index), so a
condition is kept once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from events.times import format_time, parse_time
from orchestrator.app.notifications import NewRow, Pending

__all__ = ["MemoryOutbox", "SqlOutbox"]

_meta = sa.MetaData()
checkpoints = sa.Table(
    "notifier_checkpoints", _meta, sa.Column("notifier", sa.String(63), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)
rows = sa.Table(
    "notifications", _meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notifier", sa.String(63), nullable=False),
    sa.Column("notice_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False), sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(27), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.String(27)), sa.Column("delivered_at", sa.String(27)),
    sa.Column("last_error", sa.Text),
)
IN_CHUNK = 500


class SqlOutbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self.engine.execution_options(sqlite_begin_immediate=True).begin() as conn:
            yield conn

    def position(self, notifier: str) -> int | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(checkpoints.c.position)
                                 .where(checkpoints.c.notifier == notifier)).scalar_one_or_none()
        return None if value is None else int(value)

    def begin(self, notifier: str, position: int) -> None:
        with self._writing() as conn:
            conn.execute(self._insert(conn, checkpoints).values(notifier=notifier,
                                                                 position=position)
                         .on_conflict_do_nothing())

    def take(self, notifier: str, start: int, end: int, new: Sequence[NewRow],
             at: datetime) -> bool:
        with self._writing() as conn:
            moved = conn.execute(checkpoints.update().where(
                checkpoints.c.notifier == notifier, checkpoints.c.position == start)
                .values(position=end)).rowcount
            if moved != 1:
                return False
            self._add(conn, notifier, new, at)
        return True

    def add(self, notifier: str, new: Sequence[NewRow], at: datetime) -> int:
        with self._writing() as conn:
            return self._add(conn, notifier, new, at)

    def _add(self, conn: Connection, notifier: str, new: Sequence[NewRow], at: datetime) -> int:
        added = 0
        for row in new:  # one at a time: each may already be there
            added += len(conn.execute(self._insert(conn, rows).values(
                notifier=notifier, notice_id=row.notice_id, kind=row.kind, body=row.body,
                created_at=format_time(at), attempts=0)
                .on_conflict_do_nothing().returning(rows.c.seq)).all())
        return added

    @staticmethod
    def _insert(conn: Connection, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        if conn.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def known(self, notifier: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), IN_CHUNK):
                found.update(conn.execute(sa.select(rows.c.notice_id).where(
                    rows.c.notifier == notifier,
                    rows.c.notice_id.in_(ids[start:start + IN_CHUNK]))).scalars())
        return found

    def pending(self, notifier: str, limit: int) -> list[Pending]:
        c = rows.c
        with self.engine.connect() as conn:
            return [Pending(r.seq, r.notice_id, r.kind, r.body, r.attempts,
                            parse_time(r.next_attempt_at) if r.next_attempt_at else None)
                    for r in conn.execute(sa.select(rows).where(
                        c.notifier == notifier, c.delivered_at.is_(None))
                        .order_by(c.seq).limit(limit))]

    def delivered(self, seq: int, at: datetime) -> None:
        with self._writing() as conn:
            conn.execute(rows.update().where(rows.c.seq == seq)
                         .values(delivered_at=format_time(at)))

    def failed(self, seq: int, attempts: int, retry_at: datetime, error: str) -> None:
        with self._writing() as conn:
            conn.execute(rows.update().where(rows.c.seq == seq).values(
                attempts=attempts, next_attempt_at=format_time(retry_at), last_error=error))


@dataclass
class _Row:
    pending: Pending
    notifier: str
    delivered_at: datetime | None = None
    last_error: str | None = None


class MemoryOutbox:
    """The same contract in memory: for unit tests."""

    def __init__(self) -> None:
        self.checkpoints: dict[str, int] = {}
        self.rows: list[_Row] = []

    def position(self, notifier: str) -> int | None:
        return self.checkpoints.get(notifier)

    def begin(self, notifier: str, position: int) -> None:
        self.checkpoints.setdefault(notifier, position)

    def take(self, notifier: str, start: int, end: int, new: Sequence[NewRow],
             at: datetime) -> bool:
        if self.checkpoints.get(notifier) != start:
            return False
        self.checkpoints[notifier] = end
        self.add(notifier, new, at)
        return True

    def add(self, notifier: str, new: Sequence[NewRow], at: datetime) -> int:
        held = self.known(notifier, [row.notice_id for row in new])
        added = 0
        for row in new:
            if row.notice_id in held:
                continue
            held.add(row.notice_id)
            self.rows.append(_Row(Pending(len(self.rows) + 1, row.notice_id, row.kind, row.body,
                                          0, None), notifier))
            added += 1
        return added

    def known(self, notifier: str, ids: Sequence[str]) -> set[str]:
        wanted = set(ids)
        return {r.pending.notice_id for r in self.rows
                if r.notifier == notifier and r.pending.notice_id in wanted}

    def pending(self, notifier: str, limit: int) -> list[Pending]:
        return [r.pending for r in self.rows
                if r.notifier == notifier and r.delivered_at is None][:limit]

    def delivered(self, seq: int, at: datetime) -> None:
        self.rows[seq - 1].delivered_at = at

    def failed(self, seq: int, attempts: int, retry_at: datetime, error: str) -> None:
        row = self.rows[seq - 1]
        row.pending = replace(row.pending, attempts=attempts, next_attempt_at=retry_at)
        row.last_error = error
