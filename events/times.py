"""UTC times as the log writes them: fixed-width ISO-8601 with microseconds and a ``Z``
(``2026-11-22T12:57:11.000000Z``), so that text order is time order in both SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_time", "parse_time"]


def format_time(value: datetime) -> str:
    """Fixed-width UTC text for an aware datetime (``isoformat`` is 3x faster than strftime).
    Years have four digits, so a UTC time's ISO text is its first 26 characters and a ``Z``."""
    if value.tzinfo is not UTC:
        if value.utcoffset() is None:
            raise ValueError("naive datetime: times must carry a UTC offset")
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:26] + "Z"


def parse_time(text: str) -> datetime:
    """The aware UTC datetime of a ``format_time`` text (any ISO-8601 with an offset is read)."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is UTC:  # the log's own texts (``Z``): nothing to convert
        return value
    if value.utcoffset() is None:
        raise ValueError(f"time without UTC offset: {text!r}")
    return value.astimezone(UTC)
