"""The SQL event store on SQLAlchemy 2.x: SQLite (embedded default) and PostgreSQL (psycopg 3).

Appends are serialized, which gives a gap-free global position in commit order and the hash
chain's total order: SQLite takes the write lock up front (``BEGIN IMMEDIATE``); PostgreSQL takes a
transaction-scoped advisory lock (``pg_advisory_xact_lock``), which readers never wait for and
which, unlike ``LOCK TABLE ... EXCLUSIVE``, leaves group commit alone. Positions are assigned
from the head read under that lock, never from a sequence (a sequence leaves gaps on rollback).

A store remembers the head (position, hash) its last append left. Its next append is then one
statement in autocommit, an ``INSERT ... SELECT`` whose rows go in only if the head, the
stream's version and the writer's lease are as guessed (PostgreSQL: ``events_append_ready``,
migration 0007, takes the append lock first and reads them under it): one statement and one
round trip, as a bare insert is. That is for appends of up to ``_SQLITE_GUARDED_ROWS`` events
that claim nothing on SQLite, and up to ``_PG_GUARDED_ROWS`` events on PostgreSQL, where a
larger append goes in one pipeline (BEGIN, the same guard, prepared inserts, COMMIT). A wrong
guess writes nothing, and the exact path (the lock, the reads, then the inserts) runs and says
precisely what failed. The position's primary key keeps the chain's order either way.

Durability: SQLite runs in WAL mode with ``synchronous=FULL`` by default: an audit log must not
lose a committed event on power loss (``?synchronous=normal`` in the URL trades that for ~4x
faster single-event appends). PostgreSQL uses the server's settings (``synchronous_commit=on``).

The hot paths (append, read) use the driver's cursor directly through SQLAlchemy's pooled
connection (``events.connections.borrowed``: one a restarted server dropped is thrown away, not
rolled back); appends keep theirs between calls (``events.connections.Held``: a checkout and
return cost a single-event append as much as its statement), given up the same way on any error.
The schema lives in Alembic migrations (``events/migrations``); everything else uses SQLAlchemy
Core.

Fencing: a store built with ``fence`` (the daemon's: the leader epoch its lease was taken at)
checks that epoch against ``leader_epoch`` inside every append's transaction, under the append
lock, and raises ``LeaseLost`` with nothing written when another daemon has taken the lease
since (``events.epoch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from events import epoch as leader_epoch
from events.chain import GENESIS
from events.connections import Held, borrowed, watch
from events.store import (
    ConcurrencyError,
    DuplicateClaimError,
    LeaseLost,
    NewEvent,
    ReadFilter,
    Recorded,
    build_records,
)

__all__ = [
    "ADVISORY_LOCK_KEY",
    "SQLEventStore",
    "create_engine",
    "current_revision",
    "is_postgres",
    "known_revisions",
    "upgrade",
]

ADVISORY_LOCK_KEY = 0x6F72636865737472  # "orchestr": one lock for all appends in the database
READ_PAGE = 2000
CONNECT_TIMEOUT = 10  # seconds a PostgreSQL connect may take
_NO_POSITION = 2**62  # above any position: "before the head" for the first backwards page
MAX_ROWS_PER_STATEMENT = 1000  # psycopg's pipeline hung on a single 15,000+-row batch here
CLAIMS_PER_QUERY = 400  # SQLite refuses an OR chain deeper than 1000 (its expression depth limit)
# an append of at most this many events goes in as one guarded INSERT ... SELECT on SQLite (its 14
# parameters a row stay well under SQLite's 32,766 a statement)
_SQLITE_GUARDED_ROWS = 100
_SQLITE_ROW = f"({','.join('?' * 14)})"
_PG_ROW = ("(%s::bigint, %s::text, %s::integer, %s::text, %s::text, %s::smallint, %s::text, "
           "%s::text, %s::text, %s::text, %s::text, %s::text, %s::text, %s::text)")
_PG_CLAIM = "(%s::text, %s::text, %s::text, %s::bigint)"
_PG_READY = "events_append_ready(%s, %s, %s, %s, %s, %s)"
# PostgreSQL plans a statement of many VALUES rows slowly (100 rows: 0.26 of raw executemany,
# against 0.68 for the pipeline of prepared single-row inserts): above this, the pipeline
_PG_GUARDED_ROWS = 4
# the head's position (0: empty) and a stream's version, each read from one end of an index
_SQLITE_HEAD = "SELECT coalesce((SELECT position FROM events ORDER BY position DESC LIMIT 1), 0)"
_SQLITE_VERSION = ("SELECT coalesce((SELECT stream_version FROM events WHERE stream_id = ? "
                   "ORDER BY stream_version DESC LIMIT 1), 0)")

_COLUMNS = (
    "position, stream_id, stream_version, event_id, type, schema_version, occurred_at, "
    "recorded_at, actor, correlation_id, causation_id, payload, prev_hash, hash"
)
_MIGRATIONS = Path(__file__).with_name("migrations")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def create_engine(url: str, **kwargs: Any) -> Engine:
    """An engine configured for the store: psycopg 3 for PostgreSQL; WAL, a busy timeout and
    explicit transactions for SQLite (``?synchronous=full|normal``, default full)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # no pre-ping: it would cost every append a round trip; recycle idle connections instead,
        # and throw them all away when one meets a restarted server. A server that takes the
        # connection but never answers (a host gone silent) fails a connect after
        # CONNECT_TIMEOUT seconds rather than the kernel's minutes (``?connect_timeout=`` in the
        # URL sets another)
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT,
                                      **kwargs.get("connect_args", {})}
        engine = sa.create_engine(parsed, pool_recycle=1800, **kwargs)
        watch(engine)
        return engine
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")
    synchronous = parsed.query.get("synchronous", "full")
    if isinstance(synchronous, tuple):
        synchronous = synchronous[-1]
    if synchronous.lower() not in {"full", "normal", "extra"}:
        raise ValueError(f"synchronous={synchronous}: use full, normal or extra")
    parsed = parsed.difference_update_query(["synchronous"])
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # execution option sqlite_begin_immediate=True: take the write lock up front, for a
        # transaction that reads then writes (deferred, it fails once another write commits)
        immediate = conn.get_execution_options().get("sqlite_begin_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` with the Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def known_revisions() -> tuple[str, ...]:
    """The schema revisions this code has migrations for, oldest first (from the file names of
    ``migrations/versions``, ``<revision>_<what>.py``; cheap: imports no Alembic)."""
    names = (p.name for p in (_MIGRATIONS / "versions").glob("*.py"))
    return tuple(sorted(n.split("_", 1)[0] for n in names if "_" in n and n[0].isdigit()))


def current_revision(engine: Engine) -> str | None:
    """The schema's Alembic revision (None: no schema), read without loading Alembic, which
    only ``upgrade`` needs."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        return None if revision is None else str(revision)


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _to_recorded(row: Sequence[Any]) -> Recorded:
    return Recorded(
        row[0], row[1], row[2], row[3], row[4], row[5], _parse_time(row[6]),
        _parse_time(row[7]), row[8], row[9], row[10], row[11], row[12], row[13],
    )


class SQLEventStore:
    """``append`` and ``read`` over the ``events`` table (see the module docstring)."""

    def __init__(self, engine: Engine, clock: Any = None,
                 fence: Callable[[], leader_epoch.Fence | None] | None = None) -> None:
        self.engine = engine
        self._fence = fence  # the writer's (epoch, lock session); None from it: not the leader
        self._pg = is_postgres(engine)
        self._head: tuple[int, str] | None = None  # (position, hash) after our last append
        self._clock = clock or (lambda: datetime.now(UTC))
        self._held = Held(engine)  # the appends' connection, kept between them

    def close(self) -> None:
        """Give back the connection the appends keep (the next append takes one again)."""
        self._held.close()

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self._pg else text

    # --- append ------------------------------------------------------------------------------

    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: int
    ) -> list[Recorded]:
        if not events:
            return []
        mine = self._epoch()
        with self._held.driver() as conn:
            if self._pg:
                return self._append_pg(conn, stream_id, events, expected_version, mine)
            return self._append_sqlite(conn, stream_id, events, expected_version, mine)

    def _epoch(self) -> leader_epoch.Fence | None:
        """The fence this store's appends carry (None: unfenced)."""
        if self._fence is None:
            return None
        mine = self._fence()
        if mine is None:
            raise LeaseLost("this daemon does not hold the leader lease; nothing written")
        return mine

    def _check(
        self,
        stream_id: str,
        expected_version: int,
        actual: int,
        claims: list[tuple[str, str]],
        taken: list[tuple[str, str, str]],
    ) -> None:
        if actual != expected_version:
            raise ConcurrencyError(stream_id, expected_version, actual)
        if taken:
            namespace, value, owner = taken[0]
            raise DuplicateClaimError(namespace, value, owner)
        if len(set(claims)) != len(claims):
            dup = next(c for c in claims if claims.count(c) > 1)
            raise DuplicateClaimError(dup[0], dup[1], stream_id)

    def _rows(self, records: list[Recorded]) -> list[tuple[Any, ...]]:
        from events.codec import format_time

        return [
            (
                r.position, r.stream_id, r.stream_version, r.event_id, r.type, r.schema_version,
                format_time(r.occurred_at), format_time(r.recorded_at), r.actor,
                r.correlation_id, r.causation_id, r.payload_json, r.prev_hash, r.hash,
            )
            for r in records
        ]

    def _insert(self, cur: Any, stream_id: str, rows: list[tuple[Any, ...]],
                claims: list[tuple[str, str]]) -> None:
        """The claims and the events of one append, in statements of bounded size."""
        if claims:
            first = rows[0][0]
            cur.executemany(
                self._sql("INSERT INTO event_claims (namespace, value, stream_id, position) "
                          "VALUES (?, ?, ?, ?)"),
                [(ns, value, stream_id, first) for ns, value in claims],
            )
        statement = self._sql(f"INSERT INTO events ({_COLUMNS}) VALUES ({','.join('?' * 14)})")
        for start in range(0, len(rows), MAX_ROWS_PER_STATEMENT):
            cur.executemany(statement, rows[start : start + MAX_ROWS_PER_STATEMENT])

    def _claims_query(self, claims: list[tuple[str, str]]) -> tuple[str, list[str]]:
        cond = " OR ".join(["(namespace = ? AND value = ?)"] * len(claims))
        params = [x for claim in claims for x in claim]
        return self._sql(f"SELECT namespace, value, stream_id FROM event_claims WHERE {cond}"), params

    def _append_sqlite(
        self, conn: Any, stream_id: str, events: Sequence[NewEvent], expected: int,
        mine: leader_epoch.Fence | None,
    ) -> list[Recorded]:
        """One statement when the head this store appended last is still the head and nothing
        is claimed (the usual case: one writer), else the exact path, which also says precisely
        what failed (a stale version, a claim already taken)."""
        claims = [c for new in events for c in new.claims]
        head = self._head
        if head is not None and not claims and len(events) <= _SQLITE_GUARDED_ROWS:
            records = self._append_sqlite_guarded(conn, stream_id, events, expected, head, mine)
            if records:
                return records
        return self._append_sqlite_exact(conn, stream_id, events, expected, mine, claims)

    def _append_sqlite_guarded(
        self, conn: Any, stream_id: str, events: Sequence[NewEvent], expected: int,
        head: tuple[int, str], mine: leader_epoch.Fence | None,
    ) -> list[Recorded]:
        """The whole append as one ``INSERT ... SELECT`` in autocommit, which SQLite runs as
        one write transaction: its rows go in only when the head, the stream version (and the
        leader epoch) are as guessed. Empty (nothing written) when a guess is wrong."""
        rows: list[tuple[Any, ...]] = []
        records = build_records(stream_id, events, expected + 1, head[0], head[1],
                                self._clock(), rows)
        values = ",".join([_SQLITE_ROW] * len(rows))
        fenced = "" if mine is None else f" AND ({leader_epoch.CURRENT}) = ?"
        params: list[Any] = [x for row in rows for x in row]
        params += [head[0], stream_id, expected, *(() if mine is None else (mine[0],))]
        cur = conn.cursor()
        try:
            cur.execute(
                f"INSERT INTO events ({_COLUMNS}) SELECT * FROM (VALUES {values}) WHERE "
                f"({_SQLITE_HEAD}) = ? AND ({_SQLITE_VERSION}) = ?{fenced}",
                params,
            )
            written = cur.rowcount
        finally:
            cur.close()
        return self._guessed(records, written)

    def _guessed(self, records: list[Recorded], written: int) -> list[Recorded]:
        """A guarded append's outcome: its records when all of them went in (the head moves to
        the last), else empty (none went in: the guess was wrong, the head is unknown)."""
        if written != len(records):
            self._head = None
            return []
        self._head = (records[-1].position, records[-1].hash)
        return records

    def _append_sqlite_exact(
        self, conn: Any, stream_id: str, events: Sequence[NewEvent], expected: int,
        mine: leader_epoch.Fence | None, claims: list[tuple[str, str]],
    ) -> list[Recorded]:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            if mine is not None:
                leader_epoch.check(mine[0], leader_epoch.current(cur))
            position, last_hash, actual = cur.execute(
                f"SELECT ({_SQLITE_HEAD}), (SELECT hash FROM events ORDER BY position DESC "
                f"LIMIT 1), ({_SQLITE_VERSION})",
                (stream_id,),
            ).fetchone()
            taken = [
                row
                for start in range(0, len(claims), CLAIMS_PER_QUERY)
                for row in cur.execute(
                    *self._claims_query(claims[start : start + CLAIMS_PER_QUERY])
                ).fetchall()
            ]
            self._check(stream_id, expected, actual, claims, taken)
            rows: list[tuple[Any, ...]] = []
            records = build_records(stream_id, events, expected + 1, position,
                                    last_hash or GENESIS, self._clock(), rows)
            self._insert(cur, stream_id, rows, claims)
            cur.execute("COMMIT")
        except BaseException:
            self._head = None
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()
        self._head = (records[-1].position, records[-1].hash)
        return records

    def _append_pg(
        self, conn: Any, stream_id: str, events: Sequence[NewEvent], expected: int,
        mine: leader_epoch.Fence | None,
    ) -> list[Recorded]:
        """One statement when the head this store appended last is still the head (the usual
        case: one writer, the leader), else the exact path, which also says precisely what
        failed (a stale version, a claim already taken)."""
        head = self._head
        if head is not None:
            guessed = (self._append_pg_guarded if len(events) <= _PG_GUARDED_ROWS
                       else self._append_pg_pipelined)
            records = guessed(conn, stream_id, events, expected, head, mine)
            if records:
                return records
        return self._append_pg_exact(conn, stream_id, events, expected, mine)

    def _append_pg_pipelined(
        self, conn: Any, stream_id: str, events: Sequence[NewEvent], expected: int,
        head: tuple[int, str], mine: leader_epoch.Fence | None,
    ) -> list[Recorded]:
        """A larger append in one pipeline (one round trip): BEGIN, the guard of
        ``_append_pg_guarded`` (aborting the transaction when a guess is wrong), the inserts in
        prepared statements, COMMIT. Empty (nothing written) when a guess or a claim fails."""
        import psycopg

        claims = [c for new in events for c in new.claims]
        rows: list[tuple[Any, ...]] = []
        records = build_records(stream_id, events, expected + 1, head[0], head[1],
                                self._clock(), rows)
        conn.autocommit = True
        try:
            with conn.pipeline(), conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute(f"SELECT events_guard({_PG_READY})",
                            (ADVISORY_LOCK_KEY, head[0], stream_id, expected,
                             *((None, None) if mine is None else mine)))
                self._insert(cur, stream_id, rows, claims)
                cur.execute("COMMIT")
        except psycopg.Error:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            return self._guessed(records, 0)
        finally:
            conn.autocommit = False
        return self._guessed(records, len(records))

    def _append_pg_guarded(
        self, conn: Any, stream_id: str, events: Sequence[NewEvent], expected: int,
        head: tuple[int, str], mine: leader_epoch.Fence | None,
    ) -> list[Recorded]:
        """The whole append as one ``INSERT ... SELECT`` in autocommit (one round trip, one
        statement): its rows, and its claims', go in only when ``events_append_ready`` (migration
        0007) finds, under the append lock, the head, the stream version and the writer's lease
        as guessed. Empty (nothing written) when a guess is wrong or a claim is taken."""
        import psycopg

        claims = [c for new in events for c in new.claims]
        rows: list[tuple[Any, ...]] = []
        records = build_records(stream_id, events, expected + 1, head[0], head[1],
                                self._clock(), rows)
        params: list[Any] = [ADVISORY_LOCK_KEY, head[0], stream_id, expected,
                             *((None, None) if mine is None else mine)]
        claimed = ""
        if claims:
            claimed = (", claimed AS (INSERT INTO event_claims (namespace, value, stream_id, "
                       "position) SELECT c.* FROM ready, (VALUES "
                       f"{','.join([_PG_CLAIM] * len(claims))}) AS c WHERE ready.ok)")
            params += [x for ns, value in claims for x in (ns, value, stream_id, rows[0][0])]
        params += [x for row in rows for x in row]
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"WITH ready AS MATERIALIZED (SELECT {_PG_READY} AS ok){claimed} "
                    f"INSERT INTO events ({_COLUMNS}) SELECT v.* FROM ready, "
                    f"(VALUES {','.join([_PG_ROW] * len(rows))}) AS v WHERE ready.ok",
                    params,
                )
                written = cur.rowcount
        except psycopg.errors.UniqueViolation:
            written = 0  # a claim already taken (or a position a writer took): the exact path
        finally:
            conn.autocommit = False
        return self._guessed(records, written)

    def _append_pg_exact(
        self, conn: Any, stream_id: str, events: Sequence[NewEvent], expected: int,
        mine: leader_epoch.Fence | None,
    ) -> list[Recorded]:
        claims = [c for new in events for c in new.claims]
        try:
            with conn.cursor() as cur:
                with conn.pipeline():
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
                    head_cur = conn.cursor()
                    head_cur.execute(
                        "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
                    )
                    ver_cur = conn.cursor()
                    ver_cur.execute(
                        "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = %s",
                        (stream_id,),
                    )
                    claim_cur = conn.cursor()
                    if claims:
                        claim_cur.execute(*self._claims_query(claims))
                    epoch_cur = conn.cursor()
                    if mine is not None:
                        epoch_cur.execute(f"SELECT ({leader_epoch.CURRENT}), {leader_epoch.HELD}",
                                          (mine[1],))
                if mine is not None:
                    now, held = epoch_cur.fetchone()
                    leader_epoch.check(mine[0], int(now), bool(held))
                head = head_cur.fetchone()
                actual = ver_cur.fetchone()[0]
                taken = claim_cur.fetchall() if claims else []
                self._check(stream_id, expected, actual, claims, taken)
                rows: list[tuple[Any, ...]] = []
                records = build_records(
                    stream_id, events, expected + 1, head[0] if head else 0,
                    head[1] if head else GENESIS, self._clock(), rows,
                )
                with conn.pipeline():
                    self._insert(cur, stream_id, rows, claims)
            conn.commit()
            self._head = (records[-1].position, records[-1].hash)
            return records
        except BaseException:
            conn.rollback()
            raise

    # --- read --------------------------------------------------------------------------------

    def _read_last(self, conds: list[str], params: list[int | str], last: int) -> list[Recorded]:
        """The newest ``last`` records matching ``conds``, in position order: read backwards
        from the head by position, a page at a time (the primary key's order, no sort)."""
        sql = self._sql(f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(conds)} "
                        "AND position < ? ORDER BY position DESC LIMIT ?")
        newest: list[Recorded] = []
        before: int | None = None
        with borrowed(self.engine) as conn:
            while len(newest) < last:
                page = min(READ_PAGE, last - len(newest))
                cur = conn.cursor()
                try:
                    cur.execute(sql, (*params, _NO_POSITION if before is None else before, page))
                    rows = cur.fetchall()
                finally:
                    cur.close()
                if self._pg:
                    conn.rollback()  # end the read transaction between pages
                newest.extend(_to_recorded(row) for row in rows)
                if len(rows) < page:
                    break
                before = rows[-1][0]
        newest.reverse()
        return newest

    def read(self, where: ReadFilter = ReadFilter()) -> Iterator[Recorded]:
        """Records in position order, matching ``where``, read in pages by position."""
        conds: list[str] = ["position > ?"]
        params: list[int | str] = [where.after]
        # With a stream given, SQLite (no ANALYZE statistics) would rather drive the query from
        # events_type_occurred_at (type = ? AND a time range) than from the stream's index, and
        # then reads every event of that type in the window: ~170 ms for one app's audit query
        # over 1M events against 0.1 ms. SQLite's unary "+" keeps a column from choosing the
        # index, so a stream filter always reads just that stream's rows. Same rows either way.
        x = "+" if where.stream_id is not None and not self._pg else ""
        if where.stream_id is not None:
            conds.append("stream_id = ?")
            params.append(where.stream_id)
        if where.types:
            conds.append(f"{x}type IN ({','.join('?' * len(where.types))})")
            params.extend(where.types)
        if where.actor is not None:
            conds.append(f"{x}actor = ?")
            params.append(where.actor)
        if where.since is not None:
            from events.codec import format_time

            conds.append(f"{x}occurred_at >= ?")
            params.append(format_time(where.since))
        if where.until is not None:
            from events.codec import format_time

            conds.append(f"{x}occurred_at < ?")
            params.append(format_time(where.until))
        if where.last is not None:
            newest = self._read_last(conds, params, where.last)
            yield from newest[: where.limit] if where.limit is not None else newest
            return
        remaining = where.limit
        sql = self._sql(
            f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(conds)} ORDER BY position LIMIT ?"
        )
        with borrowed(self.engine) as conn:
            while remaining is None or remaining > 0:
                page = READ_PAGE if remaining is None else min(READ_PAGE, remaining)
                cur = conn.cursor()
                try:
                    cur.execute(sql, (*params, page))
                    rows = cur.fetchall()
                finally:
                    cur.close()
                if self._pg:
                    conn.rollback()  # end the read transaction between pages
                if not rows:
                    return
                for row in rows:
                    yield _to_recorded(row)
                if len(rows) < page:
                    return
                params[0] = rows[-1][0]
                if remaining is not None:
                    remaining -= len(rows)

