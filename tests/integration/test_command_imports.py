"""A command loads only what it uses: every command line start pays for each module it imports
(the end-to-end suite is mostly such starts), so the heavy ones stay out of the commands that
never use them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Loaded by the parts a command may never touch: signing and keys (cryptography, PyJWT), the
# policies (their loader, the planner's windows on APScheduler), Rich's tracebacks (structlog's
# console renderer; the logs off a terminal are JSON).
HEAVY = ("cryptography", "jwt", "orchestrator.policies.source", "apscheduler", "rich.traceback",
         "pygments")

PROBE = """
import json, sys
from orchestrator.entrypoints.cli import main
try:
    main(sys.argv[2:])
except SystemExit as stop:
    assert not stop.code, stop.code
print(json.dumps([m for m in json.loads(sys.argv[1]) if m in sys.modules]))
"""


def _loaded(args: list[str], env: dict[str, str], cwd: Path,
            watched: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of ``watched`` the command ``args`` has loaded when it is done."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(watched), *args], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str) -> dict[str, str]:
    environ = {**os.environ, "ORCHESTRATOR_DB": sqlite_url,
               "ORCHESTRATOR_KEYSTORE": str(tmp_path / "keystore"),
               "ORCHESTRATOR_POLICIES": str(tmp_path / "policies")}
    (tmp_path / "policies").mkdir()
    subprocess.run([sys.executable, "-m", "orchestrator", "init"], env=environ, cwd=tmp_path,
                   capture_output=True, check=True, timeout=120)
    return environ


def test_registering_an_application_loads_no_crypto_policies_or_rich_tracebacks(
        env: dict[str, str], tmp_path: Path) -> None:
    """``app register`` appends one event: no key is made, no policy read, nothing logged."""
    assert _loaded(["app", "register", "payments"], env, tmp_path) == []


def test_status_and_verify_load_no_crypto_or_rich_tracebacks(
        env: dict[str, str], tmp_path: Path) -> None:
    """``status`` reads the policies (its next rotations) but signs nothing; ``verify`` walks
    the chain with hashlib."""
    assert [m for m in _loaded(["status"], env, tmp_path)
            if m not in ("orchestrator.policies.source", "apscheduler")] == []
    assert _loaded(["verify"], env, tmp_path) == []


def test_verify_reads_the_log_without_wiring_the_service(env: dict[str, str],
                                                        tmp_path: Path) -> None:
    """``verify`` walks the chain and checks the read models: no rotator, ticker or keystore
    is built for it."""
    assert _loaded(["verify"], env, tmp_path, ("orchestrator.app.rotator",
                                               "orchestrator.app.tick",
                                               "orchestrator.adapters.keystore")) == []


def test_adding_a_generated_key_still_loads_cryptography(env: dict[str, str],
                                                         tmp_path: Path) -> None:
    """The probe sees what a command does load: a generated key needs cryptography."""
    subprocess.run([sys.executable, "-m", "orchestrator", "app", "register", "shop"], env=env,
                   cwd=tmp_path, capture_output=True, check=True, timeout=120)
    assert "cryptography" in _loaded(["credential", "add", "shop", "--usage",
                                      "private_key_jwt", "--generate"], env, tmp_path)


def test_app_list_reads_the_read_model_without_pydantic(env: dict[str, str],
                                                        tmp_path: Path) -> None:
    """``app list`` reads rows of the read model: no event is decoded or hashed, so neither
    pydantic nor its core is loaded (nor anything heavier)."""
    assert _loaded(["app", "list"], env, tmp_path, ("pydantic", "pydantic_core", *HEAVY)) == []
