"""The fleet on one screen, pure: ``summarize`` counts a few folded applications, and
``next_rotations`` says when each policy's rotation falls due and which check says so."""

from __future__ import annotations

from orchestrator.app.fleet_status import summarize
from orchestrator.domain.planner import next_rotations
from tests.conftest import NOW
from tests.unit.test_planner import DAY, HOUR, KEYS, SECRETS, Given


def _due(given: Given) -> list[tuple[str, object, str]]:
    return [(d.usage, d.at, d.check) for d in next_rotations(given.state(), [KEYS, SECRETS], NOW)]


def test_a_key_is_due_when_it_reaches_the_policys_age() -> None:
    assert _due(Given().key("cred_a", added=NOW - 10 * DAY).secret(1, NOW - DAY)) == [
        ("private_key_jwt", NOW + 80 * DAY, "age"), ("client_secret", NOW + 89 * DAY, "age")]


def test_an_application_without_a_credential_is_due_now() -> None:
    assert _due(Given()) == [("client_secret", NOW, "no-usable"),
                             ("private_key_jwt", NOW, "no-usable")]


def test_expiry_comes_before_age_when_it_is_sooner() -> None:
    given = Given().key("cred_a", added=NOW - 10 * DAY, expires=NOW + 20 * DAY).secret(1, NOW)
    assert _due(given)[0] == ("private_key_jwt", NOW + 6 * DAY, "expiring")  # 20d - 14d


def test_a_parked_rotation_waiting_for_a_human_is_not_due_by_time() -> None:
    given = (Given().key("cred_a", added=NOW - 10 * DAY).secret(1, NOW)
             .rotation("rot_1", NOW - HOUR, old="cred_a").parked("rot_1", NOW - HOUR))
    assert [u for u, _, _ in _due(given)] == ["client_secret"]


def test_summarize_counts_apps_credentials_rotations_and_alarms() -> None:
    fine = Given("pay-1").key("cred_a", added=NOW - 10 * DAY, expires=NOW + 50 * DAY)
    soon = Given("pay-2").key("cred_b", added=NOW - 10 * DAY, expires=NOW + 2 * DAY)
    parked = (Given("pay-3").key("cred_c", added=NOW - 10 * DAY)
              .rotation("rot_1", NOW - HOUR, old="cred_c", new="cred_n")
              .parked("rot_1", NOW - HOUR))
    lost = (Given("pay-4").key("cred_d", added=NOW - 10 * DAY, expires=NOW - DAY))
    fleet = summarize([g.state() for g in (fine, soon, parked, lost)], [KEYS], NOW, limit=2)
    assert (fleet.apps, fleet.apps_without_usable) == (4, 1)
    assert dict(fleet.credentials) == {("private_key_jwt", "active"): 3,
                                       ("private_key_jwt", "expired"): 1}
    assert [(a, r.id) for a, r in fleet.parked] == [("pay-3", "rot_1")] and fleet.running == []
    assert [(a, c.id) for a, c in fleet.expiring] == [("pay-2", "cred_b"), ("pay-1", "cred_a")]
    assert [a.app for a in fleet.alarms] == ["pay-4"]
    assert [(d.app, d.at, d.check) for d in fleet.next_rotations] == [
        ("pay-2", NOW, "expiring"), ("pay-4", NOW, "no-usable")]  # the two soonest
