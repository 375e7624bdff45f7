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

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from events.codec import dumps, format_time, parse_time
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
LOCK_KEY = 0x70726F6A6563746F  # "projecto": PostgreSQL advisory lock, one projector writing

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
    # The same text as ``dumps(dataclasses.asdict(state))``, without ``asdict``: it deep-copies
    # every leaf (each datetime and enum through ``copy.deepcopy``), which made ``rebuild`` spend
    # most of its time there. ``_plain_state`` + the codec's JSON settings give identical output.
    return json.dumps(_plain_state(state), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


_SCALARS = frozenset({str, int, float, bool})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain_state(value: Any) -> Any:
    """``codec._plain(dataclasses.asdict(value))`` in one pass: dataclasses as dicts of all their
    fields, datetimes as canonical text, enums as values, mappings as dicts with str keys,
    lists and tuples as lists, anything else as is."""
    if value is None or type(value) in _SCALARS:
        return value
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Enum):
        return value.value
    names = _FIELD_NAMES.get(type(value))
    if names is None and is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in fields(value))
    if names is not None:
        return {name: _plain_state(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {str(k): _plain_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_state(v) for v in value]
    return value


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


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _rows(state: AppState) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    app_row = {
        "app": state.app, "version": state.version, "state": state_to_json(state),
        "registered_at": _t(state.registered_at), "labels": dumps(dict(state.labels)),
        "secret_version": state.secret.version if state.secret else None,
        "live_credentials": sum(1 for c in state.credentials.values() if c.live),
        "running_rotations": sum(
            1 for r in state.rotations.values() if r.status is RotationStatus.RUNNING),
    }
    creds = [
        {
            "credential_id": c.id, "app": state.app, "usage": c.usage.value, "kind": c.kind.value,
            "kid": c.kid, "alg": c.alg, "key_size": c.key_size, "fingerprint": c.fingerprint,
            "name": c.name, "status": c.status.value, "added_at": _t(c.added_at),
            "activated_at": _t(c.activated_at), "expires_at": _t(c.expires_at),
            "updated_at": _t(c.updated_at),
        }
        for c in state.credentials.values()
    ]
    rotations = [
        {
            "rotation_id": r.id, "app": state.app, "usage": r.usage, "reason": r.reason,
            "status": r.status.value, "policy": r.policy, "attempts": r.attempts,
            "last_error": r.last_error, "next_attempt_at": _t(r.next_attempt_at),
            "started_at": _t(r.started_at), "updated_at": _t(r.updated_at),
        }
        for r in state.rotations.values()
    ]
    return app_row, creds, rotations


def app_of(rec: Recorded) -> str | None:
    return rec.stream_id[len(STREAM_PREFIX):] if rec.stream_id.startswith(STREAM_PREFIX) else None


def apply_records(states: dict[str, AppState], records: Iterable[Recorded]) -> int:
    """Fold ``records`` into ``states`` (by app); returns the last position seen (0 if none)."""
    last = 0
    for rec in records:
        last = rec.position
        app = app_of(rec)
        if app is None:
            continue
        state = states.get(app) or AppState(app=app)
        states[app] = evolve(state, rec.event, rec.occurred_at)
    return last


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

    def _write(self, conn: Connection, states: list[AppState], replace: bool) -> None:
        apps, creds, rotations = [], [], []
        for state in states:
            a, c, r = _rows(state)
            apps.append(a)
            creds.extend(c)
            rotations.extend(r)
        if replace:
            for chunk in _chunks([s.app for s in states], 500):
                for table in READ_MODEL_TABLES:
                    conn.execute(table.delete().where(table.c.app.in_(chunk)))
        for table, rows in ((rm_applications, apps), (rm_credentials, creds),
                            (rm_rotations, rotations)):
            for chunk in _chunks(rows, 1000):
                conn.execute(table.insert(), chunk)

    def rebuild(self) -> int:
        """Replay the whole log from zero into fresh tables; returns the events replayed."""
        states: dict[str, AppState] = {}
        count = 0
        last = 0
        for rec in self.store.read(ReadFilter()):
            count += 1
            last = rec.position
            app = app_of(rec)
            if app is not None:
                states[app] = evolve(states.get(app) or AppState(app=app), rec.event,
                                     rec.occurred_at)
        with self._writing() as conn:
            for table in READ_MODEL_TABLES:
                conn.execute(table.delete())
            conn.execute(checkpoints.delete().where(checkpoints.c.name == NAME))
            self._write(conn, list(states.values()), replace=False)
            conn.execute(checkpoints.insert().values(name=NAME, position=last))
        return count

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
            expected["rm_applications"][app_row["app"]] = app_row
            expected["rm_credentials"].update((c["credential_id"], c) for c in creds)
            expected["rm_rotations"].update((r["rotation_id"], r) for r in rotations)
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


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
