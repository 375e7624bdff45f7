"""A credential that expires at the end of time does not stop its application rotating.

9999-12-31T23:59:59Z is a valid expiry; "expiry + retention" lies past what ``datetime`` can
hold. That sum used to raise OverflowError in ``planner.next_due`` in every tick, after the
tick had acted but before it noted when the application was next due, so an application with
such a credential was never looked at again: a rotation waiting out its overlap never
completed. The daemon here (a real process, short interval) must complete it, and log no
failed tick.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ORCHESTRATOR, Cli, policy_yaml

POLICIES = {
    f"far-{usage}.yaml": policy_yaml(f"far-{usage.replace('_', '-')}", '["far-*"]',
                                     f"{{usage: {usage}, algorithm: PS256}}",
                                     f"{{every: 90d, beforeExpiry: 14d, overlap: {overlap}}}",
                                     extra="  retention: 7d\n")
    for usage, overlap in (("private_key_jwt", "1h"), ("jar", "1s"))}


@pytest.mark.slow
def test_an_app_with_a_credential_expiring_in_9999_still_rotates(tmp_path: Path) -> None:
    """far-1's private_key_jwt key expires at 9999-12-31T23:59:59Z under a policy with a
    retention; its jar key is RS256 where the policy wants PS256. The daemon replaces the jar
    key, waits out the 1 s overlap and completes the rotation, and no tick fails."""
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, text in POLICIES.items():
        (policies / name).write_text(text)
    cli = Cli(f"sqlite:///{tmp_path / 'orchestrator.db'}", tmp_path / "keystore", tmp_path)
    cli.env.update(ORCHESTRATOR_POLICIES=str(policies),
                   ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"))
    cli("app", "register", "far-1")
    cli("credential", "add", "far-1", "--usage", "private_key_jwt", "--alg", "PS256",
        "--generate", "--activate", "--expires-at", "9999-12-31T23:59:59Z")
    cli("credential", "add", "far-1", "--usage", "jar", "--alg", "RS256", "--generate",
        "--activate")

    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [str(ORCHESTRATOR), "daemon", "--json-logs", "--interval", "0.3"], env=cli.env,
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            rotations = cli("rotations", "--all", "--json").json()
            if any(r["usage"] == "jar" and r["status"] == "completed" for r in rotations):
                break
            assert daemon.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"the jar rotation did not complete in 90 s: {rotations}\n"
                f"{log.read_text()[-3000:]}")
            time.sleep(0.3)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    events = [json.loads(line).get("event") for line in log.read_text().splitlines()
              if line.startswith("{")]
    assert "tick_failed" not in events, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    keys = cli("credential", "list", "far-1", "--json").json()
    assert {(k["usage"], k["alg"], k["status"]) for k in keys} == {
        ("private_key_jwt", "PS256", "active"), ("jar", "PS256", "active"),
        ("jar", "RS256", "disabled")}
