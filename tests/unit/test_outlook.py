"""When the next rotation is due (``domain.outlook.next_rotations``), as specifications: given an
application's history at NOW, the instant per usage the metrics publish. It reads the planner's
own chain, so each row also agrees with what ``plan`` does at that instant."""

from __future__ import annotations

from datetime import datetime

import pytest

from events.state import AppState
from orchestrator.domain.outlook import next_rotations
from orchestrator.domain.planner import Kind, PlanPolicy, plan
from tests.conftest import NOW
from tests.unit.test_planner import DAY, HOUR, KEYS, PKJWT, SECRETS, Given, policy

CASES: list[tuple[str, AppState, tuple[PlanPolicy, ...], dict[str, datetime]]] = [
    ("by age: the newest key's activation plus the policy's every",
     Given().key("k1", added=NOW - 10 * DAY, expires=NOW + 200 * DAY).state(), (KEYS,),
     {PKJWT: NOW + 80 * DAY}),
    ("by expiry: beforeExpiry ahead of the newest key's expiry, when that comes first",
     Given().key("k1", added=NOW - 10 * DAY, expires=NOW + 30 * DAY).state(), (KEYS,),
     {PKJWT: NOW + 16 * DAY}),
    ("due now: an application with no key yet is provisioned at once",
     Given().state(), (KEYS,), {PKJWT: NOW}),
    ("due now: the policy changed the key size",
     Given().key("k1", added=NOW - 10 * DAY, size=3072).state(), (KEYS,), {PKJWT: NOW}),
    ("in flight: the instant the running rotation started",
     Given().key("k1", added=NOW - 100 * DAY).rotation("r1", NOW - HOUR, old="k1").state(),
     (KEYS,), {PKJWT: NOW - HOUR}),
    ("parked: the instant it started, still",
     Given().key("k1", added=NOW - 100 * DAY).rotation("r1", NOW - DAY, old="k1")
     .parked("r1", NOW - HOUR).state(), (KEYS,), {PKJWT: NOW - DAY}),
    ("a client secret by its age, beside the keys",
     Given().key("k1", added=NOW - 10 * DAY).secret(1, NOW - 30 * DAY).state(),
     (KEYS, SECRETS), {PKJWT: NOW + 80 * DAY, "client_secret": NOW + 60 * DAY}),
    ("none for a usage no policy selects",
     Given("other").key("k1", added=NOW - 10 * DAY).state(), (policy(apps=("pay",)),), {}),
    ("none where two policies claim the usage (neither applies)",
     Given().key("k1", added=NOW - 10 * DAY).state(), (KEYS, policy("twin")), {}),
]


@pytest.mark.parametrize(("state", "policies", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_next_rotation(state: AppState, policies: tuple[PlanPolicy, ...],
                       expected: dict[str, datetime]) -> None:
    assert next_rotations(state, policies, NOW) == expected


def test_a_rotation_due_now_is_what_the_planner_starts_now() -> None:
    for _, state, policies, expected in CASES:
        starts = {a.usage for a in plan(policies, [state], NOW).actions if a.kind is Kind.START}
        assert starts == {u for u, at in expected.items() if at == NOW}, state.app
