"""Shared fixtures: real SQLite files and real PostgreSQL schemas, a fixed NOW.

PostgreSQL tests use the server named by ORCHESTRATOR_TEST_PG (default: the local server's
``test`` database). Each test gets a fresh schema, selected through the URL's ``options``
(``-csearch_path=...``), so the same URL works for the library and for the installed command
line. Set ORCHESTRATOR_TEST_PG=skip to skip them on a machine without PostgreSQL; CI never does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
PG_BASE = os.environ.get(
    "ORCHESTRATOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'orchestrator.db'}"


def _pg_schema_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    if PG_BASE == "skip":
        pytest.skip("ORCHESTRATOR_TEST_PG=skip")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE.replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on a real SQLite file and on a real PostgreSQL schema."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return request.getfixturevalue(name)
