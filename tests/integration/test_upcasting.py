"""Upcasters run: an event stored under an old schema version reads back as the current one.

As eventsourcing's test_upcasting: store an event, then "ship new code" (a higher schema version
and the upcasters between), and read the same stored row through the real SQL store. The stored
bytes never change, so the hash chain still verifies.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from events import catalog as ev
from events.chain import Verified, verify
from events.sql import SQLEventStore, create_engine, upgrade
from events.store import NewEvent

AT = datetime(2026, 11, 22, 12, tzinfo=UTC)


class Renamed(ev.Event):
    """A test-only event type: v1 had ``name``; v2 calls it ``label``; v3 adds ``note``."""

    type_name: ClassVar[str] = "test.upcasting.renamed"
    schema_version: ClassVar[int] = 1
    name: str = ""
    label: str = ""
    note: str = ""


def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in payload.items() if k != "name"}
    out["label"] = payload["name"]
    return out


def _v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "note": "added in v3"}


@pytest.fixture
def shipped_v3() -> Any:
    """The code moves to v3 with its two upcasters; afterwards, back to v1 for other tests."""
    ev.upcaster(Renamed.type_name, 1)(_v1_to_v2)
    ev.upcaster(Renamed.type_name, 2)(_v2_to_v3)
    Renamed.schema_version = 3
    yield
    Renamed.schema_version = 1
    for version in (1, 2):
        ev._UPCASTERS.pop((Renamed.type_name, version), None)


def test_a_v1_payload_is_upcast_step_by_step_to_the_current_version(shipped_v3: Any) -> None:
    assert ev.upcast(Renamed.type_name, 1, {"name": "payments"}) == {
        "label": "payments", "note": "added in v3"}
    event = ev.decode(Renamed.type_name, 1, {"name": "payments"})
    assert event == Renamed(label="payments", note="added in v3")


def test_an_event_stored_as_v1_reads_back_as_v3_through_the_sql_store(
        tmp_path: Any, shipped_v3: Any) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    upgrade(engine)
    store = SQLEventStore(engine, clock=lambda: AT)
    Renamed.schema_version = 1  # the old code writes
    store.append("app:payments", [NewEvent(Renamed(name="payments"), AT, "cli:test")], 0)
    Renamed.schema_version = 3  # the new code reads
    (record,) = list(store.read())
    assert record.schema_version == 1  # the stored row is never rewritten
    assert record.event == Renamed(label="payments", note="added in v3")
    assert isinstance(verify(store.read()), Verified)  # the chain is untouched
    engine.dispose()


def test_a_missing_upcaster_and_a_version_newer_than_the_code_are_named(
        shipped_v3: Any) -> None:
    ev._UPCASTERS.pop((Renamed.type_name, 2))
    with pytest.raises(ev.UnknownEventType, match=r"no upcaster for 'test.upcasting.renamed' v2"):
        ev.decode(Renamed.type_name, 1, {"name": "x"})
    with pytest.raises(ev.UnknownEventType, match="v4 is newer than this code"):
        ev.upcast(Renamed.type_name, 4, {"label": "x"})


def test_every_shipped_event_type_is_at_a_version_its_upcasters_reach() -> None:
    """For each event type of the catalog at version n > 1, upcasters 1..n-1 exist."""
    for name, cls in ev.event_types().items():
        for version in range(1, cls.schema_version):
            assert (name, version) in ev._UPCASTERS, f"{name}: no upcaster from v{version}"
