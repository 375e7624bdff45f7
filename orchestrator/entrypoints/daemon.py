"""The daemon: a metronome on the injected clock, a leader lease, and clean signals.

The loop runs ``tick`` every interval, and again at the next credential expiry instant when
that comes first, so expiry is enforced within a second of it whatever the interval. Every
instant is read from the clock the composition root was given (never from the machine's clock
directly), and the loop reads it again at least every ``poll`` seconds while it waits: a test
that moves a virtual clock sees the daemon act at the virtual instant. The event log is the only
durable state. Several daemons may run against one database: a lease makes exactly one the
leader (PostgreSQL: a session advisory lock on a dedicated connection; SQLite: an exclusive
``flock`` on the database file itself, whatever path reaches it); the others keep trying each
interval. Each new leader advances the leader epoch; its appends are fenced with it, and the
lease is confirmed before each provider call, delivery and keystore write
(``orchestrator.app.fencing``): a tick that meets ``LeaseLost`` stops at once, ``lease_lost`` is
logged at error, the lease is let go and the daemon waits as a standby again (it takes the
lease again, at a new epoch, once it is free). SIGTERM and Ctrl-C finish the current step and exit 0. A ``daemon_heartbeat`` line
(role, ticks, the next expiry and the next rotation due) is logged after the first tick and then
every minute.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog

from events.store import LeaseLost
from orchestrator.app.ports import Lease

__all__ = ["Daemon"]

log = structlog.get_logger("orchestrator.daemon")
POLL = timedelta(seconds=0.5)
HEARTBEAT = timedelta(minutes=1)


class Daemon:
    def __init__(
        self,
        tick: Callable[[], Any],
        next_expiry: Callable[[datetime], datetime | None],
        lease: Lease,
        clock: Callable[[], datetime],
        interval: timedelta = timedelta(seconds=30),
        poll: timedelta = POLL,
        describe: Callable[[datetime], dict[str, Any]] = lambda _now: {},
        heartbeat: timedelta = HEARTBEAT,
    ) -> None:
        self._tick = tick
        self._next_expiry = next_expiry
        self.lease = lease
        self.clock = clock
        self.interval = interval
        self.poll = poll
        self.heartbeat = heartbeat
        self._describe = describe  # what the heartbeat says besides role and ticks
        self.ticks = 0
        self.stopping = threading.Event()
        self.expiry_at: datetime | None = None  # the next expiry instant within an interval
        self._leader = False
        self._waiting_logged = False

    @property
    def leader(self) -> bool:
        return self._leader

    def run_once(self) -> bool:
        """One tick if this process is (or becomes) the leader; False when another leads."""
        if not self.lease.acquire():
            if self._leader or not self._waiting_logged:
                log.info("leadership_waited", reason="another daemon holds the lease")
                self._waiting_logged = True
            self._leader = False
            return False
        if not self._leader:
            log.info("leadership_acquired", epoch=self.lease.epoch)
            self._leader = True
        epoch = self.lease.epoch
        try:
            self._tick()
        except LeaseLost as exc:
            log.error("lease_lost", epoch=epoch, error=str(exc))
            self.lease.release()
            self._leader = False
            self._waiting_logged = False
            return False
        self.ticks += 1
        self._note_expiry()
        return True

    def _job(self) -> None:
        try:
            self.run_once()
        except Exception as exc:  # a tick never kills the daemon
            log.exception("tick_failed", error=str(exc))

    def _note_expiry(self) -> None:
        now = self.clock()
        at = self._next_expiry(now)
        self.expiry_at = at if at is not None and at - now <= self.interval else None

    def stop(self, *_args: Any) -> None:
        """The signal handler: only sets the flag (logging here could re-enter a write)."""
        self.stopping.set()

    def _due(self, next_tick: datetime) -> datetime:
        return next_tick if self.expiry_at is None else min(next_tick, self.expiry_at)

    def _beat(self, now: datetime) -> None:
        fields = {k: v.isoformat() if isinstance(v, datetime) else v
                  for k, v in self._describe(now).items()}
        log.info("daemon_heartbeat", role="leader" if self._leader else "standby",
                 ticks=self.ticks, **fields)

    def run(self) -> int:
        """Tick until SIGTERM / Ctrl-C; finish the current step; exit status 0."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        log.info("daemon_started", interval_seconds=self.interval.total_seconds())
        next_tick = next_beat = self.clock()
        try:
            while not self.stopping.is_set():
                now = self.clock()
                if now >= self._due(next_tick):
                    self._job()
                    if self.expiry_at is not None and self.expiry_at <= now:
                        self.expiry_at = None  # not done (standby, a failure): the next tick
                    if now >= next_tick:  # ticks missed while busy are coalesced into one
                        next_tick += self.interval
                        if next_tick <= now:
                            next_tick = now + self.interval
                if now >= next_beat and not self.stopping.is_set():
                    self._beat(now)
                    next_beat = now + self.heartbeat
                wait = min(self._due(next_tick), next_beat) - self.clock()
                if wait > timedelta(0):
                    self.stopping.wait(min(wait, self.poll).total_seconds())
        finally:
            if self.stopping.is_set():
                log.info("shutdown_requested")
            self.lease.release()
            log.info("daemon_stopped")
        return 0
