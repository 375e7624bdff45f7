"""The simulator's tick over a large fleet against its due work alone (issue 10 target 7).

    python bench/simulate_scale.py --apps 1000000     # the target's size (~3.1M events)
    python bench/simulate_scale.py --apps 100000

The system is wired as ``orchestrator simulate`` wires it (``bootstrap.in_memory``: in-memory
log, keystore and local provider, pooled-prime keys, actor ``simulator``), under a virtual
clock, with one policy over every application (keys rotated every 90 days, retention 7 days).
The fleet is written straight into the log (``bench/rotations.py``'s histories): every
application registered with an active key; 3% also hold a disabled key, 1% of them past
retention at the start. The first tick plans the whole fleet once and deletes those 1%; then
another 1% is made due an hour later, and the steady tick that deletes them is timed against
the same number of deletes done directly through the service (no planning) on other
applications, in the same process, right after. Reported: both times, their ratio, and the
process's peak RSS.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import platform
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rotations import (  # bench/rotations.py: the tick benchmark's fleet and due work
    DAY,
    _fleet_events,
    delete_directly,
    due_later,
)

from events.state import stream_id
from events.store import NewEvent
from orchestrator.bootstrap import fast_keys, in_memory
from orchestrator.domain.planner import PlanPolicy
from orchestrator.domain.rotation import Params
from orchestrator.entrypoints.logs import configure

DUE_EVERY = 100  # 1% due at the start, another 1% an hour later, 1% for the direct work
LIGHT = (0, 3, 4)  # of a history: registered, the active key added and activated


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(apps: int, profile: Path | None = None) -> dict[str, float]:
    t0 = datetime(2027, 6, 1, tzinfo=UTC)
    now = [t0]
    policy = PlanPolicy(name="keys", params=Params(usage="private_key_jwt", overlap=DAY,
                                                   lifetime=365 * DAY),
                        every=90 * DAY, before_expiry=14 * DAY, retention=7 * DAY)
    policies = [policy]  # the same object each tick, as the simulator passes them
    system = in_memory(lambda: now[0], lambda: policies, crypto=fast_keys(), actor="simulator")
    store, fleet, service, ticker = system.store, system.fleet, system.service, system.ticker
    began = time.perf_counter()
    events = 0
    for n in range(apps):
        app = f"app-{n:07d}"
        history = _fleet_events(app, n, t0, n % DUE_EVERY == 0)
        if n % DUE_EVERY > 3:
            history = [history[i] for i in LIGHT]
        store.append(stream_id(app), [NewEvent(e, at, "bench") for e, at in history], 0)
        events += len(history)
    seed_s = time.perf_counter() - began
    began = time.perf_counter()
    fleet.refresh()
    fold_s = time.perf_counter() - began
    began = time.perf_counter()
    first = ticker.tick()  # plans everyone once: the start-up cost
    first_s = time.perf_counter() - began
    assert first.done["delete"] == -(-apps // DUE_EVERY), first
    shifted = [f"app-{n:07d}" for n in range(apps) if n % DUE_EVERY == 1]
    due_later(store, service, shifted, t0)
    now[0] = t0 + timedelta(hours=1)
    ticker.tick()  # notices the appends above (they changed those apps): not yet due
    now[0] = t0 + timedelta(hours=2)
    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    steady = ticker.tick() if profiler is None else profiler.runcall(ticker.tick)
    tick_s = time.perf_counter() - began
    assert steady.done["delete"] == len(shifted), steady
    more = [f"app-{n:07d}" for n in range(apps) if n % DUE_EVERY == 3][:len(shifted)]
    direct_s, _ = delete_directly(service, more, now[0])
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)  # the steady tick alone (its times are the profiler's)
    return {
        "apps": apps, "events": events, "due": len(shifted),
        "seed_s": seed_s, "fold_s": fold_s, "first_tick_s": first_s,
        "steady_tick_s": tick_s, "steady_tick_planned_apps": steady.planned_apps,
        "direct_due_work_s": direct_s, "tick_over_due_work": tick_s / direct_s,
        "peak_rss_mib": _peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--profile", type=Path, default=None,
                        help="cProfile the steady tick into this file")
    args = parser.parse_args()
    configure(json_logs=True, level=logging.ERROR)
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "python": platform.python_version(), **run(args.apps, args.profile)}
    out = args.out or Path(f"bench/results/simulate_scale_{args.apps}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{result['apps']:,} apps, {result['events']:,} events written in "
          f"{result['seed_s']:.1f} s, folded in {result['fold_s']:.1f} s, first tick "
          f"{result['first_tick_s']:.1f} s")
    print(f"steady tick: {result['steady_tick_s']:.3f} s for {result['due']:,} due "
          f"({result['steady_tick_planned_apps']:,} planned); the same deletes directly: "
          f"{result['direct_due_work_s']:.3f} s; ratio {result['tick_over_due_work']:.2f}; "
          f"peak RSS {result['peak_rss_mib']:,.0f} MiB")


if __name__ == "__main__":
    main()
