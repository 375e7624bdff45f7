"""The leader lease: exactly one acting daemon per database.

PostgreSQL: a session advisory lock on a dedicated connection. SQLite: an exclusive ``flock`` on a
file beside the database.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine, make_url

from events.sql import is_postgres

__all__ = ["DatabaseLease"]

LEASE_KEY = 0x6F72636C65616465  # "orcleade"


class DatabaseLease:
    """Exactly one leader per database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Any = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None

    def acquire(self) -> bool:
        if self.held:
            return self._still_held()
        if is_postgres(self.engine):
            conn = self.engine.raw_connection()
            cur = conn.cursor()
            cur.execute("SELECT pg_try_advisory_lock(%s)", (LEASE_KEY,))
            row = cur.fetchone()
            got = bool(row and row[0])
            conn.commit()
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        path = Path(make_url(str(self.engine.url)).database or "orchestrator.db")
        fd = os.open(f"{path}.lease", os.O_RDWR | os.O_CREAT, 0o600)
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
