"""The notifications subscriber on a real database (SQLite and PostgreSQL), delivering to a real
HTTP server with httpx, on a virtual clock (nothing sleeps).

Wired through ``bootstrap`` as the daemon wires it: the Notifier resource is a file in the
policies folder, its secret an environment variable. Each test says what it pins.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from events import catalog as ev
from events.store import NewEvent, ReadFilter
from orchestrator.app.service import CredentialSource
from orchestrator.bootstrap import Settings, System, bootstrap
from orchestrator.domain import rules
from tests.conftest import NOW, ROOT
from tests.support.webhook_receiver import Receiver, verify

SECRET = "whsec-test-0123456789"
DAY = timedelta(days=1)


def notifier_yaml(url: str, extra: str = "") -> str:
    return ("apiVersion: orchestrator/v1\nkind: Notifier\nmetadata: {name: ops}\nspec:\n"
            f"  url: {url}\n  secret: {{env: OPS_HOOK_SECRET}}\n"
            "  retry: {backoff: 10s, maxBackoff: 1m}\n" + extra)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


class World:
    def __init__(self, db_url: str, tmp_path: Path, receiver: Receiver) -> None:
        self.now = NOW
        policies = tmp_path / "policies"
        policies.mkdir()
        (policies / "ops.yaml").write_text(notifier_yaml(receiver.url))
        self.system: System = bootstrap(
            Settings(db=db_url, keystore=tmp_path / "ks", policies=policies,
                     delivery=tmp_path / "delivery", keystore_backend="file"),
            clock=lambda: self.now)
        self.notices = self.system.notifications(held=lambda: self.held)
        self.held: dict[str, str] = {}

    def reject(self, n: int) -> str:
        """Append a policy.rejected event (its own stream); its event id."""
        version = sum(1 for _ in self.system.store.read(ReadFilter(stream_id="policies:rejected")))
        (rec,) = self.system.store.append("policies:rejected", [NewEvent(
            ev.PolicyRejected(path=f"/p/{n}.yaml", content_hash=f"sha256:{n}", error="bad"),
            self.now, "scheduler")], version)
        return rec.event_id


@pytest.fixture
def world(db_url: str, tmp_path: Path, receiver: Receiver,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("OPS_HOOK_SECRET", SECRET)
    made = World(db_url, tmp_path, receiver)
    yield made
    made.system.close()


def test_log_events_and_conditions_are_each_delivered_once_signed(
        world: World, receiver: Receiver) -> None:
    """A new notifier starts at the log's head; then each log event of its kinds is delivered
    once with the event's id, each condition once (an expiring credential once per threshold,
    the tightest it is within), and every delivery carries a signature that holds."""
    before = world.reject(0)
    world.notices.poll()  # first sight: starts at the head; nothing of the past
    assert receiver.received() == []
    service = world.system.service
    service.register_app("pay", {})
    service.add_credential("pay", "private_key_jwt", CredentialSource(generate=True),
                           expires_at=NOW + 5 * DAY, activate=True)
    rejected = world.reject(1)
    world.held = {"pay": "provider 'x' contradicts the log: a key was added there"}
    world.notices.poll()
    world.notices.poll()  # nothing new: nothing sent again
    first = receiver.received()
    kinds = [d.json["type"] for d in first]
    assert sorted(kinds) == ["application.drifted", "credential.expiring", "policy.rejected"]
    assert before not in {d.event_id for d in first}
    (told,) = [d for d in first if d.json["type"] == "policy.rejected"]
    assert told.event_id == told.json["id"] == rejected
    (soon,) = [d for d in first if d.json["type"] == "credential.expiring"]
    assert soon.json["data"]["threshold"] == "7d" and soon.json["app"] == "pay"

    world.now = NOW + 4 * DAY + timedelta(hours=12)  # within 1d now
    world.notices.poll()
    world.now = NOW + 5 * DAY + timedelta(seconds=1)  # expired, and the app holds nothing usable
    service.execute("pay", lambda s: rules.ExpireDue("pay", world.now), actor="scheduler")
    world.notices.poll()
    world.notices.poll()
    later = receiver.received()[len(first):]
    assert [d.json["type"] for d in later] == [
        "credential.expiring", "credential.expired", "application.without_usable_credential"]
    assert later[0].json["data"]["threshold"] == "1d"
    every = receiver.received()
    assert len({d.event_id for d in every}) == len(every)  # each once
    for delivery in every:
        stamp = verify(SECRET, delivery.headers, delivery.body)
        assert delivery.headers["orchestrator-event-id"] == delivery.json["id"]
        assert delivery.headers["orchestrator-event-type"] == delivery.json["type"]
        assert NOW.timestamp() <= stamp <= world.now.timestamp()  # the daemon's clock
    with pytest.raises(AssertionError, match="does not hold"):  # the check can fail
        verify("another secret", every[0].headers, every[0].body)


def test_a_receiver_down_for_thirty_seconds_loses_nothing(world: World,
                                                          receiver: Receiver) -> None:
    """Refused connections keep every notice pending, in order, backing off on the clock;
    once the receiver is back each one arrives, once, in the order of the log."""
    world.notices.poll()
    ids = [world.reject(n) for n in range(1, 4)]
    receiver.down()
    with capture_logs() as logs:
        world.notices.poll()
    (failed,) = [e for e in logs if e["event"] == "notification_failed"]
    assert failed["attempt"] == 1 and failed["retry_at"] == (NOW + timedelta(seconds=10)).isoformat()
    world.now = NOW + timedelta(seconds=5)
    with capture_logs() as logs:
        world.notices.poll()  # inside the backoff: not tried
    assert not [e for e in logs if e["event"] == "notification_failed"]
    world.now = NOW + timedelta(seconds=12)
    with capture_logs() as logs:
        world.notices.poll()  # tried again: still down, the backoff doubles
    (again,) = [e for e in logs if e["event"] == "notification_failed"]
    assert again["attempt"] == 2 and again["retry_at"] == (
        world.now + timedelta(seconds=20)).isoformat()
    ids.append(world.reject(4))  # more happens while it is down
    receiver.up()
    world.now = NOW + timedelta(seconds=30)
    world.notices.poll()
    world.now = NOW + timedelta(seconds=33)
    world.notices.poll()
    assert [d.event_id for d in receiver.received()] == ids
    for delivery in receiver.received():
        verify(SECRET, delivery.headers, delivery.body)


def test_a_secret_that_cannot_be_had_sends_nothing_and_loses_nothing(
        world: World, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is sent unsigned: the notices wait, the error is said once, and they go once
    the secret is set."""
    world.notices.poll()
    event_id = world.reject(1)
    monkeypatch.delenv("OPS_HOOK_SECRET")
    with capture_logs() as logs:
        world.notices.poll()
        world.notices.poll()
    (line,) = [e for e in logs if e["event"] == "notifier_unusable"]
    assert "environment variable OPS_HOOK_SECRET is not set" in line["error"]
    assert receiver.received() == []
    monkeypatch.setenv("OPS_HOOK_SECRET", SECRET)
    world.notices.poll()
    assert [d.event_id for d in receiver.received()] == [event_id]


def test_each_notifier_keeps_its_own_checkpoint_across_a_new_subscriber(
        world: World, receiver: Receiver) -> None:
    """A second subscriber on the same database (a restarted daemon) goes on from the
    checkpoint the first left: what was delivered is not sent again, what was taken is sent."""
    world.notices.poll()
    first = world.reject(1)
    world.notices.poll()
    second = world.reject(2)
    restarted = world.system.notifications()
    restarted.poll()
    assert [d.event_id for d in receiver.received()] == [first, second]


def readme_check() -> Any:
    """The receiver's check as the README's Notifications section gives it, run as written."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Notifications"):text.index("## Policy format")]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    handled: set[str] = set()

    def already_handled(event_id: str) -> bool:
        seen = event_id in handled
        handled.add(event_id)
        return seen

    scope: dict[str, Any] = {"already_handled": already_handled}
    exec(compile(code, "README.md", "exec"), scope)  # our own README's snippet
    return scope["check"]


def test_the_readme_receiver_check_takes_a_delivery_once_and_refuses_a_forgery(
        world: World, receiver: Receiver) -> None:
    world.now = datetime.now(UTC)  # the snippet compares t with the wall clock
    world.notices.poll()
    event_id = world.reject(1)
    world.notices.poll()
    (delivery,) = receiver.received()
    headers = {"Orchestrator-Signature": delivery.headers["orchestrator-signature"]}
    check = readme_check()
    assert check(SECRET.encode(), headers, delivery.body)["id"] == event_id
    assert check(SECRET.encode(), headers, delivery.body) is None  # a repeat: handled already
    with pytest.raises(ValueError, match="signature does not hold"):
        check(SECRET.encode(), headers, delivery.body.replace(b"bad", b"good"))
    with pytest.raises(ValueError, match="signature does not hold"):
        check(b"another secret", headers, delivery.body)


def test_the_in_memory_outbox_agrees_with_the_database_one(engine: Any) -> None:
    """The double the unit tests use and the SQL outbox give the same answers to the same
    calls: checkpoints with compare-and-set, once-only ids, order, retries, delivery."""
    from orchestrator.adapters.webhooks import MemoryOutbox, SqlOutbox
    from orchestrator.app.notifications import NewRow

    def run(outbox: Any) -> list[Any]:
        rows = [NewRow(f"id-{n}", "policy.rejected", f'{{"n":{n}}}') for n in range(4)]
        seen: list[Any] = [outbox.position("a")]
        outbox.begin("a", 7)
        outbox.begin("a", 9)  # a second begin changes nothing
        seen += [outbox.position("a"), outbox.take("a", 7, 10, rows[:2], NOW),
                 outbox.take("a", 7, 12, rows[2:], NOW), outbox.position("a"),
                 outbox.add("a", rows[1:], NOW), outbox.add("b", rows[:1], NOW),
                 sorted(outbox.known("a", ["id-0", "id-3", "id-9"]))]
        first, *_ = outbox.pending("a", 10)
        outbox.failed(first.seq, 1, NOW + DAY, "down")
        seen.append([(p.notice_id, p.attempts, p.next_attempt_at) for p in outbox.pending("a", 2)])
        outbox.delivered(first.seq, NOW)
        seen.append([(p.notice_id, p.body) for p in outbox.pending("a", 10)])
        seen.append([p.notice_id for p in outbox.pending("b", 10)])
        return seen

    expected = [None, 7, True, False, 10, 2, 1, ["id-0", "id-3"],
                [("id-0", 1, NOW + DAY), ("id-1", 0, None)],
                [("id-1", '{"n":1}'), ("id-2", '{"n":2}'), ("id-3", '{"n":3}')], ["id-0"]]
    assert run(MemoryOutbox()) == expected
    assert run(SqlOutbox(engine)) == expected
