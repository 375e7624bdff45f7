"""TEST-ONLY launcher: the installed ``orchestrator`` command under a virtual clock, or set to
SIGKILL itself at a chosen append. It lives under tests/ and is never shipped.

Run it as ``python /abs/path/tests/support/launch.py <orchestrator arguments>``: Python puts the
script's own folder first on ``sys.path`` (not the repository root), so the orchestrator it
imports is the installed one. It calls ``orchestrator.entrypoints.cli.main(argv, clock=...,
wrap_store=...)``; the product reads neither variable below, and has no other way in.

``ORCHESTRATOR_TEST_CLOCK``  a file holding the current instant (ISO 8601 with an offset). Every
                             clock reading reads the file again: the test moves time by
                             rewriting it (atomically), and time stands still otherwise.
                             Under it the daemon looks at the clock every ``POLL`` of real
                             time (the product's half second would make each of a test's
                             clock moves wait up to that long for nothing).
``ORCHESTRATOR_TEST_CRASH``  ``<before|after>:<step|any>:<n>``: SIGKILL this process right before
                             (or right after) the n-th append of a rotation step's events, or of
                             any events with ``any``. ``before`` falls after the step's outside
                             work (keystore, provider, delivery files) and before its record.
``ORCHESTRATOR_TEST_KEYSTORE_CRASH``  ``<before|after>:<method>:<n>``: SIGKILL this process right
                             before (or after) the n-th call of a keystore method, e.g.
                             ``after:reencrypt:3`` (a master-key rotation's third item moved).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

CLOCK_ENV = "ORCHESTRATOR_TEST_CLOCK"
CRASH_ENV = "ORCHESTRATOR_TEST_CRASH"
KEYSTORE_CRASH_ENV = "ORCHESTRATOR_TEST_KEYSTORE_CRASH"

# what a rotation step appends -> the step (rotation.step_recorded's ``step`` is past tense)
RECORDED_STEP = {"generated": "generate", "registered": "register", "tested": "test",
                 "delivered": "deliver"}
ROTATION_EVENT_STEP = {"rotation.started": "start", "rotation.completed": "complete",
                       "credential.activated": "activate", "credential.disabled": "disable_old",
                       "credential.deleted": "free_slot"}
POLL = timedelta(milliseconds=20)
STEPS = ("start", "free_slot", "generate", "register", "activate", "test", "deliver",
         "disable_old", "complete")


def step_of(events: Sequence[Any]) -> str | None:
    """The rotation step whose record these events are, or None (not a rotation step)."""
    for new in events:
        if not (new.correlation_id or "").startswith("rot_"):
            continue
        event = new.event
        if event.type_name == "rotation.step_recorded" and event.step in RECORDED_STEP:
            return RECORDED_STEP[event.step]
        if event.type_name in ROTATION_EVENT_STEP:
            return ROTATION_EVENT_STEP[event.type_name]
    return None


class FileClock:
    """The virtual clock: the instant written in a file."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def __call__(self) -> datetime:
        at = datetime.fromisoformat(self.path.read_text().strip())
        assert at.tzinfo is not None, f"{self.path}: the instant needs an offset"
        return at


class CrashingStore:
    """Decorates the event store the write path appends through: SIGKILL at the chosen append."""

    def __init__(self, inner: Any, spec: str) -> None:
        when, step, count = spec.split(":")
        assert when in ("before", "after") and (step == "any" or step in STEPS), spec
        self.inner, self.when, self.step, self.count = inner, when, step, int(count)
        self.seen = 0

    def append(self, stream_id: str, events: Sequence[Any], expected_version: int) -> Any:
        hit = self.step == "any" or step_of(events) == self.step
        if hit:
            self.seen += 1
            if self.seen == self.count and self.when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
        try:
            records = self.inner.append(stream_id, events, expected_version)
        except Exception:
            self.seen -= hit  # refused (a concurrent write): not an append
            raise
        if hit and self.seen == self.count and self.when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return records

    def read(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return self.inner.read(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CrashingKeystore:
    """Decorates the keystore: SIGKILL before or after the n-th call of one of its methods."""

    def __init__(self, inner: Any, spec: str) -> None:
        self.inner = inner
        self.when, self.method, count = spec.split(":")
        assert self.when in ("before", "after"), spec
        self.count = int(count)
        self.seen = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name != self.method:
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.seen += 1
            if self.seen == self.count and self.when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = target(*args, **kwargs)
            if self.seen == self.count and self.when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return counted


def main() -> None:
    from orchestrator.entrypoints.cli import main as orchestrator

    clock_file = os.environ.get(CLOCK_ENV)
    crash = os.environ.get(CRASH_ENV)
    wrap: Callable[[Any], Any] | None = (
        (lambda store: CrashingStore(store, crash)) if crash else None)
    keystore_crash = os.environ.get(KEYSTORE_CRASH_ENV)
    wrap_keystore: Callable[[Any], Any] | None = (
        (lambda keystore: CrashingKeystore(keystore, keystore_crash)) if keystore_crash else None)
    orchestrator(sys.argv[1:], clock=FileClock(clock_file) if clock_file else None,
                 wrap_store=wrap, wrap_keystore=wrap_keystore,
                 daemon_poll=POLL if clock_file else None)


if __name__ == "__main__":
    main()
