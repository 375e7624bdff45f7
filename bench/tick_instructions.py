"""Target 3 counted in instructions: a steady tick against its due work done directly.

    python bench/tick_instructions.py                 # 10,000 apps, 3 rounds (about 3 minutes)
    python bench/tick_instructions.py --apps 3000 --rounds 2

The same fleet, rounds and due work as ``bench/rotations.py`` part B (its ``steady_fleet``),
but counted by valgrind's callgrind instead of a clock, so the ratio does not move with the
machine's load or its CPU's speed that day. The script runs itself under valgrind with
instrumentation off; the fleet is built at near-native speed, and only the steady tick and the
direct deletes are counted, each between two client requests (a five-line C helper compiled here
with gcc against valgrind's ``callgrind.h``). Needs valgrind, its headers and gcc.

What it counts: the user-space instructions of this process (Python, SQLite, libc), not the
kernel's work (SQLite's writes, the key file's unlink). Both sides do the same kernel work, so
in time the ratio is lower than in instructions; the instruction ratio is the one that shows
what the tick's own code costs against the work, and whether a change moved it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

HELPER_C = """#include <valgrind/callgrind.h>
void cg_on(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""
CHILD = "TICK_INSTRUCTIONS_CHILD"  # set in the run under valgrind: the directory to use


def build_helper(directory: Path) -> Path:
    source, lib = directory / "cgctl.c", directory / "libcgctl.so"
    source.write_text(HELPER_C)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    return lib


def child(directory: Path, apps: int, rounds: int) -> None:
    """Under valgrind: build the fleet uncounted, then count each steady tick and each direct
    due work in a dump of its own."""
    from rotations import delete_pending, pending_deletes, steady_fleet

    from orchestrator.entrypoints.logs import configure

    configure(json_logs=True, level=logging.ERROR)
    cg = ctypes.CDLL(str(directory / "libcgctl.so"))
    fleet = steady_fleet(directory, apps)
    cg.cg_on()
    for round_ in range(1, rounds + 1):
        shifted, more = fleet.next_round(round_)
        cg.cg_zero()
        report = fleet.ticker.tick()
        cg.cg_dump(f"tick-{round_}".encode())
        assert report.done["delete"] == len(shifted) == report.planned_apps, report
        pending = pending_deletes(fleet.service, more)
        cg.cg_zero()
        delete_pending(fleet.service, pending, fleet.now[0])
        cg.cg_dump(f"direct-{round_}".encode())
    (directory / "due.json").write_text(json.dumps({"due_per_round": len(shifted)}))
    fleet.engine.dispose()


def totals(directory: Path) -> dict[str, int]:
    """Each labelled dump's instruction total."""
    out = {}
    for dump in directory.glob("callgrind.out*"):
        text = dump.read_text()
        label = re.search(r"^desc: Trigger: Client Request: (\S+)$", text, re.M)
        total = re.search(r"^totals: (\d+)", text, re.M)
        if label and total:
            out[label.group(1)] = int(total.group(1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/tick_instructions.json"))
    args = parser.parse_args()
    if os.environ.get(CHILD):
        child(Path(os.environ[CHILD]), args.apps, args.rounds)
        return
    missing = [tool for tool in ("valgrind", "gcc") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"error: {' and '.join(missing)} not found; this benchmark needs both")
    with tempfile.TemporaryDirectory(prefix="bench-tick-cg-") as tmp:
        directory = Path(tmp)
        build_helper(directory)
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={directory / 'callgrind.out'}", sys.executable, __file__,
             "--apps", str(args.apps), "--rounds", str(args.rounds)],
            env={**os.environ, CHILD: tmp}, check=True, stderr=subprocess.DEVNULL)
        counted = totals(directory)
        due = json.loads((directory / "due.json").read_text())["due_per_round"]
    rounds = [{"tick_per_app": counted[f"tick-{r}"] / due,
               "direct_per_app": counted[f"direct-{r}"] / due,
               "ratio": counted[f"tick-{r}"] / counted[f"direct-{r}"]}
              for r in range(1, args.rounds + 1)]
    tick = sum(counted[f"tick-{r}"] for r in range(1, args.rounds + 1))
    direct = sum(counted[f"direct-{r}"] for r in range(1, args.rounds + 1))
    result = {"apps": args.apps, "due_per_round": due, "rounds": rounds,
              "tick_instructions_per_due_app": tick / due / args.rounds,
              "direct_instructions_per_due_app": direct / due / args.rounds,
              "tick_over_due_work_instructions": tick / direct}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{args.apps:,} apps, {due} due a round, {args.rounds} rounds (callgrind, user space)")
    print(f"   steady tick: {result['tick_instructions_per_due_app'] / 1e3:,.0f} k instructions "
          f"per due app; the due work directly: "
          f"{result['direct_instructions_per_due_app'] / 1e3:,.0f} k")
    print(f"   ratio {result['tick_over_due_work_instructions']:.3f} (rounds "
          f"{min(r['ratio'] for r in rounds):.3f}-{max(r['ratio'] for r in rounds):.3f}; "
          f"target in time <= 1.2)")


if __name__ == "__main__":
    main()
