"""The safety invariants of a credential log, checked at every instant the log describes.

``check(records, end)`` folds the log event by event (the one fold, ``evolve``) and checks each
application just before and just after every event, at the event's instant, and at ``end``.
Between two events nothing changes but the time, and time only takes usability away (a
credential expires), so a gap in usability always shows at the next event or at the end: no
instant is missed, however long nothing happened.

* at most two live credentials per application and usage;
* always a usable credential, for an application and usage that had one: the credential the
  application *holds* (the one delivered to it last, or one an operator added outside any
  rotation) is active and unexpired; for a client secret, the version it holds is the current
  one, or the previous one within its grace. A new credential that is active at the provider
  but was never delivered (a rotation parked before its delivery) does not count;
* an old credential is disabled by a rotation only after the new one passed the test;
* no rotation completes twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from events import catalog as ev
from events.state import STREAM_PREFIX, AppState, Status, evolve
from orchestrator.domain.vocabulary import SECRET_USAGE

__all__ = ["INVARIANTS", "Checked", "check"]

INVARIANTS = ("at_most_two_live_per_usage", "always_a_usable_credential",
              "old_disabled_only_after_new_tested", "no_rotation_completed_twice")


@dataclass
class Checked:
    invariants: dict[str, bool]
    violations: list[str]

    @property
    def ok(self) -> bool:
        return all(self.invariants.values())


@dataclass
class _App:
    state: AppState
    held: dict[str, str] = field(default_factory=dict)  # usage -> credential delivered last
    manual: set[str] = field(default_factory=set)  # added outside a rotation: the operator's
    secret_held: int | None = None  # the client secret version the application holds
    had: set[str] = field(default_factory=set)  # usages that once had a usable credential
    since: dict[str, datetime] = field(default_factory=dict)  # usage -> no usable one since
    tested: set[str] = field(default_factory=set)
    completed: Counter[str] = field(default_factory=Counter)


class _Checker:
    def __init__(self) -> None:
        self.apps: dict[str, _App] = {}
        self.violations: list[str] = []
        self.broken: set[str] = set()

    def fail(self, invariant: str, message: str) -> None:
        self.broken.add(invariant)
        self.violations.append(message)

    def feed(self, stream: str, event: ev.Event, at: datetime, correlation_id: str | None,
             position: int) -> None:
        name = stream.removeprefix(STREAM_PREFIX)
        app = self.apps.get(name)
        if app is None:
            app = self.apps[name] = _App(AppState(app=name))
        self.usable(app, at)  # the instant just before the event
        app.state = evolve(app.state, event, at)
        self.note(app, event, correlation_id, position)
        self.usable(app, at)  # and just after it

    def note(self, app: _App, event: ev.Event, rid: str | None, position: int) -> None:
        state = app.state
        match event:
            case ev.CredentialAdded():
                if rid is None:
                    app.manual.add(event.credential_id)
                self.at_most_two(app, event.usage, position)
            case ev.SecretRotated() if rid is None:  # shown to the operator at once
                app.secret_held = event.version
            case ev.RotationStepRecorded(step="tested"):
                app.tested.add(event.rotation_id)
            case ev.RotationStepRecorded(step="delivered"):
                rotation = state.rotations.get(event.rotation_id)
                if rotation is not None and rotation.usage == SECRET_USAGE:
                    app.secret_held = state.secret.version if state.secret else None
                elif rotation is not None:
                    app.held[rotation.usage] = rotation.new_credential_id
            case ev.CredentialDisabled() if rid is not None and rid not in app.tested and (
                    _new_of(state, rid) != event.credential_id):  # parking disables the new one
                self.fail("old_disabled_only_after_new_tested",
                          f"{state.app}: {event.credential_id} disabled by rotation {rid} "
                          "before the new credential was tested")
            case ev.RotationCompleted():
                app.completed[event.rotation_id] += 1
                if app.completed[event.rotation_id] == 2:
                    self.fail("no_rotation_completed_twice",
                              f"{state.app}: rotation {event.rotation_id} completed twice")

    def at_most_two(self, app: _App, usage: str, position: int) -> None:
        live = sum(c.live and c.usage == usage for c in app.state.credentials.values())
        if live > 2:
            self.fail("at_most_two_live_per_usage",
                      f"{app.state.app}: {live} live {usage} credentials at position {position}")

    def usable(self, app: _App, at: datetime) -> None:
        usages = set(app.held) | {app.state.credentials[c].usage.value for c in app.manual
                                  if c in app.state.credentials}
        if app.secret_held is not None:
            usages.add(SECRET_USAGE)
        for usage in usages:
            if self.holds(app, usage, at):
                app.had.add(usage)
                began = app.since.pop(usage, None)
                if began is not None and at > began:
                    self.gap(app, usage, began, at)
            elif usage in app.had and usage not in app.since:
                app.since[usage] = self.lost_at(app, usage, at)

    def holds(self, app: _App, usage: str, at: datetime) -> bool:
        state = app.state
        if usage == SECRET_USAGE:
            secret, held = state.secret, app.secret_held
            if secret is None or held is None:
                return False
            return held == secret.version or (
                held == secret.version - 1 and secret.previous_valid_until is not None
                and at < secret.previous_valid_until)
        ids = {c for c in app.manual if c in state.credentials
               and state.credentials[c].usage == usage}
        if usage in app.held:
            ids.add(app.held[usage])
        return any(state.credentials[c].usable(at) for c in ids if c in state.credentials)

    def lost_at(self, app: _App, usage: str, at: datetime) -> datetime:
        """When the last usable credential stopped being usable (for the message): its expiry
        (or the previous secret's grace) if that is what happened, else this instant (an event
        took it away)."""
        if usage == SECRET_USAGE:
            until = app.state.secret.previous_valid_until if app.state.secret else None
            return until if until is not None and until <= at else at
        ends = [c.expires_at for c in app.state.credentials.values()
                if c.usage == usage and c.status is Status.ACTIVE and c.expires_at is not None
                and c.expires_at <= at]
        return max(ends, default=at)

    def gap(self, app: _App, usage: str, began: datetime, ended: datetime | None) -> None:
        until = "the end" if ended is None else f"{ended} ({_human(ended - began)})"
        self.fail("always_a_usable_credential",
                  f"{app.state.app}: no usable {usage} credential held from {began} to {until}")

    def finish(self, end: datetime) -> Checked:
        for app in self.apps.values():
            self.usable(app, end)
            for usage, began in sorted(app.since.items()):
                if end > began:
                    self.gap(app, usage, began, None)
        return Checked({name: name not in self.broken for name in INVARIANTS}, self.violations)


def check(records: Iterable[tuple[str, ev.Event, datetime, str | None, int]],
          end: datetime) -> Checked:
    """Every invariant above over ``records`` (stream id, event, occurred at, correlation id,
    position, in log order), up to ``end``."""
    checker = _Checker()
    for stream, event, at, correlation_id, position in records:
        if stream.startswith(STREAM_PREFIX):
            checker.feed(stream, event, at, correlation_id, position)
    return checker.finish(end)


def _new_of(state: AppState, rotation_id: str) -> str | None:
    rotation = state.rotations.get(rotation_id)
    return rotation.new_credential_id if rotation is not None else None


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds} s"
