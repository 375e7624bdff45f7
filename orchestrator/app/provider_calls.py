"""Each call made of an identity provider, told with its outcome to an observer (the daemon's
``orchestrator_provider_requests_total``): ``ok``; ``unavailable`` when it could not be reached
(``ProviderUnavailable``); ``error`` for anything else it raised (a refusal, a client missing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from orchestrator.domain.identity_provider import ProviderUnavailable

__all__ = ["Observe", "observed"]

T = TypeVar("T")
Observe = Callable[[str, str], None]  # (provider, outcome)


def observed(provider: str, call: Callable[[], T], observe: Observe) -> T:
    """``call()``, then ``observe(provider, outcome)``; what it raised is raised again."""
    try:
        result = call()
    except ProviderUnavailable:
        observe(provider, "unavailable")
        raise
    except Exception:
        observe(provider, "error")
        raise
    observe(provider, "ok")
    return result
