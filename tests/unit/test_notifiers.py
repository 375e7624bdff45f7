"""Notifier resources (file, fields, refusals) and the notices a notifier is told (pure).

Refusals are one line each, ``<file>: <field>: <what>; <what to do>``, as for every resource.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from events import catalog as ev
from events.state import AppState, evolve
from events.store import InMemoryEventStore, NewEvent
from orchestrator.domain.errors import InputError
from orchestrator.domain.notices import (
    DEFAULT_THRESHOLDS,
    NoticeKind,
    drifted,
    expiring,
    from_record,
    stranded,
)
from orchestrator.policies.files import load_policies, load_resource_file, validate_paths
from orchestrator.policies.loaded import LoadedNotifier, PolicyFileError
from orchestrator.policies.notifiers import to_webhook
from tests.conftest import NOW, ROOT
from tests.helpers import variant, write_yaml

EXAMPLE = ROOT / "examples" / "notifiers" / "ops-webhook.yaml"
DAY = timedelta(days=1)
BASE: dict[str, Any] = {
    "apiVersion": "orchestrator/v1", "kind": "Notifier", "metadata": {"name": "ops"},
    "spec": {"url": "https://hooks.example.com/o", "secret": {"env": "OPS_SECRET"}},
}


def refused(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    path = write_yaml(tmp_path, "n.yaml", data)
    with pytest.raises(PolicyFileError) as info:
        load_resource_file(path)
    return [line.removeprefix(f"{path}: ") for line in info.value.errors]


def test_the_example_validates_and_the_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    example = load_resource_file(EXAMPLE)
    assert isinstance(example, LoadedNotifier) and example.resource.name == "ops-webhook"
    assert set(example.resource.spec.events) == set(NoticeKind)
    loaded = load_resource_file(write_yaml(tmp_path, "n.yaml", BASE))
    assert isinstance(loaded, LoadedNotifier)
    spec = loaded.resource.spec
    assert set(spec.events) == set(NoticeKind)
    assert spec.thresholds == DEFAULT_THRESHOLDS == (30 * DAY, 7 * DAY, DAY)
    assert (spec.timeout, spec.retry.backoff, spec.retry.max_backoff) == (
        timedelta(seconds=10), timedelta(seconds=10), timedelta(minutes=10))


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({"spec__url": "http://hooks.example.com/o"},
                 "spec.url: 'http://hooks.example.com/o' is plain http to another machine",
                 id="plain http to another machine"),
    pytest.param({"spec__url": "https://u:p@hooks.example.com/o"},
                 "spec.url: a URL with a user or password in it is refused",
                 id="credentials in the URL"),
    pytest.param({"spec__url": "https://hooks.example.com/o?token=x"},
                 "spec.url: 'https://hooks.example.com/o?token=x' has a query or fragment",
                 id="a query"),
    pytest.param({"spec__secret": "s3cr3t-value"}, "spec.secret: an inline secret is refused",
                 id="an inline secret"),
    pytest.param({"spec__events": ["rotation.exploded"]},
                 "spec.events[0]: 'rotation.exploded' is not allowed; use 'credential.expiring'",
                 id="an unknown event kind"),
    pytest.param({"spec__events": []}, "spec.events: no event kinds",
                 id="no event kinds"),
    pytest.param({"spec__events": ["rotation.failed", "rotation.failed"]},
                 "spec.events: rotation.failed is listed twice", id="a kind twice"),
    pytest.param({"spec__thresholds": ["7d", "1w"]}, "spec.thresholds: 7d is listed twice",
                 id="a threshold twice"),
    pytest.param({"spec__thresholds": ["0s"]}, "spec.thresholds[0]: 0s is not longer than zero",
                 id="a zero threshold"),
    pytest.param({"spec__events": ["rotation.failed"], "spec__thresholds": ["7d"]},
                 "spec.thresholds: thresholds are for credential.expiring, which is not in events",
                 id="thresholds without credential.expiring"),
    pytest.param({"spec__timeout": "5m"}, "spec.timeout: 5m is longer than 1m",
                 id="a timeout the tick cannot wait for"),
    pytest.param({"spec__retry": {"backoff": "1h", "maxBackoff": "1m"}},
                 "spec.retry.maxBackoff: 1m is shorter than backoff (1h)",
                 id="maxBackoff below backoff"),
    pytest.param({"spec__headers": {"X": "y"}}, "spec.headers: unknown key 'headers' (allowed: url, secret, events, "
                 "thresholds, timeout, retry)",
                 id="an unknown key"),
    pytest.param({"spec__secret": None}, "spec.secret: required key missing",
                 id="no secret"),
])
def test_a_notifier_that_cannot_be_used_is_refused_in_one_line(
        tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    (line,) = refused(tmp_path, variant(BASE, **changes))
    assert line.startswith(expected), line
    assert "s3cr3t-value" not in line


def test_two_notifiers_with_one_name_are_both_left_out(tmp_path: Path) -> None:
    first = write_yaml(tmp_path, "a.yaml", BASE)
    write_yaml(tmp_path, "b.yaml", BASE)
    result = load_policies([tmp_path])
    assert result.notifiers == ()
    assert validate_paths([tmp_path]) == [
        f"{first}: metadata.name: 'ops' is also the name of the notifier in {tmp_path / 'b.yaml'}"
        "; give each notifier a unique name"]


def test_the_secret_is_resolved_at_use_never_at_load(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPS_SECRET", raising=False)
    loaded = load_resource_file(write_yaml(tmp_path, "n.yaml", BASE))
    assert isinstance(loaded, LoadedNotifier)
    hook = to_webhook(loaded.resource)
    with pytest.raises(InputError, match=r"notifier ops: spec\.secret: environment variable "
                                         "OPS_SECRET is not set"):
        hook.secret()
    monkeypatch.setenv("OPS_SECRET", "abc")
    assert hook.secret() == "abc"


# --- the notices (pure) ---------------------------------------------------------------------


def app_with_key(expires_in: timedelta) -> AppState:
    state = evolve(AppState(app="pay"), ev.ApplicationRegistered(app="pay"), NOW)
    state = evolve(state, ev.CredentialAdded(
        credential_id="c1", usage="private_key_jwt", kind="public_key", kid="k1",
        fingerprint="sha256:00", expires_at=NOW + expires_in), NOW)
    return evolve(state, ev.CredentialActivated(credential_id="c1"), NOW)


@pytest.mark.parametrize(("left", "told"), [
    pytest.param(40 * DAY, None, id="outside every threshold: nothing"),
    pytest.param(20 * DAY, "30d", id="within 30d"),
    pytest.param(5 * DAY, "7d", id="first seen within 7d: told once, for 7d, not 30d too"),
    pytest.param(timedelta(hours=3), "1d", id="within 1d"),
    pytest.param(-timedelta(hours=1), None, id="expired: told as credential.expired instead"),
])
def test_an_expiring_credential_is_told_for_the_tightest_threshold_it_is_within(
        left: timedelta, told: str | None) -> None:
    notices = expiring([app_with_key(left)], DEFAULT_THRESHOLDS, NOW)
    assert [n.data["threshold"] for n in notices] == ([told] if told else [])


def test_a_credential_whose_successor_outlives_it_is_not_told() -> None:
    state = app_with_key(5 * DAY)
    state = evolve(state, ev.CredentialAdded(
        credential_id="c2", usage="private_key_jwt", kind="public_key", kid="k2",
        fingerprint="sha256:01", expires_at=NOW + 60 * DAY), NOW)
    assert [n.data["credential_id"] for n in expiring([state], DEFAULT_THRESHOLDS, NOW)] == [
        "c1"]  # added, not active yet: c1 is still what the app depends on
    state = evolve(state, ev.CredentialActivated(credential_id="c2"), NOW)
    assert expiring([state], DEFAULT_THRESHOLDS, NOW) == []


def test_the_same_condition_has_the_same_id_and_a_tighter_threshold_a_new_one() -> None:
    state = app_with_key(20 * DAY)
    (a,) = expiring([state], DEFAULT_THRESHOLDS, NOW)
    (b,) = expiring([state], DEFAULT_THRESHOLDS, NOW + DAY)
    (c,) = expiring([state], DEFAULT_THRESHOLDS, NOW + 14 * DAY)
    assert a.id == b.id != c.id and c.data["threshold"] == "7d"


def test_an_app_left_without_a_usable_credential_is_told_once_per_loss() -> None:
    state = app_with_key(DAY)
    assert stranded([state], NOW) == []
    (first,) = stranded([state], NOW + 2 * DAY)
    (again,) = stranded([state], NOW + 3 * DAY)
    assert first.id == again.id and first.kind is NoticeKind.STRANDED
    assert first.data["since"] == (NOW + DAY).isoformat()


def test_a_drift_is_one_notice_until_found_again_after_the_log_moved() -> None:
    held = {"pay": "provider 'x' contradicts the log"}
    (a,) = drifted(held, {"pay": 3}, NOW)
    (b,) = drifted(held, {"pay": 3}, NOW + DAY)
    (c,) = drifted(held, {"pay": 5}, NOW + DAY)
    assert a.id == b.id != c.id


def test_a_log_record_is_told_by_its_event_id_and_others_are_not_told() -> None:
    store = InMemoryEventStore(lambda: NOW)
    store.append("app:pay", [NewEvent(ev.ApplicationRegistered(app="pay"), NOW, "cli:a"),
                             NewEvent(ev.RotationParked(rotation_id="r", step="test",
                                                        error="refused", attempts=5),
                                      NOW, "scheduler")], 0)
    registered, parked = store.read()
    assert from_record(registered) is None
    notice = from_record(parked)
    assert notice is not None and notice.id == parked.event_id and notice.app == "pay"
    assert notice.kind is NoticeKind.PARKED and notice.data["error"] == "refused"
    assert notice.position == parked.position
