"""Every reachable world of a rotation, enumerated, and the invariants judged in each one.

``tests/explore`` drives the real ticker and rotator (``bootstrap.wire``) over an in-memory log,
with a model identity provider and a model delivery, and answers every effect of every tick in
every way (tests/explore): each provider call ok or one of five faults, each delivery ok
or failed, a crash after any effect, the clock to the next due instant or to the old
credential's end; at most 2 faults, 1 crash and 1 jump per path. For each usage, a fresh
provision and a replacement at capacity.

Each defect the exploration found is replayed below on its own path (``replay``).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.explore.explorer import replay, scenarios, status_of
from tests.explore.run import ca_pair, key_pool
from tests.explore.world import Scenario


def scenario(name: str) -> Scenario:
    """A fresh copy (a run notes what the application held at its root on it)."""
    return next(sc for sc in scenarios(ca_pair()) if f"{sc.label} {sc.name}" == name)


# --- the defects the exploration found, each on its path ----------------------------------------


def _replayed(name: str, moves: list[str]) -> tuple[Any, list[Any]]:
    return replay(scenario(name), moves, key_pool())


PARKED_ATTACHED = {
    "an activation whose record a crash cut short": [
        "tick => rot_0001 generate", "tick => rot_0001 register",
        "tick: crash after activate cred_0001", "tick: activate cred_0001: refused",
        "clock: next due (+0d00h00m44s)", "tick: activate cred_0001: refused"],
    "an activation whose answer was lost": [
        "tick => rot_0001 generate", "tick => rot_0001 register",
        "tick: activate cred_0001: lost", "clock: next due (+0d00h00m44s)",
        "tick: activate cred_0001: refused"],
}


@pytest.mark.parametrize("moves", PARKED_ATTACHED.values(), ids=PARKED_ATTACHED)
def test_a_rotation_parked_at_activation_withdraws_its_new_key_from_the_provider(
        moves: list[str]) -> None:
    """Defect: the provider attached the new key (its answer lost, or a crash before the log
    recorded it), the activation then failed until the rotation parked; parking disabled only
    what the log called active, so the provider kept accepting a key that never passed its
    test and that no application holds. Parking now detaches it whatever the log says."""
    world, broken = _replayed("private_key_jwt fresh", moves)
    assert not broken, "\n".join(map(str, broken))
    assert status_of(world.log, "private_key_jwt") == "parked"
    assert world.provider.by_name("cred_0001") is not None  # registered, and
    assert world.provider.attached("private_key_jwt") == ()  # accepted for nothing


SECRET_PARKED = {
    "parked at its delivery": [
        "tick => rot_0003 generate", "tick => rot_0003 register", "tick => rot_0003 test",
        "tick: deliver client_secret: failed", "clock: next due (+40d00h00m40s)",
        "tick: deliver client_secret: failed"],
    "parked at its test": [
        "tick => rot_0003 generate", "tick => rot_0003 register",
        "tick: test secret: refused", "clock: next due (+40d00h00m40s)",
        "tick: test secret: refused"],
}


@pytest.mark.parametrize("moves", SECRET_PARKED.values(), ids=SECRET_PARKED)
def test_a_parked_client_secret_rotation_leaves_the_application_its_secret(
        moves: list[str]) -> None:
    """Defect: registering the new secret kept the previous one (the application's) valid for
    the overlap plus the retry budget only, and the delivery step cut that to the overlap
    before writing the files; a rotation parked there locked the application out an hour
    later, with nothing due that would ever retry it. The previous secret now stays valid until
    the new one is delivered, and its grace starts after the files are written."""
    world, broken = _replayed("client_secret capacity", moves)
    assert not broken, "\n".join(map(str, broken))
    assert status_of(world.log, "client_secret", frozenset({"rot_0001", "rot_0002"})) == "parked"
    held = dict(world.held)["client_secret"]
    assert held.get("version") == b"2"
    later = world.at(world.now.replace(year=world.now.year + 5), None, "client_secret")
    assert later.had and not later.stranded  # five years on, the provider still accepts v2
