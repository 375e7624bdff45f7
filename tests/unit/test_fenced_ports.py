"""The daemon's outside world behind the lease: once ``confirm`` says the lease is lost, no
delivery, keystore write or provider call happens (reads still pass)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from events.state import AppState
from orchestrator.adapters.keystore import MemoryKeystore
from orchestrator.adapters.providers.router import ProviderRouter
from orchestrator.app.fencing import FencedDelivery, FencedHooks, FencedKeystore, LeaseLost
from orchestrator.domain.hooks import HookResult


class Lease:
    def __init__(self) -> None:
        self.lost = False
        self.asked = 0

    def confirm(self) -> None:
        self.asked += 1
        if self.lost:
            raise LeaseLost("another daemon took the lease")


class Delivery:
    def __init__(self) -> None:
        self.delivered: list[str] = []

    def deliver(self, app: str, usage: str, files: Mapping[str, bytes]) -> Path:
        self.delivered.append(app)
        return Path(app)


class Provider:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def activate(self, app: str, credential_id: str) -> None:
        self.calls.append(credential_id)


def test_a_delivery_after_the_loss_is_not_made() -> None:
    lease, inner = Lease(), Delivery()
    fenced = FencedDelivery(inner, lease.confirm)
    fenced.deliver("a", "private_key_jwt", {})
    lease.lost = True
    with pytest.raises(LeaseLost):
        fenced.deliver("b", "private_key_jwt", {})
    assert inner.delivered == ["a"] and lease.asked == 2


class Hooks:
    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, command: Sequence[str], env: Mapping[str, str],
            timeout: timedelta) -> HookResult:
        self.ran.append(command[0])
        return HookResult(exit_code=0, output="")


def test_a_delivery_hook_after_the_loss_does_not_run() -> None:
    lease, inner = Lease(), Hooks()
    fenced = FencedHooks(inner, lease.confirm)
    fenced.run(["./reload-a"], {}, timedelta(seconds=5))
    lease.lost = True
    with pytest.raises(LeaseLost):
        fenced.run(["./reload-b"], {}, timedelta(seconds=5))
    assert inner.ran == ["./reload-a"] and lease.asked == 2


def test_keystore_writes_after_the_loss_are_refused_and_reads_pass() -> None:
    lease, inner = Lease(), MemoryKeystore()
    fenced = FencedKeystore(inner, lease.confirm)
    fenced.put("k1", b"one")
    lease.lost = True
    for write in (lambda: fenced.put("k2", b"two"), lambda: fenced.put_new("k3", b"three"),
                  lambda: fenced.delete("k1")):
        with pytest.raises(LeaseLost):
            write()
    assert fenced.get("k1") == b"one" and fenced.ids() == ["k1"] == inner.ids()


def test_a_provider_call_after_the_loss_is_not_made() -> None:
    lease, local = Lease(), Provider()
    router = ProviderRouter(lambda app: AppState(app=app), local,  # type: ignore[arg-type]
                            guard=lease.confirm)
    router.activate("a", "cred_1")
    lease.lost = True
    with pytest.raises(LeaseLost):
        router.activate("a", "cred_2")
    assert local.calls == ["cred_1"]
