"""One leader per SQLite database, whatever the path it is reached by: the lease is a lock on
the database file itself (its inode), so a symlink or a hard link to it meets the same lock.

Two daemon processes beside the leader, one through a symlink and one through a hard link to
the same database, each wait; only the leader rotates (the delivered key is the registered
credential's)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from events.sql import create_engine, upgrade
from orchestrator.adapters.lease import DatabaseLease
from tests.helpers import ORCHESTRATOR, Cli, assert_key_belongs, read_delivered

POLICY = """\
apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: svc-keys}
spec:
  selector: {apps: ["svc"]}
  credential: {usage: private_key_jwt}
  rotation: {every: 90d, beforeExpiry: 14d, overlap: 1h}
  lifetime: 120d
"""
START_UP = 60.0  # seconds: generous, for a process start on a loaded machine


def _paths(tmp_path: Path) -> dict[str, Path]:
    """The database, a symlink to it from another folder, and a hard link to it."""
    real = tmp_path / "data" / "orchestrator.db"
    real.parent.mkdir()
    (tmp_path / "elsewhere").mkdir()
    return {"real": real, "symlink": tmp_path / "elsewhere" / "via-symlink.db",
            "hard link": tmp_path / "elsewhere" / "via-hard-link.db"}


def _link(paths: dict[str, Path]) -> None:
    paths["symlink"].symlink_to(paths["real"])
    os.link(paths["real"], paths["hard link"])


def test_the_lease_is_one_whatever_the_path(tmp_path: Path) -> None:
    """Leases taken through the real path, a symlink and a hard link: only the first holds it;
    once released, one through another path can take it, at the next leader epoch."""
    paths = _paths(tmp_path)
    Cli(f"sqlite:///{paths['real']}", tmp_path / "ks", cwd=tmp_path)  # initialised
    _link(paths)
    engines = {name: create_engine(f"sqlite:///{path}") for name, path in paths.items()}
    leases = {name: DatabaseLease(engine) for name, engine in engines.items()}
    try:
        assert leases["real"].acquire()
        assert not leases["symlink"].acquire()
        assert not leases["hard link"].acquire()
        assert leases["real"].acquire()  # still held
        assert leases["real"].epoch == 1
        leases["real"].release()
        # through the symlink: taking the lease writes (the leader epoch), and SQLite cannot
        # write through a hard link safely (its WAL and shared-memory files follow the name)
        assert leases["symlink"].acquire() and leases["symlink"].epoch == 2
        assert not leases["hard link"].acquire() and not leases["real"].acquire()
    finally:
        for lease in leases.values():
            lease.release()
        for engine in engines.values():
            engine.dispose()


class _Daemon:
    def __init__(self, name: str, db: Path, site: Path) -> None:
        self.name = name
        self.log = site / f"{name.replace(' ', '-')}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        env.update(ORCHESTRATOR_DB=f"sqlite:///{db}", ORCHESTRATOR_KEYSTORE=str(site / "ks"),
                   ORCHESTRATOR_DELIVERY=str(site / "delivery"),
                   ORCHESTRATOR_POLICIES=str(site / "policies"), ORCHESTRATOR_ACTOR="cli:test")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(ORCHESTRATOR), "daemon", "--json-logs", "--interval", "0.2"], env=env,
                cwd=site, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def events(self, *names: str) -> list[dict[str, Any]]:
        found = []
        for raw in self.log.read_bytes().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("event") in names:
                found.append(line)
        return found

    def first(self, *names: str) -> dict[str, Any]:
        """The first of ``names`` this daemon logs (it logs one of them on its first tick)."""
        deadline = time.monotonic() + START_UP
        while not (found := self.events(*names)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{self.name}: none of {names} logged\n{self.log.read_text()}")
            time.sleep(0.05)
        return found[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def test_daemons_through_a_symlink_and_a_hard_link_wait_for_the_leader(tmp_path: Path) -> None:
    """The leader daemon opened the database by its path; two more daemon processes reach the
    same database through a symlink and through a hard link: both wait (never lead, never do
    a rotation step) while the leader rotates svc's key and delivers a key that belongs to the
    registered credential."""
    paths = _paths(tmp_path)
    cli = Cli(f"sqlite:///{paths['real']}", tmp_path / "ks", cwd=tmp_path)
    cli("app", "register", "svc")
    _link(paths)
    (tmp_path / "policies").mkdir()
    daemons: list[_Daemon] = []
    try:
        daemons.append(_Daemon("leader", paths["real"], tmp_path))
        assert daemons[0].first("leadership_acquired", "leadership_waited")["event"] == \
            "leadership_acquired"
        for name in ("symlink", "hard link"):
            daemons.append(_Daemon(name, paths[name], tmp_path))
            assert daemons[-1].first("leadership_acquired", "leadership_waited")["event"] == \
                "leadership_waited", f"a second leader through the {name}"
        (tmp_path / "policies" / "svc.yaml").write_text(POLICY)  # now there is work to do
        daemons[0].first("rotation_completed", "rotation_step_completed")
        deadline = time.monotonic() + START_UP
        while not any(r["status"] == "completed" for r in
                      cli("rotations", "--all", "--json").json()):
            assert time.monotonic() < deadline, daemons[0].log.read_text()
            time.sleep(0.1)
    finally:
        for daemon in reversed(daemons):  # the followers first: then none can take over
            daemon.stop()
    for follower in daemons[1:]:
        assert follower.events("leadership_acquired", "rotation_step_completed",
                               "rotation_started") == [], follower.name
    (rotation,) = cli("rotations", "--all", "--json").json()
    files = read_delivered(tmp_path / "delivery" / "svc" / "private_key_jwt")
    assert files["credential_id"].decode() == rotation["new_credential_id"]
    (added,) = cli("audit", "--type", "credential.added", "--format", "json").json_lines()
    assert_key_belongs(files, added["payload"]["public_pem"], kid_is_thumbprint=True)


@pytest.mark.postgres
def test_postgres_leases_are_one_per_schema(pg_url: str) -> None:
    """Two leases on one schema: one leader. A lease on another schema of the same database is
    a leader of its own (the log there is another log)."""
    import uuid

    import sqlalchemy as sa

    other = f"t_{uuid.uuid4().hex[:12]}"
    base, _, _ = pg_url.partition("?")
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {other}")
    engines = [create_engine(url) for url in
               (pg_url, pg_url, f"{base}?options=-csearch_path%3D{other}")]
    try:
        for engine in (engines[0], engines[2]):
            upgrade(engine)  # taking the lease advances the schema's leader epoch
        first, second, elsewhere = (DatabaseLease(engine) for engine in engines)
        assert first.acquire()
        assert not second.acquire()
        assert elsewhere.acquire()
        assert (first.epoch, elsewhere.epoch) == (1, 1)  # one epoch per schema
        first.release()
        assert second.acquire() and second.epoch == 2
        for lease in (second, elsewhere):
            lease.release()
    finally:
        for engine in engines:
            engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {other} CASCADE")
        admin.dispose()
