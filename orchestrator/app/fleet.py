"""The fleet in memory: every application's state, kept current from the log incrementally.

``refresh`` folds only the events after the last position seen, with the same ``evolve`` as
everything else, and remembers which applications changed, so a tick plans the applications
that changed or fell due, not the whole fleet.

A ``seed`` (the daemon's: the projector's read model and its checkpoint, read in one snapshot)
is where the first refresh starts, so a new leader folds only the events after the checkpoint
rather than the whole log; every seeded application counts as changed. A seeded application's
state stays the read model's text until it is first looked at (``state_from_json`` then), so
the first tick's urgent work does not wait for the whole fleet to be decoded.

``appended`` takes what this process just appended (the write path's records): when they come
right after the last position seen, nothing else was appended between, so the state after them is
taken at once and the next refresh need not read them back; otherwise the refresh reads them in
order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from events.projector import app_of, state_from_json
from events.state import AppState, evolve
from events.store import EventStore, ReadFilter, Recorded

__all__ = ["FleetView"]


class FleetView:
    def __init__(self, store: EventStore,
                 seed: Callable[[], tuple[int, dict[str, str]]] | None = None) -> None:
        self.store = store
        self.position = 0
        self._states: dict[str, AppState] = {}
        self._encoded: dict[str, str] = {}  # seeded, not decoded yet
        self._changed: set[str] = set()
        self._seed = seed

    def _state(self, app: str) -> AppState | None:
        text = self._encoded.pop(app, None)
        if text is not None:
            self._states[app] = state_from_json(text)
        return self._states.get(app)

    def refresh(self) -> None:
        if self._seed is not None:
            self.position, self._encoded = self._seed()
            self._changed.update(self._encoded)
            self._seed = None
        for rec in self.store.read(ReadFilter(after=self.position)):
            self.position = rec.position
            app = app_of(rec)
            if app is None:
                continue
            self._states[app] = evolve(self._state(app) or AppState(app=app), rec.event,
                                       rec.occurred_at)
            self._changed.add(app)

    def appended(self, app: str, records: Sequence[Recorded], state: AppState) -> None:
        """``records``, just appended to ``app``'s stream by this process, and ``state``, the
        application's state after them: taken at once if they follow the last position seen
        (the module docstring), else left to the next refresh."""
        if self._seed is not None or not records or records[0].position != self.position + 1:
            return
        self.position = records[-1].position
        self._encoded.pop(app, None)
        self._states[app] = state
        self._changed.add(app)

    def _known(self, app: str) -> bool:
        return app in self._states or app in self._encoded

    def get(self, app: str) -> AppState:
        self.refresh()
        return self._state(app) or AppState(app=app)

    def peek(self, app: str) -> AppState:
        """``app``'s state as of the last refresh; refreshed first only for an application not
        seen yet."""
        if not self._known(app):
            self.refresh()
        return self._state(app) or AppState(app=app)

    def all(self) -> list[AppState]:
        self.refresh()
        return self.states([*self._states, *self._encoded])

    def apps(self) -> set[str]:
        """Every application's name (refreshing first; nothing decoded)."""
        self.refresh()
        return {*self._states, *self._encoded}

    def take_changed(self) -> set[str]:
        """Applications changed since the last call (refreshing first)."""
        self.refresh()
        changed, self._changed = self._changed, set()
        return changed

    def states(self, apps: Iterable[str]) -> list[AppState]:
        return [state for a in sorted(apps) if (state := self._state(a)) is not None]

    def __len__(self) -> int:
        return len(self._states) + len(self._encoded)
