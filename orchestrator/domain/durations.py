"""Durations as ops write them in policy files, and back.

Accepted: whole numbers with a unit, the units in decreasing order and each at most once
(``45s``, ``30m``, ``24h``, ``90d``, ``2w``, ``1d12h``, ``1h30m``), or ISO 8601 durations made
of weeks, days, hours, minutes and seconds (``P90D``, ``PT24H``, ``P1DT12H``, ``P2W``). Years
and months are refused: their length varies, and a policy must mean one thing. Nothing longer
than ``MAX_DURATION`` (36500d, about 100 years) is accepted: every duration is added to
instants, and a longer one means "never", which a policy or a grace period should say otherwise.

A share of a lifetime (``beforeExpiry: 33%``, as cert-manager's ``renewBeforePercentage``) is
written as a percentage strictly between 0 and 100, at most two decimals (``parse_percentage``).
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = [
    "DURATION_FORMS",
    "MAX_DURATION",
    "format_duration",
    "format_percentage",
    "parse_duration",
    "parse_percentage",
]

DURATION_FORMS = (
    "a whole number with a unit (45s, 30m, 24h, 90d, 2w), units combined largest first "
    "(1d12h), or ISO 8601 (PT24H, P90D)"
)
MAX_DURATION = timedelta(days=36_500)
_UNITS = ("w", "d", "h", "m", "s")
_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_COMPACT = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_PERCENT = re.compile(r"(\d{1,2}(?:\.\d{1,2})?)\s*%")
_ISO = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


def parse_duration(text: str) -> timedelta:
    """``timedelta`` of ``text``; ValueError naming the accepted forms if it is none of them."""
    stripped = text.strip()
    match = _COMPACT.fullmatch(stripped) or _ISO.fullmatch(stripped.upper())
    if not stripped or match is None or stripped.upper() == "P" or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; write {DURATION_FORMS}")
    counts = [(n, u) for n, u in zip(match.groups(), _UNITS, strict=True) if n]
    too_long = any(len(n) > 12 for n, _ in counts)  # never int() thousands of digits
    seconds = 0 if too_long else sum(int(n) * _SECONDS[u] for n, u in counts)
    if too_long or seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than {format_duration(MAX_DURATION)} (about 100 "
                         "years), the longest duration accepted; give a shorter one")
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    """The compact spelling, days and below (``93d21h15m``, ``0s``); parses back to itself."""
    seconds = int(duration.total_seconds())
    if seconds < 0:
        return "-" + format_duration(-duration)
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_percentage(text: str) -> float:
    """The fraction ``text`` (``33%``, ``12.5%``) stands for, strictly between 0 and 1;
    ValueError saying what is accepted otherwise."""
    match = _PERCENT.fullmatch(text.strip())
    if match is None or not 0 < float(match.group(1)) < 100:
        raise ValueError(f"{text!r} is not a percentage between 0% and 100% (exclusive); write "
                         "e.g. 33% or 12.5%")
    return float(match.group(1)) / 100


def format_percentage(fraction: float) -> str:
    """``0.33`` as ``33%``; parses back to itself."""
    return f"{round(fraction * 100, 2):g}%"
