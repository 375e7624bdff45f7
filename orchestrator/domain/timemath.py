"""Time arithmetic that saturates instead of raising ``OverflowError``. Pure.

``datetime`` stops at year 9999 and ``timedelta`` at 999,999,999 days. A credential may
legitimately expire at 9999-12-31T23:59:59Z, and "expiry + retention" or "doubling backoff"
must then mean "never, as far as this program can tell", not a crash in every tick. So sums
that reach past the end of time stop at the end of time (``datetime.max`` in UTC), and a
doubling stops at its cap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["END_OF_TIME", "START_OF_TIME", "doubled", "earlier", "later"]

END_OF_TIME = datetime.max.replace(tzinfo=UTC)
START_OF_TIME = datetime.min.replace(tzinfo=UTC)


def later(at: datetime, delta: timedelta) -> datetime:
    """``at + delta``, or the end (start) of time where that lies beyond it."""
    try:
        return at + delta
    except OverflowError:
        return END_OF_TIME if delta > timedelta(0) else START_OF_TIME


def earlier(at: datetime, delta: timedelta) -> datetime:
    """``at - delta``, saturating like ``later``."""
    try:
        return at - delta
    except OverflowError:
        return START_OF_TIME if delta > timedelta(0) else END_OF_TIME


def doubled(first: timedelta, times: int, cap: timedelta) -> timedelta:
    """``min(first * 2**times, cap)`` without computing a product that overflows."""
    if times <= 0 or first >= cap:
        return min(first, cap)
    if times >= (cap // first).bit_length():  # 2**times > cap / first
        return cap
    product: timedelta = first * 2**times
    return min(product, cap)
