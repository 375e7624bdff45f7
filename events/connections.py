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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["borrowed", "fault", "named", "watch"]

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
