"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from orchestrator.domain.errors import InputError
from orchestrator.domain.vocabulary import CredentialUsage, Usage

__all__ = [
    "ROTATED",
    "TIME",
    "USAGES",
    "Duration",
    "DurationOrOff",
    "Instant",
    "Label",
    "ListenAddress",
    "Seconds",
    "label_map",
]

USAGES = tuple(u.value for u in CredentialUsage)  # what a credential is for
ROTATED = tuple(u.value for u in Usage)  # ... and what a rotation may rotate


class Instant(click.ParamType):  # type: ignore[type-arg]
    """An ISO-8601 time; without an offset it is taken as UTC."""

    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time (e.g. 2027-01-31T00:00:00Z)", param, ctx)
        try:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-05:00 is in the year 10000 in UTC
            self.fail(f"{value!r} lies outside the years 1 to 9999 in UTC; give a time within "
                      "them", param, ctx)


class Duration(click.ParamType):  # type: ignore[type-arg]
    name = "DURATION"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        from orchestrator.domain.durations import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DurationOrOff(Duration):
    """A duration, or 0 for off."""

    name = "DURATION"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, str) and value.strip() == "0":
            return timedelta(0)
        return super().convert(value, param, ctx)


class Seconds(click.ParamType):  # type: ignore[type-arg]
    """A finite number of seconds within ``[low, high]`` (click's FloatRange lets inf and nan
    through)."""

    name = "SECONDS"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or not self.low <= seconds <= self.high:
            self.fail(f"{value!r} is not between {self.low:g} and {self.high:g} seconds; give "
                      "a number in that range", param, ctx)
        return seconds


class ListenAddress(click.ParamType):  # type: ignore[type-arg]
    """``HOST:PORT``, ``[IPv6]:PORT`` or a bare ``PORT`` (on 127.0.0.1): (host, port). Port 0
    lets the system choose a free one (the daemon's ``metrics_serving`` line says which)."""

    name = "[ADDR:]PORT"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host = "127.0.0.1"
        elif host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            self.fail(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9464", param, ctx)
        if not host:
            self.fail(f"{text!r} names no address; give ADDR:PORT (0.0.0.0:9464 for every "
                      "interface) or a bare PORT for 127.0.0.1", param, ctx)
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            self.fail(f"{text!r}: the port must be a number from 0 to 65535", param, ctx)
        return host, int(port_text)


class Label(click.ParamType):  # type: ignore[type-arg]
    name = "KEY=VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str]:
        try:
            return self.parse_pair(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)

    @staticmethod
    def parse_pair(value: str) -> tuple[str, str]:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ValueError(f"{value!r} is not KEY=VALUE")
        return key, val


def label_map(pairs: Sequence[tuple[str, str]], where: str) -> dict[str, str]:
    """KEY=VALUE pairs as a mapping; a key given twice is refused, not silently overwritten."""
    labels: dict[str, str] = {}
    for key, value in pairs:
        if key in labels:
            raise InputError(f"{where}: label {key!r} is given twice; give each key once")
        labels[key] = value
    return labels


TIME = Instant()
