"""The leader lease: exactly one acting daemon per database (per schema, on PostgreSQL).

PostgreSQL: a session advisory lock on a dedicated connection, keyed by the schema the log
lives in (``current_schema()``, the first of the search path), so deployments in two schemas of
one database do not wait for each other. SQLite: an exclusive ``flock`` on
the database file itself. The lock belongs to the open file, that is to the file's identity
(device and inode), not to the path string: the same database reached through a symlink, a hard
link, a relative path or any other spelling meets the same lock (a lock file named after the
path let a second leader in through a symlink). ``flock`` and SQLite's own POSIX locks do not
interact on a local file system; over NFS ``flock`` is emulated with POSIX locks, and SQLite
itself must not be used there. An in-memory database belongs to one process: its lease is held.

Epoch: taking the lease advances the leader epoch (``events.epoch``) in the same database; the
daemon's appends carry it, so a deposed leader's append fails in the database. ``confirm`` is
the cheap check before each side effect (a provider call, a delivery): on PostgreSQL one round
trip on the lock's own session (alive, still holding the advisory lock, the epoch still ours);
on SQLite the epoch (the ``flock`` is held as long as the file descriptor is open).

The lock session's connection is the lease's alone (taken out of the pool): it is closed, never
rolled back, so a session the server ended (a restart) is let go without an error, and a lease
lost that way says the driver's reason.

A time limit (PostgreSQL, ``timeout``; the daemon's ``--lease-timeout``): PostgreSQL keeps a
paused or partitioned client's session, and its lock, for as long as the TCP connection looks
open, so a leader stopped with SIGSTOP (a frozen VM, a debugger, a stalled host) would hold the
lease forever. The lock session is given ``idle_session_timeout`` = ``timeout`` and a keeper
thread touches it every quarter of that while the process runs; a process that stops running
loses its session, and the lock, ``timeout`` later, and another daemon takes over. The daemon's
other sessions get ``idle_in_transaction_session_timeout`` = ``timeout`` (``limit_sessions``),
so a transaction it was stopped in (the append lock held) ends too. When it runs again, its
next check or append meets the loss (a new epoch) and it stands down. SQLite needs none: the
``flock`` is one host's, and a stopped leader there is the host's to resume or kill.
"""

from __future__ import annotations

import fcntl
import os
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from events import connections
from events import epoch as leader_epoch
from events.sql import ADVISORY_LOCK_KEY, is_postgres
from events.store import LeaseLost
from orchestrator.domain.errors import OrchestratorError

__all__ = ["LEASE_TIMEOUT", "DatabaseLease", "limit_sessions"]

LEASE_KEY = 0x6F72636C65616465  # "orcleade"
LEASE_TIMEOUT = timedelta(seconds=30)
_LIMITED = "orchestrator_idle_limit"  # the pooled connection's mark: its limit is set


def _milliseconds(timeout: timedelta) -> int:
    return max(1, round(timeout.total_seconds() * 1000))


def limit_sessions(engine: Engine, timeout: timedelta | None) -> None:
    """PostgreSQL: every session ``engine`` hands out ends a transaction left idle for longer
    than ``timeout`` (``idle_in_transaction_session_timeout``); nothing on SQLite or for None."""
    if timeout is None or not is_postgres(engine):
        return
    statement = f"SET idle_in_transaction_session_timeout = {_milliseconds(timeout)}"

    @event.listens_for(engine, "checkout")
    def _limit(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if record.info.get(_LIMITED):
            return
        cur = dbapi_conn.cursor()
        try:
            cur.execute(statement)
        finally:
            cur.close()
        dbapi_conn.commit()
        record.info[_LIMITED] = True


class DatabaseLease:
    """Exactly one leader per database."""

    def __init__(self, engine: Engine, timeout: timedelta | None = None) -> None:
        self.engine = engine
        self.timeout = timeout  # PostgreSQL: the lease ends this long after the process stops
        self._lock = threading.Lock()  # the lock session is used by the keeper thread too
        self._keeper: threading.Thread | None = None
        self._stop_keeper = threading.Event()
        self._conn: Any = None
        self._fd: int | None = None
        self._private = False  # an in-memory database: no other process can reach it
        self._epoch: int | None = None
        self._holder: int | None = None  # PostgreSQL: the lock session's backend pid

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None or self._private

    @property
    def epoch(self) -> int | None:
        """The leader epoch this lease was taken at; None when not held."""
        return self._epoch if self.held else None

    @property
    def fence(self) -> tuple[int, int | None] | None:
        """What the daemon's appends carry (``events.epoch``): the epoch and the lock session."""
        epoch = self.epoch
        return None if epoch is None else (epoch, self._holder)

    def confirm(self) -> None:
        """Raise ``LeaseLost`` (and let the lease go) unless it is still held at its epoch."""
        mine = self.epoch
        if mine is None:
            raise LeaseLost("this daemon does not hold the leader lease")
        if self._private:
            return
        try:
            now = self._current_epoch()
        except LeaseLost:
            self.release()
            raise
        except Exception as exc:  # the session is gone, and the lock with it
            self.release()
            why = connections.fault(self.engine, exc) or type(exc).__name__
            raise LeaseLost(f"the leader lease's database session is lost: {why}") from None
        if now != mine:
            self.release()
            leader_epoch.check(mine, now)

    def _current_epoch(self) -> int:
        if self._conn is None:
            with self.engine.connect() as conn:
                return int(conn.exec_driver_sql(leader_epoch.CURRENT).scalar_one())
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute(f"SELECT ({leader_epoch.CURRENT}), EXISTS (SELECT 1 FROM pg_locks "
                            "WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted)")
                epoch, locked = cur.fetchone()
                self._conn.commit()
            finally:
                cur.close()
        if not locked:
            raise LeaseLost("the leader lease's advisory lock is no longer held")
        return int(epoch)

    def acquire(self) -> bool:
        if self.held:
            return self._still_held()
        if is_postgres(self.engine):
            pooled = self.engine.raw_connection()
            conn: Any = pooled.driver_connection
            pooled.detach()  # the lock is the session's: closing it must end the session, not
            try:  # hand it (and the lock) back to the pool; ours alone, it is closed by us,
                # never rolled back on a session the server ended
                cur = conn.cursor()
                if self.timeout is not None:  # the session ends once nothing touches it
                    cur.execute(f"SET idle_session_timeout = {_milliseconds(self.timeout)}")
                # one lease per schema the log lives in (the first of the search path): two
                # deployments in two schemas of one database are two leaders, one schema one
                cur.execute("SELECT pg_try_advisory_lock(hashtextextended(current_schema(), %s)),"
                            " pg_backend_pid()", (LEASE_KEY,))
                got, pid = cur.fetchone()
                conn.commit()
                if got:
                    self._holder = int(pid)
                    self._epoch = leader_epoch.advance(conn, True, ADVISORY_LOCK_KEY)
            except BaseException:
                self._holder = None
                conn.close()
                raise
            if not got:
                conn.close()
                return False
            self._conn = conn
            self._keep(conn)
            return True
        if not self._lock_file():
            return False
        if not self._private:
            raw = self.engine.raw_connection()
            try:
                self._epoch = leader_epoch.advance(raw.driver_connection, False, 0)
            except BaseException:
                self.release()
                raise
            finally:
                raw.close()
        else:
            self._epoch = 0
        return True

    def _lock_file(self) -> bool:
        database = make_url(str(self.engine.url)).database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            self._private = True
            return True
        try:
            fd = os.open(database, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise OrchestratorError(
                f"lease: cannot open the database file {database} ({exc.strerror}); initialise "
                "it with: orchestrator init"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _still_held(self) -> bool:
        try:
            self.confirm()
        except LeaseLost:
            return False
        return True

    def _keep(self, conn: Any) -> None:
        """Touch the lock session every quarter of the timeout while this process runs."""
        if self.timeout is None:
            return
        stop = self._stop_keeper = threading.Event()
        every = self.timeout.total_seconds() / 4

        def touch() -> None:
            while not stop.wait(every):
                with self._lock:
                    if stop.is_set():
                        return
                    try:
                        conn.execute("SELECT 1")
                        conn.commit()
                    except Exception:  # the session is gone: the next confirm says so
                        return

        self._keeper = threading.Thread(target=touch, name="lease-keeper", daemon=True)
        self._keeper.start()

    def release(self) -> None:
        self._stop_keeper.set()
        if self._conn is not None:
            try:
                with self._lock:
                    self._conn.close()
            finally:
                self._conn = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._private = False
        self._epoch = self._holder = None
