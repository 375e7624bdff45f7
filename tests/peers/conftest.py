"""Fixtures for the test peers: real identity providers the orchestrator is tested against.

``oidc_provider`` (node ``oidc-provider``) is shared by every test folder:
tests/support/oidc_peer.py, imported by tests/conftest.py.

``emulator`` is the Auth0 emulator (tests/peers/auth0) in-process on a frozen ``clock``, without
a Management API rate limit (a frozen clock never refills the bucket); ``api`` is a Management
API session whose token came from its ``/oauth/token``; ``keys`` are four RSA-2048 keys made
once per session.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import NOW
from tests.helpers import rsa_key
from tests.peers.auth0 import Auth0Emulator, Clock
from tests.peers.kit import api_session


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def emulator(clock: Clock) -> Iterator[Auth0Emulator]:
    with Auth0Emulator({"management_rate": None}, clock=clock) as emu:
        yield emu


@pytest.fixture
def api(emulator: Auth0Emulator) -> Iterator[httpx.Client]:
    with api_session(emulator) as session:
        yield session


@pytest.fixture(scope="session")
def keys() -> list[rsa.RSAPrivateKey]:
    """Four RSA-2048 keys (generation is the slow part; made once)."""
    return [rsa_key() for _ in range(4)]
