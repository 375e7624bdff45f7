"""The read-model projector on real databases: catch_up builds the read models, incremental
projection at any batch boundaries equals a rebuild from zero (a Hypothesis property over random
valid histories), every event is applied exactly once even with two projectors racing, and
status() reports the lag."""

from __future__ import annotations

import random
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from events import catalog as ev
from events import projector as projector_module
from events.codec import dumps
from events.projector import NAME, Projector, state_to_json
from events.sql import SQLEventStore, create_engine, upgrade
from events.state import AppState, fold, stream_id
from events.store import InMemoryEventStore, NewEvent

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)  # the fixed instant of tests/conftest.py
T = TypeVar("T")


# --- a random valid history ---------------------------------------------------------------------


class Draw:
    """Where the scenario's choices come from: Hypothesis, or a seeded Random."""

    def __init__(self, integer: Callable[[int, int], int]) -> None:
        self.integer = integer

    def choice(self, options: Sequence[T]) -> T:
        return options[self.integer(0, len(options) - 1)]

    @classmethod
    def hypothesis(cls, data: st.DataObject) -> Draw:
        return cls(lambda lo, hi: data.draw(st.integers(lo, hi)))

    @classmethod
    def seeded(cls, seed: int) -> Draw:
        rng = random.Random(seed)
        return cls(rng.randint)


@dataclass
class App:
    name: str
    version: int = 0  # appended to the store
    pending: list[NewEvent] = field(default_factory=list)
    registered: bool = False
    creds: dict[str, tuple[ev.Usage, str]] = field(default_factory=dict)  # id -> (usage, status)
    rotations: dict[str, str] = field(default_factory=dict)  # id -> running|completed|failed
    secret_version: int = 0


class Scenario:
    """Random *valid* commands over a few apps, appended in random batches, with catch_up
    called at random points; ``finish`` flushes and catches up to the head."""

    APPS = ("alpha", "beta", "gamma")
    OPS = ("event",) * 6 + ("flush",) * 2 + ("catch_up",)

    def __init__(self, draw: Draw, store: SQLEventStore, projector: Projector,
                 apps: Sequence[str] = APPS, ops: Sequence[str] = OPS) -> None:
        self.draw, self.store, self.projector = draw, store, projector
        self.ops = tuple(ops)
        self.names = tuple(apps)
        self.apps = {name: App(name) for name in self.names}
        self.clock = NOW
        self.serial = 0
        self.policy_version = 0

    def run(self, steps: int) -> None:
        for _ in range(steps):
            op = self.draw.choice(self.ops)
            if op == "event":
                self._event()
            elif op == "flush":
                self._flush(self.apps[self.draw.choice(self.names)])
            else:
                self.projector.catch_up(batch=self.draw.integer(1, 9))

    def finish(self) -> None:
        for app in self.apps.values():
            self._flush(app)
        self.projector.catch_up(batch=self.draw.integer(1, 50))

    def _flush(self, app: App) -> None:
        if app.pending:
            self.store.append(stream_id(app.name), app.pending, app.version)
            app.version += len(app.pending)
            app.pending = []

    def _next(self) -> str:
        self.serial += 1
        return f"{self.names[0]}-{self.serial:04d}"  # ids are unique across the whole log

    def _emit(self, app: App, event: ev.Event, claims: tuple[tuple[str, str], ...] = ()) -> None:
        self.clock += timedelta(seconds=self.draw.integer(0, 3600))
        app.pending.append(NewEvent(event, self.clock, self.draw.choice(("scheduler", "cli:ops")),
                                    claims=claims))

    def _event(self) -> None:
        if self.draw.integer(0, 19) == 0:  # a stream that is not an application's
            self.policy_version += 1
            self.store.append(f"policy:{self.names[0]}", [NewEvent(
                ev.PolicyApplied(name="default", content_hash=f"h{self.policy_version}"),
                self.clock, "policy:default")], self.policy_version - 1)
            return
        app = self.apps[self.draw.choice(self.names)]
        if not app.registered:
            labels = {"env": self.draw.choice(("prod", "dev"))} if self.draw.integer(0, 1) else {}
            self._emit(app, ev.ApplicationRegistered(app=app.name, labels=labels))
            app.registered = True
            return
        live = {u: sum(1 for cu, s in app.creds.values() if cu == u and s != "deleted")
                for u in ev.Usage}
        by_status: dict[str, list[str]] = {}
        for cid, (_, status) in app.creds.items():
            by_status.setdefault(status, []).append(cid)
        not_deleted = [c for c, (_, s) in app.creds.items() if s != "deleted"]
        running = [r for r, s in app.rotations.items() if s in ("running", "failed")]
        options: list[Callable[[], None]] = [lambda: self._secret(app)]
        if any(n < 2 for n in live.values()):
            options += [lambda: self._add(app, live)] * 3
        if by_status.get("added") or by_status.get("disabled"):
            options += [lambda: self._set(app, by_status.get("added", []) + by_status.get(
                "disabled", []), "active", ev.CredentialActivated)] * 2
        if by_status.get("active"):
            options.append(lambda: self._set(app, by_status["active"], "disabled",
                                             ev.CredentialDisabled))
        if not_deleted:
            options += [
                lambda: self._set(app, not_deleted, "deleted", ev.CredentialDeleted),
                lambda: self._expiry(app, not_deleted),
            ]
            expirable = [c for c in not_deleted if app.creds[c][1] != "expired"]
            if expirable:
                options.append(lambda: self._expire(app, expirable))
        options.append(lambda: self._rotation_start(app))
        if running:
            options += [lambda: self._rotation_step(app, running)] * 2
        self.draw.choice(options)()

    def _add(self, app: App, live: dict[ev.Usage, int]) -> None:
        usage = self.draw.choice([u for u, n in live.items() if n < 2])
        cid = f"cred-{self._next()}"
        material = f"{self.draw.integer(0, 2**32):08x}"
        kind = ev.CredentialKind.PUBLIC_KEY if usage is not ev.Usage.MTLS else self.draw.choice(
            (ev.CredentialKind.X509_CERT, ev.CredentialKind.CERT_SUBJECT_DN))
        expires = (self.clock + timedelta(days=self.draw.integer(1, 400))
                   if self.draw.integer(0, 1) else None)
        event = ev.CredentialAdded(
            credential_id=cid, usage=usage, kind=kind, kid=f"kid-{cid}-{material}",
            alg=(self.draw.choice(("RS256", "RS384", "PS256"))
                 if kind is ev.CredentialKind.PUBLIC_KEY else None),
            key_size=self.draw.choice((2048, 3072, 4096)),
            fingerprint=f"sha256:{material}{cid}", name=self.draw.choice((None, "primary")),
            subject_dn=f"CN={cid}" if kind is ev.CredentialKind.CERT_SUBJECT_DN else None,
            expires_at=expires, generated=bool(self.draw.integer(0, 1)),
        )
        self._emit(app, event, claims=(("fingerprint", event.fingerprint), ("kid", event.kid)))
        app.creds[cid] = (usage, "added")

    def _set(self, app: App, candidates: list[str], status: str, kind: type[ev.Event]) -> None:
        cid = self.draw.choice(candidates)
        self._emit(app, kind(credential_id=cid))  # type: ignore[call-arg]
        app.creds[cid] = (app.creds[cid][0], status)

    def _expiry(self, app: App, candidates: list[str]) -> None:
        cid = self.draw.choice(candidates)
        self._emit(app, ev.CredentialExpiryChanged(
            credential_id=cid, expires_at=self.clock + timedelta(hours=self.draw.integer(1, 9999))))

    def _expire(self, app: App, candidates: list[str]) -> None:
        cid = self.draw.choice(candidates)
        self._emit(app, ev.CredentialExpired(credential_id=cid, expired_at=self.clock))
        app.creds[cid] = (app.creds[cid][0], "expired")

    def _secret(self, app: App) -> None:
        app.secret_version += 1
        until = self.clock + timedelta(days=1) if self.draw.integer(0, 1) else None
        self._emit(app, ev.SecretRotated(version=app.secret_version,
                                         fingerprint=f"secret-{self._next()}",
                                         previous_valid_until=until))

    def _rotation_start(self, app: App) -> None:
        rid = f"rot-{self._next()}"
        old = self.draw.choice([None, *app.creds])
        self._emit(app, ev.RotationStarted(
            rotation_id=rid, usage=self.draw.choice(list(ev.Usage)).value,
            reason=self.draw.choice(("provision", "age", "expiring", "manual")),
            policy=self.draw.choice((None, "default")), old_credential_id=old,
            new_credential_id=f"cred-next-{rid}"))
        app.rotations[rid] = "running"

    def _rotation_step(self, app: App, running: list[str]) -> None:
        rid = self.draw.choice(running)
        step = self.draw.choice(("step", "failed", "completed"))
        if step == "step":
            self._emit(app, ev.RotationStepRecorded(rotation_id=rid, step=self.draw.choice(
                ("generated", "registered", "tested", "overlap"))))
        elif step == "failed":
            self._emit(app, ev.RotationFailed(
                rotation_id=rid, step="tested", error="provider refused the assertion",
                attempt=self.draw.integer(1, 5),
                next_attempt_at=self.clock + timedelta(minutes=self.draw.integer(1, 90))))
            app.rotations[rid] = "failed"
        else:
            self._emit(app, ev.RotationCompleted(rotation_id=rid,
                                                 new_credential_id=f"cred-next-{rid}"))
            app.rotations[rid] = "completed"


# --- helpers -----------------------------------------------------------------------------------


@dataclass
class Db:
    engine: Engine
    store: SQLEventStore
    projector: Projector

    def head(self) -> int:
        return max((r.position for r in self.store.read()), default=0)

    def checkpoint(self) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.text("SELECT position FROM projection_checkpoints "
                                        "WHERE name = :n"), {"n": NAME}).scalar_one_or_none()


def _open(url: str) -> Db:
    engine = create_engine(url)
    upgrade(engine)
    store = SQLEventStore(engine)
    return Db(engine, store, Projector(engine, store))


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    db = _open(db_url)
    yield db
    db.engine.dispose()


def _assert_incremental_equals_rebuild(db: Db) -> dict[str, list[tuple[Any, ...]]]:
    """The read models as caught up equal a rebuild from zero, and the fold of each stream."""
    assert db.projector.status().lag == 0
    incremental = db.projector.snapshot()
    by_app: dict[str, list[Any]] = {}
    for rec in db.store.read():
        if rec.stream_id.startswith("app:"):
            by_app.setdefault(rec.stream_id[4:], []).append((rec.event, rec.occurred_at))
    states = sorted((app, state_to_json(fold(app, events))) for app, events in by_app.items())
    assert [(r[0], r[2]) for r in incremental["rm_applications"]] == states
    replayed = db.projector.rebuild()
    assert replayed == db.head()
    assert db.projector.snapshot() == incremental
    assert db.checkpoint() == db.head()
    return incremental


def _append_fixed_history(db: Db, seed: int = 7, steps: int = 150,
                          apps: Sequence[str] = Scenario.APPS) -> None:
    """A deterministic random history, appended without any catch_up."""
    no_catch_up = [op for op in Scenario.OPS if op != "catch_up"]
    scenario = Scenario(Draw.seeded(seed), db.store, db.projector, apps, no_catch_up)
    scenario.run(steps)
    for app in scenario.apps.values():
        scenario._flush(app)


# --- tests -------------------------------------------------------------------------------------


def test_catch_up_builds_the_read_models(db: Db) -> None:
    """After appends, catch_up writes the application, credential and rotation rows."""
    t = [NOW + timedelta(minutes=i) for i in range(6)]
    added = ev.CredentialAdded(
        credential_id="c1", usage=ev.Usage.PRIVATE_KEY_JWT, kind=ev.CredentialKind.PUBLIC_KEY,
        kid="kid-1", alg="PS256", key_size=3072, fingerprint="sha256:aa",
        expires_at=NOW + timedelta(days=90))
    db.store.append(stream_id("pay"), [
        NewEvent(ev.ApplicationRegistered(app="pay", labels={"env": "prod"}), t[0], "cli:ops"),
        NewEvent(added, t[1], "scheduler"),
        NewEvent(ev.CredentialActivated(credential_id="c1"), t[2], "scheduler"),
        NewEvent(ev.RotationStarted(rotation_id="r1", usage="private_key_jwt", reason="age",
                                    new_credential_id="c2", old_credential_id="c1"),
                 t[3], "scheduler"),
        NewEvent(ev.SecretRotated(version=1, fingerprint="s"), t[4], "scheduler"),
    ], 0)
    assert db.projector.catch_up() == 5
    snap = db.projector.snapshot()
    [app_row] = snap["rm_applications"]
    assert app_row[0] == "pay" and app_row[1] == 5
    assert app_row[3:] == ("2026-11-22T12:00:00.000000Z", '{"env":"prod"}', 1, 1, 1)
    assert snap["rm_credentials"] == [(
        "c1", "pay", "private_key_jwt", "public_key", "kid-1", "PS256", 3072, "sha256:aa", None,
        "active", "2026-11-22T12:01:00.000000Z", "2026-11-22T12:02:00.000000Z",
        "2027-02-20T12:00:00.000000Z", "2026-11-22T12:02:00.000000Z")]
    assert snap["rm_rotations"] == [(
        "r1", "pay", "private_key_jwt", "age", "running", None, 0, None, None,
        "2026-11-22T12:03:00.000000Z", "2026-11-22T12:03:00.000000Z")]
    assert [s.app for s in db.projector.states()] == ["pay"]
    assert db.checkpoint() == 5


@pytest.mark.parametrize("batch", [1, 2, 3, 7, 64, 5000])
def test_catch_up_at_any_batch_size_equals_rebuild(db: Db, batch: int) -> None:
    """Catching up in batches of any size gives exactly the rows a rebuild gives."""
    _append_fixed_history(db)
    assert db.projector.catch_up(batch=batch) == db.head() > 100
    _assert_incremental_equals_rebuild(db)


def test_interleaved_catch_up_equals_rebuild_fixed_example(db: Db) -> None:
    """A fixed random history with catch_up between appends equals a rebuild (both dialects)."""
    scenario = Scenario(Draw.seeded(20261122), db.store, db.projector)
    scenario.run(250)
    scenario.finish()
    assert db.head() > 120
    _assert_incremental_equals_rebuild(db)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_incremental_projection_equals_rebuild_property(data: st.DataObject) -> None:
    """Random valid histories, batches and catch_up points: incremental equals rebuild."""
    with tempfile.TemporaryDirectory() as tmp:
        db = _open(f"sqlite:///{Path(tmp) / 'prop.db'}")
        try:
            draw = Draw.hypothesis(data)
            scenario = Scenario(draw, db.store, db.projector)
            scenario.run(draw.integer(0, 80))
            scenario.finish()
            _assert_incremental_equals_rebuild(db)
        finally:
            db.engine.dispose()


def test_catch_up_is_exactly_once(db: Db) -> None:
    """A second catch_up applies nothing; the checkpoint equals the head; rows are unchanged."""
    _append_fixed_history(db, steps=60)
    head = db.head()
    assert db.projector.catch_up(batch=10) == head
    first = db.projector.snapshot()
    assert db.projector.catch_up() == 0
    assert db.projector.catch_up(batch=1) == 0
    assert db.checkpoint() == head
    assert db.projector.snapshot() == first
    db.store.append(stream_id("late"), [NewEvent(ev.ApplicationRegistered(app="late"), NOW,
                                                 "cli:ops")], 0)
    assert db.projector.catch_up() == 1
    assert db.projector.catch_up() == 0
    assert db.checkpoint() == head + 1


def test_rebuild_resets_a_damaged_read_model(db: Db) -> None:
    """rebuild rewrites the read models from the log, whatever the tables held."""
    _append_fixed_history(db, steps=60)
    db.projector.catch_up()
    good = db.projector.snapshot()
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM rm_credentials"))
        conn.execute(sa.text("UPDATE rm_applications SET live_credentials = 99"))
    assert db.projector.snapshot() != good
    db.projector.rebuild()
    assert db.projector.snapshot() == good


@pytest.mark.parametrize("batch", [1, 5000])
def test_rebuild_in_pages_by_copy_or_by_insert_equals_catch_up(
        db: Db, batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild reads the log in pages of its own (here 7 events, so a page ends anywhere in
    a stream) and writes many rows by COPY on PostgreSQL (here from 3 rows, so every table's
    rows take that path; below that, and on SQLite, executemany): either way the tables equal
    what catch_up made, whether catch_up wrote by COPY too (one batch) or row by row."""
    monkeypatch.setattr(projector_module, "LOG_PAGE", 7)
    monkeypatch.setattr(projector_module, "COPY_FROM", 2)
    _append_fixed_history(db, seed=5, steps=200, apps=[f"p{n}" for n in range(8)])
    assert db.projector.catch_up(batch=batch) == db.head() > 100
    incremental = _assert_incremental_equals_rebuild(db)
    assert len(incremental["rm_credentials"]) > 2 and len(incremental["rm_rotations"]) > 2
    monkeypatch.setattr(projector_module, "COPY_FROM", 10**9)  # every table by executemany
    assert db.projector.rebuild() == db.head()
    assert db.projector.snapshot() == incremental


def test_state_json_is_the_canonical_json_of_asdict() -> None:
    """``state_to_json`` writes exactly ``codec.dumps(dataclasses.asdict(state))``: after every
    event of a fixed history, and for times with another UTC offset, labels beyond ASCII and a
    rolled-back rotation."""
    from events.state import evolve

    states = []
    for app, events in _fixed_streams(seed=9, steps=250).items():
        state = AppState(app=app)
        for event, at in events:
            state = evolve(state, event, at)
            states.append(state)
    paris = timezone(timedelta(hours=1))
    at = datetime(2026, 3, 1, 9, 30, 0, 250, tzinfo=paris)
    state = fold("émile", [
        (ev.ApplicationRegistered(app="émile", labels={"équipe": "paiements ✓", "a": "\n\""}),
         at),
        (ev.CredentialAdded(credential_id="c1", usage=ev.Usage.MTLS,
                            kind=ev.CredentialKind.X509_CERT, kid="k1", fingerprint="sha256:01",
                            certificate_pem="-----BEGIN CERTIFICATE-----\nMIIB\n",
                            expires_at="2027-01-01T00:00:00+05:30"), at),
        (ev.RotationStarted(rotation_id="r1", usage="mtls", reason="manual",
                            new_credential_id="c1"), at + timedelta(seconds=1)),
        (ev.RotationCompleted(rotation_id="r1", new_credential_id="c1"), at),
        (ev.RotationRolledBack(rotation_id="r1", restored_credential_id="c1",
                               retired_credential_id="c2"), at),
        (ev.SecretRotated(version=2, fingerprint="f", previous_valid_until=at), at),
    ])
    states.append(state)
    assert len(states) > 150
    for state in states:
        assert state_to_json(state) == dumps(asdict(state))


def _fixed_streams(seed: int, steps: int) -> dict[str, list[tuple[ev.Event, datetime]]]:
    """The events of a fixed random history, by app, without a database (``Scenario`` appends
    to this in-memory store)."""
    store = InMemoryEventStore()
    no_catch_up = [op for op in Scenario.OPS if op != "catch_up"]
    scenario = Scenario(Draw.seeded(seed), store, None, ops=no_catch_up)  # type: ignore[arg-type]
    scenario.run(steps)
    for app in scenario.apps.values():
        scenario._flush(app)
    streams: dict[str, list[tuple[ev.Event, datetime]]] = {}
    for rec in store.read():
        if rec.stream_id.startswith("app:"):
            streams.setdefault(rec.stream_id[4:], []).append((rec.event, rec.occurred_at))
    return streams


def _race(projectors: list[Projector], batch: int) -> list[int]:
    barrier = threading.Barrier(len(projectors))
    applied = [0] * len(projectors)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            applied[i] = projectors[i].catch_up(batch=batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(projectors))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, repr(errors)
    return applied


def test_two_projectors_racing_apply_each_event_once(db: Db) -> None:
    """Two projectors racing apply each event once between them and end equal to a rebuild."""
    projectors = [Projector(db.engine, SQLEventStore(db.engine)) for _ in range(2)]
    done = 0
    for seed, batch in ((1, 3), (2, 1), (3, 17)):
        _append_fixed_history(db, seed=seed, steps=80, apps=[f"{seed}-{n}" for n in range(3)])
        applied = _race(projectors, batch)
        head = db.head()
        assert sum(applied) == head - done, applied
        done = head
        assert db.checkpoint() == head
        _assert_incremental_equals_rebuild(db)


def test_status_reports_lag(db: Db) -> None:
    """status() reports the checkpoint, the head and the lag between them."""
    assert (db.projector.status().position, db.projector.status().head) == (0, 0)
    for i in range(5):
        db.store.append(stream_id(f"app{i}"), [NewEvent(ev.ApplicationRegistered(app=f"app{i}"),
                                                        NOW, "cli:ops")], 0)
    status = db.projector.status()
    assert (status.name, status.position, status.head, status.lag) == (NAME, 0, 5, 5)
    db.projector.catch_up(batch=2)
    assert db.projector.status().lag == 0
    db.store.append(stream_id("app0"), [NewEvent(ev.CredentialDeleted(credential_id="x"), NOW,
                                                 "cli:ops")], 1)
    db.store.append(stream_id("app9"), [NewEvent(ev.ApplicationRegistered(app="app9"), NOW,
                                                 "cli:ops")], 0)
    status = db.projector.status()
    assert (status.position, status.head, status.lag) == (5, 7, 2)
    db.projector.rebuild()
    assert db.projector.status().lag == 0


def test_read_model_keeps_the_provider_binding_and_provider_ids() -> None:
    """An app bound to an identity provider, with a credential the provider knows by its own
    id, reads back from the read model's stored state exactly as the log folds it."""
    from events.projector import state_from_json

    at = datetime(2026, 1, 1, tzinfo=UTC)
    state = fold("a", [
        (ev.ApplicationRegistered(app="a", provider="auth0-prod", client_id="AbC123"), at),
        (ev.CredentialAdded(credential_id="c1", usage=ev.Usage.PRIVATE_KEY_JWT,
                            kind=ev.CredentialKind.PUBLIC_KEY, kid="k" * 12,
                            fingerprint="sha256:00"), at),
        (ev.CredentialRegistered(credential_id="c1", provider="auth0-prod",
                                 provider_credential_id="cred_x"), at),
    ])
    back = state_from_json(state_to_json(state))
    assert (back.provider, back.client_id) == ("auth0-prod", "AbC123")
    assert back.credentials["c1"].provider_id == "cred_x"
    assert back == state


@pytest.mark.parametrize("seeded_at", [0, 40, 97, None])
def test_a_fleet_seeded_from_the_read_model_equals_one_folded_from_zero(
        db: Db, seeded_at: int | None) -> None:
    """The daemon's fleet starts from the read model and its checkpoint (``Projector.seed``)
    rather than the whole log: projected to any position (None: the head), then refreshed over
    the rest, every application's state equals the fold of its whole stream, and the seeded
    applications count as changed (the first tick plans them all)."""
    from orchestrator.app.fleet import FleetView

    _append_fixed_history(db, seed=11, steps=160)
    head = db.head()
    assert head > 100
    if seeded_at is None:
        db.projector.catch_up()
    elif seeded_at:
        db.projector._step(seeded_at)  # one batch: the checkpoint stops at ``seeded_at``
    assert (db.checkpoint() or 0) == (head if seeded_at is None else seeded_at)
    seeded = FleetView(db.store, seed=db.projector.seed)
    folded = FleetView(db.store)
    assert seeded.take_changed() == folded.take_changed() == set(Scenario.APPS)
    assert seeded.position == folded.position == head
    assert ([state_to_json(s) for s in seeded.all()]
            == [state_to_json(s) for s in folded.all()])
