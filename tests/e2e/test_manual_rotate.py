"""``orchestrator rotate APP --usage U`` through the installed command and the daemon process.

A rotation needs its policy's settings (overlap, lifetime, retry budget, key settings), and it
is the daemon that finishes it after the overlap. So ``rotate`` of an application no policy
selects for that usage is refused with one line, writing nothing (no event, no key), and later
rotations of that usage are not blocked by anything; under a policy, the rotation it starts is
finished by the daemon after the overlap, as the command says. Time is a ``VirtualClock``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.helpers import Cli, VirtualClock, assert_refused
from tests.oracle import gaps, read_log

T0 = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
POLICY = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: web-keys}
spec:
  selector: {apps: ["APPS"]}
  credential: {usage: private_key_jwt, algorithm: RS256, keySize: 2048}
  rotation: {every: 30d, beforeExpiry: 7d, overlap: 1h}
  lifetime: 60d
  retention: 1d
"""


def events(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_rotate_needs_a_policy_and_the_daemon_finishes_what_it_starts(tmp_path: Path) -> None:
    db = tmp_path / "orchestrator.db"
    clock = VirtualClock(tmp_path / "clock", T0)
    cli = Cli(f"sqlite:///{db}", tmp_path / "keystore", tmp_path, clock=clock)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "web-keys.yaml").write_text(POLICY.replace("APPS", "web-*"))
    cli.env.update(ORCHESTRATOR_POLICIES=str(policies),
                   ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"))
    for app in ("web-1", "other-1"):
        cli("app", "register", app)
    cli("credential", "add", "other-1", "--usage", "private_key_jwt", "--generate", "--activate")
    cli("daemon", "--once")  # provisions web-1 only

    # no policy selects other-1: refused, nothing written
    before, keys = events(db), cli.item_files()
    assert_refused(cli.run("rotate", "other-1", "--usage", "private_key_jwt"),
                   "no policy selects application 'other-1' for private_key_jwt",
                   "add or widen a policy's selector")
    assert (events(db), cli.item_files()) == (before, keys)
    assert cli("rotations", "--json").json() == []

    # under a policy the daemon finishes it after the overlap, as the command says
    clock.set(T0 + DAY)
    said = cli("rotate", "web-1", "--usage", "private_key_jwt").stdout
    overlap_end = T0 + DAY + HOUR
    assert "the old one is disabled after the overlap" in said and "(by the daemon)" in said
    clock.set(overlap_end + MINUTE)
    cli("daemon", "--once")
    assert cli("rotations", "--json").json() == []

    # once a policy selects other-1 nothing blocks its rotations: the daemon rotates it by age
    (policies / "web-keys.yaml").write_text(POLICY.replace("APPS", "*-1"))
    clock.set(T0 + 31 * DAY)
    cli("daemon", "--once")
    clock.set(T0 + 31 * DAY + HOUR + MINUTE)
    cli("daemon", "--once")
    log = read_log(db)
    end = T0 + 31 * DAY + HOUR + MINUTE
    for app, rotations in (("web-1", 3), ("other-1", 1)):  # web-1: provision, manual, age
        started = [r for r in log.rows if r["app"] == app and r["type"] == "rotation.started"]
        completed = [r for r in log.rows if r["app"] == app and r["type"] == "rotation.completed"]
        assert len(started) == len(completed) == rotations, log.types(app)
        intervals = [i for c in log.creds[app].values() for i in c.usable_intervals(end)]
        assert gaps(intervals, min(a for a, _ in intervals), end) == []
    manual = [r for r in log.rows if r["app"] == "web-1" and r["type"] == "rotation.started"
              and r["payload"]["reason"] == "manual"]
    assert len(manual) == 1
    rid = manual[0]["payload"]["rotation_id"]
    done = [r["at"] for r in log.by_rotation[rid] if r["type"] == "rotation.completed"]
    assert done == [overlap_end + MINUTE]
