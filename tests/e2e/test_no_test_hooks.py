"""Test hooks do not ship: the installed program has no switch that kills it or moves its clock.

Fault injection and the virtual clock live in tests/support/launch.py, which passes them to
``orchestrator.entrypoints.cli.main`` as arguments; the installed ``orchestrator`` command reads
no environment variable for either."""

from __future__ import annotations

from pathlib import Path

import orchestrator
from tests.helpers import Cli


def test_the_installed_command_ignores_the_old_crash_switch(tmp_path: Path) -> None:
    """ORCHESTRATOR_CRASH_AT used to make the installed program SIGKILL itself when a rotation
    reached a step: an operator (or an attacker who can set the environment) could trip it.
    Now the rotation runs to the end."""
    cli = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "secrets.yaml").write_text(  # `rotate` takes its settings from a policy
        "apiVersion: orchestrator/v1\nkind: RotationPolicy\nmetadata: {name: secrets}\n"
        "spec:\n  selector: {apps: [svc]}\n  credential: {usage: client_secret}\n"
        "  rotation: {every: 30d, beforeExpiry: 7d, overlap: 1h}\n")
    cli.env.update(ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"),
                   ORCHESTRATOR_POLICIES=str(policies))
    cli("app", "register", "svc")
    cli.env["ORCHESTRATOR_CRASH_AT"] = "before_record:start:1"
    rotated = cli.run("rotate", "svc", "--usage", "client_secret")
    assert rotated.returncode == 0, str(rotated)
    assert cli("audit", "--type", "rotation.completed", "--format", "json").json_lines()


def test_the_installed_command_ignores_the_launchers_clock_variable(tmp_path: Path) -> None:
    """The virtual clock is the test launcher's (tests/support/launch.py reads the variable and
    passes a clock to main()); set for the installed command, it changes nothing."""
    (tmp_path / "now").write_text("2001-01-01T00:00:00+00:00")
    cli = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path)
    cli.env["ORCHESTRATOR_TEST_CLOCK"] = str(tmp_path / "now")
    cli("app", "register", "svc")
    (event,) = cli("audit", "--format", "json").json_lines()
    assert not event["occurred_at"].startswith("2001"), event


def test_no_module_of_the_package_can_kill_its_own_process() -> None:
    package = Path(orchestrator.__file__).parent
    # the one kill the package makes: a timed-out delivery hook's process group, the hook
    # started in a session of its own (so the group is never the daemon's)
    hook_kill = "os.killpg(process.pid, signal.SIGKILL)"
    hooks = (package / "adapters" / "hooks.py").read_text()
    assert hooks.count(hook_kill) == 1 and "start_new_session=True" in hooks
    for module in package.rglob("*.py"):
        text = module.read_text().replace(hook_kill, "")
        for needle in ("SIGKILL", "os.kill", "CRASH_AT", "ORCHESTRATOR_TEST_"):
            assert needle not in text, f"{module.relative_to(package)} holds {needle!r}"
