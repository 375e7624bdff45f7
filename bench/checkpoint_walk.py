"""How long a checkpoint takes: the whole chain walked and its head signed (``orchestrator
checkpoint``, the daemon's first checkpoint), against only the events appended since the last
one (the daemon's later checkpoints).

A SQLite log (WAL, ``synchronous=normal`` to build it fast; reading is the same) of ``--events``
``application.registered`` events is written in appends of 1,000; then, each timed with
``time.perf_counter`` and reported as the median of ``--repeats`` runs: ``Anchorer.write()``
from genesis (the walk, an Ed25519 signature, a checkpoint file created and fsynced), and
``Anchorer.write(head)`` after 100 more events. The load average is reported beside them: on a
shared machine it moves the numbers more than anything here.

    python bench/checkpoint_walk.py [--events 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from events import catalog as ev  # noqa: E402
from events.sql import SQLEventStore, create_engine, upgrade  # noqa: E402
from events.store import NewEvent  # noqa: E402
from orchestrator.adapters.anchor_files import CheckpointFolder  # noqa: E402
from orchestrator.adapters.anchor_keys import create_key  # noqa: E402
from orchestrator.app.anchoring import Anchorer  # noqa: E402

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def _append(store: SQLEventStore, stream: str, count: int) -> None:
    events = [NewEvent(ev.ApplicationRegistered(app=f"{stream}-{i}", labels={"i": str(i)}),
                       NOW, "bench") for i in range(count)]
    store.append(f"app:{stream}", events, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="checkpoint-walk-"))
    engine = create_engine(f"sqlite:///{work / 'o.db'}?synchronous=normal")
    upgrade(engine)
    store = SQLEventStore(engine, clock=lambda: NOW)
    for block in range(args.events // 1000):
        _append(store, f"a{block}", 1000)
    anchorer = Anchorer(store, create_key(work / "cp.key"), CheckpointFolder(work / "cps"),
                        lambda: NOW, "bench")
    full, since = [], []
    for run in range(args.repeats):
        started = time.perf_counter()
        written = anchorer.write()
        full.append(time.perf_counter() - started)
        _append(store, f"more{run}", 100)
        started = time.perf_counter()
        anchorer.write(written.head)
        since.append(time.perf_counter() - started)
    whole = statistics.median(full)
    print(json.dumps({
        "events": args.events, "whole_chain_seconds": round(whole, 3),
        "events_per_second": round(args.events / whole),
        "after_100_new_events_ms": round(statistics.median(since) * 1000, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }, indent=2))


if __name__ == "__main__":
    main()
