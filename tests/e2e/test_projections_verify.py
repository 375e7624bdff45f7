"""``orchestrator projections verify`` (and ``verify``) rebuild the read model in memory from the
log and compare it with the tables: clean is exit 0, a row edited with raw SQL is named (table,
row, app, column, both values) with exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from events.sql import create_engine
from tests.helpers import Cli, assert_refused


def _edit(db_url: str, statement: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text(statement)).rowcount == 1
    finally:
        engine.dispose()


def test_an_edited_read_model_row_is_found_and_named(db_url: str, tmp_path: Path) -> None:
    """Given an app with an active credential, both checks pass; after a raw UPDATE of the
    credential's status both fail naming the credential, its app and the column; a rebuild
    puts the table back and they pass again."""
    cli = Cli(db_url, tmp_path / "ks", cwd=tmp_path)
    cli("app", "register", "payments")
    added = json.loads(cli("credential", "add", "payments", "--usage", "jar", "--generate",
                           "--activate", "--json").stdout)
    cid = added["id"]
    assert "ok: read models agree with the log" in cli("projections", "verify").stdout
    assert "ok: read models agree with the log" in cli("verify").stdout
    _edit(db_url, f"UPDATE rm_credentials SET status = 'disabled' WHERE credential_id = '{cid}'")
    for command in (("projections", "verify"), ("verify",)):
        result = cli.run(*command)
        assert_refused(result, "read models disagree with the log",
                       f"rm_credentials {cid} (app payments): status is 'disabled', the log "
                       "says 'active'")
    _edit(db_url, "DELETE FROM rm_applications WHERE app = 'payments'")
    result = cli.run("projections", "verify")
    assert result.returncode == 1
    assert "rm_applications payments (app payments): missing from the table" in result.stdout
    cli("projections", "rebuild")
    assert "ok: read models agree" in cli("projections", "verify").stdout
