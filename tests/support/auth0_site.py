"""An Auth0 emulator and an orchestrator wired to it through the Auth0 adapter, in process.

The fixtures ``key_source``, ``ca``, ``emu`` and ``site`` are imported by the test modules that
use them (``from tests.support.auth0_site import emu, site``). ``Site`` wires the production pieces over an in-memory log (``bootstrap.in_memory``) with an
``Auth0Provider`` named ``auth0-test`` pointing at the emulator. One virtual clock serves both
sides: the orchestrator's ``now``, the adapter's wall clock (assertion dates, token expiry, the
pacer) and the emulator's clock; the adapter's ``sleep`` moves it. Nothing waits for real.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from events import catalog as ev
from events.state import AppState, Credential
from orchestrator.adapters.crypto import Cryptography, PrimePairKeys
from orchestrator.adapters.providers.auth0 import Auth0Provider, RetryPolicy
from orchestrator.app.ports import Delivery
from orchestrator.app.service import CredentialSource
from orchestrator.bootstrap import in_memory
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import Proof, ProviderUnavailable, SecretRotation
from orchestrator.domain.rotation import Params, Reason, Step
from tests.conftest import NOW
from tests.helpers import certificate, rsa_key
from tests.peers.auth0 import Auth0Emulator, Clock

__all__ = ["NAME", "Site", "accepted", "ca", "emu", "emulator", "key", "key_source",
           "pkjwt_app", "proof", "registered", "site"]

NAME = "auth0-test"
PKJWT = "private_key_jwt"
DAY = timedelta(days=1)
CA_DN = "CN=Test Issuing CA,O=Acme,C=DE"


class Site:
    def __init__(self, emu: Auth0Emulator, key_source: PrimePairKeys, *,
                 rate_limit: tuple[float, int] | None = None, mtls_edge: bool = True,
                 seed: int = 7, transport: httpx.BaseTransport | None = None,
                 secret: str | None = None, attempts: int = 4,
                 secret_rotation: SecretRotation = SecretRotation.PATCH,
                 delivery: Delivery | None = None) -> None:
        self.emu = emu
        self.slept: list[float] = []
        self.crypto = Cryptography(key_source)
        self._options: dict[str, Any] = {
            "rate_limit": rate_limit, "mtls_edge": mtls_edge, "transport": transport,
            "secret": secret, "retry": RetryPolicy(attempts=attempts, rng=random.Random(seed)),
            "secret_rotation": secret_rotation}
        self.core = in_memory(self.now, provider=self._make, crypto=self.crypto,
                              actor="cli:test", identity_providers=lambda: {NAME: self.provider},
                              delivery=delivery)
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
        return self.finish(app, rid, params)

    def finish(self, app: str, rid: str, params: Params) -> str:
        """Rotation ``rid`` driven to its end, jumping over each wait and backoff; its id."""
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


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key_source() -> PrimePairKeys:
    """One pool of primes per module: real RSA keys in microseconds once warm."""
    return PrimePairKeys()


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    """A CA's certificate and key (PEM) that issues mTLS certificates by subject DN."""
    key = rsa_key()
    pem = certificate(key, CA_DN, not_before=NOW - 10 * DAY, not_after=NOW + 3650 * DAY,
                      ca=True)
    return pem, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())


def emulator(**config: Any) -> Auth0Emulator:
    """An emulator on a frozen clock at NOW; no rate limit unless the config says one."""
    config.setdefault("management_rate", None)
    return Auth0Emulator(config, clock=Clock(NOW))


@pytest.fixture
def emu() -> Iterator[Auth0Emulator]:
    with emulator() as running:
        yield running


@pytest.fixture
def site(emu: Auth0Emulator, key_source: PrimePairKeys) -> Site:
    return Site(emu, key_source)


# --- helpers -------------------------------------------------------------------------------------


def pkjwt_app(site: Site, name: str = "payments") -> tuple[str, str]:
    """A client-secret client at the tenant with no grant, and the app bound to it."""
    client_id = site.client(name)
    return site.app(name, client_id), client_id


def key(site: Site, app: str, usage: str = PKJWT, alg: str | None = None,
        **options: Any) -> Credential:
    """A new key (or self-signed certificate, for mtls) of the app, in the log and keystore."""
    return site.service.add_credential(app, usage, CredentialSource(generate=True), alg=alg,
                                       **options)


def registered(site: Site, app: str, usage: str = PKJWT, **options: Any) -> Credential:
    """A new key of the app, uploaded, and its provider id recorded as the rotator does."""
    cred = key(site, app, usage, **options)
    provider_id = site.provider.register(app, cred)
    assert provider_id is not None
    site.service.append_decided(app, lambda s: ([ev.CredentialRegistered(
        credential_id=cred.id, provider=NAME, provider_credential_id=provider_id)],
        site.now()))
    return site.credential(app, cred.id)


def proof(site: Site, app: str, cred: Credential) -> Proof:
    return Proof(client_id=site.state(app).provider_client_id, usage=cred.usage,
                 credential=cred, private_key_der=site.keystore.get(cred.id))


def accepted(site: Site, app: str, cred: Credential) -> bool:
    """Whether Auth0 lets the app in with ``cred`` now (the adapter's test at the token
    endpoint); a transport failure is not an answer."""
    try:
        site.provider.authenticate(app, proof(site, app, cred), site.now())
        return True
    except ProviderError as refused:
        assert not isinstance(refused, ProviderUnavailable), refused
        return False
