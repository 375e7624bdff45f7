"""Delivery hooks, the pure part, the policy field and the service layer's ``Deliverer`` with
in-memory doubles of its ports: what a hook is given, what of its output reaches a log line, and
the line a failed one records. (The hook run by the daemon: tests/e2e/test_delivery_hooks.py.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.app.delivering import Deliverer
from orchestrator.domain.errors import DeliveryError
from orchestrator.domain.hooks import (
    MAX_OUTPUT,
    Hook,
    HookResult,
    hook_environment,
    scrub_output,
    why_hook_failed,
)
from orchestrator.policies.files import load_policy_file
from orchestrator.policies.source import to_plan_policy
from tests.helpers import variant, write_yaml
from tests.unit.test_policy import VALID

KEY = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n"
       "-----END PRIVATE KEY-----\n")


def test_the_hook_is_told_where_the_files_are_and_nothing_secret() -> None:
    assert hook_environment("/d/web/jar", "web", "jar", "cred_1", "rot_1") == {
        "ORCHESTRATOR_DELIVERY_DIR": "/d/web/jar", "ORCHESTRATOR_APP": "web",
        "ORCHESTRATOR_USAGE": "jar", "ORCHESTRATOR_CREDENTIAL_ID": "cred_1",
        "ORCHESTRATOR_ROTATION_ID": "rot_1"}
    assert "ORCHESTRATOR_CREDENTIAL_ID" not in hook_environment("/d", "web", "client_secret",
                                                                None, "rot_1")


def test_output_loses_the_delivered_private_values_even_printed_in_pieces() -> None:
    secret = "s3cr3t-client-secret-value"
    printed = f"pushing\n{KEY}then the secret {secret} and a line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    out = scrub_output(printed, [KEY, secret])
    assert secret not in out and "MIIEvQ" not in out and "BKcwgg" not in out
    assert out.startswith("pushing") and "[redacted]" in out


def test_any_pem_private_key_is_redacted_even_one_not_delivered() -> None:
    other = KEY.replace("MIIEvQ", "MIIZZZ")
    assert scrub_output(f"a {other}b", []) == "a [redacted]\nb"
    assert scrub_output(f"cut {other[:60]}", []) == "cut [redacted]"  # a truncated one too


def test_long_output_keeps_its_end_where_the_error_is() -> None:
    out = scrub_output("x" * 10_000 + "\nfatal: denied\x1b[0m")
    assert len(out) == MAX_OUTPUT + 3 and out.endswith("fatal: denied[0m")


def test_a_failed_hook_records_one_line_without_its_output() -> None:
    hook = Hook(("/usr/local/bin/push", "--token-file", "/etc/t"))
    assert why_hook_failed(hook, HookResult(0, "ok"), "web", "jar") is None
    line = why_hook_failed(hook, HookResult(3, "leaked?"), "web", "jar")
    assert line is not None and "\n" not in line and "leaked?" not in line
    assert line.startswith("web: the delivery hook /usr/local/bin/push exited with status 3")
    assert "was killed by signal 9" in str(why_hook_failed(hook, HookResult(-9, ""), "w", "jar"))
    timed_out = HookResult(None, "", "did not finish within 30s and was killed")
    assert "did not finish within 30s" in str(why_hook_failed(hook, timed_out, "w", "jar"))


def test_a_relative_program_is_found_beside_the_policy_file(tmp_path: Path) -> None:
    def hook_of(command: list[str]) -> Hook | None:
        data = variant(VALID, spec__delivery={"hook": {"command": command, "timeout": "5s"}})
        return to_plan_policy(load_policy_file(write_yaml(tmp_path, "p.yaml", data))).params.hook

    assert hook_of(["./hooks/push.sh", "a b"]) == Hook(
        (str(tmp_path / "hooks/push.sh"), "a b"), timedelta(seconds=5))
    assert hook_of(["kubectl", "rollout"]) == Hook(("kubectl", "rollout"), timedelta(seconds=5))
    assert hook_of(["/opt/push"]) == Hook(("/opt/push",), timedelta(seconds=5))
    no_hook = to_plan_policy(load_policy_file(write_yaml(tmp_path, "q.yaml", VALID)))
    assert no_hook.params.hook is None


class Folder:
    """``Delivery`` in memory: what was delivered, by app and usage."""

    def __init__(self) -> None:
        self.sets: list[tuple[str, str, dict[str, bytes]]] = []

    def deliver(self, app: str, usage: str, files: Mapping[str, bytes]) -> Path:
        self.sets.append((app, usage, dict(files)))
        return Path("/delivery") / app / usage


class Runner:
    """``HookRunner`` that answers as told and keeps what it was asked to run."""

    def __init__(self, result: HookResult) -> None:
        self.result = result
        self.runs: list[tuple[tuple[str, ...], dict[str, str], timedelta]] = []

    def run(self, command: Sequence[str], env: Mapping[str, str],
            timeout: timedelta) -> HookResult:
        self.runs.append((tuple(command), dict(env), timeout))
        return self.result


SECRET = "the-client-secret-0123456789"
FILES = {"client_secret": SECRET.encode(), "version": b"2"}


def test_the_hook_runs_after_the_files_with_the_folder_and_its_output_is_scrubbed() -> None:
    runner = Runner(HookResult(0, f"pushed {SECRET} to vault"))
    folder = Folder()
    hook = Hook(("push",), timedelta(seconds=5))
    with capture_logs() as logs:
        Deliverer(folder, runner).deliver("svc", "client_secret", FILES, hook, rotation_id="rot_1")
    assert folder.sets == [("svc", "client_secret", FILES)]
    ((command, env, timeout),) = runner.runs
    assert command == ("push", "/delivery/svc/client_secret") and timeout == hook.timeout
    assert env["ORCHESTRATOR_DELIVERY_DIR"] == "/delivery/svc/client_secret"
    assert SECRET not in str(env)
    (line,) = [entry for entry in logs if entry["event"] == "hook_succeeded"]
    assert line["app"] == "svc" and line["output"] == "pushed [redacted] to vault"


def test_a_failed_hook_fails_the_delivery_with_one_line() -> None:
    with capture_logs() as logs, pytest.raises(DeliveryError) as failed:
        Deliverer(Folder(), Runner(HookResult(2, SECRET))).deliver(
            "svc", "client_secret", FILES, Hook(("push",)))
    assert str(failed.value).startswith("svc: the delivery hook push exited with status 2")
    assert SECRET not in str(failed.value) and SECRET not in str(logs)


def test_a_policy_hook_is_refused_where_nothing_can_run_it() -> None:
    folder = Folder()
    with pytest.raises(DeliveryError, match="cannot run hooks"):
        Deliverer(folder, None).deliver("svc", "jar", {"kid": b"k"}, Hook(("push",)))
    assert Deliverer(folder, None).deliver("svc", "jar", {"kid": b"k"}, None) == Path(
        "/delivery/svc/jar")  # no hook: the files only
