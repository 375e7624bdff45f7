"""``beforeExpiry: 33%``: a share of each credential's own lifetime (cert-manager's
renewBeforePercentage), parsed, validated, and read by the planner per credential."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.domain.durations import format_percentage, parse_percentage
from orchestrator.domain.planner import next_due, plan
from orchestrator.policies.explain import explain
from orchestrator.policies.models import Policy
from orchestrator.policies.source import to_plan_policy
from tests.conftest import NOW
from tests.unit.test_planner import DAY, KEYS, Given, lines, policy

# 33% of each credential's lifetime (40d: the share of the policy's own 120d, for a credential
# whose lifetime is unknown)
THIRD = replace(policy(before_expiry=40 * DAY), before_expiry_fraction=1 / 3)


@pytest.mark.parametrize(("text", "fraction"), [
    ("33%", 0.33), ("12.5%", 0.125), (" 50 % ", 0.5), ("0.01%", 0.0001), ("99.99%", 0.9999)])
def test_a_percentage_reads_as_its_fraction_and_back(text: str, fraction: float) -> None:
    assert parse_percentage(text) == pytest.approx(fraction)
    assert parse_percentage(format_percentage(parse_percentage(text))) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["0%", "100%", "150%", "-5%", "33", "33.333%", "%", "abc%",
                                  "1e1%"])
def test_a_percentage_outside_0_to_100_or_malformed_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="between 0% and 100%"):
        parse_percentage(text)


SHORT_LIVED = (Given().key("cred_a", added=NOW - 20 * DAY, expires=NOW + 10 * DAY))  # 30d life
SIX_DAYS = (Given().key("cred_a", added=NOW - DAY, expires=NOW + 5 * DAY))  # a provider's short one
LONG_LIVED = (Given().key("cred_a", added=NOW - 20 * DAY, expires=NOW + 100 * DAY))  # 120d life


@pytest.mark.parametrize(("given", "policies", "expected"), [
    pytest.param(SHORT_LIVED, [THIRD], ["start expiring private_key_jwt"],
                 id="rotates a 30-day credential with 10 days (a third of its life) left"),
    pytest.param(SIX_DAYS, [KEYS], ["start expiring private_key_jwt"],
                 id="a fixed 14d rotates a 6-day credential the day it came: a loop"),
    pytest.param(SIX_DAYS, [THIRD], [],
                 id="33% waits until 2 days of the 6 are left: the share follows its lifetime"),
    pytest.param(LONG_LIVED, [THIRD], [],
                 id="a 120-day credential with 100 days left is not due under 33%"),
    pytest.param(Given().key("cred_a", added=NOW - 81 * DAY, expires=NOW + 39 * DAY), [THIRD],
                 ["start expiring private_key_jwt"],
                 id="a 120-day credential is due once 40 days (a third) are left"),
])
def test_the_planner_reads_the_share_of_each_credentials_lifetime(
        given: Given, policies: list[Any], expected: list[str]) -> None:
    assert lines(plan(policies, [given.state()], NOW).actions) == expected


def test_next_due_is_the_instant_the_share_is_left() -> None:
    state = Given().key("cred_a", added=NOW, expires=NOW + 30 * DAY).state()
    assert next_due(state, [THIRD], NOW) == NOW + 20 * DAY  # 30d - 10d


def _policy(**rotation: Any) -> dict[str, Any]:
    return {"apiVersion": "orchestrator/v1", "kind": "RotationPolicy",
            "metadata": {"name": "keys"},
            "spec": {"selector": {"apps": ["*"]},
                     "credential": {"usage": "private_key_jwt"},
                     "rotation": {"every": "30d", "overlap": "1h", **rotation},
                     "lifetime": "60d"}}


def _refusal(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Policy.model_validate(document)
    return explain(caught.value, Policy)


def test_a_policy_takes_a_percentage_and_the_plan_policy_carries_it(tmp_path: Any) -> None:
    from orchestrator.policies.loaded import LoadedPolicy

    parsed = Policy.model_validate(_policy(beforeExpiry="25%"))
    assert parsed.spec.rotation.before_expiry_fraction == 0.25
    assert parsed.spec.rotation.show_before_expiry(parsed.spec.lifetime) == "25% of 60d (15d)"
    loaded = LoadedPolicy(parsed, tmp_path / "keys.yaml", "sha256:x")
    planned = to_plan_policy(loaded)
    assert (planned.before_expiry_fraction, planned.before_expiry) == (0.25, 15 * DAY)


@pytest.mark.parametrize(("document", "line"), [
    pytest.param(_policy(beforeExpiry="100%"), "spec.rotation.beforeExpiry: '100%' is not a "
                 "percentage between 0% and 100% (exclusive)", id="100% is refused"),
    pytest.param(_policy(beforeExpiry="0%"), "spec.rotation.beforeExpiry: '0%' is not a "
                 "percentage", id="0% is refused"),
    pytest.param({**_policy(beforeExpiry="30%"), "spec": {
        **_policy()["spec"], "credential": {"usage": "client_secret"},
        "rotation": {"every": "30d", "overlap": "1h", "beforeExpiry": "30%"}, "lifetime": None}},
        "spec.rotation.beforeExpiry: 30% is a share of each credential's lifetime, and this "
        "policy gives its credentials none; add lifetime", id="a percentage needs a lifetime"),
    pytest.param(_policy(beforeExpiry="0.05%"), "spec.rotation.beforeExpiry: 0.05% of 60d (43m12s) "
                 "leaves no time for a credential caught by it to overlap",
                 id="a share shorter than overlap plus retries is refused"),
    pytest.param(_policy(beforeExpiry="99.95%"), "spec.rotation.beforeExpiry: 99.95% of 60d "
                 "(59d23h16m48s) plus overlap 1h is not shorter than lifetime 60d",
                 id="a share that makes each new credential due at once is refused"),
])
def test_a_percentage_that_cannot_work_is_refused_naming_the_field(
        document: dict[str, Any], line: str) -> None:
    assert any(found.startswith(line) for found in _refusal(document)), _refusal(document)


def test_the_fraction_of_a_credential_without_an_expiry_is_the_fixed_lead() -> None:
    never = Given().key("cred_a", added=NOW - 20 * DAY).state().credentials["cred_a"]
    assert THIRD.renew_before(never) == THIRD.before_expiry
    short = SHORT_LIVED.state().credentials["cred_a"]
    assert THIRD.renew_before(short) == timedelta(days=10)
