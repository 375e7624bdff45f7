"""Maintenance windows, as specifications: a cron in a time zone, open for a duration.

Instants are written in UTC and were worked out by hand from the 2026 clock changes in
Europe/Berlin: spring forward on 29 March at 01:00 UTC (02:00 CET -> 03:00 CEST), fall back on
25 October at 01:00 UTC (03:00 CEST -> 02:00 CET).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from orchestrator.policies.windows import CronWindow, validate_cron, validate_timezone

H, M = timedelta(hours=1), timedelta(minutes=1)
TICK = timedelta(microseconds=1)
BERLIN = "Europe/Berlin"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- openings --------------------------------------------------------------------------------

OPENINGS = [
    pytest.param(
        "30 2 * * *", BERLIN, utc(2026, 3, 27), utc(2026, 4, 1),
        [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0),
         utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)],
        id="02:30 that never happens on the spring-forward night opens when the clocks jump, 03:00 CEST",
    ),
    pytest.param(
        "30 2 * * *", BERLIN, utc(2026, 10, 23), utc(2026, 10, 27),
        [utc(2026, 10, 23, 0, 30), utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30),
         utc(2026, 10, 26, 1, 30)],
        id="02:30 that happens twice on the fall-back night opens once, at the first (CEST)",
    ),
    pytest.param(
        "0 * * * *", BERLIN, utc(2026, 10, 24, 23), utc(2026, 10, 25, 3),
        [utc(2026, 10, 24, 23), utc(2026, 10, 25, 0), utc(2026, 10, 25, 2)],
        id="an hourly window opens once in the repeated hour of the fall-back night",
    ),
    pytest.param(
        "0 2 * * 1-5", BERLIN, utc(2026, 3, 26), utc(2026, 4, 1),
        [utc(2026, 3, 26, 1), utc(2026, 3, 27, 1), utc(2026, 3, 30, 0), utc(2026, 3, 31, 0)],
        id="weekdays at 02:00 are Monday to Friday and move from 01:00 to 00:00 UTC in spring",
    ),
    pytest.param(
        "0 2 * * 1-5", BERLIN, utc(2026, 10, 22), utc(2026, 10, 28),
        [utc(2026, 10, 22, 0), utc(2026, 10, 23, 0), utc(2026, 10, 26, 1), utc(2026, 10, 27, 1)],
        id="weekdays at 02:00 move back from 00:00 to 01:00 UTC in autumn",
    ),
    pytest.param(
        "30 0 * * 1", BERLIN, utc(2026, 3, 22), utc(2026, 4, 6),
        [utc(2026, 3, 22, 23, 30), utc(2026, 3, 29, 22, 30), utc(2026, 4, 5, 22, 30)],
        id="the Monday after spring-forward is not skipped (APScheduler 3.x with a ZoneInfo skips it)",
    ),
    pytest.param(
        "0 0 1 * *", BERLIN, utc(2026, 2, 28, 12), utc(2026, 5, 31),
        [utc(2026, 2, 28, 23), utc(2026, 3, 31, 22), utc(2026, 4, 30, 22)],
        id="the first of the month after spring-forward is not skipped either",
    ),
    pytest.param(
        "0 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 2), utc(2026, 10, 5),
        [utc(2026, 10, 2, 15, 30), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15)],
        id="a half-hour clock change (Lord Howe: 02:00 -> 02:30) opens at the jump too",
    ),
    pytest.param(
        "0 2 * * 0", "UTC", utc(2026, 1, 1), utc(2026, 1, 12),
        [utc(2026, 1, 4, 2), utc(2026, 1, 11, 2)],
        id="day-of-week 0 is Sunday as in crontab (not Monday as in APScheduler 3.x)",
    ),
    pytest.param(
        "0 2 * * 7", "UTC", utc(2026, 1, 1), utc(2026, 1, 12),
        [utc(2026, 1, 4, 2), utc(2026, 1, 11, 2)],
        id="day-of-week 7 is Sunday too",
    ),
    pytest.param(
        "@weekly", "UTC", utc(2026, 1, 1), utc(2026, 1, 12),
        [utc(2026, 1, 4), utc(2026, 1, 11)],
        id="@weekly is Sunday at midnight",
    ),
    pytest.param(
        "0 2 * * *", "UTC", utc(2026, 1, 1, 2), utc(2026, 1, 3, 2),
        [utc(2026, 1, 1, 2), utc(2026, 1, 2, 2)],
        id="openings are taken from start inclusive to end exclusive",
    ),
]


@pytest.mark.parametrize(("cron", "zone", "start", "end", "expected"), OPENINGS)
def test_openings(cron: str, zone: str, start: datetime, end: datetime,
                  expected: list[datetime]) -> None:
    assert list(CronWindow(cron, H, zone).openings(start, end)) == expected


def test_openings_are_utc_and_strictly_ascending_over_a_year_of_clock_changes() -> None:
    found = list(CronWindow("*/20 1-3 * * *", H, BERLIN).openings(utc(2026, 1, 1), utc(2027, 1, 1)))
    assert all(o.tzinfo is UTC for o in found)
    assert all(a < b for a, b in pairwise(found))


# --- is_open -----------------------------------------------------------------------------------

WEEKDAYS = CronWindow("0 2 * * 1-5", 3 * H, BERLIN)  # Monday 5 January 2026: 01:00 to 04:00 UTC

IS_OPEN = [
    pytest.param(utc(2026, 1, 5, 1) - TICK, False, id="closed the instant before it opens"),
    pytest.param(utc(2026, 1, 5, 1), True, id="open at the opening instant"),
    pytest.param(utc(2026, 1, 5, 4) - TICK, True, id="open the instant before it closes"),
    pytest.param(utc(2026, 1, 5, 4), False, id="closed at opening plus duration"),
    pytest.param(utc(2026, 1, 10, 1, 30), False, id="closed on a Saturday night"),
    pytest.param(utc(2026, 3, 30, 2, 59), True, id="open in summer until 05:00 CEST"),
    pytest.param(utc(2026, 3, 30, 3), False, id="closed in summer from 05:00 CEST"),
]


@pytest.mark.parametrize(("at", "expected"), IS_OPEN)
def test_is_open(at: datetime, expected: bool) -> None:
    assert WEEKDAYS.is_open(at) is expected


def test_is_open_accepts_any_aware_time_zone() -> None:
    berlin_time = utc(2026, 1, 5, 2).astimezone(ZoneInfo(BERLIN))
    assert WEEKDAYS.is_open(berlin_time)


def test_a_naive_datetime_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        WEEKDAYS.is_open(datetime(2026, 1, 5, 2))


# --- current_or_next ---------------------------------------------------------------------------

CURRENT_OR_NEXT = [
    pytest.param(WEEKDAYS, utc(2026, 1, 5, 2), (utc(2026, 1, 5, 1), utc(2026, 1, 5, 4)),
                 id="inside a window it returns that window"),
    pytest.param(WEEKDAYS, utc(2026, 1, 5, 0), (utc(2026, 1, 5, 1), utc(2026, 1, 5, 4)),
                 id="before a window it returns the next one"),
    pytest.param(WEEKDAYS, utc(2026, 1, 9, 4), (utc(2026, 1, 12, 1), utc(2026, 1, 12, 4)),
                 id="at Friday's close it returns Monday's window"),
    pytest.param(CronWindow("0 2-4 * * *", 90 * M), utc(2026, 1, 5, 2, 10),
                 (utc(2026, 1, 5, 2), utc(2026, 1, 5, 5, 30)),
                 id="overlapping openings make one window that closes after the last of them"),
    pytest.param(CronWindow("0 2,3 * * *", H), utc(2026, 1, 5, 3, 30),
                 (utc(2026, 1, 5, 3), utc(2026, 1, 5, 4)),
                 id="open is the earliest opening whose own interval contains the instant"),
    pytest.param(CronWindow("0 2,3 * * *", H), utc(2026, 1, 5, 2, 30),
                 (utc(2026, 1, 5, 2), utc(2026, 1, 5, 4)),
                 id="touching openings make one window"),
    pytest.param(CronWindow("0 0 30 2 *", H), utc(2026, 1, 1), None,
                 id="a window that never opens has no current or next window"),
]


@pytest.mark.parametrize(("window", "at", "expected"), CURRENT_OR_NEXT)
def test_current_or_next(window: CronWindow, at: datetime,
                         expected: tuple[datetime, datetime] | None) -> None:
    assert window.current_or_next(at) == expected


# --- longest_gap -------------------------------------------------------------------------------

START = utc(2026, 1, 1)

LONGEST_GAP = [
    pytest.param(CronWindow("0 2 * * 1-5", 3 * H), 2 * 24 * H + 21 * H,
                 id="weekdays 02:00-05:00 UTC: the weekend, Friday 05:00 to Monday 02:00"),
    pytest.param(WEEKDAYS, 2 * 24 * H + 22 * H,
                 id="weekdays in Berlin: the autumn weekend, one hour longer by the clock change"),
    pytest.param(CronWindow("0 2 * * *", 3 * H), 21 * H, id="a daily 3-hour window: 21 hours"),
    pytest.param(CronWindow("0 2 1 * *", 3 * H), 31 * 24 * H - 3 * H,
                 id="a monthly window: a 31-day month less the window"),
    pytest.param(CronWindow("0 * * * *", H), timedelta(0),
                 id="touching hourly windows never close"),
    pytest.param(CronWindow("0 0 30 2 *", H), timedelta(days=400),
                 id="a window that never opens: the whole horizon"),
]


@pytest.mark.parametrize(("window", "expected"), LONGEST_GAP)
def test_longest_gap(window: CronWindow, expected: timedelta) -> None:
    assert window.longest_gap(START) == expected


def test_longest_gap_counts_gaps_from_closes_within_the_horizon_even_if_they_end_beyond() -> None:
    # Thursday 1 January: closes at 05:00 on Thursday (then 21 h) and Friday (then 69 h)
    assert CronWindow("0 2 * * 1-5", 3 * H).longest_gap(START, timedelta(days=1)) == 21 * H
    assert CronWindow("0 2 * * 1-5", 3 * H).longest_gap(START, timedelta(days=2)) == 69 * H


def test_longest_gap_counts_the_time_from_start_to_the_first_opening() -> None:
    late_january = CronWindow("0 0 20-31 1 *", timedelta(days=1))  # open 20 January to 1 February
    assert late_january.longest_gap(START, timedelta(days=30)) == timedelta(days=19)


# --- validation --------------------------------------------------------------------------------

REFUSED = [
    pytest.param("0 2 * * 8", "UTC", "day-of-week '8' is not a day",
                 id="a day of week beyond 7 is refused"),
    pytest.param("61 * * * *", "UTC", "higher than the maximum value (59)",
                 id="a minute beyond 59 is refused"),
    pytest.param("0 2 * *", "UTC", "it has 4 fields; write five fields",
                 id="four fields are refused with the five expected"),
    pytest.param("0 2 1-7 * 1", "UTC", "restrict only one of them",
                 id="both day-of-month and day-of-week restricted is refused as ambiguous"),
    pytest.param("0 2 * * fri-mon", "UTC", "runs backwards",
                 id="a backwards day range is refused"),
    pytest.param("0 2 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'",
                 id="an unknown time zone is refused"),
    pytest.param("0 2 * * *", "europe/berlin", "did you mean Europe/Berlin?",
                 id="a time zone in the wrong case gets the right spelling"),
    pytest.param("0 2 * * *", "localtime", "depends on the host",
                 id="the host's local time is refused"),
]


@pytest.mark.parametrize(("cron", "zone", "fragment"), REFUSED)
def test_validate_cron_refuses(cron: str, zone: str, fragment: str) -> None:
    problem = validate_cron(cron, zone)
    assert problem is not None and fragment in problem and "\n" not in problem
    with pytest.raises(ValueError) as refused:
        CronWindow(cron, H, zone)
    assert str(refused.value) == problem


@pytest.mark.parametrize("cron", ["0 2 * * 1-5", "*/15 * * * *", "0 2 last * *",
                                  "@daily", "0 2 * * mon-fri", "0 2 1 * *"])
def test_validate_cron_accepts(cron: str) -> None:
    assert validate_cron(cron, BERLIN) is None


def test_validate_timezone_accepts_iana_names() -> None:
    assert validate_timezone("UTC") is None and validate_timezone(BERLIN) is None


def test_a_window_must_last() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        CronWindow("0 2 * * *", timedelta(0))


@pytest.mark.parametrize("window", [
    CronWindow("0 2 * * 1-5", 3 * H, "Europe/Berlin"),
    CronWindow("0 9 * * 2-4", 8 * H, "Europe/London"),
    CronWindow("0 2-4 * * *", 90 * M),
    CronWindow("30 2 * * *", H, "Europe/Berlin"),
], ids=str)
def test_current_or_next_reuses_its_last_answer_only_where_it_is_the_answer(
        window: CronWindow) -> None:
    """The window keeps its last answer for the ticks that follow; every answer, hour by hour
    through the spring and autumn clock changes and with steps back in time, equals a fresh
    window's."""
    answers = 0
    for start, end in ((utc(2026, 3, 23), utc(2026, 4, 3)), (utc(2026, 10, 19), utc(2026, 10, 30))):
        at = start
        while at < end:
            fresh = CronWindow(window.cron, window.duration, window.timezone)
            assert window.current_or_next(at) == fresh.current_or_next(at), at
            answers += 1
            at += 23 * M if answers % 17 else -5 * H  # now and then back in time
    assert answers > 1_000


def test_a_window_that_never_closes_is_asked_again_as_its_horizon_moves() -> None:
    window = CronWindow("* * * * *", 2 * M)
    first = window.current_or_next(utc(2026, 1, 5))
    later = window.current_or_next(utc(2026, 1, 5) + TICK)
    assert first is not None and later is not None
    assert later[1] == utc(2026, 1, 5) + TICK + timedelta(days=400) != first[1]
