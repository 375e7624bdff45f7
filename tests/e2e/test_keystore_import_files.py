"""``orchestrator keystore import-files``, as an operator upgrading a PostgreSQL deployment meets it
through the installed command: items made in the file keystore, the database keystore chosen,
every command refused (one line naming ``import-files``) until the items are moved in, then the
move, a repeat that moves nothing, and an item whose file and row disagree named and left as the
database has it.

The oracle is AES-GCM and the bytes on disk and in ``keystore_items`` (the item id is the
associated data), not the keystore's own code."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.sql import create_engine
from orchestrator.adapters.db_keystore import keystore_items
from tests.helpers import Cli, assert_refused, dump_tables

MAGIC, NONCE = b"OKS1", 12  # the file keystore's format (README: Where the keystore is)
ADD = ("credential", "add", "svc", "--usage", "jar", "--generate")


def _item_id(path: Path) -> str:
    """The item id a file holds: its name is the id in unpadded base64url."""
    return base64.urlsafe_b64decode(path.stem + "=" * (-len(path.stem) % 4)).decode()


def _files(keystore: Path, key: bytes) -> dict[str, bytes]:
    """Every item file, opened: item id (the file name, base64url) -> plaintext."""
    opened = {}
    for path in sorted((keystore / "items").glob("*.bin")):
        item_id = _item_id(path)
        blob = path.read_bytes()
        assert blob.startswith(MAGIC), path
        nonce, body = blob[len(MAGIC):len(MAGIC) + NONCE], blob[len(MAGIC) + NONCE:]
        opened[item_id] = AESGCM(key).decrypt(nonce, body, item_id.encode())
    return opened


def _rows(db_url: str, key: bytes) -> dict[str, bytes]:
    """Every row of keystore_items, opened: item id -> plaintext."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            c = keystore_items.c
            return {r.item_id: AESGCM(key).decrypt(bytes(r.nonce), bytes(r.ciphertext),
                                                    r.item_id.encode())
                    for r in conn.execute(sa.select(c.item_id, c.ciphertext, c.nonce))}
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_import_files_moves_the_file_items_into_the_database(pg_url: str,
                                                              tmp_path: Path) -> None:
    cli = Cli(pg_url, tmp_path / "keystore", cwd=tmp_path)  # the file keystore (Cli's default)
    cli("app", "register", "svc")
    cli(*ADD)
    cli("secret", "rotate", "svc")
    key = (cli.keystore / "master.key").read_bytes()
    files = _files(cli.keystore, key)
    assert len(files) >= 2, files  # a JAR private key and a client secret

    cli.env["ORCHESTRATOR_KEYSTORE_BACKEND"] = "database"
    before = dump_tables(pg_url)
    assert_refused(cli.run(*ADD), "holds items", "orchestrator keystore import-files")
    assert dump_tables(pg_url) == before  # refused: nothing written

    moved = cli("keystore", "import-files")
    assert f"imported {len(files)} item(s)" in moved.stdout, moved
    assert _rows(pg_url, key) == files  # every item, to its bytes, under the same master key
    assert _files(cli.keystore, key) == files  # the files are left in place

    again = cli("keystore", "import-files")
    assert f"imported 0 item(s) from {cli.keystore} ({len(files)} there already)" in again.stdout
    assert f"ok: {len(files)} item(s)" in cli("keystore", "status").stdout
    cli("verify")

    # from now on the database keystore is the one written: a new secret lands there only
    cli("secret", "rotate", "svc")
    rows = _rows(pg_url, key)
    assert "secret/svc/v2" in set(rows) - set(files), sorted(rows)
    kept = set(files) - {"idp/svc/secret"}  # the local provider's record of the secret moves on
    assert {item: rows[item] for item in kept} == {item: files[item] for item in kept}
    assert _files(cli.keystore, key) == files

    # a file whose item the database holds with other bytes (the JAR key's file rewritten; the
    # secret's record, moved on since): each named, exit 1, the rows kept
    victim = next(item for item in sorted(files) if item.startswith("cred_"))  # the JAR key
    path = next(p for p in (cli.keystore / "items").glob("*.bin")
                if _item_id(p) == victim)
    nonce = secrets.token_bytes(NONCE)
    path.write_bytes(MAGIC + nonce + AESGCM(key).encrypt(nonce, b"other bytes", victim.encode()))
    differ = cli.run("keystore", "import-files")
    assert_refused(differ, "2 item(s) differ between the files and the database", victim,
                   "idp/svc/secret")
    assert _rows(pg_url, key) == rows
