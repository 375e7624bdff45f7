"""The fleet in memory: every application's state, kept current from the log incrementally.

``refresh`` folds only the events after the last position seen, with the same ``evolve`` as
everything else, and remembers which applications changed, so a tick plans the applications
that changed or fell due, not the whole fleet.

A ``seed`` (the daemon's: the projector's read model and its checkpoint, read in one snapshot)
is where the first refresh starts, so a new leader folds only the events after the checkpoint
rather than the whole log; every seeded application counts as changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from events.projector import app_of
from events.state import AppState, evolve
from events.store import EventStore, ReadFilter

__all__ = ["FleetView"]


class FleetView:
    def __init__(self, store: EventStore,
                 seed: Callable[[], tuple[int, dict[str, AppState]]] | None = None) -> None:
        self.store = store
        self.position = 0
        self._states: dict[str, AppState] = {}
        self._changed: set[str] = set()
        self._seed = seed

    def refresh(self) -> None:
        if self._seed is not None:
            self.position, self._states = self._seed()
            self._changed.update(self._states)
            self._seed = None
        for rec in self.store.read(ReadFilter(after=self.position)):
            self.position = rec.position
            app = app_of(rec)
            if app is None:
                continue
            self._states[app] = evolve(self._states.get(app) or AppState(app=app), rec.event,
                                       rec.occurred_at)
            self._changed.add(app)

    def get(self, app: str) -> AppState:
        self.refresh()
        return self._states.get(app) or AppState(app=app)

    def peek(self, app: str) -> AppState:
        """``app``'s state as of the last refresh; refreshed first only for an application not
        seen yet."""
        if app not in self._states:
            self.refresh()
        return self._states.get(app) or AppState(app=app)

    def all(self) -> list[AppState]:
        self.refresh()
        return [self._states[a] for a in sorted(self._states)]

    def take_changed(self) -> set[str]:
        """Applications changed since the last call (refreshing first)."""
        self.refresh()
        changed, self._changed = self._changed, set()
        return changed

    def states(self, apps: Iterable[str]) -> list[AppState]:
        return [self._states[a] for a in sorted(apps) if a in self._states]

    def __len__(self) -> int:
        return len(self._states)
