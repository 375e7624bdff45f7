"""Read models kept up to date from the log, with exactly-once checkpoints; and ``rebuild``.

The projection folds each application's stream with the same ``evolve`` as everything else and
stores the folded ``AppState`` (``rm_applications.state``) plus query tables derived from it
(``rm_credentials``, ``rm_rotations``). ``catch_up`` reads the events after the checkpoint and
writes the changed rows *and* the new checkpoint in one transaction; the checkpoint moves with a
compare-and-set, so two projectors racing never apply an event twice. Because positions are
gap-free and in commit order, "after position N" never skips an event that commits late.

``rebuild`` replays from position zero in memory and rewrites every table; the result is exactly
what incremental projection produces (a property test holds it to that).
"""

from __future__ import annotations

import gc
import itertools
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from events.codec import dumps, format_time, parse_time
from events.connections import borrowed
from events.kinds import CredentialKind, Usage
from events.state import (
    STREAM_PREFIX,
    AppState,
    Credential,
    Rotation,
    RotationStatus,
    Secret,
    Status,
    evolve,
)
from events.store import ReadFilter, Recorded

__all__ = [
    "NAME",
    "ProjectionStatus",
    "Projector",
    "app_of",
    "apply_records",
    "state_from_json",
    "state_to_json",
]

NAME = "read_models"
BATCH = 5000
LOG_PAGE = 5000  # rows a rebuild reads of the log at a time
LOCK_KEY = 0x70726F6A6563746F  # "projecto": PostgreSQL advisory lock, one projector writing

# PostgreSQL compresses a state's JSON (``rm_applications.state``, ~14 kB for an application
# with seven keys or certificates) as it stores it: a COPY of 4,000 such rows took 2.4-2.6 s
# with its default, pglz, and 1.0-1.2 s with lz4 (PostgreSQL 14+, when built with it). The same
# text reads back either way. Set for a rebuild's transaction only, and only where lz4 exists.
_LZ4 = sa.text(
    "SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings "
    "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")

_meta = sa.MetaData()
checkpoints = sa.Table(
    "projection_checkpoints", _meta, sa.Column("name", sa.String, primary_key=True),
    sa.Column("position", sa.BigInteger),
)
rm_applications = sa.Table(
    "rm_applications", _meta, sa.Column("app", sa.String, primary_key=True),
    sa.Column("version", sa.Integer), sa.Column("state", sa.Text),
    sa.Column("registered_at", sa.String), sa.Column("labels", sa.Text),
    sa.Column("secret_version", sa.Integer), sa.Column("live_credentials", sa.Integer),
    sa.Column("running_rotations", sa.Integer),
)
rm_credentials = sa.Table(
    "rm_credentials", _meta, sa.Column("credential_id", sa.String, primary_key=True),
    *(sa.Column(c, sa.String) for c in ("app", "usage", "kind", "kid", "alg")),
    sa.Column("key_size", sa.Integer),
    *(sa.Column(c, sa.String) for c in ("fingerprint", "name", "status", "added_at",
                                         "activated_at", "expires_at", "updated_at")),
)
rm_rotations = sa.Table(
    "rm_rotations", _meta, sa.Column("rotation_id", sa.String, primary_key=True),
    *(sa.Column(c, sa.String) for c in ("app", "usage", "reason", "status", "policy")),
    sa.Column("attempts", sa.Integer), sa.Column("last_error", sa.Text),
    *(sa.Column(c, sa.String) for c in ("next_attempt_at", "started_at", "updated_at")),
)
READ_MODEL_TABLES = (rm_applications, rm_credentials, rm_rotations)


# --- AppState <-> JSON -------------------------------------------------------------------------


def state_to_json(state: AppState) -> str:
    """The canonical JSON text of a state: the same text as ``dumps(dataclasses.asdict(state))``
    (every field of every dataclass, datetimes as the log's UTC text, enums as their values,
    sorted keys, the codec's separators), without ``asdict``, which deep-copied every leaf."""
    return _dump(_plain_state(state))


def _dump(plain: Any) -> str:
    # the json module's C encoder walks dicts, lists, tuples, strs (a ``StrEnum`` is one: its
    # text is its value) and numbers itself; ``_json_leaf`` answers for anything else
    return json.dumps(plain, default=_json_leaf, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def _plain_state(state: AppState) -> dict[str, Any]:
    """A state as plain data for ``_dump``: its fields and those of its credentials, rotations
    and secret as dicts, their datetimes as text (each formatted once: the read-model rows take
    theirs from here too)."""
    texts: dict[datetime, str] = {}  # a state's instants repeat (updated_at is another's)
    data = _fields_of(state, texts)
    data["credentials"] = {str(k): _fields_of(c, texts) for k, c in state.credentials.items()}
    data["rotations"] = {str(k): _fields_of(r, texts) for k, r in state.rotations.items()}
    if state.secret is not None:
        data["secret"] = _fields_of(state.secret, texts)
    return data


# per dataclass: its field names, and those of its fields annotated as datetimes
_SHAPES: dict[type, tuple[frozenset[str], tuple[str, ...]]] = {}


def _fields_of(obj: Any, texts: dict[datetime, str]) -> dict[str, Any]:
    """A dataclass instance's fields as a new dict, its datetime fields as the log's text
    (``texts``: the texts of the instants formatted so far)."""
    shape = _SHAPES.get(type(obj))
    if shape is None:
        every = fields(obj)
        shape = _SHAPES[type(obj)] = (frozenset(f.name for f in every),
                                      tuple(f.name for f in every if "datetime" in str(f.type)))
    names, times = shape
    data: dict[str, Any] = obj.__dict__
    # the instance's attributes are its fields (frozen: nothing else is ever set): a C copy
    data = data.copy() if data.keys() == names else {name: getattr(obj, name) for name in names}
    for name in times:
        value = data[name]
        if isinstance(value, datetime):
            text = texts.get(value)
            if text is None:
                text = texts[value] = format_time(value)
            data[name] = text
    return data


def _json_leaf(value: Any) -> Any:
    """What ``_dump`` writes for a value JSON has no form of: a datetime's canonical text, a
    dataclass's fields as a dict, another mapping as a dict, an enum's value."""
    if isinstance(value, datetime):
        return format_time(value)
    if is_dataclass(value) and not isinstance(value, type):
        return _fields_of(value, {})
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _times(data: dict[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        if data.get(name) is not None:
            data[name] = parse_time(data[name])
    return data


def state_from_json(text: str) -> AppState:
    data = json.loads(text)
    creds = {}
    for cid, c in data["credentials"].items():
        _times(c, "added_at", "updated_at", "not_before", "expires_at", "activated_at",
               "disabled_at", "expired_at", "deleted_at", "restored_at")
        c.update(usage=Usage(c["usage"]), kind=CredentialKind(c["kind"]),
                 status=Status(c["status"]))
        creds[cid] = Credential(**c)
    rotations = {}
    for rid, r in data["rotations"].items():
        _times(r, "started_at", "updated_at", "next_attempt_at", "completed_at", "tested_at",
               "rolled_back_at")
        r.update(status=RotationStatus(r["status"]), steps=tuple(r["steps"]))
        rotations[rid] = Rotation(**r)
    secret = data["secret"]
    if secret is not None:
        secret = Secret(**_times(secret, "rotated_at", "previous_valid_until"))
    return AppState(
        app=data["app"], version=data["version"],
        registered_at=parse_time(data["registered_at"]) if data["registered_at"] else None,
        labels=data["labels"], credentials=creds, secret=secret, rotations=rotations,
        provider=data.get("provider"), client_id=data.get("client_id"),
    )


Row = tuple[Any, ...]


def _rows(state: AppState) -> tuple[Row, list[Row], list[Row]]:
    """The read-model rows of one state, each a tuple in its table's column order."""
    app = state.app
    plain = _plain_state(state)
    app_row = (
        app, state.version, _dump(plain), plain["registered_at"], dumps(dict(state.labels)),
        state.secret.version if state.secret else None,
        sum(1 for c in state.credentials.values() if c.live),
        sum(1 for r in state.rotations.values() if r.status is RotationStatus.RUNNING),
    )
    creds = [
        (c.id, app, c.usage._value_, c.kind._value_, c.kid, c.alg, c.key_size, c.fingerprint,
         c.name, c.status._value_, p["added_at"], p["activated_at"], p["expires_at"],
         p["updated_at"])
        for c, p in zip(state.credentials.values(), plain["credentials"].values(), strict=True)
    ]
    rotations = [
        (r.id, app, r.usage, r.reason, r.status._value_, r.policy, r.attempts, r.last_error,
         p["next_attempt_at"], p["started_at"], p["updated_at"])
        for r, p in zip(state.rotations.values(), plain["rotations"].values(), strict=True)
    ]
    return app_row, creds, rotations


def app_of(rec: Recorded) -> str | None:
    return rec.stream_id[len(STREAM_PREFIX):] if rec.stream_id.startswith(STREAM_PREFIX) else None


def apply_records(states: dict[str, AppState], records: Iterable[Recorded]) -> int:
    """Fold ``records`` into ``states`` (by app); returns the last position seen (0 if none)."""
    return _fold(states, map(_FACT, records))[1]


# what the fold reads of a record: position, stream_id, type, schema_version, occurred_at, payload
Fact = tuple[int, str, str, int, datetime, str]
_FACT = operator.itemgetter(*map(Recorded._fields.index, (  # a Recorded's Fact
    "position", "stream_id", "type", "schema_version", "occurred_at", "payload_json")))


def _fold(states: dict[str, AppState], facts: Iterable[Fact]) -> tuple[int, int]:
    """Fold ``facts`` into ``states`` (by app): (how many were read, the last position, 0 if
    none). Each event is decoded once, from its payload text, by its type's decoder
    (``catalog.json_decoder``, looked up once per type and schema version)."""
    from events.catalog import json_decoder  # pydantic loads with the first fold, not at import

    count = last = 0
    prefix, skip = STREAM_PREFIX, len(STREAM_PREFIX)
    get = states.get
    decoders: dict[tuple[str, int], Callable[[str], Any]] = {}  # by type and schema version
    for position, stream, kind, version, at, payload in facts:
        count += 1
        last = position
        if stream.startswith(prefix):
            app = stream[skip:]
            decode = decoders.get((kind, version))
            if decode is None:
                decode = decoders[kind, version] = json_decoder(kind, version)
            states[app] = evolve(get(app) or AppState(app=app), decode(payload), at)
    return count, last


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        return self.head - self.position


class Projector:
    """Keeps the read-model tables of one database up to date with its event log."""

    def __init__(self, engine: Engine, store: Any) -> None:
        self.engine = engine
        self.store = store

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A transaction holding the projection write lock before it reads anything: SQLite's
        ``BEGIN IMMEDIATE`` (a deferred read-then-write transaction fails with "database is
        locked" once any other write commits in between), PostgreSQL's advisory lock (so a racing
        projector sees the winner's checkpoint instead of colliding on its rows)."""
        with self.engine.execution_options(sqlite_begin_immediate=True).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            yield conn

    def _checkpoint(self, conn: Connection) -> int | None:
        return conn.execute(
            sa.select(checkpoints.c.position).where(checkpoints.c.name == NAME)
        ).scalar_one_or_none()

    def status(self) -> ProjectionStatus:
        with self.engine.connect() as conn:
            position = self._checkpoint(conn) or 0
            head = conn.execute(sa.text("SELECT coalesce(max(position), 0) FROM events")).scalar_one()
        return ProjectionStatus(NAME, position, head)

    def catch_up(self, batch: int = BATCH) -> int:
        """Project every event after the checkpoint; returns how many were applied."""
        applied = 0
        while (n := self._step(batch)) is not None:
            applied += n
            if 0 < n < batch:
                break  # a short batch read the log to its head: no second, empty look
        return applied

    def _step(self, batch: int) -> int | None:
        """One batch in one transaction: the number applied, 0 when another projector won the
        race for it, None when there is nothing after the checkpoint."""
        with self.engine.connect() as conn:
            start = self._checkpoint(conn) or 0
        records = list(self.store.read(ReadFilter(after=start, limit=batch)))
        if not records:
            return None
        apps = sorted({a for a in map(app_of, records) if a is not None})
        with self._writing() as conn:
            current = self._checkpoint(conn)
            if (current or 0) != start:
                return 0  # another projector moved on: read again from its checkpoint
            states = self._load(conn, apps)
            last = apply_records(states, records)
            self._write(conn, [states[a] for a in apps], replace=True)
            if current is None:
                conn.execute(checkpoints.insert().values(name=NAME, position=last))
            else:
                moved = conn.execute(
                    checkpoints.update()
                    .where(checkpoints.c.name == NAME, checkpoints.c.position == start)
                    .values(position=last)
                ).rowcount
                if moved != 1:
                    raise RuntimeError("projection checkpoint moved during the transaction")
        return len(records)

    def _load(self, conn: Connection, apps: list[str]) -> dict[str, AppState]:
        states: dict[str, AppState] = {}
        for chunk in _chunks(apps, 500):
            for app, text in conn.execute(
                sa.select(rm_applications.c.app, rm_applications.c.state).where(
                    rm_applications.c.app.in_(chunk))
            ):
                states[app] = state_from_json(text)
        return states

    def _write(self, conn: Connection, states: Sequence[AppState], replace: bool) -> None:
        if replace:
            for chunk in _chunks([s.app for s in states], 500):
                for table in READ_MODEL_TABLES:
                    conn.execute(table.delete().where(table.c.app.in_(chunk)))
        creds: list[Row] = []
        rotations: list[Row] = []

        def apps() -> Iterator[Row]:  # written as made: PostgreSQL stores them meanwhile
            for state in states:
                app, c, r = _rows(state)
                creds.extend(c)
                rotations.extend(r)
                yield app

        _insert(conn, rm_applications, apps())
        _insert(conn, rm_credentials, creds)
        _insert(conn, rm_rotations, rotations)

    def rebuild(self) -> int:
        """Replay the whole log from zero into fresh tables; returns the events replayed."""
        states: dict[str, AppState] = {}
        with _collector_paused():
            count, last = _fold(states, self._facts())
            self._rewrite(states, last)
        return count

    def _rewrite(self, states: dict[str, AppState], last: int) -> None:
        """Every read-model table replaced by ``states``' rows, the checkpoint at ``last``."""
        with self._writing() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(_LZ4)
            for table in READ_MODEL_TABLES:
                conn.execute(table.delete())
            conn.execute(checkpoints.delete().where(checkpoints.c.name == NAME))
            self._write(conn, list(states.values()), replace=False)
            conn.execute(checkpoints.insert().values(name=NAME, position=last))

    def _facts(self) -> Iterator[Fact]:
        """The whole log as the fold reads it, in position order: the store's own keyset read
        (pages by position, the driver's cursor; on PostgreSQL each page its own transaction)
        with only the six columns the fold needs, where ``store.read`` fetches all fourteen and
        builds a ``Recorded`` of each row (a rebuild reads every event of the log)."""
        pg = self.engine.dialect.name == "postgresql"
        sql = ("SELECT position, stream_id, type, schema_version, occurred_at, payload FROM events"
               " WHERE position > {0} ORDER BY position LIMIT {0}").format("%s" if pg else "?")
        after = 0
        with borrowed(self.engine) as conn:
            while True:
                cursor = conn.cursor()
                try:
                    cursor.execute(sql, (after, LOG_PAGE))
                    rows = cursor.fetchall()
                finally:
                    cursor.close()
                if pg:
                    conn.rollback()  # end the read transaction between pages
                yield from [(p, s, t, v, parse_time(at), j) for p, s, t, v, at, j in rows]
                if len(rows) < LOG_PAGE:
                    return
                after = rows[-1][0]

    def verify(self) -> tuple[int, list[str]]:
        """Fold the log up to the checkpoint in memory and compare every read-model row with
        the tables: (the checkpoint, one line per difference naming the table, the row's key,
        its app and the columns that differ). An edit to the tables is found here; the tables
        are the projector's alone."""
        # one snapshot of checkpoint and tables (a projector may be moving them): SQLite's
        # transaction reads one WAL snapshot, PostgreSQL's REPEATABLE READ one snapshot
        level = "REPEATABLE READ" if self.engine.dialect.name == "postgresql" else None
        engine = self.engine.execution_options(isolation_level=level) if level else self.engine
        with engine.begin() as conn:
            position = self._checkpoint(conn) or 0
            actual = {t.name: {r[0]: r._asdict() for r in conn.execute(sa.select(t))}
                      for t in READ_MODEL_TABLES}
        states: dict[str, AppState] = {}
        if position:
            apply_records(states, self.store.read(ReadFilter(limit=position)))
        expected: dict[str, dict[Any, dict[str, Any]]] = {t.name: {} for t in READ_MODEL_TABLES}
        for state in states.values():
            app_row, creds, rotations = _rows(state)
            for table, rows in zip(READ_MODEL_TABLES, ([app_row], creds, rotations),
                                   strict=True):
                names = table.c.keys()
                expected[table.name].update((row[0], dict(zip(names, row, strict=True))) for row in rows)
        problems = []
        for table in READ_MODEL_TABLES:
            want, have = expected[table.name], actual[table.name]
            for key in sorted(want.keys() | have.keys(), key=str):
                row_w, row_h = want.get(key), have.get(key)
                app = (row_w or row_h or {}).get("app")
                if row_h is None:
                    problems.append(f"{table.name} {key} (app {app}): missing from the table")
                elif row_w is None:
                    problems.append(f"{table.name} {key} (app {app}): in the table, not in the log")
                else:
                    cols = [f"{c} is {row_h[c]!r}, the log says {row_w[c]!r}"
                            for c in row_w if row_h.get(c) != row_w[c]]
                    if cols:
                        shown = "; ".join(c if len(c) < 200 else c[:200] + "…" for c in cols)
                        problems.append(f"{table.name} {key} (app {app}): {shown}")
        return position, problems

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every read-model row, sorted: for comparing two projections."""
        with self.engine.connect() as conn:
            return {
                t.name: sorted(tuple(r) for r in conn.execute(sa.select(t)))
                for t in READ_MODEL_TABLES
            }

    def apps_due_to_expire(self, at: datetime) -> list[str]:
        """Applications with a live credential past its expiry not yet recorded as expired."""
        c = rm_credentials.c
        with self.engine.connect() as conn:
            return list(conn.execute(
                sa.select(c.app).distinct()
                .where(c.expires_at <= format_time(at), c.status.not_in(["expired", "deleted"]))
                .order_by(c.app)
            ).scalars())

    def next_expiry(self, after: datetime) -> datetime | None:
        """The next instant a live credential expires, after ``after``."""
        c = rm_credentials.c
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.min(c.expires_at))
                .where(c.expires_at > format_time(after), c.status.not_in(["expired", "deleted"]))
            ).scalar_one_or_none()
        return parse_time(value) if value else None

    def seed(self) -> tuple[int, dict[str, str]]:
        """Every application's folded state as the read model holds it (``state_to_json``
        text, for ``state_from_json``) and the checkpoint they are folded to, read in one
        snapshot: what a new daemon starts from instead of replaying the whole log (it catches
        up from that position, and decodes an application when it first looks at it)."""
        options = ({"isolation_level": "REPEATABLE READ"}
                   if self.engine.dialect.name == "postgresql" else {})
        with self.engine.connect().execution_options(**options) as conn, conn.begin():
            position = self._checkpoint(conn) or 0
            rows = conn.execute(sa.select(rm_applications.c.app, rm_applications.c.state)).all()
        return position, {str(app): str(text) for app, text in rows}

    def versions(self) -> dict[str, int]:
        """Every projected application's stream version, by app: what a reader that keeps
        states in memory compares to read again only the ones that moved (``states_of``)."""
        a = rm_applications.c
        with self.engine.connect() as conn:
            return {app: int(version) for app, version in conn.execute(
                sa.select(a.app, a.version))}

    def states_of(self, apps: Iterable[str]) -> list[AppState]:
        """The projected states of ``apps`` (those projected; in no particular order)."""
        with self.engine.connect() as conn:
            return list(self._load(conn, sorted(apps)).values())

    def states(self) -> Iterator[AppState]:
        with self.engine.connect() as conn:
            for (text,) in conn.execute(
                sa.select(rm_applications.c.state).order_by(rm_applications.c.app)
            ):
                yield state_from_json(text)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off for the block, back on after if it was on. A rebuild makes
    and drops millions of objects that form no reference cycle (events, states, dicts, tuples:
    each freed by its reference count), and the collector's passes over them, ever more of them
    as the states grow, cost it about a sixth of its CPU time (26.5-27.8 against 22.9-23.3 us
    per event, 200,000 events on SQLite, interleaved in one process)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


COPY_FROM = 100  # PostgreSQL: more rows than this go in by COPY (one statement, no pipeline)


def _insert(conn: Connection, table: sa.Table, rows: Iterable[Row]) -> None:
    """Insert ``rows`` (tuples in the table's column order) with the driver's own cursor, in
    the connection's transaction: on SQLite one ``executemany``; on PostgreSQL a COPY when they
    are many (a rebuild writes hundreds of thousands, sent while they are made), else one
    ``executemany`` (psycopg's pipeline hung on a single 15,000+-row batch here)."""
    columns = ", ".join(table.c.keys())
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dialect.name != "postgresql":
            marks = ", ".join("?" * len(table.c))
            cursor.executemany(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", rows)
            return
        rows = iter(rows)
        first = list(itertools.islice(rows, COPY_FROM + 1))
        if len(first) <= COPY_FROM:
            if first:
                marks = ", ".join(["%s"] * len(table.c))
                cursor.executemany(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})",
                                   first)
            return
        with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for row in itertools.chain(first, rows):
                copy.write_row(row)
    finally:
        cursor.close()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
