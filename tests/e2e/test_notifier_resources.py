"""Notifier files through the installed command: ``policy validate`` says ``ok`` for a good
one and refuses each bad one with one ``error:`` line naming file and field (never repeating
an inline secret); the daemon refuses to start beside a broken one, in one line, writing
nothing."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT
from tests.helpers import Cli, assert_refused, dump_tables

GOOD = """apiVersion: orchestrator/v1
kind: Notifier
metadata: {name: ops}
spec:
  url: https://hooks.example.com/orchestrator
  secret: {env: OPS_WEBHOOK_SECRET}
"""
BAD = {
    "plain-http.yaml": GOOD.replace("https://hooks.example.com", "http://hooks.example.com"),
    "inline-secret.yaml": GOOD.replace("{env: OPS_WEBHOOK_SECRET}", "whsec_live_5d41402abc4b"),
    "unknown-event.yaml": GOOD + "  events: [rotation.exploded]\n",
    "thresholds-alone.yaml": GOOD + "  events: [rotation.failed]\n  thresholds: [7d]\n",
}
FIELD = {"plain-http.yaml": "spec.url", "inline-secret.yaml": "spec.secret",
         "unknown-event.yaml": "spec.events[0]", "thresholds-alone.yaml": "spec.thresholds"}


def test_policy_validate_passes_a_notifier_and_refuses_each_bad_one_in_one_line(
        tmp_path: Path) -> None:
    cli = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path, init=False)
    ok = cli("policy", "validate", ROOT / "examples" / "notifiers")
    assert "ops-webhook" in ok.stdout and ok.stdout.rstrip().endswith("notifier")
    for name, text in BAD.items():
        folder = tmp_path / name.removesuffix(".yaml")
        folder.mkdir()
        (folder / name).write_text(text)
        result = cli.run("policy", "validate", folder)
        assert_refused(result, f"{folder / name}: {FIELD[name]}: ")
        assert "whsec_live" not in result.stderr + result.stdout


def test_the_daemon_does_not_start_beside_a_broken_notifier(tmp_path: Path) -> None:
    cli = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "ops.yaml").write_text(BAD["plain-http.yaml"])
    cli.env["ORCHESTRATOR_POLICIES"] = str(policies)
    before = dump_tables(cli.db_url)
    assert_refused(cli.run("daemon", "--once"), "the daemon does not start",
                   f"{policies / 'ops.yaml'}: spec.url")
    assert dump_tables(cli.db_url) == before
