"""The Auth0 HTTP session's own values: nothing it keeps shows a token in a repr."""

from __future__ import annotations

from orchestrator.adapters.providers.auth0.client import _Token


def test_a_cached_management_token_is_not_in_its_repr() -> None:
    """The cache is a module global: a debugger, a crash report or a stray log of it must not
    show the tenant's Management API token."""
    assert "eyJ-management-token" not in repr(_Token("eyJ-management-token", 1.0))
