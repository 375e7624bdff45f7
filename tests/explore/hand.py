"""The explorer's hand: every outside effect of one move asks it what happens, and it answers from
a forced prefix of choices (then the first option), keeping the trace so that the explorer can
enumerate every sequence of answers (``Hand.siblings``).

Options, in order (the first is what happens when nothing goes wrong):

* a provider call: ``ok``; ``refused`` (fails before doing anything); ``lost`` (does the work,
  the answer is lost on the way back); ``timeout-done`` / ``timeout-undone`` (the caller's
  timeout fired after / before the provider did the work); ``429`` (rate limited, nothing done).
  Each of the five costs one fault of the path's budget.
* a delivery: ``ok``; ``failed`` (the files could not be written; one fault).
* after any effect that changed something (an append, a keystore write, a provider call that did
  its work, a delivery): ``go on`` or ``crash`` (the process dies right after it; one crash of
  the budget). Crashing before an effect is crashing after the one before it.

After a crash (or the move's pause) nothing more happens: every later effect raises again, as
in a killed process nothing runs, not even a ``finally``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["DELIVERY_FAULTS", "PROVIDER_FAULTS", "Crash", "Hand", "Pause", "ReplayHand", "Stop"]

PROVIDER_FAULTS = ("refused", "lost", "timeout-done", "timeout-undone", "429")
DELIVERY_FAULTS = ("failed",)
DONE = frozenset({"ok", "lost", "timeout-done"})  # outcomes in which the provider did the work


class Stop(BaseException):
    """The move ends here; nothing of the product may catch it (it is no Exception)."""


class Crash(Stop):
    """The process died right after the last effect."""


class Pause(Stop):
    """One rotation step was recorded: the explorer looks at the world before the next."""


@dataclass
class Hand:
    forced: Sequence[int]
    faults: int  # faults this move may still inject
    crashes: int
    trace: list[tuple[int, int]] = field(default_factory=list)  # (chosen, of how many)
    labels: list[str] = field(default_factory=list)
    stopped: Stop | None = None
    faults_used: int = 0
    crashes_used: int = 0

    def _choose(self, what: str, options: Sequence[str]) -> str:
        if self.stopped is not None:
            raise self.stopped
        k = len(self.trace)
        index = self.forced[k] if k < len(self.forced) else 0
        self.trace.append((index, len(options)))
        choice = options[index]
        if index:
            self.labels.append(f"crash after {what}" if choice == "crash" else f"{what}: {choice}")
        return choice

    def check_alive(self) -> None:
        if self.stopped is not None:
            raise self.stopped

    def provider(self, what: str) -> str:
        """The outcome of a provider call (``DONE`` holds those that did the work)."""
        return self._outcome(what, PROVIDER_FAULTS)

    def delivery(self, what: str) -> str:
        return self._outcome(what, DELIVERY_FAULTS)

    def _outcome(self, what: str, faults: Sequence[str]) -> str:
        options = ("ok", *faults) if self.faults > self.faults_used else ("ok",)
        choice = self._choose(what, options)
        if choice != "ok":
            self.faults_used += 1
        return choice

    def after(self, what: str) -> None:
        """An effect took place: the process may die right here."""
        if self.crashes <= self.crashes_used:
            self.check_alive()
            return
        if self._choose(what, ("go on", "crash")) == "crash":
            self.crashes_used += 1
            self.stop(Crash(what))

    def stop(self, why: Stop) -> None:
        self.stopped = why
        raise why

    def siblings(self) -> list[int] | None:
        """The forced prefix of the next sequence of answers after this one, depth first
        (None: every sequence has been tried)."""
        for i in range(len(self.trace) - 1, -1, -1):
            chosen, of = self.trace[i]
            if chosen + 1 < of:
                return [c for c, _ in self.trace[:i]] + [chosen + 1]
        return None

    @staticmethod
    def is_done(outcome: str) -> bool:
        return outcome in DONE


class ReplayHand(Hand):
    """A hand that gives the answers named by ``choices`` (labels as ``Hand.labels`` writes
    them: ``register cred_0002: lost``, ``crash after append rotation.started``), in order, and
    the first option everywhere else."""

    def __init__(self, choices: Sequence[str], faults: int = 99, crashes: int = 99) -> None:
        super().__init__((), faults, crashes)
        self.choices = list(choices)

    def _choose(self, what: str, options: Sequence[str]) -> str:
        if self.stopped is not None:
            raise self.stopped
        wanted = self.choices[0] if self.choices else None
        index = 0
        for i, option in enumerate(options[1:], start=1):
            label = f"crash after {what}" if option == "crash" else f"{what}: {option}"
            if label == wanted:
                index = i
                self.choices.pop(0)
        self.trace.append((index, len(options)))
        if index:
            self.labels.append(wanted or "")
        return options[index]
