"""Fencing in the database: a deposed leader's append fails there, whatever it believes.

Two leases on one database (a real SQLite file, a real PostgreSQL schema). The first leader
loses its lease (PostgreSQL: its lock session is terminated with ``pg_terminate_backend``, as a
DBA or a network partition would; SQLite: it lets go), the second takes it at the next epoch;
a store still fenced with the first leader's epoch (a process paused across the takeover that
resumes believing it leads) is refused with ``LeaseLost`` and writes nothing; the new leader
and the command line (unfenced) write as before.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from events import catalog as ev
from events.sql import SQLEventStore, create_engine, upgrade
from events.state import stream_id
from events.store import LeaseLost, NewEvent, ReadFilter
from orchestrator.adapters.lease import DatabaseLease

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def registered(app: str) -> list[NewEvent]:
    return [NewEvent(ev.ApplicationRegistered(app=app, labels={}), NOW, "scheduler")]


def lose(engine: Engine, lease: DatabaseLease) -> None:
    """The lease is lost the way it is lost in production: its session ends under it."""
    if engine.dialect.name != "postgresql":
        lease.release()  # an flock ends only with its process (or a release)
        return
    with engine.connect() as conn:
        pids = conn.exec_driver_sql(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid <> pg_backend_pid() AND objid = (hashtextextended(current_schema(), "
            "%(key)s) & 4294967295)::oid", {"key": 0x6F72636C65616465}).scalars().all()
        assert len(pids) == 1, pids
        # with a timeout it waits until the backend has exited, and so let go of the lock;
        # without, the next statement could still find the lock held (on a loaded machine)
        assert conn.exec_driver_sql("SELECT pg_terminate_backend(%(pid)s, 30000)",
                                    {"pid": pids[0]}).scalar(), f"backend {pids[0]} lives on"
        conn.commit()


def count(engine: Engine) -> int:
    return sum(1 for _ in SQLEventStore(engine).read(ReadFilter()))


@pytest.mark.parametrize("appended_before", [True, False], ids=["fast-path", "first-append"])
def test_a_deposed_leaders_append_fails_in_the_database(engine: Engine,
                                                        appended_before: bool) -> None:
    """Once another leader took the lease, the old leader's appends raise LeaseLost and write
    nothing (on PostgreSQL both the one-round-trip path, taken after an append of its own, and
    the exact path); the new leader's and the command line's appends go through."""
    old, new = DatabaseLease(engine), DatabaseLease(engine)
    try:
        assert old.acquire()
        mine, fence = old.epoch, old.fence
        paused = SQLEventStore(engine, fence=lambda: fence)  # it goes on believing it leads
        if appended_before:
            paused.append(stream_id("a"), registered("a"), 0)
        lose(engine, old)
        assert new.acquire() and new.epoch == (mine or 0) + 1
        before = count(engine)
        with pytest.raises(LeaseLost, match=f"leader epoch {mine}"):
            paused.append(stream_id("b"), registered("b"), 0)
        assert count(engine) == before
        SQLEventStore(engine, fence=lambda: new.fence).append(stream_id("c"), registered("c"), 0)
        SQLEventStore(engine).append(stream_id("d"), registered("d"), 0)  # the CLI: unfenced
        assert count(engine) == before + 2
    finally:
        old.release()
        new.release()


def test_a_lease_not_held_writes_nothing(engine: Engine) -> None:
    """The daemon's store refuses before the database when its lease is not held at all."""
    lease = DatabaseLease(engine)
    with pytest.raises(LeaseLost, match="does not hold"):
        SQLEventStore(engine, fence=lambda: lease.fence).append(stream_id("a"),
                                                                registered("a"), 0)
    assert count(engine) == 0


@pytest.mark.postgres
def test_confirm_notices_a_terminated_lock_session(pg_url: str) -> None:
    """confirm (the check before each side effect) raises LeaseLost once the lock's session
    is gone, and the lease is let go; taking it again gives the next epoch."""
    engine = create_engine(pg_url)
    upgrade(engine)
    lease = DatabaseLease(engine)
    try:
        assert lease.acquire()
        lease.confirm()
        lose(engine, lease)
        with pytest.raises(LeaseLost, match="session is lost"):
            lease.confirm()
        assert not lease.held and lease.epoch is None
        assert lease.acquire() and lease.epoch == 2
    finally:
        lease.release()
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("appended_before", [True, False], ids=["fast-path", "first-append"])
def test_an_append_after_the_lock_session_ended_is_refused_before_any_takeover(
        pg_url: str, appended_before: bool) -> None:
    """Between the end of the leader's lock session and the next leader's epoch, the epoch
    alone would still match: the append also checks that the leader's lock session still holds
    its lock, and is refused."""
    engine = create_engine(pg_url)
    upgrade(engine)
    lease = DatabaseLease(engine)
    try:
        assert lease.acquire()
        fence = lease.fence
        store = SQLEventStore(engine, fence=lambda: fence)
        if appended_before:
            store.append(stream_id("a"), registered("a"), 0)
        before = count(engine)
        lose(engine, lease)
        with pytest.raises(LeaseLost, match="holds the lease no more"):
            store.append(stream_id("b"), registered("b"), 0)
        assert count(engine) == before
    finally:
        lease.release()
        engine.dispose()
