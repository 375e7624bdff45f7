"""The invariant checker (``orchestrator.app.invariants``) catches what it claims to, at the
instant it happens: each test feeds it a hand-built log that breaks (or keeps) one invariant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events import catalog as ev
from orchestrator.app.invariants import Checked, check

T = datetime(2027, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
Row = tuple[ev.Event, datetime, str | None]


def _added(cid: str, expires: datetime | None = None,
           usage: str = "private_key_jwt") -> ev.CredentialAdded:
    return ev.CredentialAdded(credential_id=cid, usage=usage, kind="public_key",
                              kid=f"kid-{cid}-xxxxxxxx", fingerprint=f"sha256:{cid}",
                              expires_at=expires)


def _run(*rows: Row, end: datetime) -> Checked:
    log = [("app:a", ev.ApplicationRegistered(app="a"), T, None, 1)]
    log += [("app:a", event, at, rid, n) for n, (event, at, rid) in enumerate(rows, start=2)]
    return check(log, end)


def _rotation(rid: str, new: str, at: datetime, old: str | None = None,
              expires: datetime | None = None, steps: tuple[str, ...] = (
                  "registered", "activated", "tested", "delivered")) -> list[Row]:
    """A key rotation's events, as far as ``steps`` go."""
    rows: list[Row] = [
        (ev.RotationStarted(rotation_id=rid, usage="private_key_jwt", reason="age",
                            new_credential_id=new, old_credential_id=old), at, rid),
        (_added(new, expires), at, rid), (ev.RotationStepRecorded(rotation_id=rid,
                                                                  step="generated"), at, rid)]
    for step in steps:
        rows.append((ev.CredentialActivated(credential_id=new), at, rid) if step == "activated"
                    else (ev.RotationStepRecorded(rotation_id=rid, step=step), at, rid))
    return rows


def test_a_third_live_credential_is_caught() -> None:
    """Three credentials added with none deleted breaks at-most-two."""
    checked = _run((_added("c1"), T, None), (_added("c2"), T, None), (_added("c3"), T, None),
                   end=T + H)
    assert checked.invariants["at_most_two_live_per_usage"] is False
    assert "3 live private_key_jwt" in checked.violations[0]


def test_a_gap_between_two_operator_credentials_is_caught() -> None:
    """c1 disabled at T+1h, c2 activated at T+2h: an hour without a usable credential."""
    checked = _run(
        (_added("c1"), T, None), (ev.CredentialActivated(credential_id="c1"), T, None),
        (ev.CredentialDisabled(credential_id="c1", forced=True), T + H, None),
        (_added("c2"), T + 2 * H, None), (ev.CredentialActivated(credential_id="c2"), T + 2 * H,
                                          None), end=T + 3 * H)
    assert checked.invariants["always_a_usable_credential"] is False
    assert checked.violations == [
        f"a: no usable private_key_jwt credential held from {T + H} to {T + 2 * H} (1.0 hours)"]


def test_an_active_credential_never_delivered_does_not_count() -> None:
    """The blind spot of a check on the final state: r1 delivered c1 (expiring at T+4d); r2's
    new c2 was activated at the provider but parked before its test, never delivered. The
    application holds only c1: from its expiry on it has nothing usable, although an active,
    unexpired credential exists."""
    rows = _rotation("r1", "c1", T, expires=T + 4 * D)
    rows += [(ev.RotationCompleted(rotation_id="r1", new_credential_id="c1"), T, "r1")]
    rows += _rotation("r2", "c2", T + 2 * D, old="c1", expires=T + 30 * D,
                      steps=("registered", "activated"))
    rows += [(ev.RotationParked(rotation_id="r2", step="test", error="x", attempts=1),
              T + 2 * D, "r2")]
    checked = _run(*rows, end=T + 10 * D)
    assert checked.invariants["always_a_usable_credential"] is False
    assert checked.violations == [
        f"a: no usable private_key_jwt credential held from {T + 4 * D} to the end"]


def test_a_gap_between_two_events_is_seen_at_the_next_event() -> None:
    """c1 expires at T+1d; the rotation that replaces it delivers c2 at T+3d: two days with
    nothing usable, seen although no event happened in between."""
    rows = _rotation("r1", "c1", T, expires=T + D)
    rows += _rotation("r2", "c2", T + 3 * D, old="c1")
    checked = _run(*rows, end=T + 4 * D)
    assert checked.violations == [f"a: no usable private_key_jwt credential held from {T + D} "
                                  f"to {T + 3 * D} (2.0 days)"]


def test_a_rotation_that_delivers_before_the_old_expires_keeps_every_instant_covered() -> None:
    rows = _rotation("r1", "c1", T, expires=T + 4 * D)
    rows += _rotation("r2", "c2", T + 3 * D, old="c1", expires=T + 30 * D)
    rows += [(ev.CredentialDisabled(credential_id="c1"), T + 3 * D + H, "r2"),
             (ev.RotationCompleted(rotation_id="r2", new_credential_id="c2",
                                   old_credential_id="c1"), T + 3 * D + H, "r2"),
             (ev.CredentialExpired(credential_id="c1", expired_at=T + 4 * D), T + 4 * D, None)]
    checked = _run(*rows, end=T + 10 * D)
    assert checked.ok and checked.violations == []


def test_a_client_secret_past_its_grace_before_delivery_is_caught() -> None:
    """v2 is generated with v1 valid one hour more, but delivered three hours later: the
    application held v1, refused from T+1h until the delivery."""
    rid = "r2"
    rows: list[Row] = [(ev.SecretRotated(version=1, fingerprint="s1"), T, None),
                       (ev.RotationStarted(rotation_id=rid, usage="client_secret", reason="age",
                                           new_credential_id="secret_r2"), T, rid),
                       (ev.SecretRotated(version=2, fingerprint="s2",
                                         previous_valid_until=T + H), T, rid),
                       (ev.RotationStepRecorded(rotation_id=rid, step="delivered"), T + 3 * H,
                        rid)]
    checked = _run(*rows, end=T + 5 * H)
    assert checked.violations == [f"a: no usable client_secret credential held from {T + H} "
                                  f"to {T + 3 * H} (2.0 hours)"]


def test_an_old_credential_disabled_before_the_test_is_caught() -> None:
    """A rotation's credential.disabled before its "tested" step breaks the ordering."""
    checked = _run(
        (ev.RotationStarted(rotation_id="r1", usage="private_key_jwt", reason="age",
                            new_credential_id="c2", old_credential_id="c1"), T, "r1"),
        (ev.CredentialDisabled(credential_id="c1"), T, "r1"),
        (ev.RotationStepRecorded(rotation_id="r1", step="tested"), T, "r1"), end=T + H)
    assert checked.invariants["old_disabled_only_after_new_tested"] is False
    assert "before the new credential was tested" in checked.violations[0]


def test_a_parked_rotation_disabling_its_own_untested_credential_is_no_violation() -> None:
    """Parking at the test disables the new, untested credential: that is not the old one."""
    rows = _rotation("r1", "c1", T)
    rows += _rotation("r2", "c2", T + D, old="c1", steps=("registered", "activated"))
    rows += [(ev.CredentialDisabled(credential_id="c2"), T + D, "r2"),
             (ev.RotationParked(rotation_id="r2", step="test", error="x", attempts=1), T + D,
              "r2")]
    checked = _run(*rows, end=T + 2 * D)
    assert checked.ok and checked.violations == []


def test_a_rotation_completed_twice_is_caught() -> None:
    done = ev.RotationCompleted(rotation_id="r1", new_credential_id="c1")
    checked = _run((done, T, "r1"), (done, T + H, "r1"), end=T + 2 * H)
    assert checked.invariants["no_rotation_completed_twice"] is False
