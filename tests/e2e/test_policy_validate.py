"""``orchestrator policy validate`` reports every problem of every file in one run, one
``error:`` line each (issue 6, defect 16: fixing one file took 5 runs), and a window on
``* * * * *`` loads (it used to take 18.5 s; its cost is pinned in tests/unit/test_window_gaps.py
and measured by bench/policy_load.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Cli, policy_yaml

TWO_FIELD_ERRORS = policy_yaml(
    "two-field-errors", '["a-*"]', "{usage: private_key_jwt}",
    "{every: 90d, beforeExpiry: 14d, overlap: 1h, maxPerTick: 0, jitter: 5m}")
THREE_RULES_BROKEN = policy_yaml(
    "three-rules-broken", '["b-*"]', "{usage: private_key_jwt}",
    "{every: 1d, beforeExpiry: 1h, overlap: 2d}", lifetime="3d")
MINUTELY = policy_yaml(
    "minutely", '["c-*"]', "{usage: private_key_jwt}",
    '{every: 30d, beforeExpiry: 14d, overlap: 1h,'
    ' window: {cron: "* * * * *", duration: 1m, timezone: Europe/Berlin}}')


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    fields, rules = folder / "fields.yaml", folder / "rules.yaml"
    fields.write_text(TWO_FIELD_ERRORS)
    rules.write_text(THREE_RULES_BROKEN)
    (folder / "minutely.yaml").write_text(MINUTELY)
    cli = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path, init=False)
    result = cli.run("policy", "validate", folder)
    assert result.returncode == 1, str(result)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("error: ") for line in lines), str(result)
    assert sorted(line.split(": ")[1:3] for line in lines) == sorted([
        [str(fields), "spec.rotation.jitter"],
        [str(fields), "spec.rotation.maxPerTick"],
        [str(rules), "spec.rotation.overlap"],
        [str(rules), "spec.rotation.beforeExpiry"],
        [str(rules), "spec.lifetime"],
    ]), str(result)
    assert result.stdout.startswith(f"ok      {folder / 'minutely.yaml'}  minutely"), str(result)
