"""A provider that fails, times out, or succeeds late on command: for tests and rehearsals.

``fail_next(method, times)`` makes the next calls raise without doing anything;
``timeout_next(method, times)`` the same with a timeout error; ``late_next(method, times)``
does the work and *then* raises a timeout, as a real network call can (the caller must find on
its repeat that the work was done). ``rate`` fails a deterministic pseudo-random share of all
calls (seeded), for soak tests of the daemon.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime
from typing import Any

from events.state import Credential
from orchestrator.app.ports import Provider
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import Capabilities, Proof, ProviderUnavailable

__all__ = ["FaultyProvider", "ProviderTimeout"]


class ProviderTimeout(ProviderUnavailable):
    """The provider did not answer in time (the call may or may not have taken effect)."""


class FaultyProvider:
    def __init__(self, inner: Provider, rate: float = 0.0, seed: int = 0) -> None:
        self.inner = inner
        self.rate = rate
        self._random = random.Random(seed)
        self._plans: dict[str, list[str]] = defaultdict(list)
        self.calls: list[str] = []

    def fail_next(self, method: str, times: int = 1) -> None:
        self._plans[method].extend(["fail"] * times)

    def timeout_next(self, method: str, times: int = 1) -> None:
        self._plans[method].extend(["timeout"] * times)

    def late_next(self, method: str, times: int = 1) -> None:
        self._plans[method].extend(["late"] * times)

    def heal(self) -> None:
        self._plans.clear()
        self.rate = 0.0

    def _call(self, method: str, *args: Any) -> Any:
        self.calls.append(method)
        plan = self._plans[method].pop(0) if self._plans[method] else None
        if plan is None and self.rate and self._random.random() < self.rate:
            plan = "fail"
        if plan == "fail":
            raise ProviderError(f"provider: {method} failed (injected)")
        if plan == "timeout":
            raise ProviderTimeout(f"provider: {method} timed out (injected)")
        result = getattr(self.inner, method)(*args)
        if plan == "late":
            raise ProviderTimeout(f"provider: {method} answered too late (injected)")
        return result

    def capabilities(self, app: str) -> Capabilities:
        return self.inner.capabilities(app)

    def metadata(self, app: str) -> dict[str, str]:
        return self.inner.metadata(app)

    def register(self, app: str, credential: Credential) -> str | None:
        result: str | None = self._call("register", app, credential)
        return result

    def activate(self, app: str, credential_id: str) -> None:
        self._call("activate", app, credential_id)

    def deactivate(self, app: str, credential_id: str) -> None:
        self._call("deactivate", app, credential_id)

    def remove(self, app: str, credential_id: str) -> None:
        self._call("remove", app, credential_id)

    def set_secret(self, app: str, version: int, secret: str,
                   previous_valid_until: datetime | None) -> str | None:
        made: str | None = self._call("set_secret", app, version, secret, previous_valid_until)
        return made

    def authenticate(self, app: str, proof: Proof, at: datetime) -> str | None:
        result: str | None = self._call("authenticate", app, proof, at)
        return result
