"""A private PostgreSQL cluster that a test may stop, crash and restart at will.

The shared server (``ORCHESTRATOR_TEST_PG``) serves every test at once, so a test that takes
the database away makes its own cluster: ``initdb`` in a temporary folder, ``pg_ctl`` on a free
port of 127.0.0.1, trust authentication, its Unix socket in that folder (not the system's).
PostgreSQL refuses to run as root: as root the binaries run as the ``postgres`` OS user
(``runuser``), in a folder that user owns. ``fsync`` is off: a crash here is the server's
(``pg_ctl -m immediate``), never the machine's, so nothing written is lost by it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["Cluster", "private_cluster"]

BIN = Path(os.environ.get("ORCHESTRATOR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"  # who runs the server when the tests run as root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One ``initdb``-made cluster; ``url(schema)`` reaches it with a schema of one's own."""

    def __init__(self, root: Path, port: int, run_as: str | None) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self._run_as = run_as

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> str:
        argv = [str(BIN / tool), *args]
        if self._run_as is not None:
            argv = ["runuser", "-u", self._run_as, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=self.root)
        assert done.returncode == 0, f"{tool} {' '.join(args)}: exit {done.returncode}\n" + (
            done.stdout + done.stderr + self.server_log()[-3000:])
        return done.stdout

    def server_log(self) -> str:
        log = self.root / "server.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def url(self, schema: str | None = None) -> str:
        base = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        return base if schema is None else f"{base}?options=-csearch_path%3D{schema}"

    def init(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                 "--locale=C.UTF-8", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c fsync=off")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                 "-t", "120", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are ended, the server shuts down cleanly; ``immediate``: it is
        killed and recovers at the next start (a crash)."""
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-t", "120", "-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        # the server's output to its log file: else it would hold our pipe open for its life
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                 "-t", "120", "-m", mode, "restart")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    """A started cluster, stopped and removed afterwards; the test is skipped, saying why, where
    the PostgreSQL binaries or the ``postgres`` OS user are missing."""
    if not (BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL binaries in {BIN} (ORCHESTRATOR_TEST_PG_BIN)")
    run_as = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(OS_USER)
        except KeyError:
            pytest.skip(f"running as root and no {OS_USER!r} OS user to run PostgreSQL as")
        run_as = OS_USER
    root = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
    if run_as is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = Cluster(root, _free_port(), run_as)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            if cluster.running:
                cluster.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)
