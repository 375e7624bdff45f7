"""The event store port: ``append`` and ``read``, nothing else; and its in-memory double.

``append(stream_id, events, expected_version)`` is atomic: every event is written or none is.
``expected_version`` is the stream's version the caller decided on (0 for a new stream); a
different current version raises ``ConcurrencyError`` and the caller retries from a fresh read.
An event may carry *claims* (namespace, value): values that may be used once in the whole log
(a key fingerprint, a key id). A claim already taken raises ``DuplicateClaimError`` and nothing
is written; the SQL store checks claims with a unique index in the same transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from events import codec
from events.chain import GENESIS, link

if TYPE_CHECKING:  # the catalog (pydantic) loads when an event is first decoded
    from events import catalog

__all__ = [
    "ConcurrencyError",
    "DuplicateClaimError",
    "EventStore",
    "InMemoryEventStore",
    "LeaseLost",
    "NewEvent",
    "ReadFilter",
    "Recorded",
    "build_records",
]


class ConcurrencyError(Exception):
    """The stream moved on since the caller read it."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r} is at version {actual}, not {expected}")
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class DuplicateClaimError(Exception):
    """A once-only value (fingerprint, key id) is already claimed in the log."""

    def __init__(self, namespace: str, value: str, owner: str | None) -> None:
        where = f" by {owner}" if owner else ""
        super().__init__(f"{namespace} {value} is already registered{where}")
        self.namespace, self.value, self.owner = namespace, value, owner


class LeaseLost(Exception):
    """The writer is a leader no more: another daemon took the lease (a newer leader epoch),
    or this one never held it. Nothing was written. Not an OrchestratorError on purpose: no
    step catches it as a failure to record; it ends the tick."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended, with its metadata."""

    event: catalog.Event
    occurred_at: datetime
    actor: str
    correlation_id: str | None = None
    causation_id: str | None = None
    claims: tuple[tuple[str, str], ...] = ()
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class Recorded(NamedTuple):
    """One stored record. ``payload_json`` is the canonical text; ``payload`` and ``event``
    decode it on demand. A named tuple: reading the log builds one per event, and a tuple is
    built several times faster than a frozen dataclass."""

    position: int
    stream_id: str
    stream_version: int
    event_id: str
    type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    correlation_id: str | None
    causation_id: str | None
    payload_json: str
    prev_hash: str
    hash: str

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.payload_json)
        return data

    @property
    def event(self) -> catalog.Event:
        from events import catalog

        # straight from the text through pydantic's JSON parser: the same event as ``decode``
        # of ``payload``, at about half its cost (``catalog.decode_json``)
        return catalog.decode_json(self.type, self.schema_version, self.payload_json)

    def record_bytes(self) -> bytes:
        return codec.record_bytes(
            stream_id=self.stream_id,
            stream_version=self.stream_version,
            event_id=self.event_id,
            type=self.type,
            schema_version=self.schema_version,
            occurred_at=codec.format_time(self.occurred_at),
            recorded_at=codec.format_time(self.recorded_at),
            actor=self.actor,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            payload=self.payload_json,
        )


@dataclass(frozen=True, slots=True)
class ReadFilter:
    """What ``read`` returns: all of it by default; every field narrows."""

    after: int = 0
    stream_id: str | None = None
    types: tuple[str, ...] = ()
    actor: str | None = None
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until
    limit: int | None = None
    # only the newest ``last`` matching records (read from the end of the log by position),
    # still returned in position order; with ``limit`` too, the first ``limit`` of those
    last: int | None = None

    def matches(self, rec: Recorded) -> bool:
        return (
            rec.position > self.after
            and (self.stream_id is None or rec.stream_id == self.stream_id)
            and (not self.types or rec.type in self.types)
            and (self.actor is None or rec.actor == self.actor)
            and (self.since is None or rec.occurred_at >= self.since)
            and (self.until is None or rec.occurred_at < self.until)
        )


class EventStore(Protocol):
    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: int
    ) -> list[Recorded]: ...

    def read(self, where: ReadFilter = ReadFilter()) -> Iterator[Recorded]: ...


def build_records(
    stream_id: str,
    events: Sequence[NewEvent],
    first_version: int,
    head_position: int,
    head_hash: str,
    recorded_at: datetime,
    rows: list[tuple[Any, ...]] | None = None,
) -> list[Recorded]:
    """Number, encode and chain ``events`` after the current head: shared by every store.

    With ``rows``, each record's storage row (its columns in the ``events`` table's order, times
    as the log's text) is appended to it as well, so that a SQL store formats nothing twice."""
    out: list[Recorded] = []
    prev = head_hash
    recorded_text = codec.format_time(recorded_at)
    recorded_at = codec.parse_time(recorded_text)
    for offset, new in enumerate(events):
        position = head_position + 1 + offset
        version = first_version + offset
        event = new.event
        type_name, schema_version = event.type_name, event.schema_version
        payload = codec.encode_payload(event)
        occurred = new.occurred_at  # a UTC time is its own text's value: no parse back needed
        occurred_text = codec.format_time(occurred)
        rec_bytes = codec.record_bytes(
            stream_id=stream_id,
            stream_version=version,
            event_id=new.event_id,
            type=type_name,
            schema_version=schema_version,
            occurred_at=occurred_text,
            recorded_at=recorded_text,
            actor=new.actor,
            correlation_id=new.correlation_id,
            causation_id=new.causation_id,
            payload=payload,
        )
        digest = link(prev, position, rec_bytes)
        out.append(
            Recorded(
                position,
                stream_id,
                version,
                new.event_id,
                type_name,
                schema_version,
                occurred if occurred.tzinfo is UTC else codec.parse_time(occurred_text),
                recorded_at,
                new.actor,
                new.correlation_id,
                new.causation_id,
                payload,
                prev,
                digest,
            )
        )
        if rows is not None:
            rows.append((position, stream_id, version, new.event_id, type_name, schema_version,
                         occurred_text, recorded_text, new.actor, new.correlation_id,
                         new.causation_id, payload, prev, digest))
        prev = digest
    return out


class InMemoryEventStore:
    """The store in a list: the same contract, for unit tests and the simulator."""

    def __init__(self, clock: Any = None) -> None:
        self._records: list[Recorded] = []
        self._streams: dict[str, list[Recorded]] = {}
        self._versions: dict[str, int] = {}
        self._claims: dict[tuple[str, str], str] = {}
        self._clock = clock or (lambda: datetime.now(UTC))

    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: int
    ) -> list[Recorded]:
        actual = self._versions.get(stream_id, 0)
        if actual != expected_version:
            raise ConcurrencyError(stream_id, expected_version, actual)
        claims = [c for new in events for c in new.claims]
        seen: set[tuple[str, str]] = set()
        for claim in claims:
            if claim in self._claims or claim in seen:
                raise DuplicateClaimError(claim[0], claim[1], self._claims.get(claim, stream_id))
            seen.add(claim)
        head = self._records[-1] if self._records else None
        records = build_records(
            stream_id,
            events,
            expected_version + 1,
            head.position if head else 0,
            head.hash if head else GENESIS,
            self._clock(),
        )
        self._records.extend(records)
        self._streams.setdefault(stream_id, []).extend(records)
        self._versions[stream_id] = expected_version + len(records)
        for claim in claims:
            self._claims[claim] = stream_id
        return records

    def read(self, where: ReadFilter = ReadFilter()) -> Iterator[Recorded]:
        count = 0
        if where.stream_id is not None:
            candidates = self._streams.get(where.stream_id, [])
        else:
            candidates = self._records[where.after :]
        if where.last is not None:
            newest: list[Recorded] = []
            for rec in reversed(candidates):
                if len(newest) >= where.last:
                    break
                if where.matches(rec):
                    newest.append(rec)
            candidates = newest[::-1]
        for rec in candidates:
            if where.limit is not None and count >= where.limit:
                return
            if where.matches(rec):
                count += 1
                yield rec
