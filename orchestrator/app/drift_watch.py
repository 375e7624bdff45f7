"""The daemon's drift check: each app bound to a provider that can list its clients is compared
once per ``every``; an app whose provider contradicts the log is *held* (the ticker starts,
resumes, retries and deletes nothing of it) until a check finds it clean again.

A check is spread over ticks: at most ``batch`` apps a tick (the provider's rate limit is shared
with the rotations), the longest unchecked first. A held app is checked again as soon as its
log moves (``drift --adopt`` records, ``drift --repair`` records ``drift.repaired``), so an
operator's fix releases it at the next tick. Each check of a drifted app logs one line at error
level, ``app_drifted``, naming the app, the differences and the fix. An app with a rotation in
flight is left for later (its differences may be the rotation's own steps); one that could not
be compared keeps the hold it had.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from events.state import RotationStatus
from orchestrator.app.drift import AppDrift, DriftChecker

__all__ = ["DriftWatch", "WatchReport"]

log = structlog.get_logger("orchestrator.drift")
BATCH = 50


@dataclass(frozen=True)
class WatchReport:
    checked: int = 0
    drifted: int = 0
    failed: int = 0


class DriftWatch:
    def __init__(self, checker: DriftChecker, every: timedelta, clock: Callable[[], datetime],
                 batch: int = BATCH) -> None:
        self.checker = checker
        self.every = every
        self.clock = clock
        self.batch = batch
        self._checked: dict[str, tuple[datetime, int]] = {}  # app -> (when, stream version)
        self._held: dict[str, AppDrift] = {}

    @property
    def held(self) -> Mapping[str, str]:
        """The apps held, each with why (its first difference)."""
        return {app: d.differences[0].text if d.differences else "drift"
                for app, d in self._held.items()}

    def run(self) -> WatchReport:
        """Check the apps that are due; log and hold the drifted ones."""
        now = self.clock()
        due = []
        for state in self.checker.targets():
            last = self._checked.get(state.app)
            if any(r.status is RotationStatus.RUNNING for r in state.rotations.values()):
                continue
            if last is None or now >= last[0] + self.every or (
                    state.app in self._held and state.version != last[1]):
                due.append((last[0] if last else None, state))
        due.sort(key=lambda item: (item[0] is not None, item[0] or now, item[1].app))
        checked = drifted = failed = 0
        for _, state in due[:self.batch]:
            found = self.checker.check(state)
            self._checked[state.app] = (now, state.version)
            checked += 1
            if found.error is not None:
                failed += 1
                log.warning("drift_check_failed", app=state.app, provider=found.provider,
                            error=found.error)
                continue
            if found.clean:
                if self._held.pop(state.app, None) is not None:
                    log.info("app_drift_cleared", app=state.app, provider=found.provider)
                continue
            drifted += 1
            self._held[state.app] = found
            log.error("app_drifted", app=state.app, provider=found.provider,
                      client_id=found.client_id, differences=[d.text for d in found.differences],
                      fix=found.fix, detail="not rotated until the log and the provider agree")
        return WatchReport(checked, drifted, failed)
