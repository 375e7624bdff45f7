"""When the daemon ticks again before its interval ends: the ticker's ``next_wake``.

A fleet due together is started a per-tick cap at a time; waiting the daemon's interval (30 s)
between caps left a paced provider idle most of each interval (bench/paced_rotation.py: 0.78 of
the budget's bound at 200 applications). So while the cap leaves starts due now, the ticker
asks for the next tick at once; otherwise for the earliest instant planned by time (an
overlap's end), and never for an application looked at again only because the gate held it.
Wired through ``bootstrap.in_memory`` on a virtual clock; nothing waits.
"""

from __future__ import annotations

from datetime import timedelta

from events.store import ReadFilter
from orchestrator.bootstrap import fast_keys, in_memory
from orchestrator.domain.planner import PlanPolicy
from orchestrator.domain.rotation import Params
from tests.conftest import NOW

DAY, OVERLAP = timedelta(days=1), timedelta(hours=1)
AT = NOW + 31 * DAY
CAPPED = (PlanPolicy("keys", Params("private_key_jwt", overlap=OVERLAP), every=30 * DAY,
                     before_expiry=10 * DAY, retention=7 * DAY, max_per_tick=2),)


def fleet(count: int, gate: str | None = None):  # type: ignore[no-untyped-def]
    """``count`` applications whose first keys were issued 31 days before ``AT``: all due by
    age at ``AT``, when the clock stands."""
    now = [NOW]
    core = in_memory(lambda: now[0], lambda: CAPPED, crypto=fast_keys())
    for n in range(count):
        core.service.register_app(f"app-{n}", {})
    for _ in range(count):  # provisioned, at most two a tick (no overlap: no old key)
        core.ticker.tick()
    now[0] = AT
    if gate is not None:
        core.ticker.gate_with(lambda _app: gate)
    return core


def started(core) -> int:  # type: ignore[no-untyped-def]
    """Rotations started since the keys were issued."""
    return sum(1 for r in core.store.read(ReadFilter(types=("rotation.started",)))
               if r.recorded_at > NOW)


def test_while_the_cap_leaves_starts_due_the_next_tick_is_asked_for_at_once() -> None:
    core = fleet(5)
    due = core.ticker.next_wake(AT)
    assert due is not None and due <= AT  # planned by age, which has passed: at once
    woken = []
    for _ in range(3):
        report = core.ticker.tick()
        woken.append((started(core), report.capped, core.ticker.next_wake(AT)))
    assert woken[:2] == [(2, 3, AT), (4, 1, AT)]
    # the last start made: the next work is the first overlap's end, not "now"
    assert woken[2] == (5, 0, AT + OVERLAP)


def test_an_application_the_gate_holds_wakes_nobody() -> None:
    core = fleet(1, gate="differs from its provider")
    report = core.ticker.tick()
    assert report.held == 1 and report.capped == 0
    assert started(core) == 0
    assert core.ticker.next_due() == AT + timedelta(seconds=1)  # looked at by the next tick
    assert core.ticker.next_wake(AT) is None  # which comes by the interval, not at once


def test_a_fleet_under_the_cap_is_asked_for_at_the_overlaps_end() -> None:
    core = fleet(2)
    report = core.ticker.tick()
    assert (started(core), report.capped) == (2, 0)
    assert core.ticker.next_wake(AT) == AT + OVERLAP
