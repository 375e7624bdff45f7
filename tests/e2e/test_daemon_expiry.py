"""Expiry is enforced to the second: the daemon schedules an exact job at the next expiry
instant, whatever its tick interval."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests import helpers

ORCHESTRATOR = str(helpers.ORCHESTRATOR)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ORCHESTRATOR, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=True)


def test_a_credential_is_expired_within_a_second_of_its_expiry(tmp_path: Path) -> None:
    """With a 60 s tick, a key expiring 4 s after the daemon starts is recorded as expired
    less than a second after its expires_at, by the exact date job."""
    policies = tmp_path / "policies"
    policies.mkdir()
    env = {**os.environ, "ORCHESTRATOR_DB": f"sqlite:///{tmp_path / 'o.db'}",
           "ORCHESTRATOR_KEYSTORE": str(tmp_path / "ks"),
           "ORCHESTRATOR_DELIVERY": str(tmp_path / "delivery"),
           "ORCHESTRATOR_POLICIES": str(policies)}
    _run(env, "app", "register", "svc")
    expires = datetime.now(UTC) + timedelta(seconds=6)
    _run(env, "credential", "add", "svc", "--usage", "private_key_jwt", "--generate",
         "--activate", "--expires-at", expires.isoformat())
    daemon = subprocess.Popen([ORCHESTRATOR, "daemon", "--interval", "60", "--json-logs"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        expired: list[dict[str, object]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not expired:
            time.sleep(0.25)
            out = _run(env, "audit", "--type", "credential.expired", "--format", "json").stdout
            expired = [json.loads(line) for line in out.splitlines()]
        assert len(expired) == 1, "credential.expired was not recorded within 30 s"
        recorded = datetime.fromisoformat(str(expired[0]["occurred_at"]))
        assert timedelta(0) <= recorded - expires < timedelta(seconds=1)
        assert expired[0]["actor"] == "scheduler"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert daemon.returncode == 0
