"""How long the command line takes to answer, side by side with the interpreter's own start.

Runs, interleaved, ``python -c pass`` (the floor: what any Python command costs), ``orchestrator
--version`` and ``orchestrator app list`` on a small SQLite database (10 applications), each
``--repeats`` times in fresh processes, and reports the median and best wall time of each and
their ratio to the floor measured in the same run. Targets (issue 6): ``--version`` under
0.25 s and ``app list`` under 0.4 s.

    python bench/cli_latency.py [--repeats 21] [--orchestrator PATH] [--json]

``--orchestrator`` defaults to the script beside this interpreter (the installed command).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"--version": 0.25, "app list": 0.4}


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the child: the CPU figure moves far
    less than the wall time when other work shares the cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--orchestrator", default=str(Path(sys.executable).with_name("orchestrator")))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    python = str(Path(args.orchestrator).with_name("python"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ORCHESTRATOR_DB": f"sqlite:///{tmp}/o.db",
               "ORCHESTRATOR_KEYSTORE": f"{tmp}/keystore"}
        subprocess.run([args.orchestrator, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
        for n in range(10):  # one at a time: an older build (for comparison) takes one name
            subprocess.run([args.orchestrator, "app", "register", f"app-{n}"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        runs: dict[str, list[tuple[float, float]]] = {
            "python -c pass": [], "--version": [], "app list": []}
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "--version": [args.orchestrator, "--version"],
            "app list": [args.orchestrator, "app", "list"],
        }
        for _ in range(args.repeats):  # interleaved, so a load change hits all three alike
            for name, argv in commands.items():
                runs[name].append(_timed(argv, env))
    floor = statistics.median(w for w, _ in runs["python -c pass"])
    report = {}
    for name, samples in runs.items():
        wall = statistics.median(w for w, _ in samples)
        report[name] = {
            "median_s": round(wall, 4), "best_s": round(min(w for w, _ in samples), 4),
            "cpu_median_s": round(statistics.median(c for _, c in samples), 4),
            "ratio_to_python": round(wall / floor, 1), "target_s": TARGETS.get(name),
            "meets_target": wall < TARGETS[name] if name in TARGETS else None,
        }
    if args.json:
        print(json.dumps({"repeats": args.repeats, "load": os.getloadavg(), "results": report},
                         indent=2))
    else:
        print(f"{args.repeats} runs each, interleaved; load average {os.getloadavg()[0]:.2f}")
        for name, r in report.items():
            target = f"target < {r['target_s']} s: {'met' if r['meets_target'] else 'MISSED'}" \
                if r["target_s"] else "the floor"
            print(f"{name:16} median {r['median_s']:.3f} s  best {r['best_s']:.3f} s  "
                  f"cpu {r['cpu_median_s']:.3f} s  {r['ratio_to_python']:>5}x python  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
