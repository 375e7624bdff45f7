"""Maintenance windows: a cron expression in a time zone, open for a fixed duration.

The only module that imports ``apscheduler.triggers``; it is pure (``now``/``start`` are
arguments, the clock is never read). Every instant it returns is an aware UTC ``datetime``.

A window is the union of the intervals ``[o, o + duration)`` over its openings ``o``. Openings
are computed by APScheduler 3.x's ``CronTrigger`` with a ``ZoneInfo`` time zone; ``duration`` is
elapsed time, not wall-clock time. Overlapping or touching intervals form one window, so
``current_or_next`` returns the real close and ``longest_gap`` measures real closed stretches.

The crontab is standard (Vixie) cron, five fields, plus ``@hourly``/``@daily``/``@weekly``/
``@monthly``/``@yearly``. Two traps of APScheduler 3.x are handled here rather than passed on:

* its day-of-week numbers start at Monday = 0, while crontab's start at Sunday = 0 (APScheduler
  issue 286). We translate the day-of-week field into names, so ``1-5`` means Monday to Friday
  as ops expect, and 0 and 7 both mean Sunday;
* crontab ORs day-of-month and day-of-week when both are restricted, APScheduler ANDs them. Such
  an expression (``0 2 1-7 * 1``) is ambiguous to the reader, so it is refused.

Daylight-saving nights, e.g. Europe/Berlin with ``30 2 * * *`` (2026 times):

* spring forward (29 March 2026, 02:00 CET -> 03:00 CEST): 02:30 does not exist. APScheduler
  reads the missing wall time with the offset in force before the jump (+01:00), so the window
  opens at 01:30 UTC = 03:30 CEST: one opening that night, one hour later on the wall clock;
* fall back (25 October 2026, 03:00 CEST -> 02:00 CET): 02:30 happens twice, and so does the
  opening: 00:30 UTC (02:30 CEST) and 01:30 UTC (02:30 CET). With a duration of an hour or more
  the two intervals merge into one window, open from the first 02:30 until ``duration`` after
  the second; with a shorter one the window opens twice that night.

Wall times outside the changed hour are unaffected: ``0 2 * * *`` opens at 02:00 local time
every night, 01:00 UTC in winter and 00:00 UTC in summer (on the spring night 02:00 is itself
missing and becomes 03:00 CEST, the instant of the jump).
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from apscheduler.triggers.cron import CronTrigger

__all__ = ["Window", "validate_cron", "validate_timezone"]

DEFAULT_HORIZON = timedelta(days=400)
_TICK = timedelta(microseconds=1)  # "strictly after" an instant
_SECOND = timedelta(seconds=1)  # openings fall on whole seconds
_DAY = timedelta(days=1)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_FORM = "write five fields, minute hour day-of-month month day-of-week, e.g. '0 2 * * 1-5'"
# crontab numbering: Sunday is 0 (and 7); APScheduler 3.x is given names, never numbers.
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DOW_TERM = re.compile(r"^(?:(\*)|(\w+)(?:-(\w+))?)(?:/(\d+))?$")


@dataclass(frozen=True)
class Window:
    """Rotations may only start while this window is open (see the module docstring)."""

    cron: str
    duration: timedelta
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        problem = validate_cron(self.cron, self.timezone)
        if problem is None and self.duration <= timedelta(0):
            problem = f"window duration must be positive, got {self.duration}"
        if problem is not None:
            raise ValueError(problem)

    def openings(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Each opening in ``[start, end)``, ascending."""
        opening = self._next(_utc(start))
        end = _utc(end)
        while opening is not None and opening < end:
            yield opening
            opening = self._next(opening + _TICK)

    def is_open(self, at: datetime) -> bool:
        """Whether some opening ``o`` has ``o <= at < o + duration``."""
        opening = self._next(_utc(at) - self.duration + _TICK)
        return opening is not None and opening <= at

    def current_or_next(self, at: datetime) -> tuple[datetime, datetime] | None:
        """``(open, close)`` of the window open at ``at``, else of the next one; None if none.

        ``open`` is the earliest opening whose own interval contains ``at`` (for a window open
        at ``at``); ``close`` is the first instant after it at which the window is closed. A
        window that never closes (openings closer together than the duration) reports a close
        400 days after ``at``.
        """
        at = _utc(at)
        opening = self._next(at - self.duration + _TICK)
        if opening is None:
            return None
        return opening, self._close_and_next(opening, at + DEFAULT_HORIZON)[0]

    def longest_gap(self, start: datetime, horizon: timedelta = DEFAULT_HORIZON) -> timedelta:
        """The longest closed stretch: from ``start`` to the first opening, and from each close
        within ``[start, start + horizon)`` to the next opening (even if that lies beyond).

        A window that does not open within the horizon returns at least ``horizon``.
        """
        start = _utc(start)
        end = start + horizon
        opening = self._next(start - self.duration + _TICK)
        if opening is None or opening >= end:
            return horizon if opening is None else max(horizon, opening - start)
        longest = max(timedelta(0), opening - start)
        close, following = self._close_and_next(opening, end)
        while close < end:
            if following is None:  # never opens again: closed for the rest of the horizon
                return max(longest, end - close)
            longest = max(longest, following - close)
            close, following = self._close_and_next(following, end)
        return longest

    # -- the search, on top of "first opening at or after t" -------------------------------

    def _next(self, at: datetime) -> datetime | None:
        """The first opening at or after ``at`` (whole seconds, UTC), or None if none.

        APScheduler searches forward from the wall time of ``at``. Just after the clocks jumped
        forward that misses an opening whose missing wall time (02:30) it reads as the later
        instant (01:30 UTC) when asked from, say, 01:10 UTC (03:10 CEST); so in the day after a
        jump, also search from ``at - jump``, whose wall time lies before the missing hour.
        """
        trigger = _trigger(self.cron, self.timezone)
        fire = trigger.get_next_fire_time(None, at)
        jump = at.astimezone(trigger.timezone).utcoffset() - (at - _DAY).astimezone(
            trigger.timezone
        ).utcoffset()
        if jump > timedelta(0):
            early = trigger.get_next_fire_time(None, at - jump)
            while early is not None and early < at:
                early = trigger.get_next_fire_time(None, early + _TICK)
            if early is not None and (fire is None or early < fire):
                fire = early
        return None if fire is None else fire.astimezone(UTC)

    def _close_and_next(
        self, opening: datetime, limit: datetime
    ) -> tuple[datetime, datetime | None]:
        """Close of the window containing ``opening``, and the first opening after that close.

        Openings inside an interval extend it. Rather than visiting each of them (a minutely
        cron would make that slow), jump to the first opening at or after the current close
        and look back one duration from there. A window still open at ``limit`` is reported
        as closing there, with no next opening.
        """
        duration = self.duration
        while True:
            close = opening + duration
            if close >= limit:
                return limit, None
            successor = self._next(opening + _TICK)
            if successor is None or successor > close:
                return close, successor
            if successor == close:  # touching intervals: still open
                opening = successor
                continue
            after_close = self._next(close)
            if after_close is None:
                return self._latest(successor, close - _TICK) + duration, None
            covering = self._next(after_close - duration + _TICK)
            if covering is not None and covering < after_close:
                opening = after_close  # an opening in (after_close - duration, after_close)
                continue
            latest_close = self._latest(successor, after_close - duration) + duration
            if latest_close < after_close:
                return latest_close, after_close
            opening = after_close

    def _latest(self, known: datetime, limit: datetime) -> datetime:
        """The latest opening in ``[known, limit]``, ``known`` being one; binary search."""
        low, high = known + _SECOND, limit
        while low <= high:
            middle = low + (high - low) // 2
            found = self._next(middle)
            if found is not None and found <= high:
                known, low = found, found + _SECOND
            else:
                high = middle - _SECOND
        return known


def validate_timezone(name: str) -> str | None:
    """An error text if ``name`` is not an IANA time zone available here, else None."""
    if name == "localtime":  # the host's zone: the same policy would mean different times
        return "time zone 'localtime' depends on the host; use an IANA name such as Europe/Berlin"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = _similar_timezone(name)
        fix = f"did you mean {hint}?" if hint else "use an IANA name such as Europe/Berlin or UTC"
        return f"unknown time zone {name!r}; {fix}"
    return None


def validate_cron(expr: str, timezone: str = "UTC") -> str | None:
    """An error text if the time zone or the cron expression cannot be used, else None."""
    problem = validate_timezone(timezone)
    if problem is not None:
        return problem
    try:
        _trigger(expr, timezone)
    except ValueError as exc:
        return f"{expr!r} is not a usable cron expression: {exc}"
    return None


@lru_cache(maxsize=256)
def _trigger(expr: str, timezone: str) -> CronTrigger:
    """The APScheduler trigger for a crontab expression (raises ValueError with the fix)."""
    fields = _MACROS.get(expr.strip().lower(), expr).split()
    if len(fields) != 5:
        raise ValueError(f"has {len(fields)} fields; {_CRON_FORM}")
    minute, hour, day, month, day_of_week = fields
    if not day.startswith("*") and not day_of_week.startswith("*"):
        raise ValueError(
            "restricts both day-of-month and day-of-week, which crontab ORs and APScheduler "
            "ANDs; restrict only one of them (use '*' for the other)"
        )
    crontab = " ".join((minute, hour, day, month, _day_of_week(day_of_week)))
    try:
        return CronTrigger.from_crontab(crontab, timezone=zoneinfo.ZoneInfo(timezone))
    except ValueError as exc:
        raise ValueError(f"{exc}; {_CRON_FORM}") from None


def _day_of_week(field: str) -> str:
    """Translate a crontab day-of-week field (Sunday = 0 or 7) into APScheduler day names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for term in field.lower().split(","):
        match = _DOW_TERM.match(term)
        if match is None:
            raise ValueError(f"day-of-week {term!r} is not understood; {_DOW_FORM}")
        star, first, last, step = match.groups()
        low, high = (0, 6) if star else (_day_number(first), _day_number(last or first))
        if last is None and step and not star:
            high = 7  # "1/2": from Monday on, every second day
        if low > high:
            raise ValueError(f"day-of-week range {term!r} runs backwards; {_DOW_FORM}")
        if step is not None and int(step) == 0:
            raise ValueError(f"day-of-week step in {term!r} must be at least 1; {_DOW_FORM}")
        days.update(day % 7 for day in range(low, high + 1, int(step or 1)))  # 7 is Sunday
    return ",".join(_DAY_NAMES[day] for day in sorted(days, key=lambda day: (day - 1) % 7))


_DOW_FORM = "use 0-7 (0 and 7 are Sunday) or sun-sat, ranges (1-5), lists (1,3,5) and steps (*/2)"


def _day_number(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    raise ValueError(f"day-of-week {token!r} is not a day; {_DOW_FORM}")


def _similar_timezone(name: str) -> str | None:
    """The available zone closest to a misspelt ``name`` (on the error path only)."""
    available = zoneinfo.available_timezones()
    by_lower = {zone.lower(): zone for zone in available}
    if name.strip().lower() in by_lower:
        return by_lower[name.strip().lower()]
    close = difflib.get_close_matches(name, sorted(available), n=1, cutoff=0.8)
    return close[0] if close else None


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone; pass an aware datetime (UTC)")
    return moment.astimezone(UTC)
