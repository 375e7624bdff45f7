"""``orchestrator keystore rotate-master`` killed with SIGKILL at random points (seeded, chosen
by how many items it has moved, never by wall-clock time) and run again until it finishes:
after every kill each item decrypts under exactly one master key, the one its row names, to
the bytes it held; the last run retires the old key and installs the new one in master.key.

The kills come from tests/support/launch.py (``ORCHESTRATOR_TEST_KEYSTORE_CRASH``), which
decorates the keystore through ``cli.main(wrap_keystore=...)``; the product reads no such
variable."""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.sql import create_engine
from orchestrator.adapters.db_keystore import DatabaseKeystore, keystore_items, keystore_keys
from orchestrator.adapters.keystore import key_check_value
from tests.helpers import LAUNCHER, Cli, assert_refused

ITEMS = 12
CRASH_POINTS = (("before", "begin_rotation"), ("after", "begin_rotation"), ("before", "finish"),
                ("after", "finish"), ("before", "install"), ("after", "install"))


def _under(db_url: str) -> tuple[dict[str, tuple[bytes, bytes, str]], dict[str, str]]:
    """Each item's (ciphertext, nonce, key id) and each key's status, read from the tables."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            c = keystore_items.c
            rows = {r.item_id: (bytes(r.ciphertext), bytes(r.nonce), r.key_id) for r in
                    conn.execute(sa.select(c.item_id, c.ciphertext, c.nonce, c.key_id))}
            keys = dict(conn.execute(sa.select(keystore_keys.c.key_id,
                                               keystore_keys.c.status)).tuples().all())
        return rows, keys
    finally:
        engine.dispose()


def _opens(key: bytes, item_id: str, row: tuple[bytes, bytes, str]) -> bytes | None:
    try:
        return AESGCM(key).decrypt(row[1], row[0], item_id.encode())
    except InvalidTag:
        return None


def _assert_each_item_under_exactly_one_key(db_url: str, items: dict[str, bytes],
                                            old: bytes, new: bytes) -> int:
    """The oracle (AES-GCM and the tables, not the keystore's code): every item decrypts
    under one key of the two, the one its row names, to its bytes. How many moved."""
    by_id = {key_check_value(old): old, key_check_value(new): new}
    rows, keys = _under(db_url)
    assert set(rows) == set(items)
    for item_id, row in rows.items():
        opened = {kid: _opens(key, item_id, row) for kid, key in by_id.items()}
        readable = [kid for kid, data in opened.items() if data is not None]
        assert readable == [row[2]], (item_id, row[2], readable)
        assert opened[row[2]] == items[item_id]
    assert sorted(keys.values()).count("current") == 1, keys
    return sum(row[2] == key_check_value(new) for row in rows.values())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_rotation_killed_at_random_points_resumes_and_every_item_reads_under_one_key(
        db_url: str, tmp_path: Path, seed: int) -> None:
    """Given 12 items under the old key, rotate-master is SIGKILLed at seeded random points
    (before or after the n-th item it moves, or around starting, finishing and installing)
    and run again each time; after each kill the oracle holds, and the run that is not killed
    finishes: every item under the new key, the old key retired and refused, master.key new."""
    rng = random.Random(seed)
    cli = Cli(db_url, tmp_path / "keystore", cwd=tmp_path)
    cli.env["ORCHESTRATOR_KEYSTORE_BACKEND"] = "database"
    engine = create_engine(db_url)
    try:
        writer = DatabaseKeystore(engine, cli.keystore, environ={})
        items = {f"app-{n}/private_key_jwt/cred_{n}": os.urandom(48) for n in range(ITEMS)}
        for item_id, data in items.items():
            writer.put(item_id, data)
    finally:
        engine.dispose()
    old = (cli.keystore / "master.key").read_bytes()
    new = os.urandom(32)
    new_file = tmp_path / "new.key"
    new_file.write_text(base64.urlsafe_b64encode(new).decode())
    kills = 0
    while kills < 8:
        moved = _assert_each_item_under_exactly_one_key(db_url, items, old, new)
        if rng.random() < 0.7:
            spec = f"{rng.choice(['before', 'after'])}:reencrypt:{rng.randint(1, ITEMS - moved + 1)}"
        else:
            when, method = rng.choice(CRASH_POINTS)
            spec = f"{when}:{method}:1"
        run = subprocess.run([*LAUNCHER, "keystore", "rotate-master", "--new-key-file",
                              str(new_file)], env={**cli.env, "ORCHESTRATOR_TEST_KEYSTORE_CRASH":
                                                   spec}, cwd=tmp_path, capture_output=True,
                             text=True, timeout=120, check=False)
        if run.returncode == 0:
            break
        assert run.returncode == -signal.SIGKILL, (spec, run.stderr)
        kills += 1
    else:
        cli("keystore", "rotate-master", "--new-key-file", new_file)
    assert kills >= 1, "no kill happened: the seed chose no crash point the rotation reached"
    assert _assert_each_item_under_exactly_one_key(db_url, items, old, new) == ITEMS
    assert (cli.keystore / "master.key").read_bytes() == new
    _, keys = _under(db_url)
    assert keys == {key_check_value(old): "retired", key_check_value(new): "current"}
    status = cli("keystore", "status").stdout
    assert f"ok: {ITEMS} item(s)" in status and "retired, 0 item(s)" in status
    cli.env["ORCHESTRATOR_MASTER_KEY"] = base64.urlsafe_b64encode(old).decode()
    assert_refused(cli.run("keystore", "status"), "was retired by a master-key rotation")
