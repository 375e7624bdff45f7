"""The daemon signs the log's head every ``--checkpoint-every`` on its injected clock: one at its
first tick, the next once that much virtual time has passed, whatever the tick interval. Time
is a virtual clock the test moves (tests/support/launch.py); nothing waits on the machine."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.conftest import NOW
from tests.helpers import LAUNCHER, Cli, VirtualClock, assert_refused, json_events, wait_for


def _text(at: Any) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_the_daemon_writes_a_checkpoint_at_start_then_every_hour_of_its_clock(
        tmp_path: Path) -> None:
    clock = VirtualClock(tmp_path / "now", NOW)
    (tmp_path / "no-policies").mkdir()  # nothing to rotate: the daemon only signs
    cli = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path, clock=clock)
    cli.env["ORCHESTRATOR_POLICIES"] = str(tmp_path / "no-policies")
    cli("app", "register", "billing", "payments")
    key, folder = tmp_path / "offsite" / "cp.key", tmp_path / "checkpoints"
    cli("checkpoint", "init-key", key)
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        daemon = subprocess.Popen(
            [*LAUNCHER, "daemon", "--interval", "60", "--checkpoint-every", "1h",
             "--checkpoint-key", str(key), "--checkpoint-out", str(folder), "--json-logs"],
            env=cli.env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)

    def beats(ticks: int) -> list[dict[str, Any]]:
        return [b for b in json_events(log, "daemon_heartbeat") if b["ticks"] >= ticks]

    def signed() -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

    try:
        wait_for(lambda: beats(1), "the first tick's heartbeat", daemon, log)
        (first,) = signed()
        assert (first["position"], first["at"]) == (2, _text(NOW))
        (written,) = json_events(log, "checkpoint_written")
        assert (written["position"], written["hash"]) == (2, first["hash"])

        cli("app", "register", "search")
        clock.set(NOW + timedelta(minutes=59))
        wait_for(lambda: beats(2), "a tick 59 minutes later", daemon, log)
        assert len(signed()) == 1  # not an hour yet

        at = clock.set(NOW + timedelta(minutes=61))
        wait_for(lambda: len(signed()) == 2, "the second checkpoint", daemon, log)
        second = signed()[1]
        assert (second["position"], second["at"]) == (3, _text(at))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    assert daemon.returncode == 0, log.read_text()
    assert json_events(log, "chain_broken") == json_events(log, "checkpoint_failed") == []
    checked = cli("verify", "--checkpoint", folder, "--public-key", f"{key}.pub")
    assert "ok: 2 checkpoint(s) signed by" in checked.stdout
    assert "anchors positions 1 to 3" in checked.stdout


def test_half_a_checkpoint_configuration_refuses_the_start(tmp_path: Path) -> None:
    """A key without a folder, a folder without a key, or --checkpoint-every asked for with
    neither: one line each, and the daemon does not start. An exposed key too."""
    (tmp_path / "no-policies").mkdir()
    cli = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path)
    cli.env["ORCHESTRATOR_POLICIES"] = str(tmp_path / "no-policies")
    key = tmp_path / "cp.key"
    cli("checkpoint", "init-key", key)
    assert_refused(cli.run("daemon", "--once", "--checkpoint-key", key),
                   "a folder (--checkpoint-out or ORCHESTRATOR_CHECKPOINTS) is missing")
    assert_refused(cli.run("daemon", "--once", "--checkpoint-out", tmp_path / "cps"),
                   "a key (--checkpoint-key or ORCHESTRATOR_CHECKPOINT_KEY) is missing")
    assert_refused(cli.run("daemon", "--once", "--checkpoint-every", "10m"),
                   "checkpoints need a key and a folder")
    key.chmod(0o644)
    cli.env.update(ORCHESTRATOR_CHECKPOINT_KEY=str(key),
                   ORCHESTRATOR_CHECKPOINTS=str(tmp_path / "cps"))
    assert_refused(cli.run("daemon", "--once"), f"checkpoint key {key} has mode 0644",
                   f"chmod 600 {key}")
    assert not (tmp_path / "cps").exists()
    cli("daemon", "--once", "--checkpoint-every", "0")  # off: the key is not even read
