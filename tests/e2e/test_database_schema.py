"""Only ``orchestrator init`` creates or upgrades a schema (issue 6, defect 12, and defect 9's
newer schema).

A mistyped database URL used to be created on the spot by any command: ``verify`` printed
``ok: 0 events`` and left a new SQLite file, ``app list`` created 7 tables in a PostgreSQL
schema. Every other command, the daemon included, now says the database is not initialised and
creates nothing: no file, no folder, no table. A database whose schema is newer than the code
is refused by every command, ``init`` included, and left as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from events.sql import create_engine
from tests.helpers import Cli, assert_refused, dump_tables

COMMANDS = [
    pytest.param(("verify",), id="verify refuses"),
    pytest.param(("app", "list"), id="app list refuses"),
    pytest.param(("app", "register", "shop"), id="app register refuses"),
    pytest.param(("audit",), id="audit refuses"),
    pytest.param(("audit", "export"), id="audit export refuses"),
    pytest.param(("checkpoint", "--key", "cp.key", "--out", "typo"), id="checkpoint refuses"),
    pytest.param(("state", "shop"), id="state refuses"),
    pytest.param(("plan",), id="plan refuses"),
    pytest.param(("rotations",), id="rotations refuses"),
    pytest.param(("projections", "status"), id="projections status refuses"),
    pytest.param(("expire",), id="expire refuses"),
    pytest.param(("drift",), id="drift refuses"),
    pytest.param(("import", "--provider", "auth0-prod"), id="import refuses"),
    pytest.param(("daemon", "--once"), id="the daemon refuses to start"),
]


def _cli(url: str, tmp_path: Path) -> Cli:
    cli = Cli(url, tmp_path / "keystore", cwd=tmp_path, init=False)
    (tmp_path / "policies").mkdir(exist_ok=True)
    cli.env.update(ORCHESTRATOR_POLICIES=str(tmp_path / "policies"),
                   ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"))
    return cli


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_on_a_mistyped_sqlite_path_creates_no_file(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    path = tmp_path / "typo" / "orchestrator.db"
    cli = _cli(f"sqlite:///{path}", tmp_path)
    assert_refused(cli.run(*command), f"database sqlite:///{path} is not initialised: run "
                                      "orchestrator init")
    assert not path.exists() and not path.parent.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("command", [COMMANDS[0], COMMANDS[1], COMMANDS[3], COMMANDS[-1]])
def test_a_command_on_an_empty_postgresql_schema_creates_no_table(
        pg_url: str, tmp_path: Path, command: tuple[str, ...]) -> None:
    cli = _cli(pg_url, tmp_path)
    assert_refused(cli.run(*command), "is not initialised: run orchestrator init")
    assert dump_tables(pg_url) == {}


def test_init_creates_the_schema_then_the_commands_work(db_url: str, tmp_path: Path) -> None:
    cli = _cli(db_url, tmp_path)
    assert "(created)" in cli("init").stdout
    assert cli("verify").stdout.startswith("ok: 0 events")
    cli("app", "register", "shop")
    assert "shop" in cli("app", "list").stdout


def test_a_schema_newer_than_the_code_is_refused_and_left_alone(
        db_url: str, tmp_path: Path) -> None:
    """Even by init: an old orchestrator must not try to migrate a schema it does not know."""
    cli = _cli(db_url, tmp_path)
    cli("init")
    cli("app", "register", "shop")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        engine.dispose()
    before = dump_tables(db_url)
    for command in (("app", "list"), ("verify",), ("init",), ("daemon", "--once")):
        assert_refused(cli.run(*command), "is at schema 0099, newer than this orchestrator "
                                          "(0007): upgrade the orchestrator")
    assert dump_tables(db_url) == before
