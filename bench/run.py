"""Event-store benchmark: our SQLEventStore against raw driver inserts and the `eventsourcing`
library, side by side in one run, on SQLite (file, WAL) and PostgreSQL (a fresh schema per case).

Cases (see bench/README.md for the method and the latest numbers):

* (a) one event per transaction, durable settings (SQLite ``synchronous=FULL``; NORMAL reported
  too): distinct streams and repeating streams. ours vs raw driver (BEGIN/INSERT/COMMIT;
  psycopg autocommit INSERT) vs eventsourcing recorder ``insert_events`` and ``Application.save``.
* (b) batched: 100 events per append, one append of 10,000; ours vs raw ``executemany`` vs
  eventsourcing ``save(*aggregates)`` / one aggregate with many events (and its recorder).
* (c) read the whole log (``--events``, default 1,000,000 realistic events) with decoding.
* (d) ``Projector(engine, store).rebuild()`` over that log.
* (e) an audit query (one app, one type, a time range) over that log; ours vs the same SQL raw.

Only the operation is timed (``time.perf_counter``); every write case starts from an empty store;
each case is the median of ``--reps`` runs (default 3). An fdatasync probe (100 x 4 KiB write +
fdatasync in the SQLite temp dir, same disk as PostgreSQL's data directory) is taken before every
durability-bound run.

    .venv/bin/python bench/run.py                 # full run (~20 min on 2 cores)
    .venv/bin/python bench/run.py --quick         # smoke run (< 1 min)
    .venv/bin/python bench/run.py --only sqlite --cases a,b
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from events import catalog as ev  # noqa: E402
from events.chain import GENESIS  # noqa: E402
from events.projector import Projector  # noqa: E402
from events.sql import _COLUMNS, SQLEventStore, create_engine, upgrade  # noqa: E402
from events.store import NewEvent, ReadFilter, build_records  # noqa: E402

PG_HOST, PG_PORT, PG_USER, PG_DB = "127.0.0.1", 5432, "postgres", "test"
PG_URL = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB}"
SCHEMA_PREFIX = "orchbench_"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ES_NS = uuid.UUID("5b0c7f1e-8e7a-4c43-9a53-2d4a2f2b8e11")
INSERT_SQLITE = f"INSERT INTO events ({_COLUMNS}) VALUES ({','.join('?' * 14)})"
INSERT_PG = f"INSERT INTO events ({_COLUMNS}) VALUES ({','.join(['%s'] * 14)})"
ES_SQLITE = "eventsourcing.sqlite"
ES_PG = "eventsourcing.postgres"


# --- measurement helpers -----------------------------------------------------------------------


def fdatasync_probe(directory: str, n: int = 100) -> float:
    """fdatasyncs per second: ``n`` x (append 4 KiB + fdatasync) to a file in ``directory``."""
    path = os.path.join(directory, f"probe-{os.getpid()}.bin")
    buf = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, buf)
            os.fdatasync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        os.unlink(path)
    return n / elapsed


_PROBE_DOC = {"credential_id": "cred-000001-3", "fingerprint": "sha256:" + "ab" * 32,
              "kid": "app-000001-k3", "usage": "private_key_jwt", "n": 12345,
              "expires_at": "2026-04-01T00:00:00.000000Z", "labels": {"team": "a", "env": "prod"}}


def cpu_probe(n: int = 20_000) -> float:
    """Pure-Python work per second (json dumps+loads of a ~250-byte document): how much CPU this
    process gets right now (other processes share the 2 cores)."""
    dumps, loads = json.dumps, json.loads
    start = time.perf_counter()
    for _ in range(n):
        loads(dumps(_PROBE_DOC))
    return n / (time.perf_counter() - start)


@dataclass
class Result:
    case: str
    dialect: str  # sqlite | postgres
    impl: str  # ours | raw | es_recorder | es_app | ...
    variant: str  # e.g. distinct/FULL
    n: int  # events per run
    unit: str  # "events/s" or "ms"
    runs: list[float] = field(default_factory=list)
    probes: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    hung: int = 0  # units that never returned (killed after a timeout)
    load: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case, "dialect": self.dialect, "impl": self.impl,
            "variant": self.variant, "n": self.n, "unit": self.unit,
            "median": round(self.median, 3), "min": round(min(self.runs), 3) if self.runs else None,
            "max": round(max(self.runs), 3) if self.runs else None,
            "runs": [round(r, 3) for r in self.runs], "events_done": self.done,
            "hung": self.hung,
            "fdatasync_probe_per_s": [round(p) for p in self.probes],
            "cpu_probe_per_s": [round(p) for p in self.cpu],
            "loadavg_1m": self.load, "note": self.note,
        }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: list[Result] = []
        self.extra: dict[str, Any] = {}
        self.tmp = tempfile.mkdtemp(prefix="orchbench-")
        self._schemas = 0
        self.t_start = time.perf_counter()

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t_start:7.1f}s] {msg}", flush=True)

    def record(
        self, case: str, dialect: str, impl: str, variant: str, n: int,
        run: Callable[[], float], reps: int, durable: bool = False, unit: str = "events/s",
        note: str = "",
    ) -> Result:
        """Run ``run`` (it sets up, times only the operation, tears down and returns seconds)
        ``reps`` times; store events/s."""
        return self.record_group(case, dialect, variant, n, {impl: run}, reps, durable, unit,
                                 note)[impl]

    def record_group(
        self, case: str, dialect: str, variant: str, n: int,
        runs: dict[Any, Callable[[], Any]], reps: int, durable: bool = False,
        unit: str = "events/s", note: str = "",
    ) -> dict[Any, Result]:
        """Run every implementation of one case ``reps`` times, interleaved (round r runs each
        implementation once, in an order rotated by r), so that a drift in disk flush speed or
        in the other load on the machine hits them alike. An fdatasync probe precedes every
        durability-bound run."""
        # a key is an implementation name, or (implementation, variant)
        out = {key: Result(case, dialect, *(key if isinstance(key, tuple) else (key, variant)),
                           n, unit, note=note) for key in runs}
        order = list(runs)
        for rep in range(reps):
            for impl in order[rep % len(order):] + order[:rep % len(order)]:
                res = out[impl]
                gc.collect()
                if durable:
                    res.probes.append(fdatasync_probe(self.tmp))
                res.cpu.append(cpu_probe())
                res.load.append(round(os.getloadavg()[0], 2))
                value = runs[impl]()
                seconds, done = value if isinstance(value, tuple) else (value, n)
                res.runs.append(done / seconds)
                res.done.append(done)
        for res in out.values():
            self.results.append(res)
            probe = (f"  fdatasync {statistics.median(res.probes):,.0f}/s "
                     f"[{min(res.probes):,.0f}-{max(res.probes):,.0f}]" if res.probes else "")
            probe += f"  cpu {statistics.median(res.cpu) / 1000:,.0f}k/s"
            self.log(f"{case:<30} {dialect:<8} {res.impl:<18} {res.variant:<24} "
                     f"{res.median:>12,.0f} ev/s{probe}")
        return out

    # --- stores ----------------------------------------------------------------------------

    def sqlite_path(self) -> str:
        self._schemas += 1
        return os.path.join(self.tmp, f"db{self._schemas}.sqlite")

    @staticmethod
    def drop_sqlite(path: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)

    def new_schema(self) -> str:
        self._schemas += 1
        name = f"{SCHEMA_PREFIX}{os.getpid()}_{self._schemas}"
        with psycopg.connect(pg_conninfo(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            conn.execute(f"CREATE SCHEMA {name}")
        return name

    @staticmethod
    def drop_schema(name: str) -> None:
        with psycopg.connect(pg_conninfo(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    @contextlib.contextmanager
    def our_store(self, dialect: str, sync: str = "full") -> Iterator[tuple[Any, str]]:
        """A fresh, migrated store: (engine, location) where location is a path or a schema."""
        if dialect == "sqlite":
            path = self.sqlite_path()
            engine = create_engine(f"sqlite:///{path}?synchronous={sync}")
            upgrade(engine)
            try:
                yield engine, path
            finally:
                engine.dispose()
                self.drop_sqlite(path)
        else:
            schema = self.new_schema()
            engine = create_engine(pg_url(schema))
            upgrade(engine)
            try:
                yield engine, schema
            finally:
                engine.dispose()
                self.drop_schema(schema)


def pg_conninfo(schema: str | None = None) -> str:
    info = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={PG_DB}"
    return info + (f" options=-csearch_path={schema}" if schema else "")


def pg_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def raw_sqlite(path: str, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    return conn


# --- payloads ----------------------------------------------------------------------------------


def fingerprint(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def credential_added(app: int, k: int) -> ev.CredentialAdded:
    """A ~400-byte credential.added payload (fingerprint, kid, name, dates)."""
    return ev.CredentialAdded(
        credential_id=f"cred-{app:06d}-{k}", usage=ev.Usage.PRIVATE_KEY_JWT,
        kind=ev.CredentialKind.PUBLIC_KEY, kid=f"app-{app:06d}-k{k}", alg="ES256", key_size=256,
        fingerprint=fingerprint(f"{app}/{k}"), name=f"signing key {k}",
        not_before=T0 + timedelta(days=30 * k),
        expires_at=T0 + timedelta(days=30 * k + 90), generated=True,
    )


def fake_pem(label: str, seed: str, size: int) -> str:
    """PEM-shaped public material of a realistic length (``size`` DER bytes), deterministic."""
    import base64

    der = b"".join(hashlib.sha256(f"{seed}/{i}".encode()).digest()
                   for i in range(size // 32 + 1))[:size]
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def realistic_credential(app: int, k: int) -> ev.CredentialAdded:
    """Even cycles: a private_key_jwt RSA-2048 key with its public PEM (294-byte SPKI);
    odd cycles: a self-signed mTLS certificate (~800-byte DER)."""
    base = credential_added(app, k)
    if k % 2 == 0:
        return base.model_copy(update={"alg": "RS256", "key_size": 2048,
                                       "public_pem": fake_pem("PUBLIC KEY", base.kid, 294)})
    return base.model_copy(update={
        "usage": ev.Usage.MTLS, "kind": ev.CredentialKind.X509_CERT, "alg": None,
        "key_size": 2048, "certificate_pem": fake_pem("CERTIFICATE", base.kid, 800)})


def app_script(app: int) -> list[ev.Event]:
    """50 events of one application: registered, then 7 rotation cycles of 7 events."""
    out: list[ev.Event] = [
        ev.ApplicationRegistered(app=f"app-{app}", labels={"team": f"team-{app % 50}",
                                                           "env": "prod"})
    ]
    for c in range(7):
        cid, prev, rid = f"cred-{app:06d}-{c}", f"cred-{app:06d}-{c - 1}", f"rot-{app:06d}-{c}"
        out += [
            realistic_credential(app, c),
            ev.RotationStarted(rotation_id=rid, usage="mtls" if c % 2 else "private_key_jwt",
                               reason="scheduled",
                               policy="default-90d", old_credential_id=prev if c else None,
                               new_credential_id=cid),
            ev.CredentialActivated(credential_id=cid),
            ev.RotationStepRecorded(rotation_id=rid, step="activated",
                                    detail=f"kid app-{app:06d}-k{c} published"),
            ev.RotationCompleted(rotation_id=rid, new_credential_id=cid,
                                 old_credential_id=prev if c else None),
        ]
        if c == 0:
            out += [
                ev.SecretRotated(version=1, fingerprint=fingerprint(f"secret/{app}")),
                ev.CredentialExpiryChanged(credential_id=cid,
                                           expires_at=T0 + timedelta(days=120),
                                           previous_expires_at=T0 + timedelta(days=90)),
            ]
        elif c % 2:
            out += [ev.CredentialDisabled(credential_id=prev),
                    ev.CredentialDeleted(credential_id=prev)]
        else:
            out += [ev.CredentialExpired(credential_id=prev,
                                         expired_at=T0 + timedelta(days=30 * c)),
                    ev.CredentialDeleted(credential_id=prev)]
    assert len(out) == 50
    return out


def new_event(event: ev.Event, at: datetime, app: int) -> NewEvent:
    return NewEvent(event=event, occurred_at=at, actor=f"ops-{app % 17}@example.com",
                    correlation_id=f"corr-{app:06d}")


def write_workload(n: int, streams: int | None) -> list[tuple[str, int, NewEvent]]:
    """n single-event appends: (stream, expected_version, event). ``streams`` None means a new
    stream per event; otherwise round-robin over that many streams."""
    out = []
    versions: dict[str, int] = {}
    for i in range(n):
        s = i if streams is None else i % streams
        stream = f"app:{s}"
        v = versions.get(stream, 0)
        versions[stream] = v + 1
        out.append((stream, v, new_event(credential_added(s, v), T0 + timedelta(seconds=i), s)))
    return out


def chained_rows(store: SQLEventStore, work: list[tuple[str, int, NewEvent]]) -> list[tuple]:
    """The exact rows our store writes for ``work`` (same chain), for the raw baselines."""
    pos, head = 0, GENESIS
    rows: list[tuple] = []
    for stream, v, new in work:
        recs = build_records(stream, [new], v + 1, pos, head, datetime.now(UTC))
        pos, head = recs[-1].position, recs[-1].hash
        rows.extend(store._rows(recs))
    return rows


def batch_rows(store: SQLEventStore, batches: list[tuple[str, list[NewEvent]]]) -> list[list]:
    pos, head = 0, GENESIS
    out = []
    for stream, news in batches:
        recs = build_records(stream, news, 1, pos, head, datetime.now(UTC))
        pos, head = recs[-1].position, recs[-1].hash
        out.append(store._rows(recs))
    return out


# --- eventsourcing ------------------------------------------------------------------------------

_ES: dict[str, Any] = {}


def es_classes() -> dict[str, Any]:
    """The eventsourcing aggregate and application used for its cases (imported lazily)."""
    if _ES:
        return _ES
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.utils import get_topic

    class BenchCredential(Aggregate):
        """One credential per aggregate: its Created event carries the credential.added data."""

        @event("Added")
        def __init__(self, app: str, credential_id: str, usage: str, kind: str, kid: str,
                     alg: str, key_size: int, fingerprint: str, name: str, not_before: str,
                     expires_at: str, generated: bool) -> None:
            self.fingerprint = fingerprint

    class BenchApplication(Aggregate):
        """An application aggregate that gets credential events (repeating streams)."""

        @event("Registered")
        def __init__(self, app: str) -> None:
            self.app = app

        @event("CredentialAdded")
        def add_credential(self, credential_id: str, usage: str, kind: str, kid: str, alg: str,
                           key_size: int, fingerprint: str, name: str, not_before: str,
                           expires_at: str, generated: bool) -> None:
            pass

    class BenchApp(Application):
        name = "BenchApp"

    _ES.update(
        Credential=BenchCredential, App=BenchApplication, Application=BenchApp,
        topic=get_topic(BenchApplication.CredentialAdded),
    )
    return _ES


def es_fields(e: ev.CredentialAdded) -> dict[str, Any]:
    p = json.loads(ev_payload(e))
    p.pop("certificate_pem"), p.pop("public_pem"), p.pop("subject_dn")
    return p


def ev_payload(e: ev.Event) -> str:
    from events.codec import encode_payload

    return encode_payload(e)


@contextlib.contextmanager
def es_env(env: dict[str, str]) -> Iterator[None]:
    keys = ["PERSISTENCE_MODULE", "SQLITE_DBNAME", "POSTGRES_DBNAME", "POSTGRES_HOST",
            "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_SCHEMA",
            "POSTGRES_POOL_SIZE", "CREATE_TABLE"]
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ.pop(k, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def es_sqlite_synchronous(mode: str) -> Iterator[None]:
    """eventsourcing sets no PRAGMA synchronous (SQLite's default FULL applies); set ``mode`` on
    every connection its pool opens, to compare at the same durability."""
    from eventsourcing import sqlite as es_sqlite

    original = es_sqlite.SQLiteConnectionPool._create_connection

    def create(self: Any) -> Any:
        conn = original(self)
        conn._sqlite_conn.execute(f"PRAGMA synchronous={mode.upper()}")
        return conn

    es_sqlite.SQLiteConnectionPool._create_connection = create
    try:
        yield
    finally:
        es_sqlite.SQLiteConnectionPool._create_connection = original


@contextlib.contextmanager
def es_app(bench: Bench, dialect: str, sync: str = "full") -> Iterator[Any]:
    """A fresh eventsourcing Application on a new SQLite file / PostgreSQL schema."""
    cls = es_classes()["Application"]
    if dialect == "sqlite":
        path = bench.sqlite_path()
        with es_env({"PERSISTENCE_MODULE": ES_SQLITE, "SQLITE_DBNAME": path}), \
                es_sqlite_synchronous(sync):
            app = cls()
            conn = app.recorder.datastore.pool.get_connection(is_writer=False)
            try:
                mode = conn._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0]
                assert mode == {"normal": 1, "full": 2}[sync], mode
            finally:
                app.recorder.datastore.pool.put_connection(conn)
            try:
                yield app
            finally:
                app.close()
                bench.drop_sqlite(path)
    else:
        schema = bench.new_schema()
        env = {"PERSISTENCE_MODULE": ES_PG, "POSTGRES_DBNAME": PG_DB, "POSTGRES_HOST": PG_HOST,
               "POSTGRES_PORT": str(PG_PORT), "POSTGRES_USER": PG_USER, "POSTGRES_PASSWORD": "",
               "POSTGRES_SCHEMA": schema}
        with es_env(env):
            app = cls()
            try:
                yield app
            finally:
                app.close()
                bench.drop_schema(schema)


def es_stored(rows: list[tuple]) -> list[Any]:
    """StoredEvents carrying exactly our payload bytes (for the recorder cases)."""
    from eventsourcing.persistence import StoredEvent

    topic = es_classes()["topic"]
    return [StoredEvent(originator_id=uuid.uuid5(ES_NS, r[1]), originator_version=r[2],
                        topic=topic, state=r[11].encode()) for r in rows]


# --- (a) one event per transaction --------------------------------------------------------------


HUNG = object()


def in_child(setup_and_time: Callable[[], float], timeout: float) -> Any:
    """Run ``setup_and_time`` in a forked child process and return the seconds it measured, or
    HUNG if it has not answered after ``timeout`` seconds (the child is then killed; its
    connections close with it, and its PostgreSQL schema is dropped by the stale-schema sweep).
    For eventsourcing's big PostgreSQL batches: a single ``insert_events`` of 10,000 ~400-byte
    events hangs for ever in psycopg's pipeline mode here (its statement sits in ClientRead;
    ``pg_cancel_backend`` does not free it, and the library's retry hangs again)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)

    def target() -> None:
        try:
            sender.send(setup_and_time())
        except BaseException as exc:  # report, don't hang the parent
            sender.send(repr(exc))

    proc = ctx.Process(target=target, daemon=True)
    proc.start()
    value: Any = receiver.recv() if receiver.poll(timeout) else HUNG
    if proc.is_alive():
        proc.kill()
    proc.join()
    if isinstance(value, str):
        raise RuntimeError(f"child failed: {value}")
    return value


# An implementation of a write case, for the interleaved driver: a context manager that sets up
# a fresh store (untimed) and yields (units, do_one, events_per_unit).
WriteImpl = Callable[[], contextlib.AbstractContextManager[tuple[list[Any], Callable[[Any], Any],
                                                                  int]]]


def interleaved(b: Bench, case: str, dialect: str, variant: str, impls: dict[str, WriteImpl],
                block: int, cap: float, reps: int, note: str = "") -> dict[str, Result]:
    """Run the implementations of one write case side by side. Each rep sets all of them up on
    fresh stores, then goes round-robin (order rotated every round) doing ``block`` units of each
    per round, until every one has done all its units or spent ``cap`` seconds. Only the units
    are timed. So a drift in disk flush speed or in the machine's other load (both large on this
    shared 2-core VM) hits every implementation alike. A short fdatasync probe (10 syncs) runs
    before every round; the per-rep median of those is recorded."""
    out = {impl: Result(case, dialect, impl, variant, 0, "events/s", note=note) for impl in impls}
    names = list(impls)
    for _rep in range(reps):
        gc.collect()
        with contextlib.ExitStack() as stack:
            ready = {name: stack.enter_context(impls[name]()) for name in names}
            pos = dict.fromkeys(names, 0)
            spent = dict.fromkeys(names, 0.0)
            hung = dict.fromkeys(names, 0)
            probes: list[float] = []
            load = round(os.getloadavg()[0], 2)
            cpu = cpu_probe(5000)
            rnd = 0
            while True:
                active = [nm for nm in names
                          if pos[nm] < len(ready[nm][0]) and spent[nm] < cap]
                if not active:
                    break
                probes.append(fdatasync_probe(b.tmp, 10))
                k = rnd % len(active)
                for nm in active[k:] + active[:k]:
                    units, fn, _ = ready[nm]
                    chunk = units[pos[nm]:pos[nm] + block]
                    t0 = time.perf_counter()
                    measured = 0.0
                    for unit in chunk:
                        value = fn(unit)
                        if value is HUNG:
                            hung[nm] += 1
                        elif isinstance(value, float):  # timed inside a child process
                            measured += value
                    spent[nm] += measured or (time.perf_counter() - t0)
                    pos[nm] += len(chunk)
                rnd += 1
            for nm in names:
                res = out[nm]
                events = (pos[nm] - hung[nm]) * ready[nm][2]
                res.runs.append(events / spent[nm] if events else 0.0)
                res.done.append(events)
                res.hung += hung[nm]
                res.probes.append(statistics.median(probes))
                res.load.append(load)
                res.cpu.append(cpu)
                res.n = max(res.n, len(ready[nm][0]) * ready[nm][2])
    for nm, res in out.items():
        b.results.append(res)
        b.log(f"{case:<30} {dialect:<8} {nm:<18} {variant:<24} {res.median:>12,.0f} ev/s"
              f"  fdatasync {statistics.median(res.probes):,.0f}/s "
              f"[{min(res.probes):,.0f}-{max(res.probes):,.0f}]  cpu "
              f"{statistics.median(res.cpu) / 1000:,.0f}k/s  done {res.done}"
              + (f"  HUNG x{res.hung}" if res.hung else ""))
    return out


def case_a(b: Bench, dialect: str) -> None:
    n, reps, cap = b.args.a_events, b.args.reps, b.args.a_seconds
    syncs = ["full", "normal"] if dialect == "sqlite" else ["server"]
    for mode, streams in (("distinct", None), ("repeating", b.args.a_streams)):
        work = write_workload(n, streams)
        for sync in syncs:
            variant = f"{mode}/{sync.upper()}" if dialect == "sqlite" else f"{mode}/sync_commit=on"
            store_sync = sync if dialect == "sqlite" else "full"

            @contextlib.contextmanager
            def ours(store_sync: str = store_sync, work: list = work) -> Iterator[Any]:
                with b.our_store(dialect, store_sync) as (eng, _):
                    store = SQLEventStore(eng)
                    yield work, lambda w: store.append(w[0], [w[2]], w[1]), 1

            @contextlib.contextmanager
            def raw(sync: str = sync, work: list = work) -> Iterator[Any]:
                with b.our_store(dialect, "full") as (eng, loc):
                    rows = chained_rows(SQLEventStore(eng), work)
                    if dialect == "sqlite":
                        conn: Any = raw_sqlite(loc, sync)

                        def one(row: tuple) -> None:
                            conn.execute("BEGIN")
                            conn.execute(INSERT_SQLITE, row)
                            conn.execute("COMMIT")

                        yield rows, one, 1
                    else:
                        conn = psycopg.connect(pg_conninfo(loc), autocommit=True)
                        cur = conn.cursor()
                        yield rows, lambda row: cur.execute(INSERT_PG, row), 1
                    conn.close()

            @contextlib.contextmanager
            def es_rec(store_sync: str = store_sync, work: list = work) -> Iterator[Any]:
                with b.our_store(dialect, "full") as (eng, _):
                    stored = es_stored(chained_rows(SQLEventStore(eng), work))
                with es_app(b, dialect, store_sync) as app:
                    rec = app.recorder
                    yield stored, lambda s: rec.insert_events([s]), 1

            @contextlib.contextmanager
            def es_save(store_sync: str = store_sync, streams: int | None = streams,
                        work: list = work) -> Iterator[Any]:
                es = es_classes()
                with es_app(b, dialect, store_sync) as app:
                    if streams is None:  # a new aggregate (stream) per event
                        objs = [es["Credential"](app=s, **es_fields(new.event))
                                for s, _, new in work]
                    else:  # existing aggregates, one pending event each, saved one by one
                        aggs = [es["App"](app=f"app-{i}") for i in range(streams)]
                        app.save(*aggs)
                        objs = []
                        for i, (_, _, new) in enumerate(work):
                            agg = aggs[i % streams]
                            agg.add_credential(**es_fields(new.event))
                            objs.extend(agg.collect_events())
                    yield objs, app.save, 1

            interleaved(b, "a_1_event_per_tx", dialect, variant,
                        {"ours": ours, "raw": raw, "es_recorder": es_rec, "es_app": es_save},
                        block=b.args.a_block, cap=cap, reps=reps,
                        note=f"up to {n} appends or {cap:g} s per implementation and run, "
                             f"interleaved in blocks of {b.args.a_block}")


# --- (b) batched appends ------------------------------------------------------------------------


def isolated(impl: WriteImpl, timeout: float) -> WriteImpl:
    """``impl`` with set-up, timing and tear-down of each unit in a child process."""

    @contextlib.contextmanager
    def wrapped() -> Iterator[Any]:
        with impl() as (units, _, size):
            count = len(units)

        def one(index: int) -> Any:
            def child() -> float:
                with impl() as (units, fn, _):
                    start = time.perf_counter()
                    fn(units[index])
                    return time.perf_counter() - start

            return in_child(child, timeout)

        yield list(range(count)), one, size

    return wrapped


def case_b(b: Bench, dialect: str) -> None:
    reps = b.args.reps
    per, n_batches, big = 100, b.args.b_events // 100, b.args.b_big
    variant = "FULL" if dialect == "sqlite" else "sync_commit=on"
    shapes = {
        f"b_{per}_per_append": [
            (f"app:{s}", [new_event(credential_added(s, k), T0 + timedelta(seconds=k), s)
                          for k in range(per)]) for s in range(n_batches)],
        f"b_one_append_of_{big}": [
            ("app:0", [new_event(credential_added(0, k), T0 + timedelta(seconds=k), 0)
                       for k in range(big)])],
    }
    for case, batches in shapes.items():
        size = len(batches[0][1])

        @contextlib.contextmanager
        def ours(batches: list = batches, size: int = size) -> Iterator[Any]:
            with b.our_store(dialect) as (eng, _):
                store = SQLEventStore(eng)
                yield batches, lambda x: store.append(x[0], x[1], 0), size

        @contextlib.contextmanager
        def raw(batches: list = batches, size: int = size) -> Iterator[Any]:
            with b.our_store(dialect) as (eng, loc):
                row_batches = batch_rows(SQLEventStore(eng), batches)
                if dialect == "sqlite":
                    conn: Any = raw_sqlite(loc, "full")

                    def one(rows: list) -> None:
                        conn.execute("BEGIN")
                        conn.executemany(INSERT_SQLITE, rows)
                        conn.execute("COMMIT")
                else:
                    conn = psycopg.connect(pg_conninfo(loc))
                    cur = conn.cursor()

                    def one(rows: list) -> None:
                        cur.executemany(INSERT_PG, rows)
                        conn.commit()

                yield row_batches, one, size
                conn.close()

        @contextlib.contextmanager
        def es_rec(batches: list = batches, size: int = size) -> Iterator[Any]:
            with b.our_store(dialect) as (eng, _):
                stored = [es_stored(r) for r in batch_rows(SQLEventStore(eng), batches)]
            with es_app(b, dialect) as app:
                yield stored, app.recorder.insert_events, size

        @contextlib.contextmanager
        def es_save_aggs(batches: list = batches, size: int = size) -> Iterator[Any]:
            """save(*aggregates): one new aggregate per event, one save per batch."""
            es = es_classes()
            with es_app(b, dialect) as app:
                groups = [[es["Credential"](app=s, **es_fields(new.event)) for new in news]
                          for s, news in batches]
                yield groups, lambda aggs: app.save(*aggs), size

        @contextlib.contextmanager
        def es_save_1agg(batches: list = batches, size: int = size) -> Iterator[Any]:
            """One aggregate per batch carrying all of the batch's events, one save."""
            es = es_classes()
            with es_app(b, dialect) as app:
                groups = []
                for s, news in batches:
                    agg = es["App"](app=s)
                    for new in news[1:]:
                        agg.add_credential(**es_fields(new.event))
                    groups.append(agg)
                yield groups, app.save, size

        impls: dict[str, WriteImpl] = {
            "ours": ours, "raw_executemany": raw, "es_recorder": es_rec,
            "es_app_save_aggs": es_save_aggs, "es_app_save_1agg": es_save_1agg,
        }
        note = f"{len(batches)} append(s) of {size} events per run, interleaved"
        if dialect == "postgres" and size >= 5000:
            # eventsourcing's one big insert can hang (psycopg pipeline): each of its runs goes
            # to a child process that is killed after --es-timeout seconds
            for name in ("es_recorder", "es_app_save_aggs", "es_app_save_1agg"):
                impls[name] = isolated(impls[name], b.args.es_timeout)
            note += (f"; eventsourcing runs in a child process, killed after "
                     f"{b.args.es_timeout:g} s (a hung run counts 0 events)")
        interleaved(b, case, dialect, variant, impls, block=max(1, 1000 // size), cap=60.0,
                    reps=reps, note=note)


# --- the big realistic log for (c), (d), (e) ----------------------------------------------------


def big_log_rows(n_events: int) -> tuple[list[tuple], int]:
    """A realistic log of ``n_events`` (n/50 apps x 50 events), interleaved: in each of 10
    rounds every app appends its next 5 events. Rows are built with ``build_records`` (the
    store's own numbering, encoding and hash chain) round by round, chained across calls."""
    n_apps = max(1, n_events // 50)
    scripts_chunk = 5
    store = SQLEventStore.__new__(SQLEventStore)
    rows: list[tuple] = []
    pos, head = 0, GENESIS
    step = timedelta(seconds=30)
    for r in range(50 // scripts_chunk):
        for a in range(n_apps):
            script = app_script(a)[r * scripts_chunk:(r + 1) * scripts_chunk]
            at = T0 + step * pos
            news = [new_event(e, at + step * k, a) for k, e in enumerate(script)]
            recs = build_records(f"app:{a}", news, r * scripts_chunk + 1, pos, head,
                                 at + step * len(news))
            pos, head = recs[-1].position, recs[-1].hash
            rows.extend(store._rows(recs))
    return rows, n_apps


def fill_ours(dialect: str, loc: str, rows: list[tuple]) -> float:
    start = time.perf_counter()
    if dialect == "sqlite":
        conn = raw_sqlite(loc, "full")
        for i in range(0, len(rows), 10_000):
            conn.execute("BEGIN")
            conn.executemany(INSERT_SQLITE, rows[i:i + 10_000])
            conn.execute("COMMIT")
        conn.close()
    else:
        with psycopg.connect(pg_conninfo(loc)) as conn:
            with conn.cursor().copy(f"COPY events ({_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            conn.autocommit = True
            conn.execute("ANALYZE events")
    return time.perf_counter() - start


def fill_es(b: Bench, dialect: str, app: Any, rows: list[tuple]) -> float:
    """The same log in eventsourcing's table: SQLite through its recorder (10,000 per call);
    PostgreSQL by COPY (its recorder does ~30 k/s and hangs above ~15 k rows per call)."""
    topic = es_classes()["topic"]
    start = time.perf_counter()
    if dialect == "sqlite":
        for i in range(0, len(rows), 10_000):
            app.recorder.insert_events(es_stored(rows[i:i + 10_000]))
    else:
        schema = app.recorder.datastore.schema
        with psycopg.connect(pg_conninfo(schema)) as conn:
            table = app.recorder.events_table_name
            with conn.cursor().copy(
                f"COPY {table} (originator_id, originator_version, topic, state) FROM STDIN"
            ) as copy:
                for r in rows:
                    copy.write_row((uuid.uuid5(ES_NS, r[1]), r[2], topic, r[11].encode()))
            conn.commit()
            conn.autocommit = True
            conn.execute(f"ANALYZE {table}")
    return time.perf_counter() - start


def read_cases(b: Bench, dialect: str, engine: sa.Engine, loc: str, n: int, es: Any) -> None:
    reps = b.args.reps
    store = SQLEventStore(engine)

    def ours_payload() -> float:
        count = 0
        start = time.perf_counter()
        for r in store.read():
            r.payload  # noqa: B018
            count += 1
        elapsed = time.perf_counter() - start
        assert count == n, count
        return elapsed

    def ours_typed() -> float:
        start = time.perf_counter()
        for r in store.read():
            r.event  # noqa: B018
        return time.perf_counter() - start

    def ours_records() -> float:
        start = time.perf_counter()
        for _ in store.read():
            pass
        return time.perf_counter() - start

    sql = f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"

    def raw(decode: bool) -> float:
        if dialect == "sqlite":
            conn: Any = sqlite3.connect(loc)
            q = sql
        else:
            conn = psycopg.connect(pg_conninfo(loc), autocommit=True)
            q = sql.replace("?", "%s")
        loads = json.loads
        count, last = 0, 0
        start = time.perf_counter()
        while True:
            rows = conn.execute(q, (last, 2000)).fetchall()
            if not rows:
                break
            if decode:
                for row in rows:
                    loads(row[11])
            count += len(rows)
            last = rows[-1][0]
        elapsed = time.perf_counter() - start
        conn.close()
        assert count == n
        return elapsed

    group: dict[Any, Callable[[], float]] = {
        ("ours", "Recorded+payload"): ours_payload,
        ("raw", "rows+json.loads"): lambda: raw(True),
        ("ours", "Recorded+event(typed)"): ours_typed,
    }
    minor: dict[Any, Callable[[], float]] = {
        ("ours", "Recorded only"): ours_records,
        ("raw", "rows only"): lambda: raw(False),
    }
    if es is not None:
        rec, mapper = es.recorder, es.mapper

        def es_read(decode: bool) -> float:
            count, last = 0, 0
            start = time.perf_counter()
            while True:
                page = rec.select_notifications(last, 500, inclusive_of_start=False)
                if not page:
                    break
                if decode:
                    for note in page:
                        mapper.to_domain_event(note)
                count += len(page)
                last = page[-1].id
            elapsed = time.perf_counter() - start
            assert count == n, count
            return elapsed

        group[("es_recorder", "+mapper.to_domain_event")] = lambda: es_read(True)
        minor[("es_recorder", "select_notifications(500)")] = lambda: es_read(False)
    b.record_group("c_read_log", dialect, "", n, group, reps,
                   note="whole log; ours: store.read() pages of 2000; raw: the same keyset SQL "
                        "and page size; eventsourcing: select_notifications pages of 500")
    b.record_group("c_read_log", dialect, "", n, minor, b.args.minor_reps)


def rebuild_case(b: Bench, dialect: str, engine: sa.Engine, n: int) -> None:
    store = SQLEventStore(engine)

    cpu = b.extra.setdefault("rebuild_cpu_s", {}).setdefault(dialect, [])

    def run() -> float:
        start, start_cpu = time.perf_counter(), time.process_time()
        count = Projector(engine, store).rebuild()
        elapsed = time.perf_counter() - start
        cpu.append(round(time.process_time() - start_cpu, 2))  # this process only, not the server
        assert count == n, count
        return elapsed

    b.record("d_projector_rebuild", dialect, "ours", f"{n // 50} apps x 50", n, run,
             b.args.rebuild_reps)
    with engine.connect() as conn:
        b.extra.setdefault("rebuild_rows", {})[dialect] = {
            t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("rm_applications", "rm_credentials", "rm_rotations")}


def audit_case(b: Bench, dialect: str, engine: sa.Engine, loc: str, n_apps: int) -> None:
    import random

    rng = random.Random(7)
    apps = [rng.randrange(n_apps) for _ in range(b.args.audit_queries)]
    span = timedelta(seconds=30) * (50 * n_apps)
    since, until = T0 + span * 0.25, T0 + span * 0.75
    types = ("credential.added",)
    store = SQLEventStore(engine)
    found: list[int] = []

    def ours_once(app: int) -> float:
        start = time.perf_counter()
        recs = list(store.read(ReadFilter(stream_id=f"app:{app}", types=types, since=since,
                                          until=until)))
        elapsed = (time.perf_counter() - start) * 1000
        found.append(len(recs))
        return elapsed

    from events.codec import format_time

    template = (f"SELECT {_COLUMNS} FROM events WHERE position > ? AND stream_id = ? AND "
                "{x}type IN (?) AND {x}occurred_at >= ? AND {x}occurred_at < ? "
                "ORDER BY position LIMIT ?")
    plain_sql = template.format(x="")
    sql = plain_sql
    if dialect == "sqlite":
        conn: Any = sqlite3.connect(loc)
        # run the SQL the store runs: see it through the driver's trace hook
        seen: list[str] = []
        raw = engine.raw_connection()
        raw.driver_connection.set_trace_callback(seen.append)
        raw.close()
        ours_once(apps[0])
        raw = engine.raw_connection()
        raw.driver_connection.set_trace_callback(None)
        raw.close()
        if any("+type IN" in q for q in seen):
            sql = template.format(x="+")
    else:
        conn = psycopg.connect(pg_conninfo(loc), autocommit=True)
        sql = plain_sql = plain_sql.replace("?", "%s")

    def params(app: int) -> tuple:
        return (0, f"app:{app}", types[0], format_time(since), format_time(until), 2000)

    def raw_once(app: int, sql: str = sql, prepare: bool | None = False) -> float:
        """prepare=False like ours: store.read ends every page with a rollback, and psycopg drops
        its prepared statements on rollback, so the store's queries always get custom plans."""
        start = time.perf_counter()
        if dialect == "sqlite":
            conn.execute(sql, params(app)).fetchall()
        else:
            conn.execute(sql, params(app), prepare=prepare).fetchall()
        return (time.perf_counter() - start) * 1000

    ours_once(apps[0])  # warm the pool connection and caches
    raw_once(apps[0])
    found.clear()
    impls: list[tuple[str, Callable[[int], float]]] = [("ours", ours_once),
                                                         ("raw_same_sql", raw_once)]
    if sql != plain_sql:  # the store's SQL has the index hint: show the plan it avoids
        impls.append(("raw_without_hint", lambda app: raw_once(app, plain_sql)))
    if dialect == "postgres":  # psycopg's default: prepared after 5 runs -> a generic plan
        impls.append(("raw_auto_prepared", lambda app: raw_once(app, sql, None)))
    for impl, once in impls:
        res = Result("e_audit_query", dialect, impl, "app+type+time range", len(apps), "ms")
        res.load.append(round(os.getloadavg()[0], 2))
        res.cpu.append(cpu_probe())
        res.runs = [once(a) for a in apps]
        res.note = f"median of {len(apps)} queries (different apps); p95 " \
                   f"{sorted(res.runs)[int(len(res.runs) * 0.95) - 1]:.2f} ms"
        b.results.append(res)
        b.log(f"{'e_audit_query':<30} {dialect:<8} {impl:<18} {'':<24} {res.median:>12.2f} ms")
    prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    plans = {label: [" ".join(str(x) for x in row) for row in conn.execute(prefix + q,
                                                                           params(apps[0]))]
             for label, q in (("store_sql", sql), ("without_hint", plain_sql))}
    if dialect == "postgres":  # the plan a prepared (generic) statement gets
        numbered = sql
        for i in range(1, 7):
            numbered = numbered.replace("%s", f"${i}", 1)
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("PREPARE audit_generic(int2, varchar, varchar, varchar, varchar, int2) AS "
                     + numbered)
        plans["generic_plan_if_prepared"] = [row[0] for row in psycopg.ClientCursor(conn).execute(
            "EXPLAIN EXECUTE audit_generic(%s, %s, %s, %s, %s, %s)", params(apps[0]))]
        conn.execute("DEALLOCATE audit_generic")
        conn.execute("RESET plan_cache_mode")
    b.extra.setdefault("audit", {})[dialect] = {
        "sql": sql, "plans": plans,
        "rows_per_query_median": statistics.median(found) if found else 0,
        "since": format_time(since), "until": format_time(until), "types": types}
    conn.close()


def big_log_cases(b: Bench, dialects: list[str], cases: set[str]) -> None:
    n = b.args.events
    b.log(f"building the {n:,}-event log (build_records, chained) ...")
    start = time.perf_counter()
    rows, n_apps = big_log_rows(n)
    n = len(rows)
    b.extra["big_log"] = {"events": n, "apps": n_apps, "build_s": round(time.perf_counter()
                                                                        - start, 1),
                          "avg_payload_bytes": round(sum(len(r[11]) for r in rows) / n),
                          "avg_row_bytes": round(sum(sum(len(str(x)) for x in r) for r in
                                                     rows[:10000]) / min(n, 10000))}
    b.log(f"built in {b.extra['big_log']['build_s']} s; filling the stores")
    with contextlib.ExitStack() as stack:
        stores: dict[str, tuple[sa.Engine, str, Any]] = {}
        for d in dialects:
            engine, loc = stack.enter_context(b.our_store(d))
            secs = fill_ours(d, loc, rows)
            b.extra["big_log"][f"fill_{d}_s"] = round(secs, 1)
            b.log(f"filled {d} ({'executemany 10k/tx' if d == 'sqlite' else 'COPY'}) "
                  f"in {secs:.1f} s")
            es = None
            if "c" in cases and not b.args.no_es_read:
                es = stack.enter_context(es_app(b, d))
                secs = fill_es(b, d, es, rows)
                b.extra["big_log"][f"fill_es_{d}_s"] = round(secs, 1)
                b.log(f"filled eventsourcing {d} in {secs:.1f} s")
            stores[d] = (engine, loc, es)
        del rows
        gc.collect()
        gc.freeze()
        for d in dialects:
            engine, loc, es = stores[d]
            if "c" in cases:
                read_cases(b, d, engine, loc, n, es)
            if "e" in cases:
                audit_case(b, d, engine, loc, n_apps)
            if "d" in cases:
                rebuild_case(b, d, engine, n)
        gc.unfreeze()


# --- targets and output -------------------------------------------------------------------------


def find(b: Bench, case: str, dialect: str, impl: str, variant: str | None = None) -> Result | None:
    for r in b.results:
        if (r.case, r.dialect, r.impl) == (case, dialect, impl) and (
                variant is None or r.variant == variant):
            return r
    return None


def targets(b: Bench) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def ratio(name: str, num: Result | None, den: Result | None, need: float,
              info: bool = False) -> None:
        if num is None or den is None:
            return
        if den.median == 0:
            out.append({"target": name, "dialect": num.dialect, "value": float("inf"),
                        "need": f">= {need:g}x",
                        "status": f"PASS ({den.impl} hung in {den.hung} of {len(den.runs)} runs)"})
            return
        value = num.median / den.median
        out.append({"target": name, "dialect": num.dialect, "value": round(value, 3),
                    "need": f">= {need:g}x", "status": ("info " if info else "") +
                    ("PASS" if value >= need else "MISS")})

    def absolute(name: str, res: Result | None, need: float, below: bool = False,
                 info: bool = False) -> None:
        if res is None:
            return
        ok = res.median < need if below else res.median >= need
        out.append({"target": name, "dialect": res.dialect, "value": round(res.median, 2),
                    "need": f"{'<' if below else '>='} {need:,g} {res.unit}",
                    "status": ("info " if info else "") + ("PASS" if ok else "MISS")})

    for d in ("sqlite", "postgres"):
        for mode in ("distinct", "repeating"):
            for sync in (["FULL", "NORMAL"] if d == "sqlite" else ["sync_commit=on"]):
                v = f"{mode}/{sync}"
                ours = find(b, "a_1_event_per_tx", d, "ours", v)
                ratio(f"(a) {v}: ours/raw", ours, find(b, "a_1_event_per_tx", d, "raw", v), 0.8,
                      info=sync == "NORMAL")
                for es in ("es_recorder", "es_app"):
                    ratio(f"(a) {v}: ours/{es}", ours, find(b, "a_1_event_per_tx", d, es, v),
                          2.0, info=d == "sqlite")
        for case in [r.case for r in b.results if r.case.startswith("b_") and r.dialect == d]:
            if any(t["target"].startswith(f"(b) {case}:") and t["dialect"] == d for t in out):
                continue
            ours = find(b, case, d, "ours")
            ratio(f"(b) {case}: ours/raw_executemany", ours, find(b, case, d, "raw_executemany"),
                  0.4)
            for es in ("es_app_save_aggs", "es_app_save_1agg"):
                ratio(f"(b) {case}: ours/{es}", ours, find(b, case, d, es), 2.5)
        absolute("(c) read log, Recorded+payload", find(b, "c_read_log", d, "ours",
                                                        "Recorded+payload"), 150_000,
                 info=d == "postgres")
        absolute("(d) projector rebuild", find(b, "d_projector_rebuild", d, "ours"), 50_000,
                 info=d == "postgres")
        absolute("(e) audit query median", find(b, "e_audit_query", d, "ours"), 50, below=True)
    return out


def machine_info(b: Bench) -> dict[str, Any]:
    import eventsourcing

    def cmd(*args: str) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    with psycopg.connect(pg_conninfo()) as conn:
        pg = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in
              ("server_version", "synchronous_commit", "fsync", "shared_buffers",
               "wal_sync_method")}
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sa.__version__, "psycopg": psycopg.__version__,
        "psycopg_impl": psycopg.pq.__impl__, "libpq": psycopg.pq.version(),
        "eventsourcing": eventsourcing.__version__ if hasattr(eventsourcing, "__version__")
        else cmd(sys.executable, "-m", "pip", "show", "eventsourcing").split("\n")[1],
        "postgres": pg, "tmp_dir": b.tmp,
    }


def print_table(b: Bench, tgt: list[dict[str, Any]]) -> None:
    print("\n" + "=" * 118)
    print(f"{'case':<30} {'dialect':<8} {'impl':<18} {'variant':<26} {'median':>14} "
          f"{'min-max':>19}")
    print("-" * 118)
    for r in b.results:
        if r.unit == "ms":
            med, rng = f"{r.median:,.2f} ms", f"{min(r.runs):.2f}-{max(r.runs):.2f}"
        else:
            med, rng = f"{r.median:,.0f}/s", f"{min(r.runs):,.0f}-{max(r.runs):,.0f}"
        print(f"{r.case:<30} {r.dialect:<8} {r.impl:<18} {r.variant:<26} {med:>14} {rng:>19}")
    print("\n" + f"{'target':<58} {'dialect':<8} {'value':>12} {'need':>18}  status")
    print("-" * 118)
    for t in tgt:
        print(f"{t['target']:<58} {t['dialect']:<8} {t['value']:>12,} {t['need']:>18}  "
              f"{t['status']}")


def markdown(path: Path) -> str:
    """The results tables of a JSON file as Markdown (for bench/README.md)."""
    data = json.loads(path.read_text())
    out = ["| case | dialect | impl | variant | median | min–max | fdatasync/s | cpu k/s |",
           "|---|---|---|---|---:|---:|---:|---:|"]
    for r in data["results"]:
        if r["unit"] == "ms":
            med, rng = f"{r['median']:,.2f} ms", f"{r['min']:,.2f}–{r['max']:,.2f}"
        else:
            med, rng = f"{r['median']:,.0f}/s", f"{r['min']:,.0f}–{r['max']:,.0f}"
        probes = r["fdatasync_probe_per_s"]
        probe = f"{statistics.median(probes):,.0f}" if probes else ""
        cpu = f"{statistics.median(r['cpu_probe_per_s']) / 1000:,.0f}" if r["cpu_probe_per_s"] \
            else ""
        out.append(f"| {r['case']} | {r['dialect']} | {r['impl']} | {r['variant']} | {med} | "
                   f"{rng} | {probe} | {cpu} |")
    out += ["", "| target | dialect | value | need | status |", "|---|---|---:|---|---|"]
    for t in data["targets"]:
        out.append(f"| {t['target']} | {t['dialect']} | {t['value']:,} | {t['need']} | "
                   f"{t['status']} |")
    return "\n".join(out)


def busiest() -> list[str]:
    """The machine is shared: the 5 processes using the most CPU (lifetime %), for the record."""
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True,
                             text=True, timeout=10).stdout.splitlines()
    except OSError:
        return []
    return [" ".join(line.split()) for line in out[1:6]]


def cleanup_stale_schemas() -> None:
    """Drop schemas left by an interrupted earlier run of this script (its prefix only)."""
    with psycopg.connect(pg_conninfo(), autocommit=True) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (SCHEMA_PREFIX + "%",))]
        for name in names:
            pid = name[len(SCHEMA_PREFIX):].split("_")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="events in the big log (c, d, e)")
    p.add_argument("--quick", action="store_true", help="small smoke run (< 1 minute)")
    p.add_argument("--only", choices=["sqlite", "postgres"], help="one dialect")
    p.add_argument("--cases", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e")
    p.add_argument("--out", help="JSON results (default bench/results/latest.json; "
                                 "bench/results/quick.json with --quick)")
    p.add_argument("--reps", type=int, default=3, help="runs per case (median reported)")
    p.add_argument("--a-events", type=int, default=5000, help="(a) appends per run")
    p.add_argument("--a-streams", type=int, default=50, help="(a) streams in the repeating mode")
    p.add_argument("--a-seconds", type=float, default=4.0,
                   help="(a) time cap per implementation and run (a slow disk stops it early)")
    p.add_argument("--a-block", type=int, default=50,
                   help="(a) appends per implementation per interleaving round")
    p.add_argument("--b-events", type=int, default=20_000, help="(b) events in 100-event appends")
    p.add_argument("--b-big", type=int, default=10_000, help="(b) events in the one big append")
    p.add_argument("--minor-reps", type=int, default=1,
                   help="runs of the secondary (c) variants: records only, rows only, es raw")
    p.add_argument("--rebuild-reps", type=int, default=3, help="runs of the rebuild")
    p.add_argument("--audit-queries", type=int, default=101)
    p.add_argument("--es-timeout", type=float, default=60.0,
                   help="kill an eventsourcing big PostgreSQL batch after this many seconds")
    p.add_argument("--no-es-read", action="store_true", help="skip eventsourcing in (c)")
    p.add_argument("--markdown", metavar="JSON", help="print a results file as Markdown; exit")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(Path(args.markdown)))
        return 0
    if args.quick:
        args.events = min(args.events, 20_000)
        args.a_events, args.b_events, args.b_big, args.a_seconds = 300, 2000, 1000, 0.5
        args.reps, args.rebuild_reps, args.audit_queries = 1, 1, 21
        args.minor_reps = 1
    if args.out is None:
        args.out = "bench/results/quick.json" if args.quick else "bench/results/latest.json"
    cases = set(args.cases.split(","))
    dialects = [args.only] if args.only else ["sqlite", "postgres"]
    warnings.simplefilter("ignore", DeprecationWarning)

    b = Bench(args)
    try:
        if "postgres" in dialects:
            cleanup_stale_schemas()
        info = machine_info(b)
        b.log(f"{info['cpu']} x{info['cores']}, Python {info['python']}, SQLite {info['sqlite']}, "
              f"PostgreSQL {info['postgres']['server_version']}, psycopg {info['psycopg']} "
              f"({info['psycopg_impl']}), eventsourcing {info['eventsourcing']}")
        info["fdatasync_probe_start"] = round(fdatasync_probe(b.tmp))
        info["cpu_probe_start"] = round(cpu_probe())
        info["busiest_processes_start"] = busiest()
        info["loadavg_start"] = os.getloadavg()
        b.log(f"fdatasync probe: {info['fdatasync_probe_start']:,}/s; cpu probe "
              f"{info['cpu_probe_start']:,}/s; load {os.getloadavg()[0]:.2f}")
        for d in dialects:
            if "a" in cases:
                case_a(b, d)
            if "b" in cases:
                case_b(b, d)
        if cases & {"c", "d", "e"}:
            big_log_cases(b, dialects, cases)
        if "postgres" in dialects:
            cleanup_stale_schemas()
        info["fdatasync_probe_end"] = round(fdatasync_probe(b.tmp))
        info["cpu_probe_end"] = round(cpu_probe())
        info["busiest_processes_end"] = busiest()
        info["loadavg_end"] = os.getloadavg()
        info["wall_s"] = round(time.perf_counter() - b.t_start, 1)
    finally:
        shutil.rmtree(b.tmp, ignore_errors=True)
    tgt = targets(b)
    print_table(b, tgt)
    out = Path(args.out)
    if not out.is_absolute():
        out = ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    argv_used = {k: v for k, v in vars(args).items()}
    out.write_text(json.dumps({"machine": info, "args": argv_used, "results": [
        r.as_json() for r in b.results], "targets": tgt, "extra": b.extra}, indent=1) + "\n")
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} "
          f"(wall {info['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
