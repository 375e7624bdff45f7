"""How long a policy with a ``* * * * *`` maintenance window takes to load and validate.

Loading a policy checks that no credential can expire before its replacement has overlapped,
which needs the window's longest closed stretch over 400 days (``CronWindow.longest_gap``): for
a minutely cron that is 576,000 openings (issue 6, defect 16: 18.5 s before). Each run loads the
file in process with ``orchestrator.policies.files.load_policy_file`` from cold caches (the
parsed triggers and the gaps are cached per process), for window durations of 30 s (closes
every minute), 1 m and 1 h (always open but for clock changes), in Europe/Berlin (two clock
changes in the horizon); the median and best of ``--repeats`` runs are reported, measured with
``time.perf_counter``. ``--cli`` also times ``orchestrator policy validate FILE`` in a fresh
process, next to ``python -c pass``.

    python bench/policy_load.py [--repeats 7] [--cli] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from orchestrator.policies import files, models, windows


def _policy(duration: str) -> str:
    window = {"cron": "* * * * *", "duration": duration, "timezone": "Europe/Berlin"}
    return yaml.safe_dump({
        "apiVersion": "orchestrator/v1", "kind": "RotationPolicy",
        "metadata": {"name": "minutely"},
        "spec": {"selector": {"apps": ["m-*"]}, "credential": {"usage": "private_key_jwt"},
                 "rotation": {"every": "30d", "beforeExpiry": "14d", "overlap": "1h",
                              "window": window},
                 "lifetime": "120d"}})


DURATIONS = ("30s", "1m", "1h")


def _cold_load(path: Path) -> float:
    for module, name in ((models, "_longest_gap"), (windows, "_trigger"), (windows, "_day_shape")):
        cached = getattr(module, name, None)  # (an older build lacks some; run it to compare)
        if cached is not None:
            cached.cache_clear()
    began = time.perf_counter()
    files.load_policy_file(path)
    return time.perf_counter() - began


def _process(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cli", action="store_true", help="also time the installed command")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for duration in DURATIONS:
            path = Path(tmp) / f"minutely-{duration}.yaml"
            path.write_text(_policy(duration))
            runs = [_cold_load(path) for _ in range(args.repeats)]
            results[f"load, duration {duration}"] = {
                "median_s": statistics.median(runs), "best_s": min(runs)}
            if args.cli:
                command = [str(Path(sys.executable).with_name("orchestrator")), "policy",
                           "validate", str(path)]
                pairs = [(_process([sys.executable, "-c", "pass"]), _process(command))
                         for _ in range(args.repeats)]
                results[f"policy validate, duration {duration}"] = {
                    "median_s": statistics.median(c for _, c in pairs),
                    "best_s": min(c for _, c in pairs),
                    "python_c_pass_median_s": statistics.median(p for p, _ in pairs)}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, figures in results.items():
            shown = "  ".join(f"{key} {value:.3f}" for key, value in figures.items())
            print(f"{name:32} {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
