"""What the planner needs of a maintenance window, as a Protocol: the pure core computes nothing
about cron expressions itself. ``orchestrator.policies.windows.CronWindow`` is the one
implementation (a crontab expression in a time zone, on APScheduler's cron trigger)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

__all__ = ["Window"]


class Window(Protocol):
    """Rotations may only start while the window is open; ``at`` is always given, never read."""

    def is_open(self, at: datetime) -> bool:
        """Whether the window is open at ``at``."""

    def current_or_next(self, at: datetime) -> tuple[datetime, datetime] | None:
        """``(open, close)`` of the window open at ``at``, else of the next one; None if none."""
