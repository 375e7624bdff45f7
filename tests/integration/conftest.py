"""Fixtures shared by the integration tests: the Auth0 emulator and an orchestrator wired to it
(``tests/support/auth0_site.py``): ``key_source``, ``ca``, ``emu``, ``site``."""

from tests.support.auth0_site import ca, emu, key_source, site

__all__ = ["ca", "emu", "key_source", "site"]
