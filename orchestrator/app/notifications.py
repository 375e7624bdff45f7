"""The notifications subscriber: the log and the fleet's conditions, told to each Notifier.

One ``poll()`` (the daemon's leader calls it after each tick) does, for each notifier:

1. **take**: read the log after the notifier's own checkpoint and put the notices its events
   are (``domain.notices.from_record``, the kinds it subscribes to) into its outbox; the rows
   and the moved checkpoint are one transaction, with a compare-and-set, so each event is
   taken once. A notifier seen for the first time starts at the log's head: it is told what
   happens from then on, not the history.
2. **see**: the conditions at this instant (a usable credential within a threshold, an
   application without a usable credential, a drifted one) as notices with derived ids; the
   outbox keeps each id once per notifier, so each is told once, across restarts too.
3. **deliver**: the pending rows in order, each POSTed, signed, by the ``Sender``; a 2xx
   marks it delivered. A failure keeps it pending with ``attempts`` and a retry instant
   (``backoff`` doubling to ``maxBackoff``, on the injected clock) and stops this notifier's
   round, so the order holds and a receiver that is down is not hammered; the next poll after
   the retry instant tries it again, for as long as it takes.

At least once: a row is marked delivered only after the receiver's 2xx, so a crash between
the two sends it again, with the same id (payload ``id`` and the ``Orchestrator-Event-Id``
header) and the same body: a receiver de-duplicates by the id.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from events.state import AppState
from events.store import EventStore, ReadFilter
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.notices import (
    Notice,
    NoticeKind,
    drifted,
    expiring,
    from_record,
    stranded,
)

__all__ = ["BATCH", "DeliveryFailed", "NewRow", "Notifications", "Outbox", "Pending",
           "PollReport", "Sender", "Webhook", "body_of"]

log = structlog.get_logger("orchestrator.notifications")
BATCH = 500  # log records read, or rows delivered, at a time


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx: the reason, one line (no secret in it)."""


@dataclass(frozen=True)
class Webhook:
    """What the subscriber needs of a Notifier resource."""

    name: str
    url: str
    kinds: frozenset[NoticeKind]
    thresholds: tuple[timedelta, ...]
    timeout: timedelta
    backoff: timedelta
    max_backoff: timedelta
    secret: Callable[[], str]  # resolves the reference; OrchestratorError when it cannot


@dataclass(frozen=True)
class NewRow:
    notice_id: str
    kind: str
    body: str


@dataclass(frozen=True)
class Pending:
    seq: int
    notice_id: str
    kind: str
    body: str
    attempts: int
    next_attempt_at: datetime | None


class Outbox(Protocol):
    """Each notifier's checkpoint on the log and its rows to deliver, kept durably."""

    def position(self, notifier: str) -> int | None:
        """The checkpoint (None: the notifier was never seen)."""

    def begin(self, notifier: str, position: int) -> None:
        """Set a first checkpoint (nothing when one exists)."""

    def take(self, notifier: str, start: int, end: int, rows: Sequence[NewRow],
             at: datetime) -> bool:
        """Add ``rows`` and move the checkpoint from ``start`` to ``end``, in one transaction;
        False (nothing written) when the checkpoint is not at ``start`` any more."""

    def add(self, notifier: str, rows: Sequence[NewRow], at: datetime) -> int:
        """Add the rows whose id the notifier's outbox does not hold; how many were added."""

    def known(self, notifier: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the notifier's outbox holds."""

    def pending(self, notifier: str, limit: int) -> list[Pending]:
        """The oldest undelivered rows, in order."""

    def delivered(self, seq: int, at: datetime) -> None: ...

    def failed(self, seq: int, attempts: int, retry_at: datetime, error: str) -> None: ...


class Sender(Protocol):
    def send(self, hook: Webhook, secret: str, row: Pending, at: datetime) -> None:
        """POST ``row.body`` to ``hook.url``, signed at ``at``; DeliveryFailed unless 2xx."""


@dataclass
class PollReport:
    taken: int = 0
    seen: int = 0
    delivered: int = 0
    failed: int = 0
    waiting: dict[str, int] = field(default_factory=dict)  # notifier -> rows left pending


def body_of(notice: Notice, notifier: str) -> str:
    """The JSON body a receiver gets (keys sorted, compact, UTF-8)."""
    return json.dumps({"id": notice.id, "type": notice.kind.value, "notifier": notifier,
                       "occurred_at": notice.occurred_at.isoformat(), "app": notice.app,
                       "position": notice.position, "data": dict(notice.data)},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Notifications:
    def __init__(self, store: EventStore, outbox: Outbox, sender: Sender,
                 webhooks: Callable[[], Mapping[str, Webhook]],
                 states: Callable[[], Iterable[AppState]], clock: Callable[[], datetime], *,
                 held: Callable[[], Mapping[str, str]] = dict,
                 guard: Callable[[], None] = lambda: None,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.store = store
        self.outbox = outbox
        self.sender = sender
        self.webhooks = webhooks
        self.states = states
        self.clock = clock
        self.held = held  # the drift watch's held apps (app -> why)
        self.guard = guard  # the lease, confirmed before each delivery
        self.should_stop = should_stop
        self._seen: dict[str, set[str]] = {}  # notifier -> derived ids known to be in its outbox
        self._episodes: dict[str, tuple[str, int]] = {}  # held app -> (why, version first seen)
        self._unsigned: dict[str, str] = {}  # notifier -> the secret error last logged

    def start(self) -> None:
        """Give each notifier seen for the first time its checkpoint at the log's head (the
        daemon calls it before each tick, so what the tick records is told)."""
        for hook in self.webhooks().values():
            if self.outbox.position(hook.name) is None:
                self._begin(hook)

    def _begin(self, hook: Webhook) -> None:
        head = next(iter(self.store.read(ReadFilter(last=1))), None)
        position = head.position if head is not None else 0
        self.outbox.begin(hook.name, position)
        log.info("notifier_started", notifier=hook.name, url=hook.url, position=position,
                 detail="told what happens from this position of the log on")

    def poll(self) -> PollReport:
        report = PollReport()
        hooks = self.webhooks()
        if not hooks:
            return report
        now = self.clock()
        for hook in hooks.values():
            report.taken += self._take(hook, now)
        report.seen = self._see(hooks, now)
        for hook in hooks.values():
            if self.should_stop():
                break
            self._deliver(hook, report)
        return report

    # --- 1. the log ---------------------------------------------------------------------------

    def _take(self, hook: Webhook, now: datetime) -> int:
        start = self.outbox.position(hook.name)
        if start is None:
            self._begin(hook)
            return 0
        taken = 0
        while True:
            records = list(self.store.read(ReadFilter(after=start, limit=BATCH)))
            if not records:
                return taken
            notices = [n for n in map(from_record, records) if n is not None
                       and n.kind in hook.kinds]
            rows = [NewRow(n.id, n.kind.value, body_of(n, hook.name)) for n in notices]
            end = records[-1].position
            if not self.outbox.take(hook.name, start, end, rows, now):
                return taken  # another process moved it: it took these
            taken += len(rows)
            start = end

    # --- 2. the conditions --------------------------------------------------------------------

    def _see(self, hooks: Mapping[str, Webhook], now: datetime) -> int:
        wanted = {NoticeKind.EXPIRING, NoticeKind.STRANDED, NoticeKind.DRIFTED}
        if not any(hook.kinds & wanted for hook in hooks.values()):
            return 0
        states = list(self.states())
        left = (stranded(states, now)
                if any(NoticeKind.STRANDED in h.kinds for h in hooks.values()) else [])
        held = self.held() if any(NoticeKind.DRIFTED in h.kinds for h in hooks.values()) else {}
        drift = drifted(held, self._episodes_of(held, states), now)
        added = 0
        for hook in hooks.values():
            notices: list[Notice] = []
            if NoticeKind.EXPIRING in hook.kinds:
                notices += expiring(states, hook.thresholds, now)
            if NoticeKind.STRANDED in hook.kinds:
                notices += left
            if NoticeKind.DRIFTED in hook.kinds:
                notices += drift
            added += self._add(hook, notices, now)
        return added

    def _episodes_of(self, held: Mapping[str, str], states: Sequence[AppState]
                     ) -> dict[str, int]:
        """For each held app, the stream version at which its drift (this difference) was
        first seen: the same drift stays one notice while the log moves (an expiry); one
        cleared and found again is a new one."""
        versions = {s.app: s.version for s in states if s.app in held}
        for app in [a for a in self._episodes if a not in held]:
            del self._episodes[app]
        for app, why in held.items():
            if self._episodes.get(app, ("", 0))[0] != why:
                self._episodes[app] = (why, versions.get(app, 0))
        return {app: version for app, (_why, version) in self._episodes.items()}

    def _add(self, hook: Webhook, notices: Sequence[Notice], now: datetime) -> int:
        seen = self._seen.setdefault(hook.name, set())
        fresh = [n for n in notices if n.id not in seen]
        if not fresh:
            return 0
        known = self.outbox.known(hook.name, [n.id for n in fresh])
        new = [n for n in fresh if n.id not in known]
        added = self.outbox.add(hook.name, [NewRow(n.id, n.kind.value, body_of(n, hook.name))
                                            for n in new], now) if new else 0
        seen.update(n.id for n in fresh)
        return added

    # --- 3. delivery --------------------------------------------------------------------------

    def _deliver(self, hook: Webhook, report: PollReport) -> None:
        rows = self.outbox.pending(hook.name, BATCH)
        report.waiting[hook.name] = len(rows)
        if not rows:
            return
        now = self.clock()
        first = rows[0]
        if first.next_attempt_at is not None and first.next_attempt_at > now:
            return  # backing off
        try:
            secret = hook.secret()
        except OrchestratorError as exc:
            if self._unsigned.get(hook.name) != str(exc):
                self._unsigned[hook.name] = str(exc)
                log.error("notifier_unusable", notifier=hook.name, error=str(exc),
                          pending=len(rows), detail="nothing is sent unsigned; the notices "
                          "wait in the outbox until the secret can be had")
            return
        self._unsigned.pop(hook.name, None)
        for row in rows:
            if self.should_stop():
                return
            self.guard()
            at = self.clock()
            try:
                self.sender.send(hook, secret, row, at)
            except DeliveryFailed as exc:
                attempts = row.attempts + 1
                wait = min(hook.backoff * 2 ** min(attempts - 1, 32), hook.max_backoff)
                retry_at = self.clock() + wait
                self.outbox.failed(row.seq, attempts, retry_at, str(exc)[:1000])
                report.failed += 1
                log.warning("notification_failed", notifier=hook.name, notice_id=row.notice_id,
                            kind=row.kind, attempt=attempts, retry_at=retry_at.isoformat(),
                            error=str(exc), pending=report.waiting[hook.name])
                return
            self.outbox.delivered(row.seq, self.clock())
            report.delivered += 1
            report.waiting[hook.name] -= 1
            log.info("notification_delivered", notifier=hook.name, notice_id=row.notice_id,
                     kind=row.kind, attempts=row.attempts + 1)
