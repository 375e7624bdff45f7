"""One token bucket per Auth0 tenant, shared by every call of the process.

Auth0 rate-limits the Management API per tenant with a token bucket (Enterprise production:
burst 50, 16 requests/s; identity-providers.md section 1) and answers 429 once it is empty. A
fleet-wide rotation or an import of thousands of clients must run at that budget rather than
burst into 429s, so every call of the process to one tenant first takes a token here: from the
configured budget (``rateLimit`` of the IdentityProvider resource), or, when none is configured,
from what the tenant's own ``x-ratelimit-limit`` / ``-remaining`` / ``-reset`` headers say.

A caller *reserves* its token and then sleeps (outside the lock) until the token exists, so
concurrent callers are spaced out in arrival order without spinning. A 429 holds every caller
until the moment the tenant named (``Retry-After`` or ``x-ratelimit-reset``). Time comes from
an injected clock (epoch seconds: ``x-ratelimit-reset`` is one) and waits go through an injected
``sleep``, so tests move time instead of waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Pacer", "RateLimit", "tenant_pacer"]

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs perSecond > 0 and burst >= 1")


class Pacer:
    """A thread-safe token bucket. ``limit`` None: learned from the tenant's headers (no
    pacing until the first answer says how much is left)."""

    def __init__(self, limit: RateLimit | None, clock: Clock, sleep: Sleep) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.configured = limit is not None
        self._rate: float | None = limit.per_second if limit else None
        self._configured_rate = self._rate
        self._burst: float | None = float(limit.burst) if limit else None
        self._tokens: float = float(limit.burst) if limit else 0.0
        self._at = clock()
        self._hold_until = 0.0
        self.waited = 0.0  # seconds spent waiting for tokens (reported by tests and benches)

    @property
    def limit(self) -> RateLimit | None:
        with self._lock:
            rate = self._configured_rate if self.configured else self._rate
            if rate is None or self._burst is None:
                return None
            return RateLimit(rate, int(self._burst))

    def configure(self, limit: RateLimit | None) -> None:
        """A changed budget (the resource was edited): takes effect from now."""
        with self._lock:
            if limit is None:
                self.configured = False
                return
            self._refill(self._clock())
            self.configured = True
            self._rate, self._burst = limit.per_second, float(limit.burst)
            self._configured_rate = limit.per_second
            self._tokens = min(self._tokens, self._burst)

    def _refill(self, now: float) -> None:
        if self._rate is not None and self._burst is not None and now > self._at:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = max(self._at, now)

    def acquire(self) -> float:
        """Take one token, sleeping until it exists; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            ready = max(now, self._hold_until)
            if self._rate is not None:
                self._tokens -= 1.0
                if self._tokens < 0:  # refilling from _at (now, or the end of a hold)
                    ready = max(ready, self._at + -self._tokens / self._rate)
        wait = ready - now
        if wait > 0:
            self._sleep(wait)
            with self._lock:
                self.waited += wait
        return max(wait, 0.0)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn from an answer's ``x-ratelimit-*`` headers. The tenant's count of what is left
        is the truth (another process may share the tenant). Without a configured budget, the
        burst and the refill rate are estimated from them; with one, an empty bucket at the
        tenant slows the pace to the estimate when that is lower (the budget is too generous)."""
        limit = _number(headers.get("x-ratelimit-limit"))
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset = _number(headers.get("x-ratelimit-reset"))
        if limit is None or remaining is None or limit < 1:
            return
        with self._lock:
            now = self._clock()
            self._refill(now)
            estimate = ((limit - remaining) / (reset - now)
                        if reset is not None and reset > now and remaining < limit else None)
            if not self.configured:
                first = self._rate is None
                self._burst = limit
                self._rate = estimate or self._rate
                if first:  # no rate yet (no pacing), or the first one: start from the count
                    self._tokens = remaining
                    return
            elif estimate is not None and self._configured_rate is not None:
                self._rate = (min(self._configured_rate, estimate) if remaining < 1
                              else self._configured_rate)
            self._tokens = min(self._tokens, remaining)

    def hold(self, seconds: float) -> None:
        """A 429: nobody calls the tenant for ``seconds``; the bucket is empty."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._hold_until = max(self._hold_until, now + max(seconds, 0.0))
            self._tokens = min(self._tokens, 0.0)
            self._at = max(self._at, self._hold_until)  # nothing refills before the tenant does


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


_PACERS: dict[tuple[str, Clock, Sleep], Pacer] = {}
_PACERS_LOCK = threading.Lock()


def tenant_pacer(tenant: str, limit: RateLimit | None, clock: Clock, sleep: Sleep) -> Pacer:
    """The process's one pacer of ``tenant`` (its domain): every provider object built for the
    tenant, whenever it is built (resources are reloaded), shares it. A changed configured
    budget reconfigures it. (Keyed by the clock and sleep too: a test's virtual time gets a
    pacer of its own.)"""
    key = (tenant.lower(), clock, sleep)
    with _PACERS_LOCK:
        pacer = _PACERS.get(key)
        if pacer is None:
            pacer = _PACERS[key] = Pacer(limit, clock, sleep)
            return pacer
    if limit != (pacer.limit if pacer.configured else None):
        pacer.configure(limit)
    return pacer
