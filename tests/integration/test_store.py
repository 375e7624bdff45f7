"""The SQL event store on real SQLite and PostgreSQL: the append/read contract, optimistic
concurrency, once-only claims, filters and paging, the database's own append-only guards, the
schema migration, and parity with the in-memory store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from events import catalog as ev
from events import codec
from events.chain import GENESIS, Verified, link, verify
from events.sql import (
    MAX_ROWS_PER_STATEMENT,
    READ_PAGE,
    SQLEventStore,
    create_engine,
    current_revision,
    upgrade,
)
from events.state import stream_id
from events.store import (
    ConcurrencyError,
    DuplicateClaimError,
    InMemoryEventStore,
    NewEvent,
    ReadFilter,
    Recorded,
)

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)  # the fixed instant of tests/conftest.py
A, B, C = stream_id("a"), stream_id("b"), stream_id("c")
RECORDED_AT = NOW + timedelta(seconds=5)


# --- helpers -----------------------------------------------------------------------------------


def fixed_clock(at: datetime = RECORDED_AT) -> Callable[[], datetime]:
    return lambda: at


def registered(app: str = "a", **labels: str) -> ev.ApplicationRegistered:
    return ev.ApplicationRegistered(app=app, labels=labels)


def added(cid: str, *, fingerprint: str | None = None, kid: str | None = None,
          expires_at: datetime | None = None) -> ev.CredentialAdded:
    return ev.CredentialAdded(
        credential_id=cid, usage=ev.Usage.PRIVATE_KEY_JWT, kind=ev.CredentialKind.PUBLIC_KEY,
        kid=kid or f"kid-{cid}", alg="PS256", key_size=3072,
        fingerprint=fingerprint or f"sha256:{cid}", expires_at=expires_at,
    )


def new(event: ev.Event, *, at: datetime = NOW, actor: str = "cli:alice",
        claims: tuple[tuple[str, str], ...] = (), event_id: str | None = None,
        correlation_id: str | None = None, causation_id: str | None = None) -> NewEvent:
    return NewEvent(event, at, actor, correlation_id=correlation_id, causation_id=causation_id,
                    claims=claims, event_id=event_id or str(uuid.uuid4()))


def activated(cid: str, **kw: object) -> NewEvent:
    return new(ev.CredentialActivated(credential_id=cid), **kw)  # type: ignore[arg-type]


def claims_of(event: ev.CredentialAdded) -> tuple[tuple[str, str], ...]:
    return (("fingerprint", event.fingerprint), ("kid", event.kid))


def count(engine: Engine, table: str = "events") -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def positions(store: SQLEventStore | InMemoryEventStore, where: ReadFilter = ReadFilter()
              ) -> list[int]:
    return [r.position for r in store.read(where)]


@pytest.fixture
def store(engine: Engine) -> SQLEventStore:
    return SQLEventStore(engine, clock=fixed_clock())


# --- append / read round trip ------------------------------------------------------------------


def test_round_trip_keeps_every_field(store: SQLEventStore, engine: Engine) -> None:
    """An appended event reads back with all its metadata, canonical JSON payload and UTC times."""
    berlin = timezone(timedelta(hours=2))
    occurred = datetime(2026, 11, 22, 14, 30, 1, 123456, tzinfo=berlin)
    event = ev.ApplicationRegistered(app="a", labels={"zone": "Zürich", "env": "prod"})
    event_id = str(uuid.uuid4())
    [appended] = store.append(A, [new(event, at=occurred, actor="policy:p1", event_id=event_id,
                                      correlation_id="rot-1", causation_id="req-9")], 0)
    [read] = store.read()
    assert read == appended
    assert (read.position, read.stream_id, read.stream_version) == (1, A, 1)
    assert (read.event_id, read.type, read.schema_version) == (
        event_id, "application.registered", 1)
    assert (read.actor, read.correlation_id, read.causation_id) == ("policy:p1", "rot-1", "req-9")
    assert read.occurred_at == occurred and read.occurred_at.tzinfo is UTC
    assert read.recorded_at == RECORDED_AT and read.recorded_at.tzinfo is UTC
    assert read.payload_json == ('{"app":"a","client_id":null,"labels":{"env":"prod",'
                                 '"zone":"Zürich"},"provider":null}')
    assert read.payload_json == codec.encode_payload(event)
    assert read.event == event
    assert (read.prev_hash, read.hash) == (GENESIS, link(GENESIS, 1, read.record_bytes()))
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT occurred_at, recorded_at, payload FROM events WHERE position = 1")).one()
    assert tuple(row) == ("2026-11-22T12:30:01.123456Z", "2026-11-22T12:00:05.000000Z",
                          read.payload_json)


def test_payload_times_and_enums_are_canonical(store: SQLEventStore) -> None:
    """A payload's datetimes are stored as fixed-width UTC text and its enums as their values."""
    expires = datetime(2027, 3, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    store.append(A, [new(added("c1", expires_at=expires))], 0)
    [rec] = store.read()
    payload = json.loads(rec.payload_json)
    assert payload["expires_at"] == "2027-03-01T00:00:00.000000Z"
    assert payload["usage"] == "private_key_jwt" and payload["kind"] == "public_key"
    assert rec.payload_json == json.dumps(payload, sort_keys=True, separators=(",", ":"),
                                          ensure_ascii=False)
    assert rec.event == added("c1", expires_at=expires)


def test_naive_occurred_at_is_refused_and_writes_nothing(store: SQLEventStore,
                                                         engine: Engine) -> None:
    """A naive occurred_at is refused before anything is written."""
    with pytest.raises(ValueError, match="naive datetime"):
        store.append(A, [new(registered()), new(registered(), at=datetime(2026, 1, 1))], 0)
    assert count(engine) == 0


def test_positions_are_gap_free_across_streams(store: SQLEventStore) -> None:
    """Global positions run 1..N without gaps whichever streams the appends go to."""
    store.append(A, [new(registered("a"))], 0)
    store.append(B, [new(registered("b")), new(added("b1"))], 0)
    store.append(A, [new(added("a1")), new(added("a2")), new(activated("a1").event)], 1)
    store.append(C, [new(registered("c"))], 0)
    store.append(B, [activated("b1")], 2)
    recs = list(store.read())
    assert [r.position for r in recs] == list(range(1, 9))
    assert [r.stream_id for r in recs] == [A, B, B, A, A, A, C, B]
    assert verify(recs) == Verified(8, 8, recs[-1].hash)


def test_stream_versions_count_per_stream(store: SQLEventStore) -> None:
    """Each stream's versions run 1..n independently of the others; append returns them."""
    first = store.append(A, [new(registered("a")), new(added("a1"))], 0)
    store.append(B, [new(registered("b"))], 0)
    second = store.append(A, [activated("a1")], 2)
    assert [(r.stream_version, r.position) for r in first] == [(1, 1), (2, 2)]
    assert [(r.stream_version, r.position) for r in second] == [(3, 4)]
    assert [r.stream_version for r in store.read(ReadFilter(stream_id=A))] == [1, 2, 3]
    assert [r.stream_version for r in store.read(ReadFilter(stream_id=B))] == [1]


def test_empty_append_writes_nothing(store: SQLEventStore, engine: Engine) -> None:
    """Appending no events returns nothing and writes nothing."""
    assert store.append(A, [], 0) == []
    assert count(engine) == 0


# --- optimistic concurrency --------------------------------------------------------------------


@pytest.mark.parametrize("expected", [0, 1, 3, 7], ids=["zero", "too-low", "too-high", "far-ahead"])
def test_stale_expected_version_raises_and_writes_nothing(
    store: SQLEventStore, engine: Engine, expected: int
) -> None:
    """An expected version other than the stream's current one raises ConcurrencyError, no write."""
    store.append(A, [new(registered("a")), new(added("a1"))], 0)
    before = list(store.read())
    with pytest.raises(ConcurrencyError) as info:
        store.append(A, [activated("a1")], expected)
    assert (info.value.stream_id, info.value.expected, info.value.actual) == (A, expected, 2)
    assert f"is at version 2, not {expected}" in str(info.value)
    assert list(store.read()) == before
    assert count(engine) == 2


def test_new_stream_must_be_expected_at_zero(store: SQLEventStore, engine: Engine) -> None:
    """A stream that does not exist yet is at version 0: any other expectation is refused."""
    with pytest.raises(ConcurrencyError) as info:
        store.append(A, [new(registered("a"))], 1)
    assert info.value.actual == 0
    assert count(engine) == 0


def test_batch_is_all_or_nothing(store: SQLEventStore, engine: Engine) -> None:
    """A claim conflict in the 3rd event of a batch leaves no event and no claim of the batch."""
    store.append(B, [new(registered("b")), new(added("b1"), claims=claims_of(added("b1")))], 0)
    store.append(A, [new(registered("a"))], 0)
    before = list(store.read())
    claims_before = count(engine, "event_claims")
    batch = [
        new(added("a1"), claims=claims_of(added("a1"))),
        activated("a1"),
        new(added("a2", fingerprint="sha256:b1"),
            claims=claims_of(added("a2", fingerprint="sha256:b1"))),
        activated("a2"),
    ]
    with pytest.raises(DuplicateClaimError):
        store.append(A, batch, 1)
    assert list(store.read()) == before
    assert count(engine, "event_claims") == claims_before
    # nothing of the refused batch was kept: a1's claims are still free, the version unchanged
    store.append(A, batch[:2], 1)
    assert [r.stream_version for r in store.read(ReadFilter(stream_id=A))] == [1, 2, 3]


# --- claims ------------------------------------------------------------------------------------


def test_claim_taken_by_another_stream_names_the_owner(
    store: SQLEventStore, engine: Engine
) -> None:
    """A (namespace, value) claimed by one stream is refused for another, naming the owner."""
    store.append(A, [new(added("a1", kid="k-1"), claims=claims_of(added("a1", kid="k-1")))], 0)
    with pytest.raises(DuplicateClaimError) as info:
        store.append(B, [new(added("b1", kid="k-1"), claims=(("kid", "k-1"),))], 0)
    assert (info.value.namespace, info.value.value, info.value.owner) == ("kid", "k-1", A)
    assert str(info.value) == "kid k-1 is already registered by app:a"
    assert count(engine) == 1 and count(engine, "event_claims") == 2


def test_claim_is_once_only_on_the_same_stream_too(store: SQLEventStore) -> None:
    """A value the stream itself already claimed cannot be claimed again by it."""
    store.append(A, [new(added("a1"), claims=(("fingerprint", "fp-1"),))], 0)
    with pytest.raises(DuplicateClaimError) as info:
        store.append(A, [new(added("a2"), claims=(("fingerprint", "fp-1"),))], 1)
    assert info.value.owner == A


def test_same_claim_twice_in_one_batch_is_refused(store: SQLEventStore, engine: Engine) -> None:
    """The same (namespace, value) twice inside one batch raises and writes nothing."""
    with pytest.raises(DuplicateClaimError) as info:
        store.append(A, [
            new(registered("a")),
            new(added("a1"), claims=(("fingerprint", "fp-x"),)),
            new(added("a2"), claims=(("fingerprint", "fp-x"),)),
        ], 0)
    assert (info.value.namespace, info.value.value, info.value.owner) == ("fingerprint", "fp-x", A)
    assert count(engine) == 0 and count(engine, "event_claims") == 0


def test_claims_are_scoped_by_namespace(store: SQLEventStore, engine: Engine) -> None:
    """The same value in two namespaces is two different claims."""
    store.append(A, [new(registered("a"), claims=(("kid", "v"), ("fingerprint", "v")))], 0)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT namespace, value, stream_id, position FROM event_claims ORDER BY namespace"
        )).all()
    assert [tuple(r) for r in rows] == [("fingerprint", "v", A, 1), ("kid", "v", A, 1)]


def test_stale_version_is_reported_before_a_taken_claim(store: SQLEventStore) -> None:
    """With both a stale version and a taken claim, the ConcurrencyError wins (retry re-reads)."""
    store.append(A, [new(registered("a"), claims=(("kid", "k"),))], 0)
    with pytest.raises(ConcurrencyError):
        store.append(A, [new(added("x"), claims=(("kid", "k"),))], 0)


# --- read filters and paging -------------------------------------------------------------------


@pytest.fixture
def mixed_log(store: SQLEventStore) -> list[Recorded]:
    """Twelve events over three streams, two actors, one minute apart."""
    at = [NOW + timedelta(minutes=i) for i in range(12)]
    store.append(A, [new(registered("a"), at=at[0]), new(added("a1"), at=at[1])], 0)
    store.append(B, [new(registered("b"), at=at[2], actor="scheduler")], 0)
    store.append(A, [activated("a1", at=at[3], actor="scheduler")], 2)
    store.append(C, [new(registered("c"), at=at[4]), new(added("c1"), at=at[5])], 0)
    store.append(B, [new(added("b1"), at=at[6]), activated("b1", at=at[7], actor="scheduler")], 1)
    store.append(A, [new(ev.CredentialDisabled(credential_id="a1"), at=at[8]),
                     new(ev.CredentialDeleted(credential_id="a1"), at=at[9], actor="scheduler")], 3)
    store.append(C, [activated("c1", at=at[10]), new(ev.SecretRotated(version=1, fingerprint="s"),
                                                       at=at[11], actor="scheduler")], 2)
    return list(store.read())


def test_read_by_stream(store: SQLEventStore, mixed_log: list[Recorded]) -> None:
    """ReadFilter(stream_id) returns exactly that stream's events in position order."""
    assert positions(store, ReadFilter(stream_id=A)) == [1, 2, 4, 9, 10]
    assert positions(store, ReadFilter(stream_id=B)) == [3, 7, 8]
    assert positions(store, ReadFilter(stream_id="app:nobody")) == []


def test_read_by_types(store: SQLEventStore, mixed_log: list[Recorded]) -> None:
    """ReadFilter(types) returns events of any of the types given."""
    assert positions(store, ReadFilter(types=("application.registered",))) == [1, 3, 5]
    assert positions(store, ReadFilter(types=("credential.activated", "secret.rotated"))) == [
        4, 8, 11, 12]


def test_read_by_actor(store: SQLEventStore, mixed_log: list[Recorded]) -> None:
    """ReadFilter(actor) returns events recorded for that actor only."""
    assert positions(store, ReadFilter(actor="scheduler")) == [3, 4, 8, 10, 12]


def test_read_by_time_range_is_half_open(store: SQLEventStore, mixed_log: list[Recorded]) -> None:
    """since is inclusive and until exclusive, both on occurred_at, whatever their offset."""
    since = NOW + timedelta(minutes=3)
    until = NOW + timedelta(minutes=6)
    assert positions(store, ReadFilter(since=since)) == list(range(4, 13))
    assert positions(store, ReadFilter(until=until)) == [1, 2, 3, 4, 5, 6]
    assert positions(store, ReadFilter(since=since, until=until)) == [4, 5, 6]
    tokyo = timezone(timedelta(hours=9))
    assert positions(store, ReadFilter(since=since.astimezone(tokyo),
                                       until=until.astimezone(tokyo))) == [4, 5, 6]


def test_read_after_and_limit(store: SQLEventStore, mixed_log: list[Recorded]) -> None:
    """after skips positions up to and including it; limit caps the number returned."""
    assert positions(store, ReadFilter(after=9)) == [10, 11, 12]
    assert positions(store, ReadFilter(after=12)) == []
    assert positions(store, ReadFilter(limit=3)) == [1, 2, 3]
    assert positions(store, ReadFilter(limit=0)) == []
    assert positions(store, ReadFilter(after=4, limit=2)) == [5, 6]


def test_read_last_is_the_newest_in_log_order(store: SQLEventStore,
                                               mixed_log: list[Recorded]) -> None:
    """ReadFilter(last=N): the newest N records the other fields match, oldest first."""
    assert positions(store, ReadFilter(last=3)) == [10, 11, 12]
    assert positions(store, ReadFilter(last=12)) == list(range(1, 13))
    assert positions(store, ReadFilter(last=50)) == list(range(1, 13))
    assert positions(store, ReadFilter(last=0)) == []
    assert positions(store, ReadFilter(stream_id=A, last=2)) == [9, 10]
    assert positions(store, ReadFilter(actor="scheduler", last=3)) == [8, 10, 12]
    assert positions(store, ReadFilter(types=("application.registered",), last=2)) == [3, 5]
    assert positions(store, ReadFilter(until=NOW + timedelta(minutes=6), last=2)) == [5, 6]
    assert positions(store, ReadFilter(after=10, last=5)) == [11, 12]
    assert positions(store, ReadFilter(last=5, limit=2)) == [8, 9]


def test_read_filters_combine(store: SQLEventStore, mixed_log: list[Recorded]) -> None:
    """Every filter narrows: together they are ANDed, the limit applying to what matches."""
    where = ReadFilter(after=2, stream_id=A, actor="scheduler",
                       types=("credential.activated", "credential.deleted"), limit=1)
    assert positions(store, where) == [4]
    assert positions(store, ReadFilter(stream_id=B, since=NOW + timedelta(minutes=5),
                                       limit=5)) == [7, 8]


def test_read_pages_through_more_than_a_page(store: SQLEventStore) -> None:
    """Reads crossing READ_PAGE boundaries return every matching event once, in order."""
    total = 2 * READ_PAGE + 500
    appended = 0
    streams = [A, B]
    versions = {A: 0, B: 0}
    while appended < total:
        s = streams[(appended // 250) % 2]
        batch = [new(ev.PolicyApplied(name=f"p{appended + i}", content_hash="h"),
                     actor="scheduler" if (appended + i) % 3 == 0 else "cli:bob")
                 for i in range(250)]
        store.append(s, batch, versions[s])
        versions[s] += 250
        appended += 250
    assert positions(store) == list(range(1, total + 1))
    assert positions(store, ReadFilter(limit=READ_PAGE + 1)) == list(range(1, READ_PAGE + 2))
    assert positions(store, ReadFilter(after=READ_PAGE - 10, limit=READ_PAGE)) == list(
        range(READ_PAGE - 9, 2 * READ_PAGE - 9))
    assert positions(store, ReadFilter(last=READ_PAGE + 3)) == list(
        range(total - READ_PAGE - 2, total + 1))  # backwards over a page boundary
    in_a = positions(store, ReadFilter(stream_id=A))
    assert len(in_a) == versions[A] and in_a == sorted(in_a)
    assert positions(store, ReadFilter(stream_id=A, last=READ_PAGE + 1)) == in_a[-READ_PAGE - 1:]
    assert [r.stream_version for r in store.read(ReadFilter(stream_id=A))] == list(
        range(1, versions[A] + 1))
    by_scheduler = positions(store, ReadFilter(actor="scheduler"))
    assert by_scheduler == [p for p in range(1, total + 1) if (p - 1) % 3 == 0]
    assert positions(store, ReadFilter(stream_id=B, limit=READ_PAGE + 7))[-1] > READ_PAGE


def test_large_batch_in_one_append(store: SQLEventStore, engine: Engine) -> None:
    """One append of 3,500 claiming events (> MAX_ROWS_PER_STATEMENT) is written whole."""
    n = 3 * MAX_ROWS_PER_STATEMENT + 500
    store.append(A, [new(registered("a"))], 0)
    batch = [new(ev.CredentialAdded(
        credential_id=f"c{i}", usage=ev.Usage.MTLS, kind=ev.CredentialKind.CERT_SUBJECT_DN,
        kid=f"k{i}", fingerprint=f"fp{i}", subject_dn=f"CN=c{i}"),
        claims=(("fingerprint", f"fp{i}"), ("kid", f"k{i}"))) for i in range(n)]
    records = store.append(A, batch, 1)
    assert [r.position for r in records] == list(range(2, n + 2))
    assert count(engine) == n + 1 and count(engine, "event_claims") == 2 * n
    stored = list(store.read())
    assert stored[1:] == records
    assert verify(stored) == Verified(n + 1, n + 1, records[-1].hash)
    late_conflict = [new(ev.PolicyApplied(name=f"p{i}", content_hash="h"),
                         claims=(("policy", f"p{i}"),)) for i in range(n)]
    late_conflict.append(new(registered("b"), claims=(("kid", f"k{n - 1}"),)))
    with pytest.raises(DuplicateClaimError) as info:
        store.append(B, late_conflict, 0)
    assert (info.value.value, info.value.owner) == (f"k{n - 1}", A)
    assert count(engine) == n + 1 and count(engine, "event_claims") == 2 * n


# --- the database's own guards -----------------------------------------------------------------


def _refused(engine: Engine, sql: str, message: str) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=message), engine.begin() as conn:
        conn.exec_driver_sql(sql)


def test_database_refuses_update_and_delete_on_events(store: SQLEventStore, engine: Engine) -> None:
    """Plain SQL UPDATE and DELETE on events fail in the database with the trigger's message."""
    store.append(A, [new(registered("a")), new(added("a1"))], 0)
    before = list(store.read())
    _refused(engine, "UPDATE events SET actor = 'mallory' WHERE position = 1",
             "events are append-only: UPDATE refused")
    _refused(engine, "UPDATE events SET payload = '{}'", "events are append-only: UPDATE refused")
    _refused(engine, "DELETE FROM events WHERE position = 2",
             "events are append-only: DELETE refused")
    _refused(engine, "DELETE FROM events", "events are append-only: DELETE refused")
    assert list(store.read()) == before


def test_database_refuses_update_and_delete_on_claims(store: SQLEventStore, engine: Engine) -> None:
    """Plain SQL UPDATE and DELETE on event_claims fail with the trigger's message."""
    store.append(A, [new(registered("a"), claims=(("kid", "k1"),))], 0)
    _refused(engine, "UPDATE event_claims SET stream_id = 'app:b'",
             "claims are append-only: UPDATE refused")
    _refused(engine, "DELETE FROM event_claims", "claims are append-only: DELETE refused")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT stream_id FROM event_claims")).scalar_one() == A
    with pytest.raises(DuplicateClaimError):
        store.append(B, [new(registered("b"), claims=(("kid", "k1"),))], 0)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.mark.postgres
def test_postgres_refuses_truncate(pg_engine: Engine) -> None:
    """On PostgreSQL, TRUNCATE of events and of event_claims is refused by a trigger too."""
    store = SQLEventStore(pg_engine)
    store.append(A, [new(registered("a"), claims=(("kid", "k1"),))], 0)
    _refused(pg_engine, "TRUNCATE events CASCADE", "events are append-only: TRUNCATE refused")
    _refused(pg_engine, "TRUNCATE event_claims", "event_claims are append-only: TRUNCATE refused")
    assert count(pg_engine) == 1 and count(pg_engine, "event_claims") == 1


@pytest.mark.postgres
def test_postgres_refusal_is_insufficient_privilege(pg_engine: Engine) -> None:
    """On PostgreSQL the refusal carries SQLSTATE 42501 (insufficient_privilege)."""
    SQLEventStore(pg_engine).append(A, [new(registered("a"))], 0)
    with pytest.raises(sa.exc.DBAPIError) as info, pg_engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM events")
    assert info.value.orig.sqlstate == "42501"  # type: ignore[union-attr]


# --- schema ------------------------------------------------------------------------------------


def test_upgrade_is_idempotent(db_url: str) -> None:
    """upgrade brings a blank database to revision 0007 (head) and running it again changes nothing."""
    engine = create_engine(db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == "0007"
        store = SQLEventStore(engine)
        store.append(A, [new(registered("a"), claims=(("kid", "k"),))], 0)
        before = list(store.read())
        upgrade(engine)
        upgrade(engine, "0007")
        assert current_revision(engine) == "0007"
        assert list(store.read()) == before
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        _refused(engine, "DELETE FROM events", "events are append-only: DELETE refused")
    finally:
        engine.dispose()


# --- the in-memory double ----------------------------------------------------------------------


def _script() -> list[tuple[str, list[NewEvent], int, type[Exception] | None]]:
    """A fixed sequence of appends (some refused), with fixed event ids."""

    def n(event: ev.Event, i: int, **kw: object) -> NewEvent:
        return new(event, at=NOW + timedelta(seconds=i),
                   event_id=f"00000000-0000-0000-0000-{i:012d}", **kw)  # type: ignore[arg-type]

    a1, b1 = added("a1"), added("b1")
    return [
        (A, [n(registered("a", env="prod"), 1)], 0, None),
        (B, [n(registered("b"), 2, actor="scheduler")], 0, None),
        (A, [n(a1, 3, claims=claims_of(a1), correlation_id="r1"),
             n(ev.CredentialActivated(credential_id="a1"), 4, causation_id="x")], 1, None),
        (A, [n(registered("a"), 5)], 1, ConcurrencyError),
        (A, [n(registered("a"), 6)], 9, ConcurrencyError),
        (B, [n(b1, 7, claims=claims_of(b1)),
             n(added("b2", kid="kid-a1"), 8, claims=(("kid", "kid-a1"),))],
         1, DuplicateClaimError),
        (B, [n(b1, 9, claims=(*claims_of(b1), ("kid", "kid-b1")))], 1, DuplicateClaimError),
        (B, [n(b1, 10, claims=claims_of(b1))], 1, None),
        (C, [n(ev.PolicyApplied(name="p", content_hash="h"), 11, actor="policy:p")], 0, None),
        (A, [n(ev.SecretRotated(version=1, fingerprint="s1"), 12)], 3, None),
    ]


def test_in_memory_store_matches_sql_store(engine: Engine) -> None:
    """The in-memory store gives the same records, hashes and errors as the SQL store."""
    clock = fixed_clock()
    sql_store, mem_store = SQLEventStore(engine, clock=clock), InMemoryEventStore(clock=clock)
    for stream, events, expected, error in _script():
        outcomes: list[object] = []
        for s in (sql_store, mem_store):
            if error is None:
                outcomes.append(s.append(stream, events, expected))
            else:
                with pytest.raises(error) as info:
                    s.append(stream, events, expected)
                outcomes.append(str(info.value))
        assert outcomes[0] == outcomes[1]
    sql_all, mem_all = list(sql_store.read()), list(mem_store.read())
    assert len(sql_all) == 7 and sql_all == mem_all
    for where in (ReadFilter(stream_id=A), ReadFilter(after=3, limit=2),
                  ReadFilter(actor="scheduler"),
                  ReadFilter(types=("credential.added", "secret.rotated")),
                  ReadFilter(since=NOW + timedelta(seconds=4), until=NOW + timedelta(seconds=11)),
                  ReadFilter(limit=0), ReadFilter(last=3), ReadFilter(last=0),
                  ReadFilter(last=100), ReadFilter(stream_id=A, last=2),
                  ReadFilter(actor="scheduler", last=2, limit=1),
                  ReadFilter(after=2, types=("credential.added",), last=1)):
        assert list(sql_store.read(where)) == list(mem_store.read(where)), where
    assert verify(sql_all) == verify(mem_all)


def test_appends_stay_exact_when_two_stores_alternate(db_url: str) -> None:
    """Each store guesses the head from its own last append (one statement on SQLite, one round
    trip on PostgreSQL); two stores alternating on one database keep invalidating each other's
    guess, and every append still lands gap-free, chained, at the right version, with precise
    errors."""
    engine = create_engine(db_url)
    try:
        upgrade(engine)
        first, second = SQLEventStore(engine), SQLEventStore(engine)
        for n in range(6):
            store = first if n % 2 == 0 else second
            # a larger append first: its guess (the other store's head) is wrong from n = 1 on
            store.append(f"app:batch{n}", [new(registered(f"b{i}")) for i in range(6)], 0)
            store.append(A, [new(registered("a"))], n)
            store.append(f"app:other{n}", [new(registered("o"), claims=(("kid", f"k{n}"),))], 0)
            store.append(f"app:plain{n}", [new(registered("p")), new(registered("q"))], 0)
            store.append(f"app:tail{n}", [new(registered(f"t{i}")) for i in range(6)], 0)
        with pytest.raises(ConcurrencyError):
            first.append(A, [new(registered("a"))], 3)  # stale: the stream is at 6
        with pytest.raises(DuplicateClaimError) as taken:
            second.append("app:late", [new(registered("l"), claims=(("kid", "k0"),))], 0)
        assert taken.value.owner == "app:other0"
        records = list(first.read())
        assert [r.position for r in records] == list(range(1, 97))
        assert [r.stream_version for r in records if r.stream_id == A] == list(range(1, 7))
        assert isinstance(verify(records), Verified)
    finally:
        engine.dispose()
