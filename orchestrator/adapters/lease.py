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
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from sqlalchemy.engine import Engine, make_url

from events.sql import is_postgres
from orchestrator.domain.errors import OrchestratorError

__all__ = ["DatabaseLease"]

LEASE_KEY = 0x6F72636C65616465  # "orcleade"


class DatabaseLease:
    """Exactly one leader per database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Any = None
        self._fd: int | None = None
        self._private = False  # an in-memory database: no other process can reach it

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None or self._private

    def acquire(self) -> bool:
        if self.held:
            return self._still_held()
        if is_postgres(self.engine):
            conn = self.engine.raw_connection()
            conn.detach()  # the lock is the session's: closing it must end the session, not
            cur = conn.cursor()  # hand it (and the lock) back to the pool
            # one lease per schema the log lives in (the first of the search path): two
            # deployments in two schemas of one database are two leaders, one schema one
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(current_schema(), %s))",
                        (LEASE_KEY,))
            row = cur.fetchone()
            got = bool(row and row[0])
            conn.commit()
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        return self._lock_file()

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
        if self._conn is None:
            return True
        try:
            cur = self._conn.cursor()
            cur.execute("SELECT 1")
            self._conn.commit()
            return True
        except Exception:  # the session is gone, and the lock with it
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._private = False
