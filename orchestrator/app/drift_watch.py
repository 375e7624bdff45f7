"""The daemon's drift check, and the gate it keeps before every action at a provider.

An application bound to a provider that can list its clients is started, resumed, retried and
has credentials deleted (the ticker's ``HELD_KINDS``) only when the daemon has compared it with
that provider since it started, within ``every``, and found that they agree. Applications of
the local provider, or of a provider that cannot list its clients, are never gated; expiry is
recorded whatever the gate says. Two ways an app is compared, sharing one budget of ``batch``
checks a tick (the provider's rate limit is shared with the rotations):

* ``gate(app)``: the ticker asks it right before each such action. An app compared within
  ``every`` is answered from memory. One never compared since the daemon started, or longer
  ago, is compared there and then (one read of its client) while the tick's budget lasts;
  beyond it, it waits for a later tick (held: the ticker counts it and plans it again;
  ``backlog`` tells the daemon to tick again right after, not at its interval).
* ``run()``: after the ticker, what is left of the budget compares the apps due by time, the
  longest unchecked first, so a drifted app is found and said even when nothing of it is due.
  Then the next tick's budget begins.

What one check finds, and says in one line naming the app (and, for a hold, the fix):

* they agree: the app goes on; a hold it had is lifted (``app_drift_cleared``, info). The
  differences a rotation in flight explains (its own step done at the provider, the record
  not yet written: ``domain.in_flight``) do not count; every other one does;
* they differ: the app is held, ``app_drifted`` (error) names the differences and the fix;
* the client is gone at the provider (``ClientMissing``): held, ``app_client_missing`` (error)
  with what the operator does; nothing the orchestrator does brings a client back;
* the app could not be compared (the provider unreachable, not configured, its secret not to
  be had): ``drift_check_failed`` (warning). An app held stays held; one never compared since
  the daemon started stays gated (its rotation would fail too); one compared before goes on.
  It is compared again after ``RETRY_FAILED`` (or ``every``, if shorter), and once a provider
  could not be reached no other app of it is compared in that tick.

A held app is compared again as soon as its log moves (``drift --adopt`` records, ``drift
--repair`` records ``drift.repaired``, ``rotations abandon`` gives up its rotation), so an
operator's fix releases it at the next tick; otherwise it is compared once per ``every``, and
stays held, named at error level each time, until a check finds it clean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog

from events.state import AppState
from events.store import LeaseLost
from orchestrator.app.drift import AppDrift, DriftChecker
from orchestrator.domain.checks import human
from orchestrator.domain.in_flight import unexplained

__all__ = ["BATCH", "RETRY_FAILED", "DriftWatch", "Look", "Outcome", "WatchReport"]

log = structlog.get_logger("orchestrator.drift")
BATCH = 50
RETRY_FAILED = timedelta(minutes=5)


class Outcome(StrEnum):
    """What one check found."""

    CLEAN = "clean"
    DRIFTED = "drifted"
    MISSING = "missing"
    FAILED = "failed"


@dataclass(frozen=True)
class Look:
    """The last check of one app: when, at which stream version, and what it found."""

    at: datetime
    version: int
    outcome: Outcome
    error: str | None = None


@dataclass(frozen=True)
class WatchReport:
    checked: int = 0
    drifted: int = 0
    failed: int = 0
    missing: int = 0


class DriftWatch:
    def __init__(self, checker: DriftChecker, every: timedelta, clock: Callable[[], datetime],
                 batch: int = BATCH) -> None:
        self.checker = checker
        self.every = every
        self.clock = clock
        self.batch = batch
        self._looks: dict[str, Look] = {}
        self._held: dict[str, str] = {}  # app -> why (drifted, or its client missing)
        self._compared: set[str] = set()  # compared since the daemon started (whatever found)
        self._spent = 0  # checks made in this tick
        self._down: dict[str, str] = {}  # provider -> why it could not be reached this tick
        self._turned_away = False  # this tick's gate kept an app back for lack of budget
        self.backlog = False  # the last tick's did: the next tick has work at once

    @property
    def held(self) -> Mapping[str, str]:
        """The apps held, each with why."""
        return dict(self._held)

    def drifted(self) -> dict[str, bool]:
        """Each app compared since the daemon started: whether it is held (its provider
        contradicts the log, or its client is missing). Safe to call from another thread."""
        looked, held = dict(self._looks), dict(self._held)
        return {app: app in held for app in looked}

    # --- the gate ----------------------------------------------------------------------------

    def gate(self, app: str) -> str | None:
        """Why ``app``'s provider must not be touched now (None: go on), comparing it first
        when it is due and the tick's budget allows."""
        state = self.checker.service.load(app)
        if not self.checker.watches(state):
            return None
        if self._due(state, self.clock()):
            waits = self._cannot_check(state)
            if waits is None:
                self._check(state)
            elif app not in self._held:
                return waits
        return self._verdict(app)

    def _due(self, state: AppState, now: datetime) -> bool:
        look = self._looks.get(state.app)
        if look is None:
            return True
        if state.app in self._held and state.version != look.version:
            return True  # its log moved: an operator's fix, perhaps
        wait = min(self.every, RETRY_FAILED) if look.outcome is Outcome.FAILED else self.every
        return now >= look.at + wait

    def _cannot_check(self, state: AppState) -> str | None:
        provider = state.provider or "?"
        if provider in self._down:
            return (f"provider {provider!r} could not be reached in this tick "
                    f"({self._down[provider]}); not rotated until a check succeeds")
        if self._spent >= self.batch:
            self._turned_away = True
            look = self._looks.get(state.app)
            since = "since the daemon started" if look is None else f"since {look.at.isoformat()}"
            return (f"not compared with provider {provider!r} {since}: at most {self.batch} "
                    "checks a tick, it waits for a later tick")
        return None

    def _verdict(self, app: str) -> str | None:
        if app in self._held:
            return self._held[app]
        look = self._looks.get(app)
        if look is None:
            return "not compared with its provider yet"
        if look.outcome is Outcome.FAILED and app not in self._compared:
            return (f"could not be compared with its provider since the daemon started "
                    f"({look.error}); not rotated until a check succeeds")
        return None

    # --- the checks due by time --------------------------------------------------------------

    def run(self) -> WatchReport:
        """Compare the apps due by time with what is left of this tick's budget, the longest
        unchecked first; then begin the next tick's budget. Call it once a tick, after the
        ticker."""
        try:
            now = self.clock()
            due = [s for s in self.checker.targets() if self._due(s, now)]
            due.sort(key=lambda s: self._order(s.app, now))
            counts = {outcome: 0 for outcome in Outcome}
            for state in due:
                if self._spent >= self.batch:
                    break
                if self._cannot_check(state) is None:
                    counts[self._check(state)] += 1
            return WatchReport(sum(counts.values()), counts[Outcome.DRIFTED],
                               counts[Outcome.FAILED], counts[Outcome.MISSING])
        finally:
            self._spent = 0
            self._down.clear()
            self.backlog, self._turned_away = self._turned_away, False

    def _order(self, app: str, now: datetime) -> tuple[bool, datetime, str]:
        look = self._looks.get(app)
        return (look is not None, look.at if look is not None else now, app)

    # --- one check ---------------------------------------------------------------------------

    def _check(self, state: AppState) -> Outcome:
        """Compare ``state`` with its provider, note and say what was found."""
        now, app = self.clock(), state.app
        self._spent += 1
        try:
            found = self.checker.check(state)
        except LeaseLost:
            raise  # not this app's problem: the daemon leads no more
        except Exception as exc:  # a bug in one app's check never stops the others
            log.exception("drift_check_failed", app=app, provider=state.provider,
                          error=str(exc) or type(exc).__name__)
            self._looks[app] = Look(now, state.version, Outcome.FAILED, type(exc).__name__)
            return Outcome.FAILED
        if found.missing:
            return self._missing(state, found, now)
        if found.error is not None:
            return self._failed(state, found, now)
        self._compared.add(app)
        left = unexplained(state, found.differences, now)
        if not left:
            self._looks[app] = Look(now, state.version, Outcome.CLEAN)
            if self._held.pop(app, None) is not None:
                log.info("app_drift_cleared", app=app, provider=found.provider,
                         detail="the log and the provider agree: rotated again")
            return Outcome.CLEAN
        self._looks[app] = Look(now, state.version, Outcome.DRIFTED)
        self._held[app] = f"provider {found.provider!r} contradicts the log: {left[0].text}"
        log.error("app_drifted", app=app, provider=found.provider, client_id=found.client_id,
                  differences=[d.text for d in left], rotation_id=found.rotation,
                  fix=found.fix, detail="not rotated until the log and the provider agree")
        return Outcome.DRIFTED

    def _missing(self, state: AppState, found: AppDrift, now: datetime) -> Outcome:
        app = state.app
        self._compared.add(app)
        self._looks[app] = Look(now, state.version, Outcome.MISSING, found.error)
        self._held[app] = found.error or "its client is missing at the provider"
        log.error("app_client_missing", app=app, provider=found.provider,
                  client_id=found.client_id, fix=found.error,
                  detail=f"not rotated while its client is missing; compared again every "
                         f"{human(self.every)} and at once when its log moves")
        return Outcome.MISSING

    def _failed(self, state: AppState, found: AppDrift, now: datetime) -> Outcome:
        app = state.app
        self._looks[app] = Look(now, state.version, Outcome.FAILED, found.error)
        if found.unreachable:
            self._down[found.provider] = found.error or "unreachable"
        if app in self._held:
            then = "it stays held"
        elif app not in self._compared:
            then = "not rotated until a check succeeds (never compared since the daemon started)"
        else:
            then = "rotated as before (its last check agreed)"
        log.warning("drift_check_failed", app=app, provider=found.provider, error=found.error,
                    detail=f"compared again in {human(min(self.every, RETRY_FAILED))}; {then}",
                    fix=f"make provider {found.provider!r} reachable and configured as the "
                        f"error says; orchestrator drift --app {app} compares it again by hand")
        return Outcome.FAILED
