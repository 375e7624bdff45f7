"""The rebuild as a user runs it: ``orchestrator projections rebuild`` over a large log, timed
from outside, process start included.

    python bench/rebuild_command.py                              # SQLite, 1,000,000 events, 3 runs
    python bench/rebuild_command.py --dialect postgres --events 200000
    python bench/rebuild_command.py --orchestrator .ci-user/venv/bin/orchestrator

The log is ``bench/run.py``'s case (d) log (``big_log_rows``: 50 events an application, ten
rounds interleaved, chained by the store's own ``build_records``), written straight into a
fresh SQLite file or PostgreSQL schema. Each run is a new ``orchestrator`` process
(``/usr/bin/time`` reads its user and system CPU and peak RSS). Where ``bench/run.py`` times
``Projector.rebuild()`` inside the process that has just built, written and dropped the whole
log (about 1.5 GB of rows), this is the process an operator starts. Target (issue 10): at
least 50,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
import run

from events.sql import create_engine, upgrade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialect", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--orchestrator", default=shutil.which("orchestrator") or "orchestrator",
                        help="the command to time (default: the one on PATH)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results")
    args = parser.parse_args()
    rows, _ = run.big_log_rows(args.events)
    n = len(rows)
    work = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    schema = None
    if args.dialect == "sqlite":
        path = work / "log.db"
        url = f"sqlite:///{path}"
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        run.fill_ours("sqlite", str(path), rows)
    else:
        schema = f"rebuildcmd_{os.getpid()}"
        with psycopg.connect(run.pg_conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = run.pg_url(schema)
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        run.fill_ours("postgres", schema, rows)
    del rows
    runs = []
    try:
        for i in range(args.runs):
            began = time.perf_counter()
            done = subprocess.run(
                ["/usr/bin/time", "-f", "%U %S %M", args.orchestrator, "--db", url,
                 "--keystore", str(work / "keystore"), "projections", "rebuild"],
                capture_output=True, text=True, check=True)
            wall = time.perf_counter() - began
            user, system, rss = done.stderr.strip().splitlines()[-1].split()
            runs.append({"wall_s": round(wall, 2), "events_per_s": round(n / wall),
                         "user_s": float(user), "sys_s": float(system),
                         "peak_rss_mib": int(rss) // 1024, "said": done.stdout.strip()})
            print(f"{args.dialect} run {i + 1}: {wall:.2f} s, {n / wall:,.0f} events/s, "
                  f"user {user} s, sys {system} s, peak RSS {int(rss) // 1024} MiB", flush=True)
    finally:
        if schema is not None:
            with psycopg.connect(run.pg_conninfo(), autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
        shutil.rmtree(work, ignore_errors=True)
    median = statistics.median(r["events_per_s"] for r in runs)
    print(f"median {median:,.0f} events/s (target >= 50,000): "
          f"{'PASS' if median >= 50_000 else 'MISS'}")
    if args.out:
        args.out.write_text(json.dumps({"dialect": args.dialect, "events": n, "runs": runs,
                                        "median_events_per_s": median}, indent=2))


if __name__ == "__main__":
    main()
