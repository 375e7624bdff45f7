"""The leader epoch (table ``leader_epoch``, one row): taken by each new leader, checked by its
appends, so that a deposed leader's write fails in the database itself.

``advance`` runs when a daemon takes the lease: epoch + 1, under the lock every append takes
(PostgreSQL: the transaction advisory lock of ``events.sql``; SQLite: the write lock of
``BEGIN IMMEDIATE``), so the new epoch falls strictly between two appends: an append either
committed before it, or reads it and is refused. ``check`` runs inside the append's
transaction, under that same lock: a writer whose epoch is not the current one raises
``LeaseLost`` and the transaction is rolled back. On PostgreSQL the append also checks that
the leader's lock session (its backend pid, the ``holder``) still holds its advisory lock: that
closes the gap between the lock session's end and the next leader's epoch, in which the epoch
alone would still match. Writers that are not leaders (the command line) append unfenced.
"""

from __future__ import annotations

from typing import Any

from events.store import LeaseLost

__all__ = ["CURRENT", "HELD", "Fence", "advance", "check", "current"]

CURRENT = "SELECT epoch FROM leader_epoch WHERE id = 1"
# the leader's lock session (a backend pid, the parameter) still holds an advisory lock
HELD = ("EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND pid = %s)")
Fence = tuple[int, int | None]  # (the writer's epoch, its lock session's backend pid or None)


def advance(conn: Any, postgres: bool, append_lock: int) -> int:
    """The next epoch, committed on the DBAPI connection ``conn`` (not in a transaction)."""
    cur = conn.cursor()
    try:
        if postgres:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (append_lock,))
            cur.execute("UPDATE leader_epoch SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch")
            row = cur.fetchone()
            conn.commit()
        else:
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("UPDATE leader_epoch SET epoch = epoch + 1 WHERE id = 1")
            row = cur.execute(CURRENT).fetchone()
            cur.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise
    finally:
        cur.close()
    return int(row[0])


def current(cur: Any) -> int:
    cur.execute(CURRENT)
    return int(cur.fetchone()[0])


def check(mine: int, now: int, held: bool = True) -> None:
    """Refuse a write at epoch ``mine`` when the database is at ``now``, or when the writer's
    lock session holds its lock no more (``held``)."""
    if not held:
        raise LeaseLost(f"the lock session of leader epoch {mine} holds the lease no more; "
                        "nothing written")
    if mine != now:
        raise LeaseLost(f"leader epoch {mine} is over: the database is at epoch {now} (another "
                        "daemon took the lease); nothing written")
