"""The payload encoder against its definition: canonical JSON (``codec.dumps``) of the event's
JSON-mode dump, for every event type in the catalog and any field values, including times in
any UTC offset, enums, unicode, empty and missing optionals."""

from __future__ import annotations

import json
import types
import typing
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime

from events import catalog, codec
from events.store import NewEvent, build_records

_TEXT = st.text(max_size=12)
# a day away from datetime's ends: year 1 at a positive offset is before 0001-01-01 in UTC
_TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                      timezones=st.timezones()).filter(lambda t: t.utcoffset() is not None)


def _strategy(annotation: Any) -> st.SearchStrategy[Any]:
    """Values for one field of an event, from its annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # catalog.Time
        return _strategy(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_strategy(arg) for arg in typing.get_args(annotation)))
    if origin is dict:
        return st.dictionaries(_TEXT, _TEXT, max_size=3)
    if annotation is type(None):
        return st.none()
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return st.sampled_from(list(annotation))
    if annotation is AwareDatetime:
        return _TIMES
    known: dict[Any, st.SearchStrategy[Any]] = {
        str: _TEXT, bool: st.booleans(), int: st.integers(-(2**40), 2**40)}
    return known[annotation]


def _events() -> st.SearchStrategy[catalog.Event]:
    def of(cls: type[catalog.Event]) -> st.SearchStrategy[catalog.Event]:
        fields = {name: _strategy(info.annotation) for name, info in cls.model_fields.items()}
        return st.fixed_dictionaries(fields).map(lambda values: cls(**values))
    return st.one_of(*(of(cls) for cls in catalog.event_types().values()))


@settings(max_examples=200, deadline=None)
@given(_events())
def test_encode_payload_is_the_canonical_json_of_the_json_dump(event: catalog.Event) -> None:
    text = codec.encode_payload(event)
    assert text == codec.dumps(event.model_dump(mode="json"))
    decoded = catalog.decode(event.type_name, event.schema_version, json.loads(text))
    assert codec.encode_payload(decoded) == text
    # what the log's readers use (``Recorded.event``, the rebuild's fold): the same event
    assert catalog.decode_json(event.type_name, event.schema_version, text) == decoded


def test_every_event_type_is_covered() -> None:
    """Each field type the catalog uses has a strategy above (a new one fails here first)."""
    for cls in catalog.event_types().values():
        for info in cls.model_fields.values():
            _strategy(info.annotation)


@settings(max_examples=50, deadline=None)
@given(st.lists(_events(), min_size=1, max_size=4), _TIMES, _TIMES)
def test_storage_rows_carry_the_records_own_texts(
        events: list[catalog.Event], occurred: datetime, recorded: datetime) -> None:
    """The rows ``build_records`` gives a SQL store hold exactly the record's values, with its
    times in the log's text form."""
    rows: list[tuple[Any, ...]] = []
    news = [NewEvent(event=e, occurred_at=occurred, actor="ops") for e in events]
    records = build_records("app:x", news, 3, 10, "ab" * 32, recorded, rows)
    assert len(rows) == len(records)
    for rec, row in zip(records, rows, strict=True):
        assert row == (rec.position, rec.stream_id, rec.stream_version, rec.event_id, rec.type,
                       rec.schema_version, codec.format_time(rec.occurred_at),
                       codec.format_time(rec.recorded_at), rec.actor, rec.correlation_id,
                       rec.causation_id, rec.payload_json, rec.prev_hash, rec.hash)


@given(_TIMES)
def test_time_text_is_fixed_width_utc_and_reads_back(value: datetime) -> None:
    text = codec.format_time(value)
    assert text == value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").rjust(27, "0")
    assert codec.parse_time(text) == value.astimezone(UTC)
    assert codec.parse_time(text).tzinfo is UTC


_ANY_TEXT = st.text()  # every code point but lone surrogates (not UTF-8), control characters too
_VERSION = st.integers(0, 2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(_ANY_TEXT, _VERSION, _ANY_TEXT, _ANY_TEXT, _VERSION, _ANY_TEXT, _ANY_TEXT, _ANY_TEXT,
       st.none() | _ANY_TEXT, st.none() | _ANY_TEXT, _ANY_TEXT)
def test_record_bytes_are_the_utf8_of_the_canonical_json_list(
        stream_id: str, version: int, event_id: str, type_: str, schema: int, occurred: str,
        recorded: str, actor: str, correlation: str | None, causation: str | None,
        payload: str) -> None:
    """The hashed form of a record, by definition: the compact JSON list of its fields with
    UTF-8 as is (``codec.dumps``), as bytes: whatever the serializer that writes it."""
    fields = [stream_id, version, event_id, type_, schema, occurred, recorded, actor,
              correlation, causation, payload]
    expected = codec.dumps(fields).encode()
    assert codec.record_bytes(
        stream_id=stream_id, stream_version=version, event_id=event_id, type=type_,
        schema_version=schema, occurred_at=occurred, recorded_at=recorded, actor=actor,
        correlation_id=correlation, causation_id=causation, payload=payload) == expected


def test_record_bytes_escape_every_control_character_as_json_does() -> None:
    """Each character JSON must escape, and a sample of those it need not, one by one."""
    for code in [*range(0x20), 0x22, 0x5C, 0x7F, 0x2028, 0x2029, 0xFEFF, 0x1F600]:
        char = chr(code)
        assert codec.record_bytes(
            stream_id=char, stream_version=1, event_id="e", type="t", schema_version=1,
            occurred_at="o", recorded_at="r", actor="a", correlation_id=None,
            causation_id=None, payload=char,
        ) == json.dumps([char, 1, "e", "t", 1, "o", "r", "a", None, None, char],
                        separators=(",", ":"), ensure_ascii=False).encode(), hex(code)
