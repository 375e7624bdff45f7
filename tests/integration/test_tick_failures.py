"""A tick that fails part way forgets none of the applications it had taken.

The ticker plans only the applications that changed or fell due: it takes them off its heap and
its changed set at the start of a tick. A tick that raises (the database went away under it)
must leave them due at the next, or an application whose log did not move would wait until
something else changed it (found with PostgreSQL restarted under the daemon,
tests/integration/test_fault_pg_restart.py). Wired through ``bootstrap.in_memory`` with a virtual
clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from events.store import ReadFilter
from orchestrator.bootstrap import fast_keys, in_memory
from orchestrator.domain.planner import PlanPolicy
from orchestrator.domain.rotation import Params
from tests.conftest import NOW

DAY = timedelta(days=1)
POLICIES = (PlanPolicy("keys", Params("private_key_jwt", overlap=timedelta(hours=1)),
                       every=30 * DAY, before_expiry=10 * DAY, retention=7 * DAY),)


class Away(Exception):
    """The database went away under the tick."""


def started(core: Any) -> list[str]:
    return [r.stream_id.removeprefix("app:")
            for r in core.store.read(ReadFilter(types=("rotation.started",)))]


def test_the_applications_of_a_failed_tick_are_planned_at_the_next() -> None:
    now = [NOW]
    core = in_memory(lambda: now[0], lambda: POLICIES, crypto=fast_keys())
    for app in ("a", "b"):
        core.service.register_app(app, {})
    for _ in range(3):  # provisioned, and settled: next due by age alone, in 30 days
        core.ticker.tick()
        now[0] += timedelta(hours=2)
    assert sorted(started(core)) == ["a", "b"]
    start = core.rotator.start
    calls: list[str] = []

    def start_once_away(app: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(app)
        if len(calls) == 1:
            raise Away("server closed the connection unexpectedly")  # before any append
        return start(app, *args, **kwargs)

    core.rotator.start = start_once_away  # type: ignore[method-assign]
    now[0] = NOW + 31 * DAY  # due by age; nothing moved in the log: they come back by time
    with pytest.raises(Away):
        core.ticker.tick()
    now[0] += timedelta(seconds=1)
    core.ticker.tick()
    assert sorted(started(core)) == ["a", "a", "b", "b"]
