"""Expiry is enforced at its instant: the daemon acts at the next expiry whatever its tick
interval. Time is a virtual clock the test moves (tests/support/launch.py), so what is checked is
the instant the daemon records, never how fast this machine is."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import NOW
from tests.helpers import LAUNCHER, Cli, VirtualClock, json_events, wait_for


def test_a_credential_is_expired_at_its_expiry_instant_whatever_the_interval(
        tmp_path: Path) -> None:
    """With a tick every hour, a key expiring 6 s after the daemon's first tick is recorded as
    expired at the virtual instant the clock passed its expiry, by the daemon's expiry wake-up
    (the next tick is an hour of virtual time away, and the clock never gets there)."""
    clock = VirtualClock(tmp_path / "now", NOW)
    cli = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path, clock=clock)
    policies = tmp_path / "policies"
    policies.mkdir()
    cli.env.update(ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"),
                   ORCHESTRATOR_POLICIES=str(policies))
    cli("app", "register", "svc")
    expires = NOW + timedelta(seconds=6)
    cli("credential", "add", "svc", "--usage", "private_key_jwt", "--generate", "--activate",
        "--expires-at", expires.isoformat())
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        daemon = subprocess.Popen([*LAUNCHER, "daemon", "--interval", "3600", "--json-logs"],
                                  env=cli.env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                  stderr=err)

    def expired() -> list[dict[str, object]]:
        out = cli("audit", "--type", "credential.expired", "--format", "json").stdout
        return [json.loads(line) for line in out.splitlines()]

    try:
        wait_for(lambda: json_events(log, "daemon_heartbeat"), "the first tick's heartbeat",
                 daemon, log)
        (beat,) = json_events(log, "daemon_heartbeat")
        assert beat["next_expiry"] == expires.isoformat() and beat["role"] == "leader"
        assert expired() == []
        at = clock.set(expires + timedelta(milliseconds=250))
        wait_for(expired, "credential.expired", daemon, log)
        (record,) = expired()
        recorded = datetime.fromisoformat(str(record["occurred_at"]))
        assert expires <= recorded <= at  # at the virtual instant the clock passed the expiry
        assert record["actor"] == "scheduler"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    assert daemon.returncode == 0, log.read_text()
    assert datetime.now(UTC) > NOW  # the daemon lived in 2026-11-22, whatever today is
