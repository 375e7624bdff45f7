"""Concurrent writers on one real database (a SQLite file, a PostgreSQL schema): four OS processes
append to the same few streams the way a service does (read the version, append, retry on
ConcurrencyError), racing for the same once-only claims, while a reader polls "after the last
position seen" and a projector catches up. Nothing is lost, nothing is claimed twice, positions
stay gap-free, the chain holds, and the polling reader never skips a late-committing event."""

from __future__ import annotations

import multiprocessing
import queue
import random
import threading
import time
import traceback
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from events import catalog as ev
from events.chain import Verified, verify
from events.projector import Projector
from events.sql import SQLEventStore, create_engine
from events.state import stream_id
from events.store import ConcurrencyError, DuplicateClaimError, NewEvent, ReadFilter

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)  # the fixed instant of tests/conftest.py
WORKERS = 4
APPENDS = 150
CONTEST_EVERY = 10  # every 10th append of every worker claims the same value as the others'
STREAMS = (stream_id("shared-0"), stream_id("shared-1"), stream_id("shared-2"))


# --- the writer process ------------------------------------------------------------------------


def _writer(url: str, worker: int, barrier: Any, results: Any) -> None:
    """One service instance: ``APPENDS`` appends with read-version-then-append and retries."""
    try:
        results.put(_write(url, worker, barrier))
    except BaseException:
        results.put({"worker": worker, "error": traceback.format_exc()})


def _write(url: str, worker: int, barrier: Any) -> dict[str, Any]:
    engine = create_engine(url)
    store = SQLEventStore(engine)
    rng = random.Random(worker)
    known: dict[str, tuple[int, int]] = {}  # stream -> (last position read, version)
    appended: list[tuple[str, str, int]] = []  # (correlation id, stream, events)
    won: dict[str, str] = {}  # contested value -> stream
    lost: dict[str, str | None] = {}  # contested value -> owner named by the error
    retries = 0
    barrier.wait(timeout=120)
    for i in range(APPENDS):
        stream = rng.choice(STREAMS)
        corr = f"w{worker}-{i}"
        claims: tuple[tuple[str, str], ...] = (("kid", corr),)  # uncontested
        contested = f"contested-{i // CONTEST_EVERY}" if i % CONTEST_EVERY == 0 else None
        if contested:
            claims = (*claims, ("fingerprint", contested))
        events = [
            NewEvent(ev.RotationStepRecorded(rotation_id=corr, step=f"step-{k}"),
                     NOW + timedelta(seconds=i), f"worker:{worker}", correlation_id=corr,
                     claims=claims if k == 0 else ())
            for k in range(1 + i % 3)
        ]
        for _attempt in range(10_000):
            last, version = known.get(stream, (0, 0))
            for rec in store.read(ReadFilter(after=last, stream_id=stream)):
                last, version = rec.position, rec.stream_version
            known[stream] = (last, version)
            try:
                store.append(stream, events, version)
            except ConcurrencyError:
                retries += 1
                continue
            except DuplicateClaimError as exc:
                assert contested is not None and (exc.namespace, exc.value) == (
                    "fingerprint", contested), exc
                lost[contested] = exc.owner
                break
            appended.append((corr, stream, len(events)))
            if contested:
                won[contested] = stream
            break
        else:
            raise AssertionError(f"worker {worker}: append {i} never got through")
    engine.dispose()
    return {"worker": worker, "appended": appended, "won": won, "lost": lost, "retries": retries}


# --- the concurrent readers (threads of the test process) --------------------------------------


class Poller(threading.Thread):
    """Reads ``ReadFilter(after=last_seen)`` in a loop, remembering every position seen."""

    def __init__(self, store: SQLEventStore, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.store, self.stop = store, stop
        self.seen: list[int] = []
        self.polls = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                finished = self.stop.is_set()  # read once more after the writers are done
                self.polls += 1
                got = 0
                for rec in self.store.read(ReadFilter(after=self.seen[-1] if self.seen else 0)):
                    self.seen.append(rec.position)
                    got += 1
                if finished:
                    return
                if not got:
                    time.sleep(0.002)
        except BaseException as exc:
            self.error = exc


class CatchingUp(threading.Thread):
    """A projector catching up in small batches over and over while the writers run."""

    def __init__(self, projector: Projector, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.projector, self.stop = projector, stop
        self.applied = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.applied += self.projector.catch_up(batch=50)
                time.sleep(0.005)
        except BaseException as exc:
            self.error = exc


# --- the test ----------------------------------------------------------------------------------


def _run_writers(url: str) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, w, barrier, results), daemon=True)
             for w in range(WORKERS)]
    for p in procs:
        p.start()
    out: list[dict[str, Any]] = []
    try:
        for _ in procs:
            out.append(results.get(timeout=180))
    except queue.Empty:
        pytest.fail("a writer process did not report within 180 s")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in out if "error" in r]
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p in procs] == [0] * WORKERS
    return sorted(out, key=lambda r: r["worker"])


@pytest.mark.slow
def test_concurrent_writers_lose_nothing_and_readers_skip_nothing(
    db_url: str, engine: Engine
) -> None:
    """Racing writers lose nothing, claim nothing twice, and a poller after last_seen sees 1..N."""
    store = SQLEventStore(engine)
    projector = Projector(engine, store)
    stop = threading.Event()
    poller = Poller(SQLEventStore(engine), stop)
    catching_up = CatchingUp(Projector(engine, SQLEventStore(engine)), stop)
    poller.start()
    catching_up.start()
    try:
        results = _run_writers(db_url)
    finally:
        stop.set()
        poller.join(timeout=60)
        catching_up.join(timeout=60)
    assert poller.error is None, repr(poller.error)
    assert catching_up.error is None, repr(catching_up.error)

    log = list(store.read())
    n = len(log)
    # positions gap-free, chain intact, and the concurrent poller saw every one exactly once
    assert [r.position for r in log] == list(range(1, n + 1))
    assert verify(log) == Verified(n, n, log[-1].hash)
    assert poller.seen == list(range(1, n + 1)), "the polling reader skipped or repeated"
    assert poller.polls > 10  # it really did read while the writers were writing

    # no lost update: every reported append is in the log once, and nothing else is
    in_log = Counter(r.correlation_id for r in log)
    for res in results:
        w = res["worker"]
        assert sum(k for _, _, k in res["appended"]) == sum(
            1 for r in log if r.actor == f"worker:{w}")
        for corr, stream, k in res["appended"]:
            assert in_log[corr] == k
            assert {r.stream_id for r in log if r.correlation_id == corr} == {stream}
    reported = {corr for res in results for corr, _, _ in res["appended"]}
    assert set(in_log) == reported
    assert sum(len(res["appended"]) for res in results) == WORKERS * APPENDS - sum(
        len(res["lost"]) for res in results)

    # every stream's versions are contiguous 1..n in position order
    versions: dict[str, list[int]] = defaultdict(list)
    for r in log:
        versions[r.stream_id].append(r.stream_version)
    assert set(versions) <= set(STREAMS)
    for stream, vs in versions.items():
        assert vs == list(range(1, len(vs) + 1)), stream

    # each contested claim was won exactly once; every loser was told who owns it
    contested = {f"contested-{k}" for k in range(APPENDS // CONTEST_EVERY)}
    with engine.connect() as conn:
        claims = {(ns, value): (owner, pos) for ns, value, owner, pos in conn.execute(sa.text(
            "SELECT namespace, value, stream_id, position FROM event_claims"))}
    by_position = {r.position: r for r in log}
    for value in contested:
        winners = [(res["worker"], res["won"][value]) for res in results if value in res["won"]]
        losers = [res["lost"][value] for res in results if value in res["lost"]]
        assert len(winners) == 1, (value, winners)
        [(worker, stream)] = winners
        assert losers == [stream] * (WORKERS - 1), (value, losers)
        owner, pos = claims[("fingerprint", value)]
        assert owner == stream
        assert by_position[pos].actor == f"worker:{worker}"
    assert sum(1 for ns, _ in claims if ns == "fingerprint") == len(contested)
    assert {value for ns, value in claims if ns == "kid"} == reported

    # the projector that ran alongside ends where a rebuild from scratch ends
    projector.catch_up()
    assert projector.status().lag == 0
    incremental = projector.snapshot()
    assert sum(len(rows) for rows in incremental.values()) == len(versions)
    projector.rebuild()
    assert projector.snapshot() == incremental
    retries = sum(res["retries"] for res in results)
    print(f"{n} events, {retries} retries on ConcurrencyError, {poller.polls} polls, "
          f"{catching_up.applied} applied by the concurrent projector")
