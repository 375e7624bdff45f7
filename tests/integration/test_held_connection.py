"""The connection a store keeps for its appends (``events.connections.Held``): one pool checkout
for many appends, a pooled connection of its own for a call that comes while it is in use, and
given back to the pool after an error, on ``close`` and when the engine is disposed. (Thrown away
on a PostgreSQL restart: tests/integration/test_fault_pg_restart.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from events import catalog as ev
from events.connections import Held
from events.sql import SQLEventStore
from events.store import ConcurrencyError, NewEvent

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def registered(app: str) -> list[NewEvent]:
    return [NewEvent(event=ev.ApplicationRegistered(app=app), occurred_at=NOW, actor="ops")]


class Pool:
    """What the engine's pool hands out and takes back, counted with the pool's events."""

    def __init__(self, engine: Engine) -> None:
        self.out = 0
        self.back = 0
        sa.event.listen(engine, "checkout", self._checkout)
        sa.event.listen(engine, "checkin", self._checkin)

    def _checkout(self, *_: object) -> None:
        self.out += 1

    def _checkin(self, *_: object) -> None:
        self.back += 1

    @property
    def held(self) -> int:
        return self.out - self.back


def test_appends_take_one_connection_from_the_pool_and_keep_it(engine: Engine) -> None:
    pool = Pool(engine)
    store = SQLEventStore(engine)
    for app in "abcdef":
        store.append(f"app:{app}", registered(app), 0)
    assert (pool.out, pool.held) == (1, 1)
    store.close()
    assert pool.held == 0


def test_a_call_while_it_is_in_use_gets_another_pooled_connection(engine: Engine) -> None:
    held = Held(engine)
    with held.driver() as first, held.driver() as second:
        assert first is not second
    with held.driver() as again:
        assert again is first
    held.close()


def test_an_error_gives_it_back_and_the_next_append_takes_one_again(engine: Engine) -> None:
    pool = Pool(engine)
    store = SQLEventStore(engine)
    store.append("app:a", registered("a"), 0)
    with pytest.raises(ConcurrencyError):
        store.append("app:a", registered("a"), 0)
    assert pool.held == 0
    store.append("app:b", registered("b"), 0)
    assert (pool.out, pool.held) == (2, 1)
    store.close()


def test_disposing_the_engine_closes_it(engine: Engine) -> None:
    closed: list[object] = []
    sa.event.listen(engine, "close", lambda conn, _record: closed.append(conn))
    store = SQLEventStore(engine)
    store.append("app:a", registered("a"), 0)
    with store._held.driver() as conn:
        pass
    engine.dispose()
    assert conn in closed
    assert [r.stream_id for r in store.append("app:b", registered("b"), 0)] == ["app:b"]
    store.close()
