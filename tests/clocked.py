"""The installed command line at an instant the test chooses: time is driven, never waited for.

``ClockedCli.at(t)`` runs ``orchestrator ...`` (the installed package, in a fresh process, as
``Cli`` does) with the composition root's clock fixed at ``t``. Every instant the process
records or decides on (events, certificates, backoffs, overlaps) is then ``t``, so a test walks
a rotation through days in a few processes, whatever the machine's speed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from tests.helpers import ORCHESTRATOR, Cli, Result

__all__ = ["ClockedCli"]

NOW_VARIABLE = "ORCHESTRATOR_TEST_NOW"
CHILD = f"""
import os, sys
from datetime import datetime
from orchestrator import bootstrap
from orchestrator.entrypoints.cli import main
now = datetime.fromisoformat(os.environ[{NOW_VARIABLE!r}])
bootstrap.bootstrap.__kwdefaults__["clock"] = lambda: now
main(sys.argv[1:])
"""  # the composition root's clock, fixed; everything else is the installed program


class ClockedCli(Cli):
    """``Cli`` whose processes read the clock from the test (``at``)."""

    now: datetime | None = None

    def at(self, now: datetime) -> ClockedCli:
        self.now = now
        return self

    def run(self, *args: str | Path) -> Result:
        if self.now is None:
            return super().run(*args)
        argv = tuple(str(a) for a in args)
        started = time.monotonic()
        done = subprocess.run(
            [_python(), "-c", CHILD, *argv], env={**self.env, NOW_VARIABLE: self.now.isoformat()},
            cwd=self.cwd, capture_output=True, text=True, timeout=180, check=False)
        result = Result(argv, done.returncode, done.stdout, done.stderr,
                        time.monotonic() - started)
        self.history.append(result)
        return result


def _python() -> str:
    """The interpreter of the installed ``orchestrator`` (the one the end-to-end tests drive)."""
    beside = ORCHESTRATOR.parent / "python"
    return str(beside) if beside.exists() else sys.executable
