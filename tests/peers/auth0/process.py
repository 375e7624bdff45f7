"""The emulator as a separate process, for tests whose other side is a process too."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["emulator_process"]

ROOT = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def emulator_process(config: dict[str, Any] | None = None, *, python: str = sys.executable,
                     timeout: float = 60.0) -> Iterator[str]:
    """Start ``python -m tests.peers.auth0 --port 0`` and yield its base URL; stop it after."""
    with tempfile.TemporaryDirectory(prefix="auth0-emulator-") as folder:
        path = Path(folder) / "config.json"
        path.write_text(json.dumps(config or {}))
        proc = subprocess.Popen(
            [python, "-m", "tests.peers.auth0", "--port", "0", "--config", str(path)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = _first_line(proc, timeout)
            yield line
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The base URL line; a safety-net timeout only (the line comes as soon as it listens)."""
    result: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    line = result[0].strip() if result else ""
    if not line.startswith("http://"):
        proc.kill()
        stderr = proc.stderr.read() if proc.stderr is not None else ""
        raise RuntimeError(f"the Auth0 emulator did not start: {stderr.strip()[-2000:]}")
    return line
