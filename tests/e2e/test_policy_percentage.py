"""``beforeExpiry: 25%`` through the installed command: ``plan`` rotates each credential once a
quarter of its own lifetime is left (a short-lived one early, never in a loop), and
``policy validate`` refuses a percentage out of range in one line naming file and field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import NOW
from tests.helpers import Cli, VirtualClock, policy_yaml

DAY = timedelta(days=1)
QUARTER = policy_yaml("pay-keys", '["pay-*"]', "{usage: private_key_jwt}",
                      "{every: 30d, beforeExpiry: 25%, overlap: 1h}", lifetime="40d")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    clock = VirtualClock(tmp_path / "now", NOW)
    site = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path, clock=clock)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "keys.yaml").write_text(QUARTER)
    site.env.update(ORCHESTRATOR_POLICIES=str(tmp_path / "policies"))
    return site


def due(cli: Cli, at: timedelta) -> list[tuple[str, str, str]]:
    actions = cli("plan", "--at", (NOW + at).isoformat(), "--json").json()["actions"]
    return [(a["kind"], a["app"], a["reason"]) for a in actions]


def test_plan_rotates_each_credential_at_a_quarter_of_its_own_lifetime(cli: Cli) -> None:
    """pay-short holds an 8-day key (a provider's short lifetime: due with 2 days left, at
    6 days); pay-long a 40-day one (due with 10 days left, at 30 days, where its age is due
    too). A fixed beforeExpiry of 10d (a quarter of the policy's lifetime) would have rotated
    the 8-day key the moment it came."""
    cli("app", "register", "pay-short", "pay-long")
    for app, life in (("pay-short", 8 * DAY), ("pay-long", 40 * DAY)):
        cli("credential", "add", app, "--usage", "private_key_jwt", "--generate", "--activate",
            "--expires-at", (NOW + life).isoformat())
    assert due(cli, timedelta(0)) == []
    assert due(cli, 6 * DAY - timedelta(seconds=1)) == []
    assert due(cli, 6 * DAY) == [("start", "pay-short", "expiring")]
    assert "pay-long" not in {app for _, app, _ in due(cli, 30 * DAY - timedelta(seconds=1))}
    assert ("start", "pay-long", "expiring") in due(cli, 30 * DAY)


def test_a_percentage_out_of_range_is_one_line_naming_file_and_field(
        cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "keys.yaml").write_text(QUARTER.replace("25%", "100%"))
    result = cli.run("policy", "validate", str(bad))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {bad / 'keys.yaml'}: spec.rotation.beforeExpiry: '100%' is not a percentage "
        "between 0% and 100% (exclusive); write e.g. 33% or 12.5%"]
