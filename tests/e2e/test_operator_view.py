"""What the operator sees: the daemon's JSON logs say what happened (failures and parks counted,
no spurious warnings, every line JSON) and ``audit --last`` shows the newest events.

The daemon runs through the test-only launcher under a virtual clock (one tick, ``--once``), so
what is due is decided by the instant the test sets, not by how fast this machine is."""

from __future__ import annotations

import json
import subprocess
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NOW
from tests.helpers import (
    LAUNCHER,
    ORCHESTRATOR_PYTHON,
    Cli,
    VirtualClock,
    assert_refused,
    json_events,
    wait_for,
)

KEYS = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: pay-keys}
spec:
  selector: {apps: ["pay-*"]}
  credential: {usage: private_key_jwt, algorithm: RS256, keySize: 2048}
  rotation: {every: 30d, beforeExpiry: 2d, overlap: 1h}
  lifetime: 90d
  retention: 1h
"""
SECRETS = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: svc-secrets}
spec:
  selector: {apps: ["svc-*"]}
  credential: {usage: client_secret}
  rotation: {every: 30d, beforeExpiry: 2d, overlap: 1h, retry: {attempts: 1}}
"""


@pytest.fixture
def site(tmp_path: Path) -> Cli:
    clock = VirtualClock(tmp_path / "now", NOW)
    cli = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path, clock=clock)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "keys.yaml").write_text(KEYS)
    (policies / "secrets.yaml").write_text(SECRETS)
    cli.env.update(ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"),
                   ORCHESTRATOR_POLICIES=str(policies))
    return cli


def daemon_once(cli: Cli, **env: str) -> list[dict[str, Any]]:
    """One tick of the daemon at the clock's instant; its stderr, every line parsed as JSON."""
    done = subprocess.run([*LAUNCHER, "daemon", "--once", "--json-logs"], env={**cli.env, **env},
                          cwd=cli.cwd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stderr.splitlines()]  # each line is JSON


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == name]


def test_retention_of_a_credential_a_rotation_already_deleted_is_not_a_failure(
        site: Cli) -> None:
    """pay-1 holds an active key due for rotation (it expires within beforeExpiry) and a key
    disabled past retention. In one tick the rotation frees that slot (deletes it) and then
    retention would delete it again: that is nothing to do, not ``action_failed``."""
    clock = site.clock
    assert clock is not None
    site("app", "register", "pay-1")
    site("credential", "add", "pay-1", "--usage", "private_key_jwt", "--generate", "--activate",
         "--expires-at", (NOW + timedelta(days=1)).isoformat())
    spare = site("credential", "add", "pay-1", "--usage", "private_key_jwt", "--generate",
                 "--activate", "--json").json()["id"]
    site("credential", "disable", "pay-1", spare)
    clock.advance(timedelta(hours=2))  # the spare is disabled past retention (1h)

    lines = daemon_once(site)
    assert events(lines, "action_failed") == [], lines
    (tick,) = events(lines, "tick_completed")
    assert tick["failed"] == 0 and tick["level"] == "info", tick
    deleted = site("audit", "--type", "credential.deleted", "--format", "json").json_lines()
    assert [e["payload"]["credential_id"] for e in deleted] == [spare]  # once


def test_tick_completed_counts_failed_and_parked_steps(site: Cli) -> None:
    """The provider refuses every call: svc-1's provisioning fails its register step and, with
    one attempt allowed, is parked. The tick says so (failed 1, parked 1, at warning)."""
    site("app", "register", "svc-1")
    lines = daemon_once(site, ORCHESTRATOR_PROVIDER="faulty:1.0")
    assert events(lines, "rotation_parked"), lines
    (tick,) = events(lines, "tick_completed")
    assert (tick["failed"], tick["parked"], tick["level"]) == (1, 1, "warning"), tick
    assert "start" not in tick  # a parked start is not counted as done


def test_daemon_heartbeat_says_what_comes_next(site: Cli) -> None:
    site("app", "register", "pay-1")
    lines = daemon_once(site)  # provisions pay-1: its key is due again in 30 days
    assert events(lines, "tick_completed")
    clock = site.clock
    assert clock is not None
    log = site.cwd / "daemon.log"
    with log.open("w") as err:
        daemon = subprocess.Popen([*LAUNCHER, "daemon", "--json-logs", "--interval", "3600"],
                                  env=site.env, cwd=site.cwd, stdout=subprocess.DEVNULL,
                                  stderr=err)
    try:
        (beat,) = wait_for(lambda: json_events(log, "daemon_heartbeat"), "a heartbeat",
                           daemon, log)
    finally:
        daemon.terminate()
        daemon.wait(60)
    assert beat["role"] == "leader" and beat["ticks"] == 1
    assert beat["next_rotation_due"] is not None and beat["next_expiry"] is not None
    assert NOW + timedelta(days=27) < datetime.fromisoformat(beat["next_rotation_due"]) <= NOW + timedelta(days=30)
    assert datetime.fromisoformat(beat["next_expiry"]) > datetime.fromisoformat(beat["next_rotation_due"])
    assert daemon.returncode == 0
    assert all(json.loads(line) for line in log.read_text().splitlines())


def test_every_log_line_is_json_even_from_other_libraries_and_uncaught_errors(
        tmp_path: Path) -> None:
    """The daemon's log set-up routes the standard library's logging (APScheduler's, any
    library's) and an exception nobody caught through the JSON renderer: one object per line,
    the traceback a field of it."""
    script = tmp_path / "logs.py"
    script.write_text(textwrap.dedent("""
        import logging
        import threading
        from orchestrator.entrypoints.logs import configure
        configure(json_logs=True, capture_uncaught=True)
        logging.getLogger("apscheduler.scheduler").warning("Run time of job %r was missed", "t")
        logging.getLogger("apscheduler.scheduler").info("below WARNING: not shown")
        try:
            1 / 0
        except ZeroDivisionError:
            logging.getLogger("apscheduler.executors.default").exception("Job raised")
        thread = threading.Thread(target=lambda: {}["missing"])
        thread.start()
        thread.join()
        raise RuntimeError("nobody caught this")
    """))
    done = subprocess.run([str(ORCHESTRATOR_PYTHON), str(script)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    assert [(x["event"], x.get("logger")) for x in lines] == [
        ("Run time of job 't' was missed", "apscheduler.scheduler"),
        ("Job raised", "apscheduler.executors.default"),
        ("unhandled_exception", None), ("unhandled_exception", None)]
    assert "ZeroDivisionError" in lines[1]["exception"]
    assert "KeyError" in lines[2]["exception"] and lines[2]["level"] == "critical"
    assert "nobody caught this" in lines[3]["exception"]


def test_audit_last_shows_the_newest_events_in_log_order(site: Cli) -> None:
    site("app", "register", "a-1", "a-2", "a-3")
    site("app", "register", "b-1")
    newest = site("audit", "--last", "2", "--format", "json").json_lines()
    everything = site("audit", "--format", "json").json_lines()
    assert [e["position"] for e in newest] == [e["position"] for e in everything[-2:]]
    assert [e["stream"] for e in newest] == ["app:a-3", "app:b-1"]
    only_a = site("audit", "--last", "1", "--type", "application.registered",
                  "--actor", "cli:alice", "--format", "json").json_lines()
    assert [e["stream"] for e in only_a] == ["app:b-1"]
    assert [e["stream"] for e in site("audit", "--app", "a-2", "--last", "5", "--format",
                                      "json").json_lines()] == ["app:a-2"]
    assert_refused(site.run("audit", "--last", "2", "--limit", "3"), "--limit and --last")
    assert_refused(site.run("audit", "--last", "0"), "--last")
