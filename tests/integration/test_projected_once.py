"""The read model is caught up once per rotation advanced (and per action of a tick), not after
each append.

Each catch-up of the projector is a transaction of its own, durable like the append's; a key
rotation makes 8 appends. ``Service.projected_once`` defers the catch-up to the end of
``Rotator.advance`` and of each action a tick carries out: the read model then equals the log's
fold, having been written once. A body that raises projects nothing (its error is the one
raised), and the next catch-up brings the read model level with the log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from events.projector import Projector
from events.sql import SQLEventStore
from events.state import fold, stream_id
from events.store import ReadFilter
from orchestrator.adapters.delivery import FileDelivery
from orchestrator.adapters.keystore import MemoryKeystore
from orchestrator.bootstrap import Core, fast_keys, wire
from orchestrator.domain.planner import PlanPolicy
from orchestrator.domain.rotation import Params, Reason

DAY = timedelta(days=1)
NOW = datetime(2027, 6, 1, tzinfo=UTC)
PARAMS = Params(usage="private_key_jwt", algorithm="RS256", overlap=timedelta(0),
                lifetime=90 * DAY)
POLICY = PlanPolicy(name="keys", params=PARAMS, every=90 * DAY, before_expiry=14 * DAY,
                    retention=7 * DAY)


class Counted(Projector):
    """The projector, counting its catch-ups that found something to project."""

    catch_ups = 0

    def catch_up(self, batch: int = 5000) -> int:
        applied = super().catch_up(batch)
        self.catch_ups += applied > 0
        return applied


def wired(engine: Engine, tmp_path: Path) -> tuple[Core, Counted, SQLEventStore]:
    store = SQLEventStore(engine, clock=lambda: NOW)
    projector = Counted(engine, store)
    core = wire(store, keystore=MemoryKeystore(), clock=lambda: NOW, policies=lambda: [POLICY],
                delivery=FileDelivery(tmp_path / "delivery"), crypto=fast_keys(),
                projector=projector)
    return core, projector, store


def assert_read_model_is_the_log(projector: Projector, store: SQLEventStore, *apps: str) -> None:
    for app in apps:
        logged = fold(app, [(r.event, r.occurred_at)
                            for r in store.read(ReadFilter(stream_id=stream_id(app)))])
        assert projector.states_of([app]) == [logged]


def test_a_rotation_is_projected_once(engine: Engine, tmp_path: Path) -> None:
    core, projector, store = wired(engine, tmp_path)
    core.service.register_app("payments", {})
    assert projector.catch_ups == 1  # a single append, outside any rotation: projected at once
    rid = core.rotator.start("payments", "private_key_jwt", Reason.MANUAL)
    assert rid is not None and projector.catch_ups == 2
    appended = len(list(store.read()))

    outcome = core.rotator.advance("payments", rid, PARAMS)

    assert outcome.last.step.value == "complete" and not outcome.failed
    assert len(list(store.read())) - appended >= 6  # generate ... complete, each an append
    assert projector.catch_ups == 3  # once for all of them
    assert_read_model_is_the_log(projector, store, "payments")


def test_a_tick_projects_once_per_action(engine: Engine, tmp_path: Path) -> None:
    core, projector, store = wired(engine, tmp_path)
    for app in ("a", "b", "c"):
        core.service.register_app(app, {})
    before = projector.catch_ups

    report = core.ticker.tick()  # each provisioned: start + advance to the end, per action

    assert report.done["start"] == 3 and report.failed == 0
    assert projector.catch_ups - before == 3
    assert_read_model_is_the_log(projector, store, "a", "b", "c")


class Away(Exception):
    """Something failed in the middle of the body."""


def test_a_body_that_raises_projects_nothing_and_raises_its_own_error(
        engine: Engine, tmp_path: Path) -> None:
    core, projector, store = wired(engine, tmp_path)
    before = projector.catch_ups
    with pytest.raises(Away), core.service.projected_once():
        core.service.register_app("payments", {})
        raise Away("the process was asked to stop")
    assert projector.catch_ups == before
    assert projector.states_of(["payments"]) == []  # lags the log ...
    projector.catch_up()
    assert_read_model_is_the_log(projector, store, "payments")  # ... until the next catch-up
