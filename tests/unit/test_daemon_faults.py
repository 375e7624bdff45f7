"""The daemon loop when its database goes away: it runs on, says so once, and says when it is back.

``Daemon.run`` on a virtual clock (each read one second later, so the loop never sleeps) with a
fake lease and a tick that fails the way SQLAlchemy does while PostgreSQL restarts; the lines
are captured with structlog's ``capture_logs``. The real processes on a real server are in
tests/integration/test_fault_pg_restart.py.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from events.store import LeaseLost
from orchestrator.entrypoints.daemon import Daemon
from tests.conftest import NOW

SECOND = timedelta(seconds=1)
DATABASE = "postgresql+psycopg://orchestrator@db.example:5432/orchestrator"


class Away(Exception):
    """What the driver raises while the server is away."""


class Lease:
    """One lease; ``ended`` ends its session (the server restarted): the next ``confirm``
    raises, and the next ``acquire`` takes it again at a new epoch."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.taken = 0
        self.ended = False
        self.fence = None

    @property
    def held(self) -> bool:
        return self.epoch is not None

    def acquire(self) -> bool:
        if self.epoch is None:
            self.taken += 1
            self.epoch = self.taken
        return True

    def confirm(self) -> None:
        if self.ended:
            self.ended = False
            self.epoch = None
            raise LeaseLost("the leader lease's database session is lost: terminating "
                            "connection due to administrator command")

    def release(self) -> None:
        self.epoch = None


class World:
    """The clock, and a tick that fails while the database is ``away``; the daemon stops itself
    after ``last`` ticks."""

    def __init__(self, last: int) -> None:
        self.at = NOW
        self.away = False
        self.ticks = 0
        self.last = last
        self.lease = Lease()
        self.daemon = Daemon(self.tick, lambda _now: None, self.lease, self.clock,  # type: ignore[arg-type]
                             interval=SECOND, heartbeat=3 * SECOND, describe=self.describe,
                             fault=lambda exc: str(exc) if isinstance(exc, Away) else None,
                             database=DATABASE)
        self.script: dict[int, Any] = {}

    def clock(self) -> datetime:
        self.at += SECOND
        return self.at

    def tick(self) -> None:
        self.ticks += 1
        self.script.pop(self.ticks, lambda: None)()
        if self.away:
            raise Away("consuming input failed: server closed the connection unexpectedly")
        if self.ticks >= self.last:
            self.daemon.stop()

    def describe(self, _now: datetime) -> dict[str, Any]:
        if self.away:
            raise Away("connection refused")
        return {"next_rotation_due": self.at}

    def set_away(self, away: bool) -> None:
        self.away = away


@pytest.fixture(autouse=True)
def _signals() -> Iterator[None]:
    """``Daemon.run`` installs its handlers; pytest's are put back after."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def events(logs: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] in names]


def test_a_database_away_for_many_ticks_is_said_once_and_its_return_too() -> None:
    world = World(last=12)
    world.script = {3: lambda: world.set_away(True), 9: lambda: world.set_away(False)}
    with capture_logs() as logs:
        assert world.daemon.run() == 0
    assert world.ticks == 12  # it ticked on through the outage (ticks 3 to 8 failed)
    (down,) = events(logs, "database_unavailable")
    assert down["log_level"] == "error" and down["database"] == DATABASE
    assert down["error"] == "consuming input failed: server closed the connection unexpectedly"
    assert down["next"].startswith("tries again every 1s")
    (back,) = events(logs, "database_recovered")
    assert back["database"] == DATABASE and back["unavailable_seconds"] > 0
    assert logs.index(down) < logs.index(back)
    beats = events(logs, "daemon_heartbeat")  # heartbeats went on, without the database
    assert any("database_unavailable_since" in beat for beat in beats)
    assert not events(logs, "tick_failed", "heartbeat_failed")
    assert not [line for line in logs if "exc_info" in line or "exception" in line]
    assert logs[-1]["event"] == "daemon_stopped"


def test_any_other_failure_of_a_tick_is_logged_with_its_traceback() -> None:
    world = World(last=4)

    def bug() -> None:
        raise KeyError("a bug")

    world.script = {2: bug}
    with capture_logs() as logs:
        assert world.daemon.run() == 0
    (failed,) = events(logs, "tick_failed")
    assert failed["log_level"] == "error" and failed["exc_info"] is True
    assert not events(logs, "database_unavailable")


def test_a_lease_whose_session_ended_between_ticks_is_said_lost_and_taken_again() -> None:
    world = World(last=4)
    world.script = {2: lambda: setattr(world.lease, "ended", True)}
    with capture_logs() as logs:
        assert world.daemon.run() == 0
    assert world.ticks == 4  # the tick after the loss ran, under the new lease
    (lost,) = events(logs, "lease_lost")
    assert lost["log_level"] == "error" and lost["epoch"] == 1 and lost["database"] == DATABASE
    assert "terminating connection" in lost["error"] and "takes the lease again" in lost["next"]
    assert [line["epoch"] for line in events(logs, "leadership_acquired")] == [1, 2]
    assert not events(logs, "leadership_waited")  # no other daemon holds it: none is claimed
