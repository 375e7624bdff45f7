"""The daemon: APScheduler as a metronome, a leader lease, and clean signals.

APScheduler 3.x with its in-memory job store (the event log is the only durable state) runs
``tick`` every interval with ``max_instances=1, coalesce=True``, plus an exact date job at the
next credential expiry instant, so expiry is enforced within a second of it. Several daemons may
run against one database: a lease makes exactly one the leader (PostgreSQL: a session advisory
lock on a dedicated connection; SQLite: an exclusive ``flock`` on the database file itself,
whatever path reaches it);
the others keep trying each interval. SIGTERM and Ctrl-C finish the current step and exit 0.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from orchestrator.app.ports import Lease

__all__ = ["Daemon"]

log = structlog.get_logger("orchestrator.daemon")


class Daemon:
    def __init__(
        self,
        tick: Callable[[], Any],
        next_expiry: Callable[[datetime], datetime | None],
        lease: Lease,
        clock: Callable[[], datetime],
        interval: timedelta = timedelta(seconds=30),
    ) -> None:
        self._tick = tick
        self._next_expiry = next_expiry
        self.lease = lease
        self.clock = clock
        self.interval = interval
        self.stopping = threading.Event()
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._leader = False
        self._ticking = threading.Lock()  # the interval job and the expiry job never overlap

    def run_once(self) -> bool:
        """One tick if this process is (or becomes) the leader; False when another leads."""
        if not self.lease.acquire():
            if self._leader or not hasattr(self, "_waiting_logged"):
                log.info("leadership_waited", reason="another daemon holds the lease")
                self._waiting_logged = True
            self._leader = False
            return False
        if not self._leader:
            log.info("leadership_acquired")
            self._leader = True
        self._tick()
        self._schedule_expiry()
        return True

    def _job(self) -> None:
        if self.stopping.is_set():
            return
        with self._ticking:
            try:
                self.run_once()
            except Exception as exc:  # a tick never kills the daemon
                log.exception("tick_failed", error=str(exc))

    def _schedule_expiry(self) -> None:
        now = self.clock()
        at = self._next_expiry(now)
        if at is None or at - now > self.interval:
            return  # the regular tick will get there first
        self.scheduler.add_job(self._job, DateTrigger(run_date=at + timedelta(milliseconds=5)),
                               id="expiry", replace_existing=True, max_instances=1,
                               coalesce=True, misfire_grace_time=None)

    def stop(self, *_args: Any) -> None:
        if not self.stopping.is_set():
            log.info("shutdown_requested")
        self.stopping.set()

    def run(self) -> int:
        """Tick until SIGTERM / Ctrl-C; finish the current step; exit status 0."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.scheduler.add_job(self._job, IntervalTrigger(seconds=self.interval.total_seconds()),
                               id="tick", max_instances=1, coalesce=True,
                               next_run_time=self.clock(), misfire_grace_time=None)
        self.scheduler.start()
        log.info("daemon_started", interval_seconds=self.interval.total_seconds())
        try:
            while not self.stopping.wait(0.5):
                pass
        finally:
            self.scheduler.shutdown(wait=True)
            self.lease.release()
            log.info("daemon_stopped")
        return 0
