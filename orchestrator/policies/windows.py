"""Maintenance windows: a cron expression in a time zone, open for a fixed duration.

The only module that imports ``apscheduler.triggers``; it is pure (``now``/``start`` are
arguments, the clock is never read). Every instant it returns is an aware UTC ``datetime``.

A window is the union of the intervals ``[o, o + duration)`` over its openings ``o``;
``duration`` is elapsed time, not wall-clock time. Overlapping or touching intervals form one
window, so ``current_or_next`` returns the real close and ``longest_gap`` real closed stretches.

The crontab is standard (Vixie) cron, five fields, plus ``@hourly``/``@daily``/``@weekly``/
``@monthly``/``@yearly``. APScheduler 3.x's ``CronTrigger`` parses it and matches its fields, but
three of its traps are handled here rather than passed on to ops:

* its day-of-week numbers start at Monday = 0, crontab's at Sunday = 0 (APScheduler issue 286).
  The day-of-week field is translated into names, so ``1-5`` means Monday to Friday as ops
  expect, and 0 and 7 both mean Sunday;
* crontab ORs day-of-month and day-of-week when both are restricted, APScheduler ANDs them. Such
  an expression (``0 2 1-7 * 1``) misleads its reader either way, so it is refused;
* given a ``ZoneInfo``, 3.11 steps from one day or month to the next by adding the wall-clock
  difference in UTC, which lands an hour late after a clock change and then skips the opening:
  ``30 0 * * 1`` in Europe/Berlin misses Monday 30 March 2026, ``0 0 1 * *`` misses 1 April
  (APScheduler issues 529 and 606; 1021 is an endless loop in the repeated hour). So the trigger
  runs in UTC, where wall-clock arithmetic is exact, and yields *wall-clock* openings; this
  module turns each into an instant with ``zoneinfo``.

How a wall-clock opening becomes an instant, e.g. Europe/Berlin with ``30 2 * * *`` (2026):

* normally: the instant the clock reads it (02:30 CET = 01:30 UTC in winter, 02:30 CEST =
  00:30 UTC in summer);
* spring forward (29 March, 02:00 CET -> 03:00 CEST): 02:30 never appears, so the window opens
  at the instant the clocks jump past it, 03:00 CEST = 01:00 UTC (as cronie runs such jobs);
* fall back (25 October, 03:00 CEST -> 02:00 CET): 02:30 appears twice; the window opens once,
  at the first, 02:30 CEST = 00:30 UTC. (Likewise ``0 * * * *`` opens once in the repeated hour.)

This mapping never decreases as the wall-clock time increases, which is what lets "the first
opening at or after an instant" be a simple forward search, and the openings strictly ascend.
"""

from __future__ import annotations

import difflib
import itertools
import re
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from apscheduler.triggers.cron import CronTrigger

__all__ = ["DEFAULT_HORIZON", "CronWindow", "validate_cron", "validate_timezone"]

DEFAULT_HORIZON = timedelta(days=400)
_TICK = timedelta(microseconds=1)  # "strictly after" an instant
_SECOND = timedelta(seconds=1)  # openings fall on whole seconds

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
_DOW_FORM = "use 0-7 (0 and 7 are Sunday) or sun-sat, ranges (1-5), lists (1,3,5) and steps (*/2)"


@dataclass(frozen=True)
class CronWindow:
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
        last = self.__dict__.get("_last")  # (asked, open, close) of the previous answer
        if last is not None:
            asked, opening, close = last
            if asked <= at < opening + self.duration and close < asked + DEFAULT_HORIZON:
                # No opening lies in [asked - duration, opening), so none in [at - duration,
                # opening): the same open; and a close found before the horizon does not
                # depend on it. So every tick until the window's next opening ends asks once.
                return opening, close
        opening = self._next(at - self.duration + _TICK)
        if opening is None:
            return None
        close = self._close_and_next(opening, at + DEFAULT_HORIZON)[0]
        object.__setattr__(self, "_last", (at, opening, close))  # not a field: eq, hash as before
        return opening, close

    def longest_gap(self, start: datetime, horizon: timedelta = DEFAULT_HORIZON) -> timedelta:
        """The longest closed stretch: from ``start`` to the first opening, and from each close
        within ``[start, start + horizon)`` to the next opening (even if that lies beyond).

        A window that does not open within the horizon returns at least ``horizon``. A closed
        stretch lies between two consecutive openings ``o < o'`` with ``o' - o > duration``, so
        the longest is the widest step between consecutive openings less the duration; see
        ``_widest_step`` for how that is found without visiting every opening.
        """
        start = _utc(start)
        end = start + horizon
        opening = self._next(start - self.duration + _TICK)
        if opening is None or opening >= end:
            return horizon if opening is None else max(horizon, opening - start)
        longest = max(timedelta(0), opening - start)
        widest, last = self._widest_step(opening, end - self.duration)
        longest = max(longest, widest - self.duration)
        if last is not None:  # never opens again after ``last``: closed to the horizon
            longest = max(longest, end - last - self.duration)
        return longest

    def _widest_step(self, low: datetime, high: datetime) -> tuple[timedelta, datetime | None]:
        """The widest ``o' - o`` over consecutive openings with ``low <= o < high`` (``low`` an
        opening), and the last such ``o`` if no opening follows it (else None).

        The openings are every matching day times the same times of day, so a day without a
        clock change steps by the wall-clock steps of its times (``_day_shape``): only the
        steps from one day to the next are computed per day, and a day whose offset changes
        (or that ``low`` or ``high`` cuts) is walked opening by opening.
        """
        zone = zoneinfo.ZoneInfo(self.timezone)
        times, wall_step = _day_shape(self.cron)
        days = _trigger(_first_of_day(self.cron))
        widest = timedelta(0)
        wall = low.astimezone(zone).replace(tzinfo=UTC, hour=0, minute=0, second=0,
                                            microsecond=0, fold=0)
        previous_last: datetime | None = None
        while (day := days.get_next_fire_time(None, wall)) is not None:
            date = day.replace(tzinfo=None, hour=0, minute=0)
            first = _instant(date.replace(hour=times[0][0], minute=times[0][1]), zone)
            last = _instant(date.replace(hour=times[-1][0], minute=times[-1][1]), zone)
            if first >= high:
                if previous_last is not None and low <= previous_last < high:
                    widest = max(widest, first - previous_last)
                return widest, None
            if previous_last is not None and previous_last >= low:
                widest = max(widest, first - previous_last)
            if (first >= low and last < high
                    and first.astimezone(zone).utcoffset() == last.astimezone(zone).utcoffset()):
                widest = max(widest, wall_step)  # no clock change: the wall-clock steps
            elif last >= low:  # cut by low or high, or a clock change inside: its openings
                # are its wall times' first instants (a repeated hour opens once, a skipped
                # one at the jump), the step from the day's last to the next day's first is
                # the next day's to take
                day_openings = sorted({_instant(date.replace(hour=h, minute=m), zone)
                                       for h, m in times})
                for here, following in itertools.pairwise(day_openings):
                    if low <= here < high:
                        widest = max(widest, following - here)
            previous_last = last
            wall = (day + timedelta(days=1)).replace(hour=0, minute=0)
        if previous_last is not None and low <= previous_last < high:
            return widest, previous_last
        return widest, None

    # -- the search, on top of "first opening at or after t" -------------------------------

    def _next(self, at: datetime) -> datetime | None:
        """The first opening at or after ``at`` (whole seconds, UTC), or None if none.

        Search the wall-clock openings forward from the wall time just before ``at`` (at the
        instant of a jump, the missing times it stands for lie before its own wall time); the
        few that map to instants before ``at`` (in a repeated hour) are passed over.
        """
        trigger, zone = _trigger(self.cron), zoneinfo.ZoneInfo(self.timezone)
        wall = (at - _TICK).astimezone(zone).replace(tzinfo=UTC, fold=0)
        while (opening := trigger.get_next_fire_time(None, wall)) is not None:
            instant = _instant(opening.replace(tzinfo=None), zone)
            if instant >= at:
                return instant
            wall = opening + _TICK
        return None

    def _close_and_next(
        self, opening: datetime, limit: datetime
    ) -> tuple[datetime, datetime | None]:
        """Close of the window containing ``opening``, and the first opening after that close.

        Openings inside an interval extend it. Rather than visiting each of them (a minutely
        cron would make that slow), jump to the day's last opening when the whole day is
        open (``_day_end``), else to the first opening after the current close and look back
        one duration from there. A window still open at ``limit`` is reported
        as closing there, with no next opening.
        """
        duration = self.duration
        while True:
            opening = self._day_end(opening)
            close = opening + duration
            if close >= limit:
                return limit, None
            successor = self._next(opening + _TICK)
            if successor is None or successor > close:
                return close, successor
            after_close = self._next(close + _TICK)  # openings up to it all lie in [opening, close]
            if after_close is None:
                return self._latest(successor, close) + duration, None
            covering = self._next(after_close - duration)
            if covering is not None and covering < after_close:
                opening = after_close  # open without a break from opening to after_close
                continue
            return self._latest(successor, after_close - duration - _TICK) + duration, after_close

    def _day_end(self, opening: datetime) -> datetime:
        """The last opening of ``opening``'s wall-clock day if the window stays open from
        ``opening`` to it (no clock change in between, and no wall-clock step of the day longer
        than the duration), else ``opening``."""
        times, step = _day_shape(self.cron)
        if step > self.duration:
            return opening
        zone = zoneinfo.ZoneInfo(self.timezone)
        wall = opening.astimezone(zone)
        hour, minute = times[-1]
        last = _instant(wall.replace(tzinfo=None, hour=hour, minute=minute, second=0,
                                     microsecond=0, fold=0), zone)
        if last <= opening or last.astimezone(zone).utcoffset() != wall.utcoffset():
            return opening
        return last

    def _latest(self, known: datetime, limit: datetime) -> datetime:
        """The latest opening in ``[known, limit]``, ``known`` being one; binary search."""
        low, high = known + _SECOND, limit
        while low <= high:
            middle = low + (high - low) // 2
            found = self._next(middle)
            if found is not None and found <= high:
                known, low = found, found + _SECOND
            else:
                high = middle - _TICK  # no opening in [middle, high]; one may be just below
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
        _trigger(expr)
    except ValueError as exc:
        return f"{expr!r} is not a usable cron expression: {exc}"
    return None


@lru_cache(maxsize=256)
def _trigger(expr: str) -> CronTrigger:
    """A trigger over wall-clock times (run in UTC, which has no clock changes); raises
    ValueError with the fix."""
    fields = _MACROS.get(expr.strip().lower(), expr).split()
    if len(fields) != 5:
        raise ValueError(f"it has {len(fields)} fields; {_CRON_FORM}")
    minute, hour, day, month, day_of_week = fields
    if not day.startswith("*") and not day_of_week.startswith("*"):
        raise ValueError(
            "it restricts both day-of-month and day-of-week, which crontab ORs and APScheduler "
            "ANDs; restrict only one of them (use '*' for the other)"
        )
    crontab = " ".join((minute, hour, day, month, _day_of_week(day_of_week)))
    try:
        return CronTrigger.from_crontab(crontab, timezone=UTC)
    except ValueError as exc:
        raise ValueError(f"{exc}; {_CRON_FORM}") from None


def _fields(expr: str) -> list[str]:
    return _MACROS.get(expr.strip().lower(), expr).split()


def _first_of_day(expr: str) -> str:
    """The expression that fires once a day, at the first time of day ``expr`` fires, on the
    days it fires."""
    hour, minute = _day_shape(expr)[0][0]
    return " ".join((str(minute), str(hour), *_fields(expr)[2:]))


@lru_cache(maxsize=256)
def _day_shape(expr: str) -> tuple[tuple[tuple[int, int], ...], timedelta]:
    """The times of day (hour, minute) at which ``expr`` fires, the same on every day it fires
    (APScheduler's fields are independent), and the widest wall-clock step between two of them
    that follow each other within a day (0 for one time a day)."""
    minute, hour = _fields(expr)[:2]
    midnight = datetime(2026, 1, 1, tzinfo=UTC)
    # the two fields are independent: the minutes of one hour times the hours of one day
    minutes_of_hour = _fire_values(_trigger(f"{minute} 0 * * *"), midnight, timedelta(hours=1),
                                   lambda moment: moment.minute)
    hours_of_day = _fire_values(_trigger(f"0 {hour} * * *"), midnight, timedelta(days=1),
                                lambda moment: moment.hour)
    times = [(h, m) for h in hours_of_day for m in minutes_of_hour]
    minutes = [h * 60 + m for h, m in times]
    step = max((b - a for a, b in itertools.pairwise(minutes)), default=0)
    return tuple(times), timedelta(minutes=step)


def _fire_values(trigger: CronTrigger, start: datetime, span: timedelta,
                 value: Callable[[datetime], int]) -> list[int]:
    """``value`` of each fire time of ``trigger`` in ``[start, start + span)``."""
    found: list[int] = []
    moment = trigger.get_next_fire_time(None, start)
    while moment is not None and moment < start + span:
        found.append(value(moment))
        moment = trigger.get_next_fire_time(None, moment + _SECOND)
    return found


def _instant(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """The first instant whose wall clock in ``zone`` reads ``wall`` (naive), or, for a time
    the clocks jumped over, the instant of the jump."""
    instant = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first of two readings
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # Missing: fold=0 read it with the old offset (after the jump), fold=1 with the new one
    # (before it). The jump lies between; offsets change on whole seconds.
    before, after = wall.replace(tzinfo=zone, fold=1).astimezone(UTC), instant
    offset_after = after.astimezone(zone).utcoffset()
    while after - before > _SECOND:
        middle = before + (after - before) // 2
        middle -= timedelta(microseconds=middle.microsecond)  # whole seconds: so is the jump
        if middle.astimezone(zone).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    return after


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
