"""The database keystore on real SQLite and PostgreSQL: the Keystore port, its guards, and a
master-key rotation run in-process (tests/e2e/test_master_key_rotation.py kills one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from orchestrator.adapters.db_keystore import DatabaseKeystore, KeyState, keystore_items
from orchestrator.adapters.keystore import FileKeystore, key_check_value
from orchestrator.app.master_rotation import rotate_master
from orchestrator.app.ports import Keystore, RotationStart
from orchestrator.domain.errors import KeystoreError

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(keystore_items)))


def test_the_port_round_trips_and_the_master_key_is_not_in_the_database(
        engine: Engine, tmp_path: Path) -> None:
    """put/get/put_new/delete/ids behave as the file keystore's; the row holds ciphertext, not
    the bytes, and the master key is a 0600 file outside the database."""
    ks = DatabaseKeystore(engine, tmp_path / "ks", environ={})
    assert isinstance(ks, Keystore)
    assert ks.get("a") is None and ks.ids() == []
    ks.put("a/1", b"first-secret-bytes")
    ks.put("a/1", b"second-secret-bytes")
    assert ks.put_new("a/1", b"other") == b"second-secret-bytes"
    assert ks.put_new("b", b"bee") == b"bee"
    assert ks.ids() == ["a/1", "b"]
    assert (tmp_path / "ks" / "master.key").stat().st_mode & 0o777 == 0o600
    dump = repr(_rows(engine))
    assert "second-secret-bytes" not in dump and "bee'" not in dump
    ks.delete("b")
    ks.delete("never")
    assert ks.ids() == ["a/1"]
    assert DatabaseKeystore(engine, tmp_path / "ks", environ={}).get("a/1") == b"second-secret-bytes"


def test_a_row_swapped_to_another_item_does_not_decrypt(engine: Engine, tmp_path: Path) -> None:
    """The item id is the associated data: two rows' ciphertexts exchanged are refused."""
    ks = DatabaseKeystore(engine, tmp_path, master_key=KEY_A)
    ks.put("x", b"xx")
    ks.put("y", b"yy")
    c = keystore_items.c
    with engine.begin() as conn:
        x = conn.execute(sa.select(c.ciphertext, c.nonce).where(c.item_id == "x")).one()
        conn.execute(keystore_items.update().where(c.item_id == "y")
                     .values(ciphertext=x.ciphertext, nonce=x.nonce))
    with pytest.raises(KeystoreError, match="cannot decrypt item y: its row was altered"):
        ks.get("y")


def test_another_or_lost_master_key_is_refused_and_nothing_is_written(
        engine: Engine, tmp_path: Path) -> None:
    """A different key is refused for reads and writes; a lost master.key is not minted anew."""
    DatabaseKeystore(engine, tmp_path / "ks", environ={}).put("a", b"1")
    before = _rows(engine)
    other = DatabaseKeystore(engine, tmp_path / "ks", master_key=KEY_B)
    for act in (lambda: other.get("a"), lambda: other.get("absent"),
                lambda: other.put("b", b"2")):
        with pytest.raises(KeystoreError, match="is not the key this keystore was created with"):
            act()
    (tmp_path / "ks" / "master.key").unlink()
    with pytest.raises(KeystoreError, match=r"master\.key is missing but the keystore holds"):
        DatabaseKeystore(engine, tmp_path / "ks", environ={}).put("b", b"2")
    assert not (tmp_path / "ks" / "master.key").exists()
    assert _rows(engine) == before


def test_an_empty_database_keystore_beside_file_items_refuses(
        engine: Engine, tmp_path: Path) -> None:
    """Upgrading a deployment that kept its items in files: the database keystore refuses to
    act as if they were gone, and says how to move them in."""
    FileKeystore(tmp_path / "ks", master_key=KEY_A).put("old", b"o")
    ks = DatabaseKeystore(engine, tmp_path / "ks", master_key=KEY_A,
                          file_items=tmp_path / "ks" / "items")
    for act in (lambda: ks.get("old"), ks.ids, lambda: ks.put("new", b"n")):
        with pytest.raises(KeystoreError, match="orchestrator keystore import-files"):
            act()
    assert _rows(engine) == []


def test_a_rotation_moves_every_item_and_retires_the_old_key(
        engine: Engine, tmp_path: Path) -> None:
    """rotate_master re-encrypts every item under the new key (each row names it), retires the
    old key (refused afterwards), replaces master.key, and a second run finds it finished."""
    folder = tmp_path / "ks"
    ks = DatabaseKeystore(engine, folder, environ={})
    items = {f"item/{n}": f"secret-{n}".encode() for n in range(7)}
    for item_id, data in items.items():
        ks.put(item_id, data)
    old = (folder / "master.key").read_bytes()
    done = rotate_master(DatabaseKeystore(engine, folder, environ={}), KEY_B, batch=3)
    assert (done.start, done.moved) == (RotationStart.STARTED, 7)
    assert (folder / "master.key").read_bytes() == KEY_B
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(keystore_items.c.key_id)).scalars()) == {
            key_check_value(KEY_B)}
    fresh = DatabaseKeystore(engine, folder, environ={})
    assert {i: fresh.get(i) for i in items} == items
    assert [(k.state, k.items) for k in fresh.status()] == [(KeyState.RETIRED, 0),
                                                           (KeyState.CURRENT, 7)]
    with pytest.raises(KeystoreError, match="was retired by a master-key rotation"):
        DatabaseKeystore(engine, folder, master_key=old).get("item/1")
    again = rotate_master(DatabaseKeystore(engine, folder, environ={}), KEY_B)
    assert (again.start, again.moved) == (RotationStart.FINISHED, 0)


def test_an_item_written_under_the_old_key_during_a_rotation_is_moved_before_it_retires(
        engine: Engine, tmp_path: Path) -> None:
    """A daemon still holding the old key writes mid-rotation: finish refuses to retire the old
    key while that item is under it, and the loop moves it first."""
    writer = DatabaseKeystore(engine, tmp_path, master_key=KEY_A)
    writer.put("a", b"1")
    rotating = DatabaseKeystore(engine, tmp_path, master_key=KEY_A)
    rotating.begin_rotation(KEY_B)
    assert rotating.reencrypt("a")
    writer.put("late", b"2")
    assert not rotating.finish()
    assert rotating.pending(10) == ["late"] and rotating.reencrypt("late")
    assert rotating.finish()
    with pytest.raises(KeystoreError, match="retired"):
        writer.put("later", b"3")
    reader = DatabaseKeystore(engine, tmp_path, master_key=KEY_B)
    assert (reader.get("a"), reader.get("late"), reader.get("later")) == (b"1", b"2", None)
