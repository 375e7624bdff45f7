"""Shared fixtures: real SQLite files and real PostgreSQL schemas, a fixed NOW.

PostgreSQL tests use the server named by ORCHESTRATOR_TEST_PG (default: the local server's
``test`` database). Each test gets a fresh schema, selected through the URL's ``options``
(``-csearch_path=...``), so the same URL works for the library and for the installed command
line. Set ORCHESTRATOR_TEST_PG=skip to skip them on a machine without PostgreSQL; CI never does.

``user_python`` is the interpreter of a user's installation: the wheel installed without extras
into a virtual environment of its own (``.ci/user-install``). .ci/run builds it once and names
it in ORCHESTRATOR_USER_PYTHON; without that variable the first test that needs it builds one
for the whole run (every xdist worker shares it).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.oidc_peer import oidc_provider  # noqa: F401  (one per session, every folder)

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on ``db_url`` with the schema at head."""
    from events.sql import create_engine, upgrade

    engine = create_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def user_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bin/python`` of a virtual environment holding the wheel and only its declared runtime
    dependencies: ORCHESTRATOR_USER_PYTHON, or one built here once for the whole run."""
    configured = os.environ.get("ORCHESTRATOR_USER_PYTHON")
    if configured:
        python = Path(configured).absolute()  # not resolve(): a venv's python is a symlink
        assert python.is_file(), f"ORCHESTRATOR_USER_PYTHON={configured}: no such interpreter"
        return python
    # Under xdist each worker has its own basetemp below a shared one: build there, once.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    target = shared / "user-install"
    python = target / "venv" / "bin" / "python"
    done = target / "installed"
    with open(shared / "user-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait here for the first one
        if not done.exists():
            built = subprocess.run(
                ["bash", str(ROOT / ".ci" / "user-install"), str(target)],
                env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
                timeout=600, check=False,
            )
            assert built.returncode == 0, (
                f".ci/user-install failed (exit {built.returncode})\n--- stdout\n"
                f"{built.stdout[-4000:]}--- stderr\n{built.stderr[-4000:]}")
            done.touch()
    return python


DURATIONS = ROOT / "tests" / "durations.json"  # seconds a test took in a whole run (>= 1 s)


def _expected_seconds(item: pytest.Item, known: dict[str, float]) -> float:
    """How long ``item`` is expected to take: as measured, or a guess for a test not measured
    yet (one that starts processes is long, any other short)."""
    if item.nodeid in known:
        return known[item.nodeid]
    return 20.0 if item.get_closest_marker("slow") or "/e2e/" in item.nodeid else 0.1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the longest tests first, dealt in turn to every worker's share.

    The worksteal scheduler first hands each worker a contiguous slice of the collection, and an
    idle worker then steals from the end of another's queue. In collection order the long
    end-to-end tests sat together in one slice, and a run ended with one worker going through
    long tests alone while the other idled. Longest first on every worker (the classic
    longest-processing-time rule), what is left to steal at the end is short. The expected
    times are tests/durations.json (regenerate: ``python -m tests.support.durations
    JUNIT.xml`` after a run with ``--junitxml``); only the order depends on them, never a
    verdict. The order is a pure function of the collection, the same on every worker, as
    xdist requires."""
    workerinput = getattr(config, "workerinput", None)
    workers = int(workerinput["workercount"]) if workerinput else 1
    if workers < 2:
        return
    known = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    ranked = sorted(items, key=lambda item: -_expected_seconds(item, known))  # stable
    items[:] = [item for k in range(workers) for item in ranked[k::workers]]
