"""Fixtures for the test peers: real identity providers the orchestrator is tested against.

``oidc_provider`` is node ``oidc-provider`` (tests/peers/oidc), one per test session (per xdist
worker), started with ``debug=True`` so that ``last_refusal()`` tells why it refused something;
its tests are skipped, saying why, where Node.js or the installed package is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.oidc import OidcPeer, node_available, start_oidc_provider


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcPeer]:
    available, why = node_available()
    if not available:
        pytest.skip(why)
    with start_oidc_provider(tmp_path_factory.mktemp("oidc-provider"), debug=True) as peer:
        yield peer
