"""Fixtures shared by the integration tests: the Auth0 emulator and an orchestrator wired to it
(``tests/support/auth0_site.py``): ``key_source``, ``ca``, ``emu``, ``site``; and ``engine``, a
migrated database of ``db_url`` (SQLite and PostgreSQL)."""

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from events.sql import create_engine, upgrade
from tests.support.auth0_site import ca, emu, key_source, site

__all__ = ["ca", "emu", "engine", "key_source", "site"]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()
