"""Delivery hooks through the installed daemon: ``spec.delivery.hook`` runs after each delivery.

The hook here is a shell script beside the policy (``./hook.sh``, relative to the policy file),
told what to do by a file the test writes: fail the next N calls, or sleep past its timeout.
Every call appends its arguments and ``ORCHESTRATOR_*`` variables to a file, and dumps its whole
environment, which must not hold the daemon's own secrets. ``orchestrator daemon --once`` runs
at instants the test chooses (a ``VirtualClock``); the hook's timeout is the one real wait.

* a hook that fails twice then succeeds: the deliver step fails and is retried with its backoff,
  the old credential stays active until the step is recorded after the hook's success, then the
  rotation completes; ``hook_failed`` and ``hook_succeeded`` name the app, and the hook's output
  is in the log without the private key the hook printed;
* a hook that always fails: the rotation is parked after its budget, the old credential intact;
* a hook that outlives its timeout is killed and fails the step.
"""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.helpers import Cli, Result, VirtualClock, policy_yaml
from tests.oracle import read_log

T0 = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
APP = "web-1"
SECRET_ENV = "AUTH0_CLIENT_SECRET"  # something secret in the daemon's environment
SECRET = "daemon-only-secret-value-0123456789"
POLICY = policy_yaml(
    "web-keys", '["web-*"]', "{usage: private_key_jwt, keySize: 2048}",
    "{every: 30d, beforeExpiry: 7d, overlap: 1h, "
    "retry: {attempts: ATTEMPTS, backoff: 1m, maxBackoff: 10m}}", "90d",
    "  delivery:\n    hook: {command: [./hook.sh, --reload], timeout: TIMEOUT}\n")
HOOK = """#!/bin/sh
# a test's delivery hook: records each call, then fails, sleeps or succeeds as told
state=STATE
printf '%s|%s|%s|%s|%s|%s\\n' "$1" "$2" "$ORCHESTRATOR_DELIVERY_DIR" "$ORCHESTRATOR_APP" \\
    "$ORCHESTRATOR_USAGE" "$ORCHESTRATOR_CREDENTIAL_ID" >> "$state/calls"
env > "$state/env"
if [ -f "$state/sleep" ]; then sleep "$(cat "$state/sleep")"; fi
left=$(cat "$state/fail" 2>/dev/null || echo 0)
if [ "$left" -gt 0 ]; then
    echo $((left - 1)) > "$state/fail"
    cat "$2/private_key.pem"
    echo "vault unreachable: connection refused" >&2
    exit 3
fi
echo "pushed $(cat "$2/kid") to the vault"
"""


class Site:
    """One database, keystore, policies folder (policy and hook) and delivery folder."""

    def __init__(self, tmp_path: Path, attempts: int = 5, timeout: str = "30s") -> None:
        self.db = tmp_path / "orchestrator.db"
        self.clock = VirtualClock(tmp_path / "clock", T0)
        self.cli = Cli(f"sqlite:///{self.db}", tmp_path / "keystore", tmp_path, clock=self.clock)
        self.policies, self.delivery = tmp_path / "policies", tmp_path / "delivery"
        self.state = tmp_path / "hook-state"
        self.policies.mkdir()
        self.state.mkdir()
        (self.policies / "web-keys.yaml").write_text(
            POLICY.replace("ATTEMPTS", str(attempts)).replace("TIMEOUT", timeout))
        hook = self.policies / "hook.sh"
        hook.write_text(HOOK.replace("STATE", str(self.state)))
        hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
        self.cli.env.update(ORCHESTRATOR_POLICIES=str(self.policies),
                            ORCHESTRATOR_DELIVERY=str(self.delivery), **{SECRET_ENV: SECRET})
        self.cli("app", "register", APP)

    def daemon(self, at: datetime) -> list[dict[str, Any]]:
        self.clock.set(at)
        result: Result = self.cli("daemon", "--once", "--json-logs")
        return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]

    def fail_next(self, calls: int) -> None:
        (self.state / "fail").write_text(f"{calls}\n")

    def calls(self) -> list[list[str]]:
        return [line.split("|") for line in (self.state / "calls").read_text().splitlines()]

    def provisioned(self) -> str:
        """The daemon provisions the app (the hook succeeds); the credential's id."""
        self.daemon(T0)
        log = read_log(self.db)
        assert log.types(APP)[-1] == "rotation.completed"
        (cred,) = log.creds[APP]
        return cred


def lines(logged: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in logged if line["event"] == event]


def test_a_hook_that_fails_then_succeeds_delays_the_retirement_of_the_old_credential(
        tmp_path: Path) -> None:
    site = Site(tmp_path)
    old = site.provisioned()
    folder = site.delivery / APP / "private_key_jwt"
    assert site.calls() == [["--reload", str(folder), str(folder), APP, "private_key_jwt", old]]
    environment = (site.state / "env").read_text()
    assert SECRET not in environment and SECRET_ENV not in environment
    assert "ORCHESTRATOR_DB" not in environment  # the daemon's own settings stay its own

    site.fail_next(2)
    due = T0 + 31 * DAY  # the credential's age: a rotation starts, its hook fails
    first = site.daemon(due)
    second = site.daemon(due + 2 * MINUTE)  # past the first backoff (at most 1m): fails again
    log = read_log(site.db)
    (rid,) = [r["payload"]["rotation_id"] for r in log.rows
              if r["type"] == "rotation.started"][1:]
    new = next(r["payload"]["new_credential_id"] for r in log.by_rotation[rid])
    failed = [r["payload"] for r in log.by_rotation[rid] if r["type"] == "rotation.failed"]
    assert [(f["step"], f["attempt"]) for f in failed] == [("deliver", 1), ("deliver", 2)]
    assert all("delivery hook" in f["error"] and "exited with status 3" in f["error"]
               for f in failed)
    assert log.step_time(rid, "delivered") is None
    assert log.creds[APP][old].active_from and not log.creds[APP][old].inactive_from
    for run in (first, second):
        (hook_failed,) = lines(run, "hook_failed")
        assert hook_failed["app"] == APP and hook_failed["level"] == "warning"
        assert hook_failed["rotation_id"] == rid and hook_failed["exit_code"] == 3
        assert "vault unreachable: connection refused" in hook_failed["output"]
        assert "[redacted]" in hook_failed["output"]
        assert "PRIVATE KEY" not in json.dumps(run) and "MII" not in json.dumps(run)
        (step_failed,) = lines(run, "rotation_step_failed")
        assert step_failed["app"] == APP and step_failed["step"] == "deliver"

    succeeded = site.daemon(due + 10 * MINUTE)  # the third call succeeds: delivered
    (hook_ok,) = lines(succeeded, "hook_succeeded")
    new_kid = (folder / "kid").read_text()
    assert hook_ok["app"] == APP and hook_ok["output"] == f"pushed {new_kid} to the vault"
    assert (folder / "credential_id").read_text() == new
    log = read_log(site.db)
    delivered = log.step_time(rid, "delivered")
    assert delivered == due + 10 * MINUTE
    assert not log.creds[APP][old].inactive_from  # the overlap still runs

    site.daemon(due + 10 * MINUTE + 2 * HOUR)  # after the overlap: the old one retired
    log = read_log(site.db)
    assert log.by_rotation[rid][-1]["type"] == "rotation.completed"
    (retired,) = log.creds[APP][old].inactive_from
    assert retired > delivered
    assert [c[5] for c in site.calls()] == [old, new, new, new]  # a call per delivery attempt


def test_a_hook_that_always_fails_parks_the_rotation_with_the_old_credential_intact(
        tmp_path: Path) -> None:
    site = Site(tmp_path, attempts=2)
    old = site.provisioned()
    site.fail_next(100)
    due = T0 + 31 * DAY
    site.daemon(due)
    parked = site.daemon(due + 2 * MINUTE)
    log = read_log(site.db)
    rid = log.rows[-1]["payload"]["rotation_id"]
    assert [r["type"] for r in log.by_rotation[rid]][-2:] == ["rotation.failed", "rotation.parked"]
    assert log.by_rotation[rid][-1]["payload"]["step"] == "deliver"
    assert log.creds[APP][old].active_from and not log.creds[APP][old].inactive_from
    (line,) = lines(parked, "rotation_parked")
    assert line["app"] == APP and "delivery hook" in line["error"]
    site.daemon(due + 3 * DAY)  # parked: nothing is retried, the old credential stays
    assert read_log(site.db).creds[APP][old].inactive_from == []
    assert len(site.calls()) == 3  # provisioning, then the two attempts
    rotations = site.cli("rotations", "--json").json()
    assert [(r["rotation_id"], r["status"]) for r in rotations] == [(rid, "parked")]


def test_a_hook_past_its_timeout_is_killed_and_fails_the_step(tmp_path: Path) -> None:
    site = Site(tmp_path, attempts=3, timeout="2s")
    old = site.provisioned()
    (site.state / "sleep").write_text("60\n")
    run = site.daemon(T0 + 31 * DAY)
    (hook_failed,) = lines(run, "hook_failed")
    assert hook_failed["app"] == APP and hook_failed["exit_code"] is None
    assert hook_failed["error"] == "did not finish within 2s and was killed"
    log = read_log(site.db)
    (failed,) = [r["payload"] for r in log.rows if r["type"] == "rotation.failed"]
    assert failed["step"] == "deliver" and "did not finish within 2s" in failed["error"]
    assert not log.creds[APP][old].inactive_from
