"""The daemon: a metronome on the injected clock, a leader lease, and clean signals.

The loop runs ``tick`` every interval, and again at the next instant a tick has work when
that comes first (``next_wake``: a credential's expiry, so expiry is enforced within a second of
it whatever the interval; and the ticker's ``next_wake``: at once while the per-tick cap leaves
starts due, so a fleet due together is rotated at its provider's pace, and when an overlap
ends or a backoff or a window's slot comes). Every
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
lease again, at a new epoch, once it is free). A leader also confirms the lease before each tick:
a lease whose database session ended between ticks (the server restarted) is reported the same
way and taken again at once when it is free.

The database away (restarting, down, refusing connections: what ``fault`` recognises) never
stops the daemon: the first tick that meets it logs ``database_unavailable`` at error level,
once, naming the database, the driver's reason and what happens next; each later tick tries
again, quietly; the first tick that completes after it (or a standby's look at the lease) logs
``database_recovered`` with the seconds it was away. Nothing is lost meanwhile: the log is the
only state, and what was in flight resumes from it. Any other failure of a tick is logged with
its traceback (``tick_failed``) and the next tick runs as usual. SIGTERM and Ctrl-C finish the
current step and exit 0. A ``daemon_heartbeat`` line at info (role, epoch, ticks, the last
tick, what ``describe`` adds: the next expiry, the applications due next, the parked rotations;
and the last line logged at warning or above) follows every tick that did something (``tick``
returned a true value), and otherwise comes once a minute. After each tick a leader hands
``record`` its epoch, since when it leads, the instant and what the tick returned (the command
line writes them to the database for ``orchestrator status``). ``role``, ``last_tick_at``
and ``on_tick`` (each completed tick's length, measured by ``timer``) feed the metrics and the
health endpoints (``orchestrator.entrypoints.health``).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog

from events.store import LeaseLost
from orchestrator.app.ports import Lease
from orchestrator.entrypoints.logs import last_problem

__all__ = ["Daemon"]

log = structlog.get_logger("orchestrator.daemon")
POLL = timedelta(seconds=0.5)
HEARTBEAT = timedelta(minutes=1)


class Daemon:
    def __init__(
        self,
        tick: Callable[[], Any],
        next_wake: Callable[[datetime], datetime | None],
        lease: Lease,
        clock: Callable[[], datetime],
        interval: timedelta = timedelta(seconds=30),
        poll: timedelta = POLL,
        describe: Callable[[datetime], dict[str, Any]] = lambda _now: {},
        heartbeat: timedelta = HEARTBEAT,
        fault: Callable[[BaseException], str | None] = lambda _exc: None,
        database: str = "",
        on_tick: Callable[[float], None] = lambda _seconds: None,
        timer: Callable[[], float] = time.perf_counter,
        record: Callable[[int | None, datetime, datetime, Any], None] | None = None,
    ) -> None:
        self._tick = tick
        self._next_expiry = next_wake
        self.lease = lease
        self.clock = clock
        self.interval = interval
        self.poll = poll
        self.heartbeat = heartbeat
        self._describe = describe  # what the heartbeat says besides role and ticks
        self.ticks = 0
        self.stopping = threading.Event()
        self.expiry_at: datetime | None = None  # the next wake instant within an interval
        self._leader = False
        self._epoch: int | None = None  # the epoch it leads at
        self._waiting_logged = False
        self._fault = fault  # why an error means the database cannot be used now (None: not)
        self.database = database  # how the log lines name it (no password)
        self.unavailable_since: datetime | None = None  # the outage under way, if any
        self.last_tick_at: datetime | None = None  # when a tick last completed (the clock's)
        self._on_tick = on_tick  # told how long each completed tick took (real seconds)
        self._timer = timer  # measures it; never decides anything
        self._looked = False  # whether it has tried the lease yet (its role is known)
        self._record = record  # after each tick: (epoch, leader since, tick instant, result)
        self.leader_since: datetime | None = None
        self.busy = False  # the last tick did something: the heartbeat follows it at once

    @property
    def leader(self) -> bool:
        return self._leader

    @property
    def role(self) -> str:
        """``starting`` until it first tried the lease, then ``leader`` or ``standby``."""
        return "leader" if self._leader else "standby" if self._looked else "starting"

    def run_once(self) -> bool:
        """One tick if this process is (or becomes) the leader; False when another leads."""
        if self._leader:  # its session may have ended since the last tick (a restarted server)
            try:
                self.lease.confirm()
            except LeaseLost as exc:
                self._step_down(exc)
        if not self._leader:
            acquired = self.lease.acquire()
            self._looked = True
            if not acquired:
                if not self._waiting_logged:
                    log.info("leadership_waited", reason="another daemon holds the lease")
                    self._waiting_logged = True
                self._recovered()  # the database answered
                return False
            self._epoch = self.lease.epoch
            log.info("leadership_acquired", epoch=self._epoch)
            self._leader = True
            self.leader_since = self.clock()
        began = self._timer()
        at = self.clock()
        try:
            result = self._tick()
        except LeaseLost as exc:
            self._step_down(exc)
            return False
        self._on_tick(self._timer() - began)
        self.last_tick_at, self.busy = self.clock(), bool(result)
        self.ticks += 1
        if self._record is not None and self.leader_since is not None:
            self._record(self._epoch, self.leader_since, at, result)
        self._recovered()
        self._note_expiry()
        return True

    def _step_down(self, exc: LeaseLost) -> None:
        log.error("lease_lost", epoch=self._epoch, error=str(exc), database=self.database,
                  next="stopped acting; takes the lease again, at a new epoch, once it is free")
        self.lease.release()
        self._leader = False
        self.leader_since = None
        self._waiting_logged = False

    def _job(self) -> None:
        try:
            self.run_once()
        except Exception as exc:  # a tick never kills the daemon
            self._failed("tick_failed", exc)

    def _failed(self, event: str, exc: Exception) -> None:
        """A database fault: one line per outage; anything else: the line with its traceback."""
        why = self._fault(exc)
        if why is None:
            log.exception(event, error=str(exc))
        elif self.unavailable_since is None:
            self.unavailable_since = self.clock()
            log.error("database_unavailable", database=self.database, error=why,
                      next=f"tries again every {self.interval.total_seconds():g}s; the "
                           "rotations in flight resume from the log once it answers")

    def _recovered(self) -> None:
        if self.unavailable_since is not None:
            away = (self.clock() - self.unavailable_since).total_seconds()
            self.unavailable_since = None
            log.warning("database_recovered", database=self.database,
                        unavailable_seconds=round(away, 1))

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
        try:
            described = self._describe(now)  # reads the database, which may be away
        except Exception as exc:
            self._failed("heartbeat_failed", exc)
            since = self.unavailable_since
            described = {} if since is None else {"database_unavailable_since": since}
        described = {"epoch": self._epoch if self._leader else None,
                     "last_tick_at": self.last_tick_at, **described,
                     "last_error": last_problem()}
        fields = {k: v.isoformat() if isinstance(v, datetime) else v
                  for k, v in described.items()}
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
                self.busy = False
                if now >= self._due(next_tick):
                    self._job()
                    if self.expiry_at is not None and self.expiry_at <= now:
                        self.expiry_at = None  # not done (standby, a failure): the next tick
                    if now >= next_tick:  # ticks missed while busy are coalesced into one
                        next_tick += self.interval
                        if next_tick <= now:
                            next_tick = now + self.interval
                if (self.busy or now >= next_beat) and not self.stopping.is_set():
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
