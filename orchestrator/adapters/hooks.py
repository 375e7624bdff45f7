"""The ``HookRunner`` port over ``subprocess``: a delivery hook as a child process.

The hook runs in a session of its own (``start_new_session``), so that at its timeout the whole
process group is killed, not only the program named: a shell script's ``sleep`` would otherwise
keep the output pipe open and the wait would never end. Its environment is minimal (``PATH``,
``HOME``, the locale, ``TMPDIR``, ``TZ``, plus the hook's own variables): the daemon's own may
hold a keystore's master key or a provider's client secret, which a hook must never see. Output
is read up to ``MAX_READ`` bytes (the end kept); a hook that prints more is not slowed down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import IO

from orchestrator.domain.hooks import HookResult

__all__ = ["PASSED_ENVIRONMENT", "SubprocessHooks"]

PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "USER",
                      "LOGNAME")
MAX_READ = 64 * 1024
_KILL_WAIT = 5.0  # seconds to reap a killed group


class SubprocessHooks:
    """``HookRunner``: runs each hook as a child process and waits for it."""

    def run(self, command: Sequence[str], env: Mapping[str, str],
            timeout: timedelta) -> HookResult:
        environment = {k: os.environ[k] for k in PASSED_ENVIRONMENT if k in os.environ}
        environment.setdefault("PATH", os.defpath)
        environment.update(env)
        # a file, not a pipe: nothing the hook leaves running can hold the wait up, and a
        # chatty hook never blocks on a full pipe
        with tempfile.TemporaryFile() as out:
            try:
                process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, env=environment,
                                           start_new_session=True, close_fds=True)
            except OSError as exc:
                return HookResult(None, "", f"could not be started "
                                             f"({exc.strerror or type(exc).__name__})")
            try:
                code: int | None = process.wait(timeout=timeout.total_seconds())
                error = None
            except subprocess.TimeoutExpired:
                _kill_group(process)
                code, error = None, f"did not finish within {timeout.total_seconds():g}s and was killed"
            return HookResult(code, _tail(out), error)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=_KILL_WAIT)
    except subprocess.TimeoutExpired:
        process.kill()


def _tail(out: IO[bytes]) -> str:
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - MAX_READ))
    data: bytes = out.read()
    return data.decode("utf-8", "replace")
