"""How long the command line takes to answer, side by side with the interpreter's own start.

Runs, interleaved, ``python -c pass`` (the floor: what any Python command costs) and the
commands below on a small SQLite database (10 applications, an empty policies folder), each
``--repeats`` times in fresh processes, and reports the median and best wall time of each, the
median CPU time (user + system, which moves far less than the wall time when other work shares
the cores) with its spread, and the ratio to the floor measured in the same run. Targets
(issue 6): ``--version`` under 0.25 s and ``app list`` under 0.4 s.

``--against PATH`` runs a second build's command (e.g. the main branch's user install) the
same way, alternating with this one command by command, each on its own database, and reports
the CPU ratio of each command (this build / the other). ``--callgrind`` also runs each command
once per build under valgrind's callgrind and reports its instruction count (a figure the
machine's load and clock speed do not move).

    python bench/cli_latency.py [--repeats 21] [--orchestrator PATH] [--against PATH]
                                [--callgrind] [--json]

``--orchestrator`` defaults to the script beside this interpreter (the installed command).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TARGETS = {"--version": 0.25, "app list": 0.4}
# name -> the arguments given to the command; ``{n}``: the run's number (a new name each time)
COMMANDS = {
    "--version": ["--version"],
    "--help": ["--help"],
    "app list": ["app", "list"],
    "app register": ["app", "register", "bench-{n}"],
    "status": ["status"],
    "verify": ["verify"],
    "plan": ["plan"],
}


def _timed(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


class Build:
    """One installed command with a database of its own in ``folder``."""

    def __init__(self, label: str, command: str, folder: Path) -> None:
        self.label = label
        self.command = str(Path(command).absolute())
        self.python = str(Path(self.command).with_name("python"))
        self.cwd = str(folder)
        (folder / "policies").mkdir(parents=True)
        self.env = {**os.environ, "ORCHESTRATOR_DB": f"sqlite:///{folder}/o.db",
                    "ORCHESTRATOR_KEYSTORE": f"{folder}/keystore",
                    "ORCHESTRATOR_POLICIES": f"{folder}/policies"}
        self.run(["init"])
        for n in range(10):  # one at a time: an older build (for comparison) takes one name
            self.run(["app", "register", f"app-{n}"])

    def run(self, args: list[str]) -> None:
        subprocess.run([self.command, *args], env=self.env, cwd=self.cwd, check=True,
                       stdout=subprocess.DEVNULL)

    def argv(self, name: str, n: int) -> list[str]:
        if name == "python -c pass":
            return [self.python, "-c", "pass"]
        return [self.command, *(a.format(n=n) for a in COMMANDS[name])]

    def instructions(self, name: str, n: int, tmp: Path) -> int:
        """The instructions one run of ``name`` executes (callgrind's Ir total)."""
        out = tmp / f"callgrind-{self.label}-{n}.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        *self.argv(name, n)], env=self.env, cwd=self.cwd, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        summary = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        assert summary is not None, out
        return int(summary.group(1))


def _summary(samples: list[tuple[float, float]], floor: float) -> dict[str, float]:
    walls = [w for w, _ in samples]
    cpus = sorted(c for _, c in samples)
    quartiles = statistics.quantiles(cpus, n=4) if len(cpus) > 1 else [cpus[0]] * 3
    return {"median_s": round(statistics.median(walls), 4), "best_s": round(min(walls), 4),
            "cpu_median_s": round(statistics.median(cpus), 4),
            "cpu_q1_s": round(quartiles[0], 4), "cpu_q3_s": round(quartiles[2], 4),
            "ratio_to_python": round(statistics.median(walls) / floor, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--orchestrator", default=str(Path(sys.executable).with_name("orchestrator")))
    parser.add_argument("--against", default=None, metavar="PATH",
                        help="another build's orchestrator command, measured alternately")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = ["python -c pass", *COMMANDS]
    with tempfile.TemporaryDirectory() as tmp:
        builds = [Build("this", args.orchestrator, Path(tmp) / "this")]
        if args.against:
            builds.append(Build("against", args.against, Path(tmp) / "against"))
        runs = {b.label: {name: [] for name in names} for b in builds}
        for n in range(args.repeats):  # interleaved, so a load change hits every one alike
            for name in names:
                for build in builds if n % 2 == 0 else builds[::-1]:
                    runs[build.label][name].append(_timed(build.argv(name, n), build.env,
                                                          build.cwd))
        counted = {b.label: {name: b.instructions(name, args.repeats + 1, Path(tmp))
                             for name in names} for b in builds} if args.callgrind else {}
    report: dict[str, dict[str, dict[str, object]]] = {}
    for build in builds:
        floor = statistics.median(w for w, _ in runs[build.label]["python -c pass"])
        report[build.label] = {}
        for name in names:
            row: dict[str, object] = {**_summary(runs[build.label][name], floor),
                                      "target_s": TARGETS.get(name)}
            row["meets_target"] = (row["median_s"] < TARGETS[name]  # type: ignore[operator]
                                   if name in TARGETS else None)
            if counted:
                row["instructions"] = counted[build.label][name]
            report[build.label][name] = row
    if args.json:
        print(json.dumps({"repeats": args.repeats, "load": os.getloadavg(),
                          "results": report["this"], "against": report.get("against")},
                         indent=2))
        return 0
    print(f"{args.repeats} runs each, interleaved; load average {os.getloadavg()[0]:.2f}")
    _print(report, names, lambda r: r.get("instructions"))
    return 0


def _print(report: dict[str, dict[str, dict[str, object]]], names: list[str],
           instructions: Callable[[dict[str, object]], object]) -> None:
    for label, rows in report.items():
        if len(report) > 1:
            print(f"-- {label}")
        for name in names:
            r = rows[name]
            target = (f"target < {r['target_s']} s: {'met' if r['meets_target'] else 'MISSED'}"
                      if r["target_s"] else "the floor" if name == "python -c pass" else "")
            ir = instructions(r)
            print(f"{name:16} median {r['median_s']:.3f} s  best {r['best_s']:.3f} s  "
                  f"cpu {r['cpu_median_s']:.3f} s [{r['cpu_q1_s']:.3f}-{r['cpu_q3_s']:.3f}]  "
                  f"{r['ratio_to_python']:>5}x python"
                  + (f"  {ir / 1e6:,.0f}M instr" if ir else "") + f"  {target}")
    if "against" in report:
        print("-- this / against (CPU median; instructions)")
        for name in names:
            this, other = report["this"][name], report["against"][name]
            ratio = this["cpu_median_s"] / other["cpu_median_s"]  # type: ignore[operator]
            ir_this, ir_other = instructions(this), instructions(other)
            ir = f"  {ir_this / ir_other:.2f}x instr" if ir_this and ir_other else ""  # type: ignore[operator]
            print(f"{name:16} {ratio:.2f}x cpu{ir}")


if __name__ == "__main__":
    sys.exit(main())
