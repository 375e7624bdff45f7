"""Checkpoints of the log's head, as specifications: what a checkpoint line is, what a log
checked against checkpoints shows (``events.anchor.check``), and how checkpoints are written,
on demand and on the daemon's clock (``orchestrator.app.anchoring``). In memory, with a fixed
NOW and a stand-in signer; the real Ed25519 key and the installed command are the e2e tests'."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from structlog.testing import capture_logs

from events import catalog as ev
from events.anchor import (
    Checkpoint,
    CheckpointFormatError,
    Finding,
    Statement,
    check,
    parse_checkpoint,
)
from events.chain import Break, Verified
from events.store import InMemoryEventStore, NewEvent, ReadFilter, Recorded
from orchestrator.app.anchoring import Anchorer, AnchorWatch, check_log
from orchestrator.domain.errors import EvidenceError, RefusedError
from tests.conftest import NOW

KEY_ID = "sha256:" + "ab" * 32
OTHER_ID = "sha256:" + "cd" * 32


class StandInKey:
    """Signer and verifier in one: a keyed SHA-256, so signatures can be right or wrong."""

    def __init__(self, key_id: str = KEY_ID, secret: bytes = b"k") -> None:
        self.key_id, self._secret = key_id, secret

    def sign(self, data: bytes) -> bytes:
        return hashlib.sha256(self._secret + data).digest()

    def verifies(self, data: bytes, signature: bytes) -> bool:
        return signature == self.sign(data)


class ListSink:
    def __init__(self) -> None:
        self.written: list[Checkpoint] = []
        self.failing = False

    def write(self, checkpoint: Checkpoint) -> str:
        if self.failing:
            raise OSError(28, "No space left on device")
        self.written.append(checkpoint)
        return f"cp-{len(self.written)}"


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def log_of(*apps: str) -> InMemoryEventStore:
    store = InMemoryEventStore(clock=lambda: NOW)
    for app in apps:
        store.append(f"app:{app}", [NewEvent(ev.ApplicationRegistered(app=app), NOW,
                                             "cli:alice")], 0)
    return store


def statement(rec: Recorded, key_id: str = KEY_ID) -> Statement:
    return Statement(rec.position, rec.hash, "2026-11-22T12:00:00.000000Z", "sqlite:///o.db",
                     key_id)


# --- the checkpoint line -----------------------------------------------------------------------


def test_a_checkpoint_line_is_sorted_json_that_parses_back() -> None:
    cp = Checkpoint(Statement(7, "a" * 64, "2026-11-22T12:00:00.000000Z", "sqlite:///o.db",
                              KEY_ID), "c2ln")
    line = cp.line()
    assert line.endswith("\n") and line.count("\n") == 1
    assert list(json.loads(line)) == ["at", "database", "format", "hash", "key_id", "position",
                                      "signature"]
    assert parse_checkpoint(line) == cp


def test_the_signed_bytes_are_every_field_but_the_signature_canonically() -> None:
    s = Statement(7, "a" * 64, "2026-11-22T12:00:00.000000Z", "postgresql://u@h/db", KEY_ID)
    assert s.signed_bytes() == (
        '{"at":"2026-11-22T12:00:00.000000Z","database":"postgresql://u@h/db",'
        '"format":"orchestrator-checkpoint/1","hash":"' + "a" * 64 + '","key_id":"'
        + KEY_ID + '","position":7}').encode()


GOOD = json.loads(Checkpoint(Statement(7, "a" * 64, "t", "d", KEY_ID), "c2ln").line())


@pytest.mark.parametrize(("text", "why"), [
    (json.dumps(GOOD)[:60], "not JSON, or cut short (Unterminated string starting at, column"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({**GOOD, "format": "orchestrator-checkpoint/2"}), "format 'orchestrator-"
                                                                  "checkpoint/2' is not"),
    (json.dumps({k: v for k, v in GOOD.items() if k not in ("hash", "signature")}),
     "missing hash, signature"),
    (json.dumps({**GOOD, "note": "x"}), "unknown field note"),
    (json.dumps({**GOOD, "position": 0}), "position is not a whole number of at least 1"),
    (json.dumps({**GOOD, "position": "7"}), "position is not a whole number"),
    (json.dumps({**GOOD, "position": True}), "position is not a whole number"),
    (json.dumps({**GOOD, "hash": "A" * 64}), "hash is not in its form"),
    (json.dumps({**GOOD, "key_id": "ab" * 32}), "key_id is not in its form"),
    (json.dumps({**GOOD, "signature": "a+b/"}), "signature is not in its form"),
    (json.dumps({**GOOD, "at": 5}), "at and database must be text"),
])
def test_text_that_is_not_a_checkpoint_is_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(CheckpointFormatError) as caught:
        parse_checkpoint(text)
    assert str(caught.value).startswith(why)


# --- a log checked against checkpoints ---------------------------------------------------------


def test_a_log_that_grew_after_its_checkpoints_agrees_and_names_what_is_unanchored() -> None:
    records = list(log_of("a", "b", "c", "d", "e").read())
    report = check([("one", statement(records[1])), ("two", statement(records[2]))], records)
    assert report.ok and report.chain == Verified(5, 5, records[4].hash)
    assert report.newest == ("two", statement(records[2]))
    assert report.unanchored == (4, 5)


def test_a_checkpoint_of_the_head_leaves_nothing_unanchored() -> None:
    records = list(log_of("a", "b").read())
    report = check([("cp", statement(records[1]))], records)
    assert report.ok and report.unanchored is None


def test_a_log_rewritten_with_its_chain_recomputed_disagrees_at_the_checkpoint() -> None:
    """Another history, chained correctly from genesis: the chain holds, the hash differs."""
    honest = list(log_of("a", "b", "c").read())
    rewritten = list(log_of("a", "mallory", "c").read())
    report = check([("cp", statement(honest[2]))], rewritten)
    assert isinstance(report.chain, Verified) and not report.ok
    (d,) = report.disagreements
    assert (d.finding, d.found) == (Finding.REWRITTEN, rewritten[2].hash)
    assert d.message() == (
        f"checkpoint cp disagrees at position 3: it signed hash {honest[2].hash}, the log has "
        f"{rewritten[2].hash} (the log up to position 3 changed after it was signed at "
        "2026-11-22T12:00:00.000000Z)")


def test_a_log_cut_short_of_a_checkpoint_names_the_missing_positions() -> None:
    records = list(log_of("a", "b", "c", "d").read())
    report = check([("cp", statement(records[3]))], records[:2])
    (d,) = report.disagreements
    assert (d.finding, d.head_position, d.found) == (Finding.CUT, 2, records[1].hash)
    assert d.message().endswith("but the log ends at position 2: events 3 to 4 were removed")


def test_checkpoints_past_a_chain_break_cannot_be_checked_and_those_before_still_are() -> None:
    records = list(log_of("a", "b", "c", "d").read())
    tampered = [*records[:2], records[2]._replace(actor="cli:mallory"), records[3]]
    report = check([("early", statement(records[1])), ("late", statement(records[3]))],
                   tampered)
    assert report.chain == Break(3, "record content does not match its hash")
    assert [(d.source, d.finding) for d in report.disagreements] == [("late", Finding.UNREACHED)]
    assert report.unanchored is None


# --- writing checkpoints -----------------------------------------------------------------------


def anchorer(store: InMemoryEventStore, sink: ListSink, clock: Clock) -> Anchorer:
    return Anchorer(store, StandInKey(), sink, clock, "sqlite:///o.db")


def test_a_checkpoint_signs_the_verified_head_at_the_clock_s_instant() -> None:
    store, sink = log_of("a", "b"), ListSink()
    written = anchorer(store, sink, Clock(NOW + timedelta(seconds=5))).write()
    head = list(store.read())[-1]
    assert sink.written == [written.checkpoint]
    assert written.checkpoint.statement == Statement(
        2, head.hash, "2026-11-22T12:00:05.000000Z", "sqlite:///o.db", KEY_ID)
    assert written.head == Verified(2, 2, head.hash) and written.where == "cp-1"
    report = check_log(store, [("cp-1", written.checkpoint)], StandInKey())
    assert report.ok


def test_an_empty_log_or_a_broken_chain_is_never_signed() -> None:
    sink = ListSink()
    with pytest.raises(RefusedError, match="the log is empty"):
        anchorer(log_of(), sink, Clock()).write()
    store = log_of("a", "b", "c")
    records = list(store.read())
    store._records[1] = records[1]._replace(payload_json='{"app":"mallory"}')
    with pytest.raises(EvidenceError, match=r"^chain broken at position 2: record content does "
                                            r"not match its hash; no checkpoint written"):
        anchorer(store, sink, Clock()).write()
    assert sink.written == []


class CountingStore:
    def __init__(self, inner: InMemoryEventStore) -> None:
        self.inner, self.read_records = inner, 0

    def read(self, where: ReadFilter = ReadFilter()) -> Iterator[Recorded]:
        for rec in self.inner.read(where):
            self.read_records += 1
            yield rec

    def append(self, *args: object) -> list[Recorded]:
        raise AssertionError("anchoring never appends")


def test_after_a_trusted_head_only_the_newer_records_are_walked() -> None:
    store = log_of("a", "b", "c")
    counting, sink = CountingStore(store), ListSink()
    anchor = Anchorer(counting, StandInKey(), sink, Clock(), "db")
    first = anchor.write()
    assert counting.read_records == 3
    store.append("app:d", [NewEvent(ev.ApplicationRegistered(app="d"), NOW, "cli:alice")], 0)
    second = anchor.write(first.head)
    assert counting.read_records == 4  # position 4 only
    assert second.head == Verified(4, 4, list(store.read())[-1].hash)


def test_a_head_that_no_longer_follows_the_trusted_one_is_refused() -> None:
    """Rows rewritten below the head the daemon signed: the next record does not link to it."""
    honest, sink = log_of("a", "b"), ListSink()
    first = anchorer(honest, sink, Clock()).write()
    rewritten = log_of("mallory", "b", "c")
    with pytest.raises(EvidenceError, match=r"^chain broken at position 3: prev_hash"):
        anchorer(rewritten, sink, Clock()).write(first.head)
    assert len(sink.written) == 1


def test_the_daemon_checkpoints_at_its_first_tick_then_once_every_period() -> None:
    store, sink, clock = log_of("a"), ListSink(), Clock()
    watch = AnchorWatch(anchorer(store, sink, clock), timedelta(hours=1), clock)
    with capture_logs() as logs:
        assert watch.run() is not None
        clock.at = NOW + timedelta(minutes=59)
        assert watch.run() is None
        clock.at = NOW + timedelta(hours=1)
        assert watch.run() is not None
    assert [c.statement.at for c in sink.written] == ["2026-11-22T12:00:00.000000Z",
                                                      "2026-11-22T13:00:00.000000Z"]
    assert [e["event"] for e in logs] == ["checkpoint_written", "checkpoint_written"]
    assert logs[0]["position"] == 1 and logs[0]["file"] == "cp-1"


def test_a_failing_sink_is_tried_again_at_the_next_tick() -> None:
    store, sink, clock = log_of("a"), ListSink(), Clock()
    watch = AnchorWatch(anchorer(store, sink, clock), timedelta(hours=1), clock)
    sink.failing = True
    with capture_logs() as logs:
        assert watch.run() is None
        sink.failing = False
        assert watch.run() is not None
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("checkpoint_failed", "error"), ("checkpoint_written", "info")]


def test_a_broken_chain_is_reported_and_tried_again_only_after_the_period() -> None:
    store, sink, clock = log_of("a", "b"), ListSink(), Clock()
    store._records[0] = next(iter(store.read()))._replace(actor="cli:mallory")
    watch = AnchorWatch(anchorer(store, sink, clock), timedelta(hours=1), clock)
    with capture_logs() as logs:
        assert watch.run() is None
        assert watch.run() is None  # the same instant: not walked again
        clock.at = NOW + timedelta(hours=1)
        assert watch.run() is None
    assert [(e["event"], e["log_level"]) for e in logs] == [("chain_broken", "error")] * 2
    assert sink.written == []


def test_an_empty_log_waits_for_its_first_event_without_a_word() -> None:
    store, sink, clock = log_of(), ListSink(), Clock()
    watch = AnchorWatch(anchorer(store, sink, clock), timedelta(hours=1), clock)
    with capture_logs() as logs:
        assert watch.run() is None
        store.append("app:a", [NewEvent(ev.ApplicationRegistered(app="a"), NOW, "x")], 0)
        assert watch.run() is not None
    assert [e["event"] for e in logs] == ["checkpoint_written"]


# --- signatures ---------------------------------------------------------------------------------


def test_a_checkpoint_signed_by_another_key_or_altered_is_refused_before_any_check() -> None:
    store = log_of("a", "b")
    written = anchorer(store, ListSink(), Clock()).write().checkpoint
    theirs = Anchorer(store, StandInKey(OTHER_ID, b"x"), ListSink(), Clock(), "db").write()
    with pytest.raises(EvidenceError, match=f"^checkpoint f: signed by key {OTHER_ID}, not by "
                                            f"the trusted key {KEY_ID}"):
        check_log(store, [("ok", written), ("f", theirs.checkpoint)], StandInKey())
    forged = Anchorer(store, StandInKey(KEY_ID, b"x"), ListSink(), Clock(), "db").write()
    altered = Checkpoint(Statement(1, next(iter(store.read())).hash, written.statement.at,
                                   written.statement.database, KEY_ID), written.signature)
    for source, bad in (("forged", forged.checkpoint), ("altered", altered)):
        with pytest.raises(EvidenceError, match=f"^checkpoint {source}: its signature does not "
                                                f"verify with key {KEY_ID}"):
            check_log(store, [(source, bad)], StandInKey())
