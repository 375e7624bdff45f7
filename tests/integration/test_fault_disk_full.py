"""The disks full under a working daemon: it keeps running, loses nothing, says so, resumes.

The installed daemon runs four applications whose keys rotate every 2 s and client secrets
every 5 s (so rotations are always in flight), on SQLite, with its database, keystore and
delivery folder each on a real tmpfs of its own (mounted for the test; skipped, saying why,
where mounting is refused). A filler file fills them, each kept full (topped up: a delete frees
a little) for a few seconds of ticks once the daemon has met it, then deleted:

1. the keystore disk: a new key cannot be stored, so the generate step fails (ENOSPC) with one
   line naming the keystore and when it is retried, is recorded as failed and retried after its
   backoff (the policies' retry budget outlasts the fault, so nothing parks);
2. the delivery disk: a rotation's deliver step fails the same way, naming the folder, and the
   application keeps its old key, which stays active until the new one is delivered;
3. all three at once (a single disk for all of it): the database's WAL is checkpointed to
   nothing first (else SQLite goes on writing in the WAL it has until that runs out, which
   takes long), then every append fails with SQLITE_FULL ("database or disk is full"); each
   tick stops at its first append and nothing is recorded; the daemon says
   ``database_unavailable`` in one line at error level naming the database, the driver's
   reason and that it tries again every interval (it logged a traceback at every tick
   before).

Once the disks are freed, ``database_recovered`` is said and every application completes a key
rotation started after that (before the fix in ``app/tick.py`` the applications of the ticks
the database cut short were never planned again: the daemon ran on and rotated nothing). The
verdict (``tests/support/fault_run.py``): ``assert_consistent`` with ``orchestrator verify``,
and the oracle: no instant without a usable key, each delivery folder holding its current key
and no half-written version, every live credential's private key in the keystore, no orphan.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from events import catalog as ev
from tests.helpers import Cli, fill_filesystem, tiny_filesystem
from tests.integration.test_daemon_crash import (  # noqa: F401  (sites: a fixture)
    Daemon,
    Site,
    sites,
    wait_until,
)
from tests.support.fault_run import (
    APPS,
    POLL,
    busy,
    calm,
    head,
    judge,
    lines_with,
    rotated_since,
    sqlite_path,
)

pytestmark = pytest.mark.slow
FULL = "No space left on device"
HELD = 2.0  # seconds a disk is kept full once the daemon met it: ticks of 0.2 s, retries of 1 s


def keep_full(daemon: Daemon, disks: tuple[Path, ...], met: Callable[[], object],
              what: str) -> None:
    """Keep ``disks`` full until the daemon ``met`` the fault, and HELD seconds more."""
    def topped_up() -> object:
        for disk in disks:
            fill_filesystem(disk)
        return met()

    wait_until(topped_up, 90, what, watch=(daemon,), every=POLL)
    deadline = time.monotonic() + HELD
    while time.monotonic() < deadline:
        topped_up()
        time.sleep(POLL)
    assert daemon.alive, daemon.tail()


def free(*disks: Path) -> None:
    for disk in disks:
        (disk / ".filler").unlink()


def checkpoint_wal(db: Path) -> None:
    """Copy the WAL into the database and cut it to nothing (tried again while busy)."""
    with sqlite3.connect(db, timeout=60) as conn:
        for _ in range(100):
            if conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                return
            time.sleep(0.05)
    pytest.fail("the WAL could not be checkpointed")


def test_the_daemon_rides_out_full_disks(
        tmp_path: Path, sites: Callable[..., Site]) -> None:  # noqa: F811
    with ExitStack() as mounts:
        db_disk = mounts.enter_context(tiny_filesystem(tmp_path / "db", "16m"))
        site = sites(tmp_path, f"sqlite:///{db_disk / 'orchestrator.db'}", tmp_path / "var")
        keystore = mounts.enter_context(tiny_filesystem(site.keystore, "2m"))
        delivery = mounts.enter_context(tiny_filesystem(site.delivery, "2m"))
        site.write_policies(busy())
        site.cli("policy", "validate", str(site.policies))
        site.register(*APPS)
        daemon = site.daemon(name="daemon")
        wait_until(lambda: rotated_since(site, 0) == set(APPS), 90,
                   "a key rotation of every application", watch=(daemon,), every=POLL)

        keep_full(daemon, (keystore,), lambda: lines_with(
            daemon, "rotation_step_failed", f"keystore {keystore}", FULL, '"step": "generate"',
            '"retry_at": "'), "a key failing to be stored")
        free(keystore)
        keep_full(daemon, (delivery,), lambda: lines_with(
            daemon, "rotation_step_failed", f"delivery {delivery}/", FULL, '"step": "deliver"',
            '"retry_at": "'), "a delivery failing")
        delivered = len(lines_with(daemon, "rotation_step_completed", '"step": "deliver"'))
        free(delivery)
        wait_until(lambda: len(lines_with(daemon, "rotation_step_completed",
                                          '"step": "deliver"')) > delivered, 60,
                   "a delivery once the disk was freed", watch=(daemon,), every=POLL)

        checkpoint_wal(sqlite_path(site))
        heads: list[int] = []
        keep_full(daemon, (keystore, delivery, db_disk), lambda: daemon.events(
            "database_unavailable") and not heads.append(head(site)),
            "database_unavailable")
        assert head(site) == heads[0]  # nothing recorded while it was full
        free(keystore, delivery, db_disk)
        recovered = daemon.wait_log("database_recovered")
        wait_until(lambda: rotated_since(site, heads[0]) == set(APPS), 90,
                   "a new key of every application once the disks were freed",
                   watch=(daemon,), every=POLL)
        site.write_policies(calm())
        wait_until(site.settled, 90, "the rotations in flight to drain", watch=(daemon,),
                   every=POLL)
        summary = judge(site, daemon)

    said = daemon.events("database_unavailable")
    assert said, said
    assert "database or disk is full" in said[0]["error"], said[0]
    for line in said:
        assert line["level"] == "error" and str(sqlite_path(site)) in line["database"], line
        assert "tries again every" in line["next"], line
    assert recovered["unavailable_seconds"] >= 0, recovered
    failed = [r.payload for r in site.records(ev.RotationFailed.type_name)]
    assert {p["step"] for p in failed} >= {"generate", "deliver"}, failed
    for payload in failed:  # only the faults made here, each retried
        assert FULL in payload["error"] and payload["next_attempt_at"], payload
        assert str(keystore) in payload["error"] or str(delivery) in payload["error"], payload
    assert summary.completed >= 3 * len(APPS)


def test_a_command_on_a_full_database_disk_fails_in_one_line(tmp_path: Path) -> None:
    """The command line on the same full disk: a write (and ``daemon --once``, whose lease
    records a leader epoch) fails with one ``error:`` line and exit 1, nothing written. Before,
    the store's hot path raised the driver's own ``sqlite3.OperationalError``, which the command
    line did not know for a database error, and printed a traceback."""
    with tiny_filesystem(tmp_path / "db", "4m") as disk:
        cli = Cli(f"sqlite:///{disk / 'orchestrator.db'}", tmp_path / "keystore", tmp_path)
        cli("app", "register", "svc")
        checkpoint_wal(disk / "orchestrator.db")
        fill_filesystem(disk)
        for command in (("app", "register", "other"),
                        ("credential", "add", "svc", "--usage", "private_key_jwt", "--generate"),
                        ("daemon", "--once", "--policies", str(tmp_path))):
            result = cli.run(*command)
            assert result.returncode == 1, str(result)
            assert result.stderr == "error: database: database or disk is full\n", str(result)
        (disk / ".filler").unlink()
        listed = cli("app", "list").stdout
        assert listed.count("svc") == 1 and "other" not in listed, listed
        assert not (tmp_path / "keystore" / "items").exists() or not list(
            (tmp_path / "keystore" / "items").iterdir())
