"""Tampering behind the store's back, on real SQLite and PostgreSQL: with the append-only triggers
removed, every kind of edit to the stored log is caught by ``verify``, which names exactly the
first position where the chain no longer holds; and ``orchestrator verify`` reports it."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from events import catalog as ev
from events.chain import Break, Verified, link, verify
from events.sql import SQLEventStore, create_engine, is_postgres, upgrade
from events.state import stream_id
from events.store import NewEvent, Recorded
from tests.helpers import ORCHESTRATOR

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)  # the fixed instant of tests/conftest.py
SIZE = 50
CONTENT = "record content does not match its hash"
PREV = "prev_hash does not match the hash of the previous record"


@dataclass
class Log:
    engine: Engine
    store: SQLEventStore
    records: list[Recorded]

    def verify(self) -> Break | Verified:
        return verify(self.store.read())

    def sql(self, statement: str, **params: Any) -> int:
        with self.engine.begin() as conn:
            return conn.execute(sa.text(statement), params).rowcount

    def row(self, position: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT * FROM events WHERE position = :p"),
                                     {"p": position}).mappings().one())


def _build(store: SQLEventStore) -> list[Recorded]:
    """~50 events over five applications, in batches of one to three."""
    versions: dict[str, int] = {}
    tick = iter(range(10_000))

    def append(app: str, *events: ev.Event, actor: str = "scheduler") -> None:
        stream = stream_id(app)
        batch = [NewEvent(e, NOW + timedelta(seconds=next(tick)), actor,
                          correlation_id=f"corr-{app}", causation_id=None) for e in events]
        store.append(stream, batch, versions.get(stream, 0))
        versions[stream] = versions.get(stream, 0) + len(batch)

    apps = ["billing", "payments", "search", "mail", "ledger"]
    for app in apps:
        append(app, ev.ApplicationRegistered(app=app, labels={"env": "prod"}), actor="cli:alice")
    for round_ in range(3):
        for app in apps:
            cid = f"{app}-{round_}"
            append(app, ev.CredentialAdded(
                credential_id=cid, usage=ev.Usage.PRIVATE_KEY_JWT,
                kind=ev.CredentialKind.PUBLIC_KEY, kid=f"kid-{cid}", alg="RS256", key_size=2048,
                fingerprint=f"sha256:{uuid.uuid4().hex}",
                expires_at=NOW + timedelta(days=90 + round_)),
                ev.CredentialActivated(credential_id=cid))
            if round_ == 0:
                append(app, ev.SecretRotated(version=1, fingerprint=f"s-{cid}"))
    for app in apps:
        append(app, ev.CredentialDisabled(credential_id=f"{app}-0"),
               ev.CredentialDeleted(credential_id=f"{app}-0"))
    records = list(store.read())
    assert len(records) == SIZE
    return records


@pytest.fixture
def log(db_url: str) -> Iterator[Log]:
    """A verified log of 50 events with the append-only triggers removed."""
    engine = create_engine(db_url)
    upgrade(engine)
    store = SQLEventStore(engine)
    records = _build(store)
    with engine.begin() as conn:
        if is_postgres(engine):
            conn.exec_driver_sql("ALTER TABLE events DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER events_no_update")
            conn.exec_driver_sql("DROP TRIGGER events_no_delete")
    yield Log(engine, store, records)
    engine.dispose()


def test_untouched_log_verifies(log: Log) -> None:
    """The log as written verifies: every event counted, head position and hash reported."""
    assert log.verify() == Verified(SIZE, SIZE, log.records[-1].hash)


def test_changed_payload_breaks_at_that_position(log: Log) -> None:
    """A payload edited in place breaks the chain at exactly that row."""
    payload = log.records[22].payload_json[:-1] + ',"extra":1}'
    assert log.sql("UPDATE events SET payload = :v WHERE position = 23", v=payload) == 1
    assert log.verify() == Break(23, CONTENT)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "cli:mallory"),
        ("occurred_at", "2026-11-22T12:00:17.000001Z"),  # one microsecond later
        ("recorded_at", "2020-01-01T00:00:00.000000Z"),
        ("stream_id", "app:forged"),
        ("stream_version", 99),
        ("event_id", "00000000-0000-0000-0000-000000000000"),
        ("type", "credential.deleted"),
        ("schema_version", 2),
        ("correlation_id", "corr-other"),
        ("causation_id", "cause"),
    ],
)
def test_changed_metadata_breaks_at_that_position(log: Log, column: str, value: object) -> None:
    """Any metadata column edited in place (actor, times, stream, ids, type) breaks at that row."""
    assert log.sql(f"UPDATE events SET {column} = :v WHERE position = 17", v=value) == 1
    assert log.verify() == Break(17, CONTENT)


def test_deleted_middle_row_is_named_missing(log: Log) -> None:
    """A row deleted from the middle is reported as the missing position."""
    assert log.sql("DELETE FROM events WHERE position = 30") == 1
    assert log.verify() == Break(30, "position 30 is missing (next stored position is 31)")


def test_deleted_first_row_is_named_missing(log: Log) -> None:
    """Deleting the first row breaks the chain at position 1."""
    assert log.sql("DELETE FROM events WHERE position = 1") == 1
    assert log.verify() == Break(1, "position 1 is missing (next stored position is 2)")


def test_deleted_run_of_rows_names_the_first(log: Log) -> None:
    """Several rows deleted together are reported at the first of them."""
    assert log.sql("DELETE FROM events WHERE position BETWEEN 12 AND 20") == 9
    assert log.verify() == Break(12, "position 12 is missing (next stored position is 21)")


def test_cut_tail_verifies_but_moves_the_head(log: Log) -> None:
    """A cut-off tail is no chain break (the documented limit) but verify reports an older head."""
    assert log.sql("DELETE FROM events WHERE position > 45") == 5
    result = log.verify()
    assert result == Verified(45, 45, log.records[44].hash)
    assert (result.head_position, result.head_hash) != (SIZE, log.records[-1].hash)


def _swap(log: Log, a: int, b: int) -> None:
    log.sql("UPDATE events SET position = -1 WHERE position = :a", a=a)
    log.sql("UPDATE events SET position = :a WHERE position = :b", a=a, b=b)
    log.sql("UPDATE events SET position = :b WHERE position = -1", b=b)


@pytest.mark.parametrize(("a", "b"), [(12, 13), (8, 40), (1, 2), (49, 50)])
def test_swapped_rows_break_at_the_first(log: Log, a: int, b: int) -> None:
    """Two rows swapped (reordered, each with its own hashes) break at the lower position."""
    _swap(log, a, b)
    assert [r.position for r in log.store.read()] == list(range(1, SIZE + 1))
    assert log.verify() == Break(a, PREV)


def test_reordered_row_with_rechained_prev_hash_still_breaks(log: Log) -> None:
    """Swapping two rows and fixing their prev_hash links still fails: the position is hashed."""
    _swap(log, 20, 21)
    log.sql("UPDATE events SET prev_hash = :h WHERE position = 20", h=log.records[18].hash)
    assert log.verify() == Break(20, CONTENT)


def _forge(log: Log, position: int, prev_hash: str, hash_: str, **changes: Any) -> None:
    row = {
        "position": position, "stream_id": "app:payments", "stream_version": 1000 + position,
        "event_id": str(uuid.uuid4()), "type": "credential.deleted", "schema_version": 1,
        "occurred_at": "2026-11-22T12:00:30.000000Z", "recorded_at": "2026-11-22T12:00:30.000000Z",
        "actor": "cli:mallory", "correlation_id": None, "causation_id": None,
        "payload": '{"credential_id":"payments-1"}', "prev_hash": prev_hash, "hash": hash_,
    } | changes
    cols = ", ".join(row)
    log.sql(f"INSERT INTO events ({cols}) VALUES ({', '.join(':' + c for c in row)})", **row)


def test_forged_row_in_a_gap_breaks_there(log: Log) -> None:
    """A row forged into a deleted row's place with a made-up hash breaks at that position."""
    log.sql("DELETE FROM events WHERE position = 25")
    _forge(log, 25, prev_hash=log.records[23].hash, hash_="f" * 64)
    assert log.verify() == Break(25, CONTENT)


def test_forged_row_with_wrong_prev_hash_breaks_there(log: Log) -> None:
    """A forged row whose prev_hash is not its predecessor's hash breaks at that position."""
    log.sql("DELETE FROM events WHERE position = 25")
    _forge(log, 25, prev_hash="0" * 64, hash_=log.records[24].hash)
    assert log.verify() == Break(25, PREV)


def test_forged_row_at_the_end_breaks_there(log: Log) -> None:
    """A row forged after the head with a wrong hash breaks at its position."""
    _forge(log, SIZE + 1, prev_hash=log.records[-1].hash, hash_="e" * 64)
    assert log.verify() == Break(SIZE + 1, CONTENT)


def test_forged_row_beyond_the_end_is_a_gap(log: Log) -> None:
    """A row forged past the head, leaving a hole, breaks at the hole."""
    _forge(log, SIZE + 3, prev_hash=log.records[-1].hash, hash_="e" * 64)
    assert log.verify() == Break(SIZE + 1, f"position {SIZE + 1} is missing "
                                            f"(next stored position is {SIZE + 3})")


def test_rehashed_row_breaks_at_the_next_one(log: Log) -> None:
    """A changed row given a correctly recomputed hash breaks the next row's prev_hash link."""
    old = log.records[19]
    new_hash = link(old.prev_hash, old.position, old._replace(actor="cli:mallory").record_bytes())
    log.sql("UPDATE events SET actor = 'cli:mallory', hash = :h WHERE position = 20", h=new_hash)
    assert log.verify() == Break(21, PREV)


def test_rehashed_row_and_relinked_next_breaks_at_the_next_hash(log: Log) -> None:
    """Re-linking the next row's prev_hash too moves the break to that row's own hash."""
    old = log.records[19]
    new_hash = link(old.prev_hash, old.position, old._replace(actor="cli:mallory").record_bytes())
    log.sql("UPDATE events SET actor = 'cli:mallory', hash = :h WHERE position = 20", h=new_hash)
    log.sql("UPDATE events SET prev_hash = :h WHERE position = 21", h=new_hash)
    assert log.verify() == Break(21, CONTENT)


def test_only_the_first_break_is_named(log: Log) -> None:
    """With several edits, verify names the lowest broken position."""
    log.sql("UPDATE events SET actor = 'x' WHERE position IN (9, 33, 48)")
    log.sql("DELETE FROM events WHERE position = 40")
    assert log.verify() == Break(9, CONTENT)


def test_cli_verify_reports_the_break(log: Log, db_url: str, tmp_path: Path) -> None:
    """``orchestrator verify`` on an edited log exits non-zero with one stderr line naming it."""
    cli = ORCHESTRATOR
    env = {**os.environ, "ORCHESTRATOR_KEYSTORE": str(tmp_path / "keystore")}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(cli), "--db", db_url, "verify"], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120)

    ok = run()
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"ok: {SIZE} events, chain intact, head position {SIZE} "
                                f"hash {log.records[-1].hash}")
    log.sql("UPDATE events SET payload = :v WHERE position = 37",
            v=log.records[36].payload_json[:-1] + ',"x":1}')
    broken = run()
    assert broken.returncode != 0
    assert broken.stdout == ""
    assert broken.stderr == f"error: chain broken at position 37: {CONTENT}\n"
