"""A new leader's first tick over a large fleet enforces expiry before it decodes the fleet.

The daemon's fleet starts from the read model (``Projector.seed``), each application's state
left as the read model's text until it is first looked at; a tick planning more than
``URGENT_SPLIT`` applications plans and carries out first those the read model's expiry index
names (a credential past its expiry), then the rest. Shown here on a real SQLite store with the
projector: the expiry is appended while only a handful of the 1,100 applications have been
decoded (and the application gets a new key at once), the rest are planned in the same tick,
and the report counts both parts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from events import catalog as ev
from events.projector import Projector
from events.sql import SQLEventStore, create_engine, upgrade
from events.state import stream_id
from events.store import NewEvent
from orchestrator.adapters.keystore import MemoryKeystore
from orchestrator.app.tick import URGENT_SPLIT
from orchestrator.bootstrap import wire
from orchestrator.domain.planner import PlanPolicy
from orchestrator.domain.rotation import Params

DAY = timedelta(days=1)
NOW = datetime(2027, 6, 1, tzinfo=UTC)
APPS = 1100
EXPIRED = "app-0777"


def history(app: str, n: int) -> list[NewEvent]:
    expires = NOW - timedelta(minutes=5) if app == EXPIRED else NOW + 200 * DAY
    cid = f"cred-{n:05d}"
    return [NewEvent(e, NOW - 30 * DAY, "test") for e in (
        ev.ApplicationRegistered(app=app, labels={}),
        ev.CredentialAdded(credential_id=cid, usage="private_key_jwt", kind="public_key",
                           kid=f"kid-{n}", fingerprint=f"sha256:{n:064x}", alg="RS256",
                           key_size=2048, expires_at=expires),
        ev.CredentialActivated(credential_id=cid))]


def test_the_first_tick_expires_before_it_decodes_the_fleet(tmp_path: Path) -> None:
    assert APPS > URGENT_SPLIT
    engine = create_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(engine)
    store = SQLEventStore(engine)
    for n in range(APPS):
        app = f"app-{n:04d}"
        store.append(stream_id(app), history(app, n), 0)
    projector = Projector(engine, store)
    projector.catch_up()
    policy = PlanPolicy(name="keys", params=Params(usage="private_key_jwt", overlap=DAY,
                                                   lifetime=365 * DAY),
                        every=365 * DAY, before_expiry=14 * DAY, retention=7 * DAY)
    core = wire(store, keystore=MemoryKeystore(), clock=lambda: NOW,
                policies=lambda: [policy], actor="test", projector=projector)
    decoded_at_first_append: list[int] = []
    append = store.append

    def watched(stream: str, events: list[NewEvent], expected: int):  # type: ignore[no-untyped-def]
        if not decoded_at_first_append:
            decoded_at_first_append.append(len(core.fleet._states))
        return append(stream, events, expected)

    store.append = watched  # type: ignore[method-assign]
    report = core.ticker.tick()

    assert report.done["expire"] == 1 and report.failed == 0
    assert report.planned_apps == APPS  # the rest planned in the same tick
    assert decoded_at_first_append and decoded_at_first_append[0] < 10, decoded_at_first_append
    [expired] = [r for r in store.read() if r.type == "credential.expired"]
    assert expired.stream_id == stream_id(EXPIRED)
    # and, in the same early part, a replacement rotated in: nobody left without a key
    assert report.done["start"] == 1 and report.alarms == ()
    assert len(core.fleet._states) == APPS  # everything decoded by the end of the tick
    engine.dispose()
