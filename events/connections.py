"""Connection faults: the errors that mean the database cannot be used now, and what is done
with a connection one of them struck.

A *fault* is not a wrong statement but the database being away: the server restarting or shut
down (its sessions are ended: ``AdminShutdown``), crashed and recovering, refusing connections,
the socket lost; on SQLite a locked or full database, an I/O error, a file that cannot be
opened. ``fault`` says which errors are faults and gives the driver's own first line for a log;
the daemon logs one line per outage with it and tries again at its next tick, and a command
prints it and exits 1.

After a PostgreSQL restart every pooled connection is dead. SQLAlchemy throws a connection
away, with the rest of the pool, when it sees a disconnect; but its test (psycopg marked the
socket closed) misses the usual case, where the server's goodbye (``AdminShutdown``) is read
before the socket's end: it would then roll the dead connection back (which fails, logging a
traceback) and keep the others, each failing a later call. ``watch`` (for SQLAlchemy's own
statements) and ``borrowed`` (for the store's hot paths, which use the driver's connection
directly) treat any driver ``OperationalError`` or ``InterfaceError`` on PostgreSQL as a
disconnect: the connection is thrown away unrolled-back and the pool emptied, and the next call
opens a fresh one. A statement timeout, the only other such error, costs a reconnect.

``Held`` keeps one pooled connection for a store's appends between calls: a pool checkout and
return cost a single-event append about as much as its statement (68 k instructions of 407 k).
It is let go exactly where ``borrowed`` would give it back or throw it away (any error; on a
connection fault the pool is emptied too), when the engine is disposed (its pool replaced),
after the pool's ``recycle`` time, and in a forked child (left alone there: the parent's).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["Held", "borrowed", "fault", "named", "watch"]

_CHAIN_DEPTH = 8  # how far down __cause__ / __context__ a fault is looked for


def named(engine: Engine) -> str:
    """The database as a log names it: its URL without the password."""
    return engine.url.render_as_string(hide_password=True)


def fault(engine: Engine, exc: BaseException) -> str | None:
    """The driver's first line when ``exc`` (or what caused it) says the database cannot be
    used now; None for any other error (a wrong statement, a constraint, our own errors)."""
    driver = engine.dialect.loaded_dbapi
    link: BaseException | None = exc
    for _ in range(_CHAIN_DEPTH):
        if link is None:
            return None
        if isinstance(link, sa.exc.DBAPIError) and (
                link.connection_invalidated
                or isinstance(link, sa.exc.OperationalError | sa.exc.InterfaceError)):
            return _first_line(link.orig if link.orig is not None else link)
        if isinstance(link, driver.OperationalError | driver.InterfaceError) and (
                getattr(link, "sqlite_errorname", None) != "SQLITE_ERROR"):  # SQL, not SQLite
            return _first_line(link)
        link = link.__cause__ or link.__context__
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _connection_fault(engine: Engine, exc: BaseException) -> bool:
    """Whether ``exc``, raised by the driver on a PostgreSQL connection, leaves that connection
    unusable (the server ended or lost the session) or may have."""
    driver = engine.dialect.loaded_dbapi
    return engine.dialect.name == "postgresql" and isinstance(
        exc, driver.OperationalError | driver.InterfaceError)


def watch(engine: Engine) -> None:
    """Have SQLAlchemy take a connection fault on PostgreSQL for a disconnect."""
    @sa.event.listens_for(engine, "handle_error")
    def _fault(context: sa.engine.ExceptionContext) -> None:
        if _connection_fault(engine, context.original_exception):
            context.is_disconnect = True


@contextlib.contextmanager
def borrowed(engine: Engine) -> Iterator[Any]:
    """A pooled connection's driver connection, given back after; on a connection fault it is
    thrown away (no rollback is tried on it) and the pool is emptied."""
    raw = engine.raw_connection()
    try:
        yield raw.driver_connection
    except BaseException as exc:
        if _connection_fault(engine, exc):
            raw.invalidate(exc)
            engine.dispose()  # a restarted server dropped the others too
        raise
    finally:
        raw.close()


_forks = 0  # forks this process came through: a connection held before one is the parent's
_FORKED: list[Any] = []  # connections a child inherited: never used, closed or collected there


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)
_HELD: weakref.WeakKeyDictionary[Engine, weakref.WeakSet[Held]] = weakref.WeakKeyDictionary()


def _disposed(engine: Engine) -> None:
    for held in list(_HELD.get(engine, ())):
        held.close(wait=False)


class Held:
    """One pooled connection kept between calls for the thread that holds the lock, a fresh
    pooled one (``borrowed``) for a thread that comes while another uses it. Its driver
    connection is given in the state the pool would give it: no transaction open."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._raw: Any = None  # the pooled connection held, or None
        self._release: Any = None  # gives it back to its pool (also when this is collected)
        self._pool: Any = None  # the pool it came from
        self._forks = _forks
        self._until = 0.0  # monotonic time after which it goes back to the pool (its recycle)
        # SQLite's :memory: pool gives each thread its own database: nothing to hold there
        self._holds = not isinstance(engine.pool, sa.pool.SingletonThreadPool)
        if self._holds:
            if engine not in _HELD:
                _HELD[engine] = weakref.WeakSet()
                sa.event.listen(engine, "engine_disposed", _disposed)
            _HELD[engine].add(self)

    @contextlib.contextmanager
    def driver(self) -> Iterator[Any]:
        """The held connection's driver connection (taken from the pool when there is none)."""
        if not self._holds or not self._lock.acquire(blocking=False):
            with borrowed(self._engine) as conn:
                yield conn
            return
        try:
            raw = self._raw
            if (raw is None or self._pool is not self._engine.pool or self._forks != _forks
                    or time.monotonic() > self._until):
                raw = self._take()
            try:
                yield raw.driver_connection
            except BaseException as exc:
                self._let_go(exc)
                raise
        finally:
            self._lock.release()

    def close(self, wait: bool = True) -> None:
        """Give the held connection back to its pool (``wait=False``: unless in use now; the
        next call then lets it go, its pool being another)."""
        if not self._lock.acquire(blocking=wait):
            return
        try:
            self._let_go(None)
        finally:
            self._lock.release()

    def _take(self) -> Any:
        self._let_go(None)
        raw = self._engine.raw_connection()
        self._raw, self._pool, self._forks = raw, self._engine.pool, _forks
        recycle = getattr(self._pool, "_recycle", -1)
        self._until = time.monotonic() + recycle if recycle > 0 else float("inf")
        self._release = weakref.finalize(self, raw.close)
        self._release.atexit = False
        return raw

    def _let_go(self, exc: BaseException | None) -> None:
        """Drop the held connection: back to its pool, or thrown away (the pool emptied) after
        a connection fault, or left alone in a forked child."""
        raw, release, pool = self._raw, self._release, self._pool
        if raw is None:
            return
        self._raw = self._release = self._pool = None
        if self._forks != _forks:
            release.detach()
            _FORKED.append(raw)
        elif exc is not None and _connection_fault(self._engine, exc):
            release.detach()
            raw.invalidate(exc)
            self._engine.dispose()  # a restarted server dropped the others too
        elif pool is not self._engine.pool:  # disposed: closed, not kept by the pool let go
            release.detach()
            raw.invalidate()
        else:
            release()
