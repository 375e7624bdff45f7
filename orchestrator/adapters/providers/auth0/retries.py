"""Retries within one call to Auth0: a few attempts with backoff and jitter, then
``ProviderUnavailable`` so the rotation's own backoff (minutes to hours) takes over.

What is retried is a whole *operation*, not one request: a read-modify-write (GET the client,
PATCH a slot) is read again before it is written again, and a credential upload lists the
client's pool before it uploads again (a lost answer may hide a success). Worth another attempt
(``Transient``): 408, 409 (seen under rate limiting), 429, 5xx, a connection error, a timeout, a
TLS failure, a malformed answer. A 429 has already held the tenant's pacer until the moment the
tenant named, so its retry adds only a little jitter; one asking for longer than ``max_wait``
ends the call at once. The jitter's random source is injectable (seeded in tests). A retry is
logged at info (``auth0_call_retried``): the daemon shows it, a command's one error line is not
preceded by it; what finally fails is the caller's to say.

A tenant that failed every attempt of a call (down, or answering 5xx to everything: not a 429,
which the pacer waits out) gets one attempt per call until a call succeeds again. The attempts
ride out a blip; against an outage of hours they only hold the daemon's tick: each call due
would wait its backoffs (about 2 s) before failing, so a tick with a hundred steps due would
take minutes, its heartbeat silent and the next expiry late. With one attempt each, the calls
fail at once, each step is recorded failed and backs off on the rotation's own schedule, and
the first call that gets through brings the attempts back.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import ProviderUnavailable

__all__ = ["RetryPolicy", "Transient"]

log = structlog.get_logger("orchestrator.auth0")
T = TypeVar("T")


class Transient(ProviderUnavailable):
    """A failure another attempt may get past; ``wait``: what the tenant asked (a 429)."""

    def __init__(self, message: str, *, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


@dataclass
class RetryPolicy:
    attempts: int = 4
    base: float = 0.5  # seconds before the second attempt (doubled each time, jittered)
    cap: float = 8.0
    max_wait: float = 30.0  # a 429 asking for longer ends the call
    rng: random.Random = field(default_factory=random.Random)
    failing: bool = field(default=False, init=False)  # the last call failed every attempt

    def delay(self, attempt: int, failure: Transient) -> float | None:
        """Seconds before attempt ``attempt + 1``; None: give up now."""
        if failure.wait is not None:
            if failure.wait > self.max_wait:
                return None
            return self.rng.uniform(0.0, self.base / 4)  # the pacer holds until the tenant's time
        backoff = min(self.cap, self.base * 2 ** (attempt - 1))
        return self.rng.uniform(backoff / 2, backoff)

    def run(self, operation: Callable[[], T], what: str, sleep: Callable[[float], None]) -> T:
        budget = 1 if self.failing else self.attempts
        attempt = 0
        while True:
            attempt += 1
            try:
                result = operation()
            except Transient as failure:
                delay = self.delay(attempt, failure) if attempt < budget else None
                if delay is None:
                    self.failing = failure.wait is None  # a 429 is an answer: the tenant is up
                    tried = f"gave up after {attempt} attempt{'s' if attempt > 1 else ''}"
                    if budget < self.attempts:
                        tried += ": the call before failed every attempt"
                    raise ProviderUnavailable(f"Auth0 {what}: {failure} ({tried}; the rotation "
                                              "retries later)") from None
                log.info("auth0_call_retried", call=what, attempt=attempt,
                            error=str(failure), wait=round(delay, 3))
                sleep(delay)
            except ProviderError as refused:
                if not isinstance(refused, ProviderUnavailable):
                    self.failing = False  # refused: the tenant answers
                raise
            else:
                self.failing = False
                return result
