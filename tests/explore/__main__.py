"""``python -m tests.explore [USAGE ...] [--faults N] [--crashes N] [--attempts N]``: explore
every scenario (or those whose usage starts with one of USAGE), print the table of counts
(docs/exploration.md holds the default run's) and every violation with its path."""

from __future__ import annotations

import argparse
import sys

from tests.explore.run import explore_all, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.explore")
    parser.add_argument("usages", nargs="*", help="e.g. jar, mtls, 'mtls (CA-issued)'")
    parser.add_argument("--faults", type=int, default=2, help="per path (default 2)")
    parser.add_argument("--crashes", type=int, default=1, help="per path (default 1)")
    parser.add_argument("--attempts", type=int, default=2,
                        help="the policy's retry attempts before parking (default 2)")
    args = parser.parse_args(argv)
    results = explore_all(args.usages, faults=args.faults, crashes=args.crashes,
                          attempts=args.attempts,
                          progress=lambda r: print(table([r], header=False), file=sys.stderr))
    print(table(results))
    for result in results:
        for violation in result.violations:
            print(f"\n{result.usage} {result.scenario}: {violation}")
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
