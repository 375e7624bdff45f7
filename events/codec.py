"""Canonical encoding: the one byte form of a payload and of a record, for storage and hashing.

* JSON with sorted keys, no insignificant whitespace, UTF-8 (``ensure_ascii=False``);
* times as fixed-width UTC ISO-8601 with microseconds: ``2026-11-22T12:57:11.000000Z``
  (fixed width, so text order is time order in both SQLite and PostgreSQL);
* enums as their values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from events.catalog import Event

from events.times import format_time, parse_time

__all__ = ["dumps", "encode_payload", "format_time", "parse_time", "record_bytes"]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Canonical JSON text of plain data (datetimes and enums converted)."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _time_text(value: Any) -> str:
    if isinstance(value, datetime):
        return format_time(value)
    raise TypeError(f"{type(value).__name__} is not a payload value")


# Canonical JSON of a payload as ``model_dump`` (Python mode) gives it: string enums are str and
# encode as their values; times are the one kind of value JSON lacks (``catalog.Time``).
_PAYLOAD = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            default=_time_text)


def encode_payload(event: Event) -> str:
    """Canonical JSON text of an event's payload: the same text as ``dumps`` of its JSON-mode
    dump, without pydantic's JSON-mode conversion of every field."""
    return _PAYLOAD.encode(event.model_dump())


def record_bytes(
    *,
    stream_id: str,
    stream_version: int,
    event_id: str,
    type: str,
    schema_version: int,
    occurred_at: str,
    recorded_at: str,
    actor: str,
    correlation_id: str | None,
    causation_id: str | None,
    payload: str,
) -> bytes:
    """The canonical bytes of one stored record (everything but position and hashes): the
    UTF-8 of ``dumps`` of the list below. pydantic-core's serializer writes the same bytes
    (compact, UTF-8 as is, the same escapes) without the text step; tests/unit/test_codec.py
    holds it to that definition. (Imported here, with the first record hashed: a command that
    only reads the read models, ``app list``, loads no pydantic.)"""
    import pydantic_core

    return pydantic_core.to_json(
        [
            stream_id,
            stream_version,
            event_id,
            type,
            schema_version,
            occurred_at,
            recorded_at,
            actor,
            correlation_id,
            causation_id,
            payload,
        ]
    )
