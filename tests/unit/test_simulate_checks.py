"""The simulator's invariant checks catch what they claim to: each fed a log that breaks it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events import catalog as ev
from events.state import fold
from events.store import InMemoryEventStore, NewEvent
from orchestrator.app.simulate import _always_usable, _at_most_two, _disabled_after_tested

T = datetime(2027, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def _added(cid: str) -> ev.CredentialAdded:
    return ev.CredentialAdded(credential_id=cid, usage="private_key_jwt", kind="public_key",
                              kid=f"kid-{cid}-xxxxxxxx", fingerprint=f"sha256:{cid}")


def _log(*events: tuple[ev.Event, datetime, str | None]) -> list:
    store = InMemoryEventStore(lambda: T)
    for n, (event, at, corr) in enumerate(events):
        store.append("app:a", [NewEvent(event, at, "test", correlation_id=corr)], n)
    return list(store.read())


def test_a_third_live_credential_is_caught() -> None:
    """Three credentials added with none deleted breaks at-most-two."""
    log = _log((_added("c1"), T, None), (_added("c2"), T, None), (_added("c3"), T, None))
    violations: list[str] = []
    assert _at_most_two(log, "a", violations) is False
    assert "3 live private_key_jwt" in violations[0]


def test_a_gap_without_a_usable_credential_is_caught() -> None:
    """c1 disabled at T+1h, c2 activated at T+2h: an hour without a usable credential."""
    state = fold("a", [
        (ev.ApplicationRegistered(app="a"), T), (_added("c1"), T),
        (ev.CredentialActivated(credential_id="c1"), T),
        (ev.CredentialDisabled(credential_id="c1", forced=True), T + H),
        (_added("c2"), T + 2 * H), (ev.CredentialActivated(credential_id="c2"), T + 2 * H),
    ])
    violations: list[str] = []
    assert _always_usable(state, T + 3 * H, violations) is False
    assert "no usable private_key_jwt credential" in violations[0]


def test_an_old_credential_disabled_before_the_test_is_caught() -> None:
    """A rotation's credential.disabled before its "tested" step breaks the ordering."""
    log = _log(
        (ev.RotationStarted(rotation_id="r1", usage="private_key_jwt", reason="age",
                            new_credential_id="c2", old_credential_id="c1"), T, "r1"),
        (ev.CredentialDisabled(credential_id="c1"), T, "r1"),
        (ev.RotationStepRecorded(rotation_id="r1", step="tested"), T, "r1"),
    )
    violations: list[str] = []
    assert _disabled_after_tested(log, "a", violations) is False
    assert "before the new credential was tested" in violations[0]
