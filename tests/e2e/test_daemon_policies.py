"""A live daemon and the policies folder that ops edit under it, through the installed command.

One ``orchestrator daemon`` process (short interval, JSON logs on stderr) runs over a SQLite
file while the test edits its policies folder and asks the command line what happened, as an
operator would: the daemon provisions the applications the policies select (and only those);
a policy file overwritten with a broken one (an unknown key) is refused, logged as
``policy_rejected`` naming the file and the field, recorded once as ``policy.rejected``, and
the daemon keeps rotating on the last good version; the fixed file is applied and recorded as
``policy.applied`` with its new content hash; ``plan`` and ``rotations`` show what is expected;
``policy validate`` refuses the broken file naming it and the field.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from events.codec import parse_time
from tests.helpers import ORCHESTRATOR, Cli, Result

T = TypeVar("T")

WEB_KEYS = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: web-keys}
spec:
  selector: {apps: ["web-*"]}
  credential: {usage: private_key_jwt, algorithm: RS256, keySize: 2048}
  rotation:
    every: EVERY
    beforeExpiry: 10s
    overlap: 1s
    retry: {attempts: 2, backoff: 1s, maxBackoff: 1s}
  lifetime: LIFETIME
  retention: 1h
"""
SVC_SECRETS = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: svc-secrets}
spec:
  selector: {apps: ["svc-*"]}
  credential: {usage: client_secret}
  rotation: {every: 1h, beforeExpiry: 30m, overlap: 5m}
"""
GOOD = WEB_KEYS.replace("EVERY", "3s").replace("LIFETIME", "1h")
BROKEN = GOOD.replace("    overlap: 1s\n", "    overlap: 1s\n    jitter: 5s\n")  # unknown key
FIXED = WEB_KEYS.replace("EVERY", "1h").replace("LIFETIME", "2h")  # and calmer
FIELD = "spec.rotation.jitter"
APPS = ("web-1", "web-2", "svc-1", "other-1")  # other-1: no policy selects it


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def wait_until(check: Callable[[], T], timeout: float, what: str,
               daemon: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        tail = log.read_text(errors="replace")[-3000:] if log else ""
        if daemon is not None and daemon.poll() is not None:
            pytest.fail(f"the daemon exited ({daemon.returncode}) waiting for {what}\n{tail}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tail}")
        time.sleep(0.2)


def ok(results: list[Result]) -> list[Result]:
    for result in results:
        assert result.returncode == 0, str(result)
    return results


def log_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in log.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"event": "(not json)", "text": raw})
    return lines


@pytest.mark.slow
def test_the_daemon_follows_the_policies_folder(tmp_path: Path) -> None:
    cli = Cli(f"sqlite:///{tmp_path / 'orchestrator.db'}", tmp_path / "keystore", tmp_path)
    policies = tmp_path / "policies"
    policies.mkdir()
    web = policies / "web-keys.yaml"
    web.write_text(GOOD)
    (policies / "svc-secrets.yaml").write_text(SVC_SECRETS)
    cli.env.update(ORCHESTRATOR_POLICIES=str(policies),
                   ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"))
    ok(cli.many([("app", "register", app) for app in APPS]))
    assert cli("policy", "validate").stdout.count("ok ") == 2

    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [str(ORCHESTRATOR), "daemon", "--json-logs", "--interval", "0.3"], env=cli.env,
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def completions(app: str, after: int = 0) -> int:
        """Rotations of ``app`` the daemon logged as completed after log line ``after``."""
        return sum(line.get("event") == "rotation_step_completed" and line.get("step") ==
                   "complete" and line.get("app") == app for line in log_lines(log)[after:])

    def audit(kind: str) -> list[str]:
        return ["audit", "--type", kind, "--format", "json"]

    try:
        # it provisions what the policies select, and nothing else
        wait_until(lambda: all(completions(app) for app in APPS[:3]), 60,
                   "web-1, web-2 and svc-1 provisioned", daemon, log)
        *shown, completed = ok(cli.many([
            ("credential", "list", "web-1", "--json"), ("credential", "list", "web-2", "--json"),
            ("credential", "list", "svc-1", "--json"), ("state", "svc-1", "--json"),
            ("credential", "list", "other-1", "--json"), audit("rotation.completed")]))
        web_1, web_2, svc_keys, svc_state, other_keys = (r.json() for r in shown)
        done = completed.json_lines()
        for keys in (web_1, web_2):  # (a rotation may already be in its overlap)
            assert 1 <= len(keys) <= 2 and any(k["status"] == "active" for k in keys), keys
            assert {(k["usage"], k["alg"], k["key_size"]) for k in keys} == {
                ("private_key_jwt", "RS256", 2048)}
        assert svc_keys == [] and svc_state["secret"]["version"] >= 1
        assert other_keys == []
        assert {e["stream"] for e in done} == {"app:web-1", "app:web-2", "app:svc-1"}

        # a broken file: refused, named, recorded once, and the last good version stays
        broken_at = datetime.now(UTC)
        web.write_text(BROKEN)
        rejected = wait_until(
            lambda: [(n, line) for n, line in enumerate(log_lines(log))
                     if line.get("event") == "policy_rejected"],
            30, "policy_rejected in the daemon's log", daemon, log)
        at_line, line = rejected[0]
        assert line["path"] == str(web) and FIELD in line["error"], line
        wait_until(lambda: completions("web-1", at_line) >= 2, 60,
                   "web-1 still rotating on the last good policy", daemon, log)
        recorded, started, refused, the_plan = cli.many([  # refused: exit 1
            audit("policy.rejected"), audit("rotation.started"),
            ("policy", "validate", str(web)), ("plan", "--json")])
        (event,) = recorded.json_lines()
        assert event["payload"]["path"] == str(web)
        assert event["payload"]["content_hash"] == sha256(BROKEN)
        assert FIELD in event["payload"]["error"] and "jitter" in event["payload"]["error"]
        since = [e for e in started.json_lines()
                 if e["stream"] == "app:web-1" and parse_time(e["occurred_at"]) > broken_at]
        assert since and {e["payload"]["policy"] for e in since} == {"web-keys"}
        assert refused.returncode != 0, str(refused)
        assert f"{web}: {FIELD}: unknown key 'jitter'" in refused.stderr, str(refused)
        assert the_plan.returncode == 0, str(the_plan)
        errors = the_plan.json()["policy_errors"]
        assert any(str(web) in e and FIELD in e for e in errors), errors

        # fixed: applied and recorded with its new content hash; rejected still once
        web.write_text(FIXED)
        wait_until(lambda: any(line.get("event") == "policy_applied"
                               and line.get("content_hash") == sha256(FIXED)
                               for line in log_lines(log)),
                   30, "policy_applied with the fixed file's hash", daemon, log)
        applied, recorded = ok(cli.many([audit("policy.applied"), audit("policy.rejected")]))
        assert [(e["payload"]["name"], e["payload"]["content_hash"])
                for e in applied.json_lines() if e["payload"]["name"] == "web-keys"] == [
            ("web-keys", sha256(GOOD)), ("web-keys", sha256(FIXED))]
        assert len(recorded.json_lines()) == 1

        # what plan and rotations show, once the rotation in flight (if any) has completed
        wait_until(lambda: cli("rotations", "--json").json() == [], 30,
                   "no rotation in flight", daemon, log)
        # in 90 minutes: the keys made under the first version (lifetime 1h) have expired and
        # are replaced at once; the secret is past its age (every: 1h); other-1 has nothing
        later = (datetime.now(UTC) + timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
        now_plan, ahead, every = (r.json() for r in ok(cli.many([
            ("plan", "--json"), ("plan", "--json", "--at", later),
            ("rotations", "--all", "--json")])))
        assert now_plan == {"at": now_plan["at"], "actions": [], "deferred": [],
                            "problems": [], "policy_errors": [], "without_usable_credential": []}
        starts = {(a["app"], a["usage"], a["policy"], a["reason"]) for a in ahead["actions"]
                  if a["kind"] == "start"}
        assert starts == {("web-1", "private_key_jwt", "web-keys", "expired"),
                          ("web-2", "private_key_jwt", "web-keys", "expired"),
                          ("svc-1", "client_secret", "svc-secrets", "age")}, ahead
        assert {a["app"] for a in ahead["actions"] if a["kind"] == "expire"} == {"web-1", "web-2"}
        assert {(a["app"], a["usage"]) for a in ahead["without_usable_credential"]} == {
            ("web-1", "private_key_jwt"), ("web-2", "private_key_jwt")}
        assert {r["app"] for r in every} == set(APPS[:3])
        assert {r["policy"] for r in every if r["app"] == "svc-1"} == {"svc-secrets"}
        assert {r["policy"] for r in every if r["app"] != "svc-1"} == {"web-keys"}
        assert {r["status"] for r in every} == {"completed"}
        assert sum(r["app"] == "web-1" for r in every) >= 3
        assert [r["reason"] for r in every if r["app"] == "svc-1"] == ["provision"]
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    assert daemon.returncode == 0, log.read_text()[-3000:]
    events = [line.get("event") for line in log_lines(log)]
    assert events[-1] == "daemon_stopped"
    assert events.count("policy_rejected") == 1
    assert cli("verify").stdout.startswith("ok: ")
