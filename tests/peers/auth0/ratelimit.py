"""A token bucket per tenant (identity-providers.md §1): ``burst`` requests at once, refilled
at ``per_second``; the clock is the emulator's, so a frozen clock never refills.

Headers on every limited answer: ``x-ratelimit-limit`` (the burst), ``x-ratelimit-remaining``
(whole tokens left) and ``x-ratelimit-reset`` (UNIX epoch seconds when the bucket is full
again; UNCONFIRMED reading of "reset" for a token bucket). ``Retry-After`` (seconds until the
next token) only behind the ``retry_after`` switch: it is not documented for the Management API.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from tests.peers.auth0.clock import Clock
from tests.peers.auth0.config import RateLimit

__all__ = ["TOO_MANY_REQUESTS", "Decision", "TokenBucket"]

TOO_MANY_REQUESTS = {"statusCode": 429, "error": "Too Many Requests",
                     "message": "Global limit has been reached",
                     "errorCode": "too_many_requests"}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int

    def headers(self, with_retry_after: bool) -> dict[str, str]:
        headers = {"x-ratelimit-limit": str(self.limit),
                   "x-ratelimit-remaining": str(self.remaining),
                   "x-ratelimit-reset": str(self.reset)}
        if with_retry_after and not self.allowed:
            headers["retry-after"] = str(self.retry_after)
        return headers


class TokenBucket:
    def __init__(self, limit: RateLimit, clock: Clock) -> None:
        if limit.burst < 1 or limit.per_second <= 0:
            raise ValueError("a rate limit needs burst >= 1 and per_second > 0")
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens = float(limit.burst)
        self._at = clock.now()

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(float(self.limit.burst),
                               self._tokens + (now - self._at) * self.limit.per_second)
        self._at = max(self._at, now)

    def take(self) -> Decision:
        with self._lock:
            now = self.clock.now()
            self._refill(now)
            allowed = self._tokens >= 1.0
            if allowed:
                self._tokens -= 1.0
            return self._decision(allowed, now)

    def fill_ratio(self) -> float:
        with self._lock:
            self._refill(self.clock.now())
            return self._tokens / self.limit.burst

    def _decision(self, allowed: bool, now: float) -> Decision:
        rate = self.limit.per_second
        missing = self.limit.burst - self._tokens
        return Decision(
            allowed=allowed,
            limit=self.limit.burst,
            remaining=math.floor(self._tokens),
            reset=math.ceil(now + missing / rate),
            retry_after=max(1, math.ceil((1.0 - self._tokens) / rate)),
        )
