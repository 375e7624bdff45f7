"""The ``oidc_provider`` fixture: node ``oidc-provider`` (tests/peers/oidc), one per test session
(per xdist worker) for every test folder (tests/conftest.py imports it), started with
``debug=True`` so that ``last_refusal()`` tells why it refused something; its tests are skipped,
saying why, where Node.js or the installed package is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.oidc import OidcPeer, node_available, start_oidc_provider

__all__ = ["oidc_provider"]


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcPeer]:
    available, why = node_available()
    if not available:
        pytest.skip(why)
    with start_oidc_provider(tmp_path_factory.mktemp("oidc-provider"), debug=True) as peer:
        yield peer
