"""Which errors say the database is away (``events.connections.fault``), and how a log names it.

A fault is the database unusable now (the daemon says so once and tries again), not a wrong
statement or our own error (the daemon logs those with their traceback). The engines here are
never connected.
"""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from events.connections import fault, named
from events.store import LeaseLost

SQLITE = sa.create_engine("sqlite://")
POSTGRES = sa.create_engine("postgresql+psycopg://orchestrator:s3cret@db.example:5432/log")


def sqlite_error(message: str, name: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorname = name
    return error


def wrapped(orig: Exception) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, orig)


def chained(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception:
            raise outer from None  # as the lease raises LeaseLost
    except Exception as exc:
        return exc


@pytest.mark.parametrize(("error", "said"), [
    pytest.param(sqlite_error("database or disk is full", "SQLITE_FULL"),
                 "database or disk is full", id="a full disk"),
    pytest.param(sqlite_error("database is locked", "SQLITE_BUSY"), "database is locked",
                 id="a lock held too long"),
    pytest.param(wrapped(sqlite_error("disk I/O error", "SQLITE_IOERR")), "disk I/O error",
                 id="wrapped by SQLAlchemy"),
    pytest.param(chained(LeaseLost("lost"), sqlite_error("unable to open database file",
                                                         "SQLITE_CANTOPEN")),
                 "unable to open database file", id="the cause of another error"),
    pytest.param(sqlite_error("near 'SELEC': syntax error", "SQLITE_ERROR"), None,
                 id="a wrong statement is no fault"),
    pytest.param(sqlite3.IntegrityError("UNIQUE constraint failed"), None, id="a constraint"),
    pytest.param(KeyError("a bug"), None, id="our own error"),
])
def test_fault_names_what_makes_the_database_unusable(error: Exception, said: str | None) -> None:
    assert fault(SQLITE, error) == said


def test_the_first_line_of_the_drivers_message_is_said() -> None:
    error = sqlite_error("database is locked\nDETAIL: the rest", "SQLITE_BUSY")
    assert fault(SQLITE, wrapped(error)) == "database is locked"


def test_a_log_names_the_database_without_its_password() -> None:
    assert named(POSTGRES) == "postgresql+psycopg://orchestrator:***@db.example:5432/log"


def test_a_postgres_server_that_never_answers_fails_the_connect(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that takes the TCP connection but never speaks (a server gone silent) fails a
    connect after the store's CONNECT_TIMEOUT (1 s here) rather than the kernel's minutes, and
    that is a fault; a ``connect_timeout`` in the URL is the user's and is left alone."""
    import socket

    from events import sql

    monkeypatch.setattr(sql, "CONNECT_TIMEOUT", 1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or writes
        engine = sql.create_engine(f"postgresql://orchestrator@127.0.0.1:{silent.getsockname()[1]}/log")
        with pytest.raises(sa.exc.OperationalError) as refused:
            engine.connect()
        engine.dispose()
    assert "timeout" in str(refused.value).lower()
    assert fault(engine, refused.value) is not None
    own = sql.create_engine("postgresql://orchestrator@db.example/log?connect_timeout=30")
    assert own.dialect.create_connect_args(own.url)[1]["connect_timeout"] == "30"
