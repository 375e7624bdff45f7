"""Fencing: a leader that lost its lease makes no further side effect.

The daemon wires its outside world through these: every delivery, delivery hook and keystore write is
preceded by ``confirm`` (the lease's cheap check, ``Lease.confirm``), which raises
``LeaseLost`` once another daemon has taken over; the provider router asks the same before each
provider call (``ProviderRouter(guard=...)``), and the event store checks the leader epoch
inside each append's transaction (``events.epoch``), which is the fence that holds even for a
process paused between its check and its write. ``LeaseLost`` is no ``OrchestratorError``: no
step records it as a failure, it ends the tick, and the daemon goes back to standby.

The command line's writers are not leaders and are not fenced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from events.store import LeaseLost
from orchestrator.app.ports import Delivery, HookRunner, Keystore
from orchestrator.domain.hooks import HookResult

__all__ = ["FencedDelivery", "FencedHooks", "FencedKeystore", "LeaseLost"]


class FencedDelivery:
    """``Delivery``, confirming the lease before each delivery."""

    def __init__(self, inner: Delivery, confirm: Callable[[], None]) -> None:
        self.inner = inner
        self._confirm = confirm

    def deliver(self, app: str, usage: str, files: Mapping[str, bytes]) -> Path:
        self._confirm()
        return self.inner.deliver(app, usage, files)


class FencedHooks:
    """``HookRunner``, confirming the lease before each hook runs (a hook acts outside: it
    pushes the delivered credential somewhere, or tells the application to reload)."""

    def __init__(self, inner: HookRunner, confirm: Callable[[], None]) -> None:
        self.inner = inner
        self._confirm = confirm

    def run(self, command: Sequence[str], env: Mapping[str, str],
            timeout: timedelta) -> HookResult:
        self._confirm()
        return self.inner.run(command, env, timeout)


class FencedKeystore:
    """``Keystore``, confirming the lease before each write or delete; reads pass."""

    def __init__(self, inner: Keystore, confirm: Callable[[], None]) -> None:
        self.inner = inner
        self._confirm = confirm

    def put(self, item_id: str, data: bytes) -> None:
        self._confirm()
        self.inner.put(item_id, data)

    def put_new(self, item_id: str, data: bytes) -> bytes:
        self._confirm()
        return self.inner.put_new(item_id, data)

    def get(self, item_id: str) -> bytes | None:
        return self.inner.get(item_id)

    def delete(self, item_id: str) -> None:
        self._confirm()
        self.inner.delete(item_id)

    def ids(self) -> list[str]:
        return self.inner.ids()
