"""The image's CMD and HEALTHCHECK run as its container would run them, without a container
engine: the installed command (the wheel without extras, as the image installs it) with the
image's CMD arguments, its environment's settings (the paths under a temporary folder) and the
policies it copies; then the HEALTHCHECK's command, run by that installation's Python."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ORCHESTRATOR, ORCHESTRATOR_PYTHON, Cli, json_events, wait_for
from tests.unit.test_docker import ROOT, _instruction, _listen_port


def test_the_images_healthcheck_passes_while_its_daemon_runs_and_fails_after(
        tmp_path: Path) -> None:
    command, check = _instruction("CMD"), _instruction("HEALTHCHECK")
    _, port = _listen_port(command)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip(f"port {port} is taken on this machine; the image's CMD needs it")
    cli = Cli(f"sqlite:///{tmp_path / 'orchestrator.db'}", tmp_path / "keystore", tmp_path,
              actor="scheduler")
    cli.env.update(ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"),
                   ORCHESTRATOR_POLICIES=str(ROOT / "policies"))

    def healthy() -> bool:
        return subprocess.run([str(ORCHESTRATOR_PYTHON), *check[1:]], capture_output=True,
                              timeout=30, check=False).returncode == 0

    assert not healthy()  # nothing listens yet: the check can fail
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        daemon = subprocess.Popen([str(ORCHESTRATOR), *command], env=cli.env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(lambda: json_events(log, "metrics_serving"), "metrics_serving", daemon, log)
        wait_for(healthy, "the HEALTHCHECK passing", daemon, log)
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert not healthy()  # the daemon gone: unhealthy
