"""Another writer between the tick's plan and its action: retention stays right, and no failure.

The daemon's tick plans from its in-memory fleet, and its retention delete asks the fleet, as
planned, whether the credential is still there (no read of the log); the write path then reads
the application fresh and decides again. Here a second writer (a separate store and service on
the same database, wired as the command line wires it: states read from the log) writes to the
same application right before the tick carries out the delete (``gate_with`` is asked right
before each action that touches the provider), on SQLite and PostgreSQL:

* it deleted the same credential: the tick records nothing more and counts no failure (it used
  to read the log before acting for this; a read of the fleet alone made it a failed action);
* it changed something else of the application (the active key's expiry): the tick's delete
  is still recorded, once, after that write.

And the write path's own appends reach the fleet without a read back (``FleetView.appended``)
only when nothing else was appended between: here the other writer's append comes between, so
the fleet reads both from the log, in order, and its state is the log's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from events import catalog as ev
from events.sql import SQLEventStore
from events.state import Status, fold, stream_id
from events.store import NewEvent, ReadFilter, Recorded
from orchestrator.adapters.keystore import FileKeystore
from orchestrator.bootstrap import fast_keys, wire
from orchestrator.domain.planner import PlanPolicy
from orchestrator.domain.rotation import Params

DAY = timedelta(days=1)
NOW = datetime(2027, 6, 1, tzinfo=UTC)
APP = "payments"
OLD, ACTIVE = "cred-old", "cred-active"
POLICY = PlanPolicy(name="keys", params=Params(usage="private_key_jwt", overlap=DAY,
                                               lifetime=365 * DAY),
                    every=90 * DAY, before_expiry=14 * DAY, retention=7 * DAY)


def history() -> list[NewEvent]:
    """An active key and a disabled one past retention (8 days ago: due for deletion)."""
    def added(cid: str, n: int) -> ev.CredentialAdded:
        return ev.CredentialAdded(credential_id=cid, usage="private_key_jwt", kind="public_key",
                                  kid=f"kid-{n}", fingerprint=f"sha256:{n:064x}", alg="RS256",
                                  key_size=2048, expires_at=NOW + 300 * DAY)
    return [NewEvent(e, at, "test") for e, at in (
        (ev.ApplicationRegistered(app=APP, labels={}), NOW - 60 * DAY),
        (added(OLD, 1), NOW - 60 * DAY), (ev.CredentialActivated(credential_id=OLD), NOW - 60 * DAY),
        (added(ACTIVE, 2), NOW - 10 * DAY),
        (ev.CredentialActivated(credential_id=ACTIVE), NOW - 10 * DAY),
        (ev.CredentialDisabled(credential_id=OLD), NOW - 8 * DAY))]


def types(store: SQLEventStore) -> list[tuple[str, str]]:
    return [(r.type, r.actor) for r in store.read(ReadFilter(stream_id=stream_id(APP)))][6:]


@pytest.mark.parametrize("other_write", ["same_delete", "other_change"])
def test_a_write_between_plan_and_act(engine: Engine, tmp_path: Path, other_write: str) -> None:
    store = SQLEventStore(engine)
    store.append(stream_id(APP), history(), 0)
    keystore = FileKeystore(tmp_path / "keystore", master_key=b"k" * 32)
    daemon = wire(store, keystore=keystore, clock=lambda: NOW, policies=lambda: [POLICY],
                  crypto=fast_keys(), actor="scheduler")
    cli = wire(SQLEventStore(engine), keystore=keystore, clock=lambda: NOW,
               policies=lambda: [POLICY], crypto=fast_keys(), actor="cli:ops",
               fleet_writes=False).service
    written: list[str] = []

    def meanwhile(app: str) -> None:  # right before the tick's delete of OLD
        written.append(app)
        assert store is not cli.store
        if other_write == "same_delete":
            cli.delete(app, OLD)
        else:
            cli.set_expiry(app, ACTIVE, NOW + 200 * DAY)

    daemon.ticker.gate_with(lambda app: meanwhile(app))  # None: go ahead
    report = daemon.ticker.tick()

    assert written == [APP]
    assert report.failed == 0 and report.planned == 1
    assert report.done["delete"] == 1  # carried out, or found done: not a failure either way
    if other_write == "same_delete":
        assert types(store) == [("credential.deleted", "cli:ops")]
    else:
        assert types(store) == [("credential.expiry_changed", "cli:ops"),
                                ("credential.deleted", "scheduler")]
    logged = fold(APP, [(r.event, r.occurred_at)
                        for r in store.read(ReadFilter(stream_id=stream_id(APP)))])
    assert logged.credentials[OLD].status is Status.DELETED
    assert daemon.fleet.get(APP) == logged  # the fleet read the other writer's event in order
    assert logged.version == (7 if other_write == "same_delete" else 8)


class Interleaved:
    """The daemon's store, with ``before_append`` run right before each of its appends (another
    writer's append then comes between the write path's read and its own append); counts
    the records its reads return."""

    def __init__(self, store: SQLEventStore, before_append: Callable[[], None]) -> None:
        self.store, self.before_append, self.read_back = store, before_append, 0

    def append(self, stream: str, events: Sequence[NewEvent], expected: int) -> list[Recorded]:
        self.before_append()
        return self.store.append(stream, events, expected)

    def read(self, where: ReadFilter = ReadFilter()) -> Iterator[Recorded]:
        for rec in self.store.read(where):
            self.read_back += 1
            yield rec


@pytest.mark.parametrize("between", [False, True])
def test_the_fleet_takes_its_own_appends_only_in_order(engine: Engine, tmp_path: Path,
                                                       between: bool) -> None:
    store = SQLEventStore(engine)
    store.append(stream_id(APP), history(), 0)
    keystore = FileKeystore(tmp_path / "keystore", master_key=b"k" * 32)
    cli = wire(SQLEventStore(engine), keystore=keystore, clock=lambda: NOW,
               policies=lambda: [POLICY], crypto=fast_keys(), actor="cli:ops",
               fleet_writes=False).service
    others = iter(f"other-{n}" for n in range(10))

    def another_writer() -> None:  # another application registered by the command line
        if between:
            cli.register_app(next(others), {})

    wrapped = Interleaved(store, another_writer)
    daemon = wire(wrapped, keystore=keystore, clock=lambda: NOW, policies=lambda: [POLICY],
                  crypto=fast_keys(), actor="scheduler")
    daemon.fleet.refresh()
    wrapped.read_back = 0

    daemon.service.set_expiry(APP, ACTIVE, NOW + 200 * DAY)
    daemon.fleet.refresh()

    # taken without a read back when nothing came between; else both read, in order
    assert wrapped.read_back == (2 if between else 0)
    logged = fold(APP, [(r.event, r.occurred_at)
                        for r in store.read(ReadFilter(stream_id=stream_id(APP)))])
    assert daemon.fleet.get(APP) == logged and logged.version == 7
    assert daemon.fleet.apps() == ({APP, "other-0"} if between else {APP})
    assert daemon.fleet.take_changed() >= {APP}
