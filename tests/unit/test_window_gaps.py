"""A window's longest gap and current close are computed without visiting every opening, and
agree with a walk over every opening (issue 6, defect 16: ``* * * * *`` took 18.5 s to load).

The cost is pinned by counting the cron trigger's evaluations, not by a clock: a minutely
window over the 400 days a policy is checked for has 576,000 openings, and its gap must cost a
few per day, not one per opening.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.triggers.cron import CronTrigger

from orchestrator.policies.windows import CronWindow

M, H = timedelta(minutes=1), timedelta(hours=1)
REFERENCE = datetime(2026, 1, 1, tzinfo=UTC)


def walked_gap(window: CronWindow, start: datetime, horizon: timedelta) -> timedelta:
    """The definition, by visiting every opening: the time to the first opening, and from each
    close before the horizon's end to the next opening (or to the end, if none follows)."""
    end = start + horizon
    openings = list(window.openings(start - window.duration + timedelta(microseconds=1), end))
    beyond = next(window.openings(end, end + timedelta(days=800)), None)
    if not openings:
        return horizon if beyond is None else max(horizon, beyond - start)
    longest = max(timedelta(0), openings[0] - start)
    for here, following in zip(openings, [*openings[1:], beyond], strict=True):
        if here + window.duration >= end:
            break
        if following is None:
            return max(longest, end - here - window.duration)
        longest = max(longest, following - here - window.duration)
    return longest


CASES = list(itertools.product(
    ["0 2 * * 1-5", "*/7 9-17 * * 1-5", "*/20 * * * *", "* 2 * * *", "0-10 2-3 * * 0",
     "15,45 1,2,3 * * *", "59 23 31 * *"],
    ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"],
    [30 * timedelta(seconds=1), 7 * M, H, 25 * H],
    [datetime(2026, 3, 27, 13, 17, tzinfo=UTC), datetime(2026, 10, 24, 22, tzinfo=UTC)],
))


@pytest.mark.parametrize(("cron", "zone", "duration", "start"), CASES)
def test_the_longest_gap_is_the_one_a_walk_over_every_opening_finds(
        cron: str, zone: str, duration: timedelta, start: datetime) -> None:
    window = CronWindow(cron, duration, zone)
    horizon = timedelta(days=12)  # across the clock change after each start
    assert window.longest_gap(start, horizon) == walked_gap(window, start, horizon)


def test_a_minutely_window_closes_when_the_clocks_go_back_as_a_walk_finds() -> None:
    """The minute 02:59 CEST is the last opening before the repeated hour (its openings are
    not repeated): the window closes at 01:59 UTC, an hour later, and reopens at 02:00 UTC."""
    window = CronWindow("* * * * *", H, "Europe/Berlin")
    assert window.current_or_next(datetime(2026, 10, 24, 21, tzinfo=UTC)) == (
        datetime(2026, 10, 24, 20, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, 59, tzinfo=UTC))
    assert window.longest_gap(REFERENCE) == M


def test_a_window_in_the_hour_the_clocks_skip_opens_and_closes_on_whole_seconds() -> None:
    """``* 2 * * *`` in Berlin on 29 March 2026: every 02:xx opening is the jump instant, 01:00
    UTC, so the window is open one duration from there (the jump was once found to within a
    second only, and closed at 02:00:00.644531)."""
    window = CronWindow("* 2 * * *", H, "Europe/Berlin")
    assert window.current_or_next(datetime(2026, 3, 29, 0, 30, tzinfo=UTC)) == (
        datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 3, 29, 2, tzinfo=UTC))


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    count = [0]
    original = CronTrigger.get_next_fire_time

    def counted(self: CronTrigger, previous: datetime | None, now: datetime) -> datetime | None:
        count[0] += 1
        return original(self, previous, now)

    monkeypatch.setattr(CronTrigger, "get_next_fire_time", counted)
    yield count


@pytest.mark.parametrize("duration", [30 * timedelta(seconds=1), M, H, 3 * H],
                         ids=["30s", "1m", "1h", "3h"])
def test_a_minutely_window_costs_a_few_evaluations_per_day_not_one_per_opening(
        evaluations: list[int], duration: timedelta) -> None:
    window = CronWindow("* * * * *", duration, "Europe/Berlin")
    window.longest_gap(REFERENCE, timedelta(days=400))
    window.current_or_next(datetime(2026, 5, 1, tzinfo=UTC))
    assert evaluations[0] < 4_000  # 576,000 openings; the walk cost about 3 per opening, and a
    # walk over the days with a clock change (2,880 openings) about 10,000 in all
