"""The emulator's clock: wall time by default, frozen and moved by tests.

Every rule that reads time (token and credential expiry, assertion lifetimes, certificate
validity, the token bucket) asks this clock, never ``time.time()``, so a test sets the time
instead of sleeping. An out-of-process emulator follows the wall clock, shifted by ``advance``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

__all__ = ["Clock"]


class Clock:
    """Seconds since the epoch. ``Clock()`` follows the wall clock (plus an offset moved by
    ``advance``); ``Clock(start)`` is frozen at ``start`` and moves only when told."""

    def __init__(self, start: float | datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen: float | None = None if start is None else _seconds(start)
        self._offset = 0.0

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def now(self) -> float:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return time.time() + self._offset

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> float:
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
                return self._frozen
            self._offset += seconds
            return time.time() + self._offset

    def set(self, at: float | datetime) -> float:
        """Freeze the clock at ``at``."""
        with self._lock:
            self._frozen = _seconds(at)
            return self._frozen


def _seconds(at: float | datetime) -> float:
    return at.timestamp() if isinstance(at, datetime) else float(at)
