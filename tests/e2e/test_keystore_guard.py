"""The keystore knows its key, and a keystore that cannot be written is one line, as a user meets
them through the installed ``orchestrator``: another master key, a lost ``master.key``, a full
disk and a read-only one are each refused with one ``error:`` line and nothing written (no event,
no table row, no keystore file, no new ``master.key``).

On SQLite only: what is judged here does not depend on the database (both dialects are held to
the same log by tests/integration/test_store.py and the end-to-end tests about the store).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    Cli,
    assert_refused,
    dump_tables,
    fill_filesystem,
    make_read_only,
    tiny_filesystem,
)

ADD = ("credential", "add", "svc", "--usage", "jar", "--generate")


@pytest.fixture
def cli(sqlite_url: str, tmp_path: Path) -> Cli:
    return Cli(sqlite_url, tmp_path / "keystore", cwd=tmp_path)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (the keystore): relative path -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".filler"}


def _snapshot(cli: Cli) -> tuple[dict[str, list[Any]], dict[str, bytes]]:
    return dump_tables(cli.db_url), _files(cli.keystore)


def _other_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def test_another_master_key_is_refused_and_nothing_is_written(cli: Cli) -> None:
    """Given a keystore made with its master.key, ORCHESTRATOR_MASTER_KEY set to another valid
    key is refused by generating a key and by rotating the secret: one line naming the
    keystore and the key's source, and nothing changes."""
    cli("app", "register", "svc")
    cli(*ADD)
    assert (cli.keystore / "key-check").is_file()
    before = _snapshot(cli)
    cli.env["ORCHESTRATOR_MASTER_KEY"] = _other_key()
    for command in (ADD, ("secret", "rotate", "svc")):
        assert_refused(cli.run(*command), f"keystore {cli.keystore}",
                       "the master key in ORCHESTRATOR_MASTER_KEY is not the key this keystore "
                       "was created with")
    assert _snapshot(cli) == before


def test_a_keystore_made_with_an_environment_key_refuses_its_master_key_file(cli: Cli) -> None:
    """A keystore created under ORCHESTRATOR_MASTER_KEY has no master.key; without the variable
    it is refused, and no master.key is minted beside its items."""
    cli.env["ORCHESTRATOR_MASTER_KEY"] = _other_key()
    cli("app", "register", "svc")
    cli(*ADD)
    before = _snapshot(cli)
    del cli.env["ORCHESTRATOR_MASTER_KEY"]
    assert_refused(cli.run(*ADD), "master.key is missing but the keystore holds items",
                   "ORCHESTRATOR_MASTER_KEY")
    assert not (cli.keystore / "master.key").exists()
    assert _snapshot(cli) == before


def test_a_lost_master_key_file_is_refused_and_no_new_one_is_created(cli: Cli) -> None:
    """master.key deleted while items exist: refused with one line saying to restore it, and
    no new master.key is created (items would end up under two keys)."""
    cli("app", "register", "svc")
    cli(*ADD)
    (cli.keystore / "master.key").unlink()
    before = _snapshot(cli)
    result = cli.run(*ADD)
    assert_refused(result, f"keystore {cli.keystore}: master.key is missing",
                   f"restore {cli.keystore / 'master.key'} from backup")
    assert not (cli.keystore / "master.key").exists()
    assert _snapshot(cli) == before


@pytest.mark.parametrize(("fault", "strerror"), [
    (fill_filesystem, "No space left on device"),
    (make_read_only, "Read-only file system"),
])
def test_a_keystore_that_cannot_be_written_is_one_line(
        sqlite_url: str, tmp_path: Path, fault: Callable[[Path], None], strerror: str) -> None:
    """The keystore on a real, tiny tmpfs that is then filled up (ENOSPC) or remounted read-only
    (EROFS): adding a generated key is refused with one line (what, where, what to do), no
    traceback, and no event, row or keystore file is left behind."""
    with tiny_filesystem(tmp_path / "mnt") as mount:
        cli = Cli(sqlite_url, mount / "keystore", cwd=tmp_path)
        cli("app", "register", "svc")
        cli("credential", "add", "svc", "--usage", "private_key_jwt", "--generate")
        fault(mount)
        before = _snapshot(cli)
        result = cli.run(*ADD)
        assert_refused(result, f"keystore {cli.keystore}: cannot write item", strerror,
                       "free space or fix the permissions")
        assert _snapshot(cli) == before
        assert not [p for p in (cli.keystore / "items").iterdir() if p.name.startswith(".")]
