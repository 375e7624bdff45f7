"""The subscriber's retries, on a virtual clock: backoff doubling up to maxBackoff, the order
kept (a failed notice holds the later ones), nothing dropped. In memory: the log, the outbox's
double (held to the SQL one by tests/integration/test_notifications.py) and a sender that
refuses while told to."""

from __future__ import annotations

from datetime import datetime, timedelta

from events import catalog as ev
from events.store import InMemoryEventStore, NewEvent
from orchestrator.adapters.webhooks import MemoryOutbox
from orchestrator.app.notifications import DeliveryFailed, Notifications, Pending, Webhook
from orchestrator.domain.notices import NoticeKind
from tests.conftest import NOW

SECOND = timedelta(seconds=1)


class Sender:
    def __init__(self) -> None:
        self.down = False
        self.attempts: list[tuple[datetime, str]] = []  # (when, notice id)

    def send(self, hook: Webhook, secret: str, row: Pending, at: datetime) -> None:
        self.attempts.append((at, row.notice_id))
        if self.down:
            raise DeliveryFailed("connection refused")


def test_backoff_doubles_up_to_its_cap_and_the_order_holds() -> None:
    now = [NOW]
    store = InMemoryEventStore(lambda: now[0])
    sender = Sender()
    hook = Webhook("ops", "https://h.example/x", frozenset({NoticeKind.REJECTED}), (),
                   timedelta(seconds=5), 10 * SECOND, 40 * SECOND, lambda: "s")
    notices = Notifications(store, MemoryOutbox(), sender, lambda: {"ops": hook}, list,
                            lambda: now[0])
    notices.poll()  # starts at the head
    ids = [store.append("policies:rejected", [NewEvent(ev.PolicyRejected(
        path=f"{n}.yaml", content_hash=str(n), error="bad"), now[0], "scheduler")], n)[0].event_id
           for n in range(3)]
    sender.down = True
    for second in range(0, 200):  # a poll every second of the virtual clock
        now[0] = NOW + second * SECOND
        notices.poll()
    tried = [(at - NOW).seconds for at, _ in sender.attempts]
    assert tried == [0, 10, 30, 70, 110, 150, 190]  # +10, +20, +40, then +40 each (the cap)
    assert {notice for _, notice in sender.attempts} == {ids[0]}  # the first holds the rest
    sender.down = False
    now[0] = NOW + 230 * SECOND
    report = notices.poll()
    assert [notice for _, notice in sender.attempts[-3:]] == ids  # in order, none lost
    assert (report.delivered, report.waiting) == (3, {"ops": 0})
    notices.poll()
    assert len(sender.attempts) == len(tried) + 3  # delivered once: not sent again
