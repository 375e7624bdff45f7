"""Delivery hooks, the pure part and the policy field: what a hook is given, what of its output
reaches a log line, and the line a failed one records. (The hook run by the daemon:
tests/e2e/test_delivery_hooks.py.)"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

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
