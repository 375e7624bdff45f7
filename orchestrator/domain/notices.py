"""What a Notifier is told: notices, each with an id a receiver de-duplicates by. Pure.

Two sources, one shape (``Notice``):

* facts in the log (``from_record``): a credential expired, a rotation completed, failed or
  was parked, a policy file rejected. The notice's id is the log event's ``event_id``.
* conditions seen at an instant (``expiring``, ``stranded``, ``drifted``): a usable
  credential expiring within a threshold, an application without a usable credential of a
  usage it had, an application whose provider contradicts the log. They are not facts of the
  log, so their id is derived from what makes them one (``derived_id``): the same condition
  seen again, by this process or after a restart, gets the same id, and the outbox keeps each
  id once per notifier: "each once".

A credential is told as expiring only while no other usable credential of its usage outlives it:
in a rotation's overlap the old one's nearing expiry is expected, not news.
A credential first seen inside several thresholds (the daemon was down, or it was imported
with a near expiry) is told once, for the tightest one it is within; a later, tighter
threshold is told again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from events.state import AppState, Status
from events.store import Recorded
from orchestrator.domain.durations import format_duration
from orchestrator.domain.planner import stranded as stranded_alarms

__all__ = [
    "DEFAULT_THRESHOLDS",
    "NOTICE_NAMESPACE",
    "Notice",
    "NoticeKind",
    "derived_id",
    "drifted",
    "expiring",
    "from_record",
    "stranded",
]

NOTICE_NAMESPACE = uuid.UUID("5b0b7d0e-8a43-4b8e-9a55-6f1c2f0e9d21")  # derived ids' namespace
DEFAULT_THRESHOLDS = (timedelta(days=30), timedelta(days=7), timedelta(days=1))


class NoticeKind(StrEnum):
    """Every kind a Notifier may subscribe to (``spec.events``)."""

    EXPIRING = "credential.expiring"
    EXPIRED = "credential.expired"
    COMPLETED = "rotation.completed"
    FAILED = "rotation.failed"
    PARKED = "rotation.parked"
    STRANDED = "application.without_usable_credential"
    DRIFTED = "application.drifted"
    REJECTED = "policy.rejected"


_FROM_LOG = {kind.value: kind for kind in (NoticeKind.EXPIRED, NoticeKind.COMPLETED,
                                           NoticeKind.FAILED, NoticeKind.PARKED,
                                           NoticeKind.REJECTED)}
_APP_STREAM = "app:"


@dataclass(frozen=True)
class Notice:
    """One thing to tell: ``id`` is what a receiver de-duplicates by."""

    id: str
    kind: NoticeKind
    occurred_at: datetime
    app: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    position: int | None = None  # the log position, for a fact of the log


def derived_id(*parts: str) -> str:
    """The id of a condition: the same parts, the same id, in any process."""
    return str(uuid.uuid5(NOTICE_NAMESPACE, "\0".join(parts)))


def from_record(rec: Recorded) -> Notice | None:
    """The notice a log record is, or None (not a kind a notifier is told)."""
    kind = _FROM_LOG.get(rec.type)
    if kind is None:
        return None
    app = rec.stream_id[len(_APP_STREAM):] if rec.stream_id.startswith(_APP_STREAM) else None
    data = dict(rec.payload)
    if rec.actor:
        data["actor"] = rec.actor
    return Notice(rec.event_id, kind, rec.occurred_at, app, data, rec.position)


def expiring(states: Iterable[AppState], thresholds: Sequence[timedelta],
             now: datetime) -> list[Notice]:
    """A notice for each usable credential that expires within a threshold at ``now``, for the
    tightest threshold it is within, unless another usable credential of its usage outlives it
    (its successor, in a rotation's overlap: the application does not depend on it)."""
    ordered = sorted(set(thresholds))
    out = []
    for state in states:
        for cred in state.credentials.values():
            if cred.status is not Status.ACTIVE or cred.expires_at is None:
                continue
            if any(other.id != cred.id and (other.expires_at is None
                                            or other.expires_at > cred.expires_at)
                   for other in state.usable(cred.usage, now)):
                continue  # a successor outlives it
            left = cred.expires_at - now
            if left <= timedelta(0):
                continue  # expired: told as credential.expired
            within = next((t for t in ordered if left <= t), None)
            if within is None:
                continue
            out.append(Notice(
                derived_id(NoticeKind.EXPIRING, cred.id, str(int(within.total_seconds()))),
                NoticeKind.EXPIRING, now, state.app,
                {"credential_id": cred.id, "usage": cred.usage.value, "kid": cred.kid,
                 "fingerprint": cred.fingerprint, "expires_at": cred.expires_at.isoformat(),
                 "threshold": format_duration(within),
                 "seconds_left": int(left.total_seconds())}))
    return out


def stranded(states: Iterable[AppState], now: datetime) -> list[Notice]:
    """A notice for each application and usage left without a usable credential it had, once
    per time it lost it (``since``)."""
    out = []
    for state in states:
        for alarm in stranded_alarms(state, now):
            since = alarm.since.isoformat() if alarm.since is not None else ""
            out.append(Notice(
                derived_id(NoticeKind.STRANDED, alarm.app, alarm.usage, since),
                NoticeKind.STRANDED, now, alarm.app,
                {"usage": alarm.usage, "since": since or None, "rotation_id": alarm.rotation_id,
                 "detail": alarm.message}))
    return out


def drifted(held: Mapping[str, str], versions: Mapping[str, int], now: datetime
            ) -> list[Notice]:
    """A notice for each application held because its provider contradicts the log (or its
    client is missing), once per difference and the stream version it was first seen at
    (``versions``): the same drift seen again after a restart is the same notice; a drift
    found again after the log moved (a repair, an adoption) is a new one."""
    return [Notice(derived_id(NoticeKind.DRIFTED, app, str(versions.get(app, 0)), why),
                   NoticeKind.DRIFTED, now, app, {"detail": why})
            for app, why in sorted(held.items())]
