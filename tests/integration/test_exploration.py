"""Every reachable world of a rotation, enumerated, and the invariants judged in each one.

``tests/explore`` drives the real ticker and rotator (``bootstrap.wire``) over an in-memory log,
with a model identity provider and a model delivery, and answers every effect of every tick in
every way (docs/exploration.md): each provider call ok or one of five faults, each delivery ok
or failed, a crash after any effect, the clock to the next due instant or to the old
credential's end; at most 2 faults, 1 crash and 1 jump per path. For each usage, a fresh
provision and a replacement at capacity.

The counts are the documented ones (docs/exploration.md is this run's table); each defect the
exploration found is replayed below on its own path; and planted defects show that every family
of checks can fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from events.state import Credential
from orchestrator.app import key_work, secret_steps
from orchestrator.app import rotator as rotator_module
from orchestrator.app import service as service_module
from orchestrator.domain import rotation as rotation_module
from orchestrator.domain import rules as rules_module
from orchestrator.domain.rotation import Next, Step
from tests.explore.explorer import Bounds, Result, replay, root, scenarios, status_of
from tests.explore.hand import Hand
from tests.explore.judge import INVARIANTS
from tests.explore.run import ca_pair, explore, key_pool
from tests.explore.world import Scenario, World

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "exploration.md"
SCENARIOS = {f"{sc.label} {sc.name}": sc for sc in scenarios(ca_pair())}
KEY_CAPACITY = [k for k in SCENARIOS if k.endswith("capacity") and "secret" not in k]


def scenario(name: str) -> Scenario:
    """A fresh copy (a run notes what the application held at its root on it)."""
    return next(sc for sc in scenarios(ca_pair()) if f"{sc.label} {sc.name}" == name)


@cache
def explored(name: str) -> Result:
    return explore(scenario(name))


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_reachable_world_keeps_every_invariant(name: str) -> None:
    result = explored(name)
    assert not result.violations, "\n\n".join(str(v) for v in result.violations)
    # the exploration reached what its checks are about: a completion, a parked rotation
    # (two faults exhaust the policy's two attempts), a crash
    assert result.ends_completed > 0 and result.ends_parked > 0
    assert result.seen.get("crashed", 0) > 0 and result.seen.get("parked", 0) > 0
    assert result.paths >= result.ends_completed + result.ends_parked


@pytest.mark.parametrize("name", KEY_CAPACITY)
def test_the_old_key_expiring_while_parked_is_explored_and_retried_to_completion(
        name: str) -> None:
    """The clock's jump to the old credential's end was taken at every step, parked rotations
    were seen with the application holding nothing usable, and paths from there completed
    (the daemon retried them): ``stranded_is_retried`` was judged on real cases."""
    seen = explored(name).seen
    assert seen.get("parked while stranded", 0) > 0
    assert seen.get("completed after the old credential's end", 0) > 0


def _documented() -> dict[str, list[str]]:
    """The counts table of docs/exploration.md: "usage scenario" -> its count columns."""
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 12 and f"{cells[0]} {cells[1]}" in SCENARIOS:
            rows[f"{cells[0]} {cells[1]}"] = cells[2:11]
    return rows


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_documented_counts_are_this_codes(name: str) -> None:
    """docs/exploration.md shows this run's counts (regenerate it with python -m tests.explore
    when the rotation changes)."""
    r = explored(name)
    counts = [f"{n:,}" for n in (r.states, r.visits, r.transitions, r.executions, r.paths,
                                 r.ends_completed, r.ends_parked)] + [str(r.depth),
                                                                      str(len(r.violations))]
    assert _documented().get(name) == counts


def test_the_documented_invariants_are_the_checked_ones() -> None:
    text = DOC.read_text()
    for name, meaning in INVARIANTS.items():
        assert f"`{name}`" in text, name
        assert meaning in " ".join(text.split()), name


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


# --- planted defects: each family of checks can fail --------------------------------------------


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    yield lambda target, name, value: monkeypatch.setattr(target, name, value)


QUICK = Bounds(faults=0, crashes=0, jumps=0)


def _invariants(name: str) -> set[str]:
    return {v.invariant for v in explore(scenario(name), QUICK).violations}


def test_a_rotator_that_retires_the_old_key_before_the_test_is_caught(planted: Any) -> None:
    """The old key detached at the provider as the new one's test begins (the rules' own guard
    would refuse to disable it in the log before the new one is delivered)."""
    real = rotator_module.Rotator._do

    def hasty(self: Any, state: Any, rotation: Any, nxt: Next, params: Any, at: Any) -> None:
        if nxt.step is Step.TEST and rotation.old_credential_id:
            self.provider.deactivate(state.app, rotation.old_credential_id)
        real(self, state, rotation, nxt, params, at)

    planted(rotator_module.Rotator, "_do", hasty)
    assert {"old_retired_after_successor", "keeps_a_usable_credential"} <= _invariants(
        "jar capacity")


def test_a_delivery_of_another_credentials_key_is_caught(planted: Any) -> None:
    real = key_work.KeyWork.files

    def swapped(self: Any, state: Any, new: Credential) -> dict[str, bytes]:
        files = real(self, state, new)
        other = [c for c in state.credentials.values() if c.id != new.id and c.live]
        if other:  # the first provisioning has no other key to hand out
            files["private_key.pem"] = self.crypto.private_key_pem(self.private(other[0].id))
        return files

    planted(key_work.KeyWork, "files", swapped)
    assert "delivered_key_belongs" in _invariants("mtls (self-signed) capacity")


def test_a_secret_registered_without_grace_for_the_old_one_is_caught(planted: Any) -> None:
    real = secret_steps.SecretSteps.do

    def no_grace(self: Any, step: Step, state: Any, rotation: Any, params: Any, at: Any) -> None:
        if step is Step.REGISTER:
            version = secret_steps.next_secret_version(state)
            self.provider.set_secret(state.app, version, self.secret(state.app, version), None)
        return real(self, step, state, rotation, params, at)

    planted(secret_steps.SecretSteps, "do", no_grace)
    assert "keeps_a_usable_credential" in _invariants("client_secret capacity")


def test_a_rotation_that_never_frees_a_slot_at_the_provider_is_caught(planted: Any) -> None:
    """FREE_SLOT recorded in the log only: the provider keeps the deleted credential."""
    real = rotator_module.Rotator._do

    def log_only(self: Any, state: Any, rotation: Any, nxt: Next, params: Any, at: Any) -> None:
        if nxt.step is Step.FREE_SLOT:
            nxt = Next(nxt.step, nxt.credential_id, at_provider=False)
        real(self, state, rotation, nxt, params, at)

    planted(rotator_module.Rotator, "_do", log_only)
    assert "provider_knows_only_the_log" in _invariants("private_key_jwt capacity")


def test_a_service_that_keeps_a_deleted_credentials_private_key_is_caught(
        planted: Any) -> None:
    planted(service_module.Service, "forget_private", lambda self, credential_id: None)
    assert "keystore_knows_only_the_log" in _invariants("mtls (self-signed) capacity")


def test_a_third_live_credential_is_caught(planted: Any) -> None:
    """No slot freed, and rules that would take a third: the log and the provider hold 3."""
    planted(rotation_module, "slot_to_free", lambda state, rotation, at: None)
    planted(rules_module, "MAX_LIVE_PER_USAGE", 3)
    assert "at_most_two_live" in _invariants("private_key_jwt capacity")


def test_a_crash_is_explored_after_every_effect_of_the_rotation() -> None:
    """With one crash to spend and nothing else, the paths are the fault-free one and one per
    effect it makes (an append, a keystore write, a provider call that did its work, a
    delivery): the effects are counted here by walking that one path."""
    sc = scenario("private_key_jwt fresh")
    snap, effects = root(sc, key_pool(), Bounds(faults=0, crashes=1, jumps=0)), 0
    while status_of(snap.log, sc.usage) != "completed":
        hand = Hand((), 0, 1)  # may crash, never does: the first answer is "go on"
        world = World(sc, snap, hand, key_pool())
        world.tick()
        effects += sum(options > 1 for _, options in hand.trace)  # "go on" or "crash"
        snap = world.snapshot()
    assert effects == 12  # started, key stored, added; registered at the provider, in the log;
    # activated, tested, delivered: each at the provider (or to the app) and in the log; completed
    assert explore(sc, Bounds(faults=0, crashes=1, jumps=0)).paths == 1 + effects
