"""An Auth0 emulator and an orchestrator wired to it through the Auth0 adapter, in process.

``Site`` wires the production pieces over an in-memory log (``bootstrap.in_memory``) with an
``Auth0Provider`` named ``auth0-test`` pointing at the emulator. One virtual clock serves both
sides: the orchestrator's ``now``, the adapter's wall clock (assertion dates, token expiry, the
pacer) and the emulator's clock; the adapter's ``sleep`` moves it. Nothing waits for real.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from events.state import AppState, Credential
from orchestrator.adapters.crypto import Cryptography, PrimePairKeys
from orchestrator.adapters.providers.auth0 import Auth0Provider, RetryPolicy
from orchestrator.bootstrap import in_memory
from orchestrator.domain.rotation import Params, Reason, Step
from tests.peers.auth0 import Auth0Emulator

__all__ = ["NAME", "Site"]

NAME = "auth0-test"


class Site:
    def __init__(self, emu: Auth0Emulator, key_source: PrimePairKeys, *,
                 rate_limit: tuple[float, int] | None = None, mtls_edge: bool = True,
                 seed: int = 7, transport: httpx.BaseTransport | None = None,
                 secret: str | None = None, attempts: int = 4) -> None:
        self.emu = emu
        self.slept: list[float] = []
        self.crypto = Cryptography(key_source)
        self._options: dict[str, Any] = {
            "rate_limit": rate_limit, "mtls_edge": mtls_edge, "transport": transport,
            "secret": secret, "retry": RetryPolicy(attempts=attempts, rng=random.Random(seed))}
        self.core = in_memory(self.now, provider=self._make, crypto=self.crypto,
                              actor="cli:test", identity_providers=lambda: {NAME: self.provider})
        self.service, self.rotator, self.keystore = (self.core.service, self.core.rotator,
                                                     self.core.keystore)
        provider = self.core.provider.local
        assert isinstance(provider, Auth0Provider)
        self.provider = provider

    def _make(self, state_of: Callable[[str], AppState], keystore: Any) -> Auth0Provider:
        return self.build(state_of, keystore)

    def build(self, state_of: Callable[[str], AppState] | None = None, keystore: Any = None,
              **overrides: Any) -> Auth0Provider:
        """An Auth0Provider on the emulator (``overrides``: constructor keywords)."""
        options = {**self._options, **overrides}
        management = self.emu.config.management
        return Auth0Provider(
            NAME, domain=self.emu.domain, client_id=management.client_id,
            client_secret=options.pop("secret") or management.client_secret,
            base_url=self.emu.base_url,
            state_of=state_of or self.service.load, keystore=keystore or self.keystore,
            wall_clock=self.emu.clock.now, sleep=self.sleep, **options)

    # --- one clock ------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.emu.clock.now_datetime()

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.emu.clock.advance(seconds)

    def advance(self, by: timedelta) -> None:
        self.emu.clock.advance(by.total_seconds())

    # --- the two sides ---------------------------------------------------------------------------

    def client(self, name: str, **spec: Any) -> str:
        """A client at the tenant (a client-secret client by default); its id."""
        return self.emu.seed_client({"name": name, **spec}).client_id

    def app(self, name: str, client_id: str) -> str:
        self.service.register_app(name, {}, provider=NAME, client_id=client_id)
        return name

    def state(self, app: str) -> AppState:
        return self.service.load(app)

    def credential(self, app: str, credential_id: str) -> Credential:
        return self.state(app).credentials[credential_id]

    def remote(self, client_id: str) -> dict[str, Any]:
        """The client as the tenant holds it (with pool and secrets): the emulator's snapshot."""
        return next(c for c in self.emu.snapshot()["clients"] if c["client_id"] == client_id)

    def attached(self, client_id: str, slot: str) -> list[str]:
        client = self.remote(client_id)
        if slot == "signed_request_object":
            return [ref["id"] for ref in (client.get(slot) or {}).get("credentials", [])]
        return list((client.get("client_authentication_methods") or {}).get(slot, []))

    def pool(self, client_id: str) -> list[dict[str, Any]]:
        return list(self.remote(client_id)["credentials"])

    def count(self, route: str | None = None, status: int | str | None = None) -> int:
        return self.emu.counters.count(route, status)

    # --- rotations -------------------------------------------------------------------------------

    def rotate(self, app: str, params: Params, reason: Reason = Reason.MANUAL) -> str:
        """A whole rotation through the real rotator, jumping over each wait; its id."""
        rid = self.rotator.start(app, params.usage, reason)
        assert rid is not None
        for _ in range(8):
            rotation = self.state(app).rotations[rid]
            if rotation.status.value != "running":
                break
            out = self.rotator.advance(app, rid, params)
            if out.failed:
                rotation = self.state(app).rotations[rid]
                if out.parked:
                    raise AssertionError(f"parked: {rotation.last_error}")
                assert rotation.next_attempt_at is not None
                self.advance(max(rotation.next_attempt_at - self.now(), timedelta(0)))
                continue
            if out.last.step is Step.WAIT and out.last.not_before is not None:
                self.advance(max(out.last.not_before - self.now(), timedelta(0)))
        status = self.state(app).rotations[rid].status.value
        assert status == "completed", (status, self.state(app).rotations[rid].last_error)
        return rid
