"""Tests for orchestrator.adapters.keystore: encrypted file keystore, memory double, delivery."""

from __future__ import annotations

import base64
import errno
import os
import stat
from pathlib import Path

import pytest

from orchestrator.adapters.delivery import deliver
from orchestrator.adapters.keystore import (
    ENV_MASTER_KEY,
    FileKeystore,
    MemoryKeystore,
    key_check_value,
)
from orchestrator.app.ports import Keystore
from orchestrator.domain.errors import InputError, KeystoreError

SECRET = b"-----BEGIN PRIVATE KEY-----\nTOP-SECRET-PRIVATE-BYTES\n-----END PRIVATE KEY-----\n"
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path) -> Keystore:
    if request.param == "memory":
        return MemoryKeystore()
    return FileKeystore(tmp_path / "ks", environ={})


def test_round_trip_and_overwrite(store):
    """put/get round-trips bytes, a second put replaces the value, unknown ids give None."""
    assert isinstance(store, Keystore)
    store.put("app1/jwt/cred_1", SECRET)
    assert store.get("app1/jwt/cred_1") == SECRET
    store.put("app1/jwt/cred_1", b"second")
    assert store.get("app1/jwt/cred_1") == b"second"
    assert store.get("missing") is None


def test_delete_and_ids(store):
    """ids() lists every id sorted (any characters); delete removes one and ignores absent ids."""
    for item in ("b/2", "a:1", "ünï cødé/../x", "c"):
        store.put(item, b"x")
    assert store.ids() == sorted(["b/2", "a:1", "ünï cødé/../x", "c"])
    store.delete("b/2")
    store.delete("never-there")
    assert store.ids() == sorted(["a:1", "ünï cødé/../x", "c"])
    assert store.get("b/2") is None


def test_both_keystores_take_item_ids_of_at_most_150_bytes(store):
    """The memory double refuses what the file keystore refuses, so a test on it finds an id
    built too long (its UTF-8 bytes count, not its characters)."""
    store.put("a" * 150, b"x")
    store.put("é" * 75, b"y")
    assert store.get("a" * 150) == b"x" and store.get("é" * 75) == b"y"
    for too_long in ("a" * 151, "é" * 75 + "a", ""):
        with pytest.raises(KeystoreError, match="item id must be 1 to 150 bytes"):
            store.put(too_long, b"z")
        with pytest.raises(KeystoreError, match="item id must be 1 to 150 bytes"):
            store.put_new(too_long, b"z")


def test_file_on_disk_holds_no_plaintext(tmp_path):
    """An item file is OKS1 + nonce + ciphertext and does not contain the plaintext."""
    ks = FileKeystore(tmp_path / "ks", environ={})
    ks.put("cred_1", SECRET)
    (item,) = (tmp_path / "ks" / "items").iterdir()
    blob = item.read_bytes()
    assert blob.startswith(b"OKS1")
    assert b"TOP-SECRET" not in blob and SECRET not in blob
    assert item.name == _b64url(b"cred_1") + ".bin"
    assert _mode(item) == 0o600


def test_same_plaintext_encrypts_differently(tmp_path):
    """Each put uses a fresh nonce, so identical data gives different files."""
    ks = FileKeystore(tmp_path / "ks", master_key=KEY_A)
    ks.put("a", SECRET)
    first = next((tmp_path / "ks" / "items").iterdir()).read_bytes()
    ks.put("a", SECRET)
    assert next((tmp_path / "ks" / "items").iterdir()).read_bytes() != first


def test_master_key_file_created_private(tmp_path):
    """Without a given key, master.key (32 bytes, 0600) and its check value are created in a
    0700 directory."""
    directory = tmp_path / "ks"
    ks = FileKeystore(directory, environ={})
    assert not directory.exists()  # nothing written until the first put
    ks.put("a", b"1")
    key_file = directory / "master.key"
    assert _mode(key_file) == 0o600 and len(key_file.read_bytes()) == 32
    assert _mode(directory) == 0o700 and _mode(directory / "items") == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["items", "key-check", "master.key"]
    assert _mode(directory / "key-check") == 0o600


def test_reopen_with_same_key_reads_other_key_fails(tmp_path):
    """A reopened keystore reads with the same master key; another key is refused by the
    key check value before anything is decrypted."""
    directory = tmp_path / "ks"
    FileKeystore(directory, environ={}).put("cred_1", SECRET)
    assert FileKeystore(directory, environ={}).get("cred_1") == SECRET
    raw = (directory / "master.key").read_bytes()
    assert FileKeystore(directory, master_key=raw).get("cred_1") == SECRET
    with pytest.raises(KeystoreError, match="not the key this keystore was created with") as info:
        FileKeystore(directory, master_key=KEY_B).get("cred_1")
    assert "ORCHESTRATOR_MASTER_KEY" in str(info.value) and "\n" not in str(info.value)


def test_env_master_key_is_used(tmp_path):
    """ORCHESTRATOR_MASTER_KEY (base64url of 32 bytes) is used and no master.key is written."""
    directory = tmp_path / "ks"
    FileKeystore(directory, environ={ENV_MASTER_KEY: _b64url(KEY_A)}).put("a", SECRET)
    assert not (directory / "master.key").exists()
    assert FileKeystore(directory, master_key=KEY_A).get("a") == SECRET
    with pytest.raises(KeystoreError):
        FileKeystore(directory, environ={ENV_MASTER_KEY: _b64url(KEY_B)}).get("a")


@pytest.mark.parametrize("value", ["", "not base64!!", _b64url(b"short"), _b64url(bytes(33))])
def test_bad_env_master_key_is_refused(tmp_path, value):
    """A bad ORCHESTRATOR_MASTER_KEY raises one KeystoreError line saying how to make one."""
    with pytest.raises(KeystoreError) as info:
        FileKeystore(tmp_path / "ks", environ={ENV_MASTER_KEY: value})
    message = str(info.value)
    assert ENV_MASTER_KEY in message and "os.urandom(32)" in message and "\n" not in message
    if value:
        assert value not in message


def test_explicit_master_key_must_be_32_bytes(tmp_path):
    """An explicit master key of the wrong length raises KeystoreError."""
    with pytest.raises(KeystoreError, match="32 bytes"):
        FileKeystore(tmp_path / "ks", master_key=b"short")


def test_renamed_item_file_fails_to_decrypt(tmp_path):
    """An item file renamed to another id does not decrypt (the id is associated data)."""
    ks = FileKeystore(tmp_path / "ks", master_key=KEY_A)
    ks.put("cred_a", SECRET)
    items = tmp_path / "ks" / "items"
    (items / f"{_b64url(b'cred_a')}.bin").rename(items / f"{_b64url(b'cred_b')}.bin")
    assert ks.ids() == ["cred_b"]
    with pytest.raises(KeystoreError, match="cannot decrypt item cred_b"):
        ks.get("cred_b")


@pytest.mark.parametrize("damage", ["flip", "truncate", "magic"])
def test_tampered_item_fails_to_decrypt(tmp_path, damage):
    """A modified, truncated or foreign item file raises KeystoreError, never garbage bytes."""
    ks = FileKeystore(tmp_path / "ks", master_key=KEY_A)
    ks.put("a", SECRET)
    item = next((tmp_path / "ks" / "items").iterdir())
    blob = bytearray(item.read_bytes())
    if damage == "flip":
        blob[-1] ^= 1
    elif damage == "truncate":
        blob = blob[:10]
    else:
        blob[:4] = b"XXXX"
    item.write_bytes(bytes(blob))
    with pytest.raises(KeystoreError, match="cannot decrypt"):
        ks.get("a")


def test_missing_master_key_file_is_reported(tmp_path):
    """Items whose master.key was lost raise KeystoreError instead of minting a new key."""
    directory = tmp_path / "ks"
    FileKeystore(directory, environ={}).put("a", SECRET)
    (directory / "master.key").unlink()
    with pytest.raises(KeystoreError, match=r"master\.key is missing"):
        FileKeystore(directory, environ={}).get("a")
    assert not (directory / "master.key").exists()


def test_no_temporary_files_left(tmp_path):
    """Atomic writes leave only the final files behind."""
    ks = FileKeystore(tmp_path / "ks", master_key=KEY_A)
    for i in range(3):
        ks.put(f"id{i}", SECRET)
    ks.put("id0", b"again")
    assert all(p.suffix == ".bin" for p in (tmp_path / "ks" / "items").iterdir())


def test_deliver_replaces_the_whole_set_through_one_data_link(tmp_path):
    """deliver writes <dir>/<app>/<usage>/ as symlinks into ..data, a 0700 version folder of
    0600 files; the next set replaces the whole set (a name it lacks is gone)."""
    files = {"private_key.pem": SECRET, "kid": b"abc123"}
    folder = deliver(tmp_path / "out", "billing", "private_key_jwt", files)
    assert folder == tmp_path / "out" / "billing" / "private_key_jwt"
    first = os.readlink(folder / "..data")
    assert {p.name for p in folder.iterdir()} == {*files, "..data", first}
    assert all(os.readlink(folder / name) == f"..data/{name}" for name in files)
    assert _mode(folder / first) == 0o700
    assert all(_mode(folder / first / name) == 0o600 for name in files)
    assert (folder / "private_key.pem").read_bytes() == SECRET
    deliver(tmp_path / "out", "billing", "private_key_jwt", {"kid": b"new"})
    second = os.readlink(folder / "..data")
    assert second != first
    assert (folder / "kid").read_bytes() == b"new"
    assert {p.name for p in folder.iterdir()} == {"kid", "..data", second}


@pytest.mark.parametrize(
    ("app", "usage", "name"),
    [
        ("../x", "jwt", "kid"),
        ("..", "jwt", "kid"),
        ("a/b", "jwt", "kid"),
        ("app", "..", "kid"),
        ("app", "x\\y", "kid"),
        ("", "jwt", "kid"),
        ("app", "jwt", "../kid"),
    ],
)
def test_deliver_refuses_path_escapes(tmp_path, app, usage, name):
    """deliver refuses application, usage or file names that could leave its directory."""
    with pytest.raises(InputError):
        deliver(tmp_path / "out", app, usage, {name: b"x"})
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "x").exists()


def test_a_keystore_without_check_value_gets_one_once_its_key_opens_an_item(tmp_path):
    """A keystore made before key check values: a key that cannot decrypt its items is refused
    (nothing written); its own key writes the check value on the next put."""
    directory = tmp_path / "ks"
    FileKeystore(directory, master_key=KEY_A).put("a", SECRET)
    (directory / "key-check").unlink()
    with pytest.raises(KeystoreError, match="not the key this keystore was created with"):
        FileKeystore(directory, master_key=KEY_B).put("b", SECRET)
    assert not (directory / "key-check").exists()
    assert FileKeystore(directory, master_key=KEY_B).ids() == ["a"]
    FileKeystore(directory, master_key=KEY_A).put("b", SECRET)
    assert (directory / "key-check").read_text() == key_check_value(KEY_A)
    assert key_check_value(KEY_A) != key_check_value(KEY_B)
    assert _b64url(KEY_A) not in key_check_value(KEY_A)


def test_a_write_that_fails_is_one_keystore_error_line(tmp_path, monkeypatch):
    """An OS error while writing an item (here EACCES, injected: the suite may run as root,
    which no permission bit stops) is a KeystoreError of one line, and no file is left."""
    ks = FileKeystore(tmp_path / "ks", master_key=KEY_A)
    ks.put("a", SECRET)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(KeystoreError) as info:
        ks.put("b", SECRET)
    assert "cannot write item b" in str(info.value) and "Permission denied" in str(info.value)
    assert "\n" not in str(info.value)
    assert [p.name for p in (tmp_path / "ks" / "items").iterdir()] == [f"{_b64url(b'a')}.bin"]


def test_deliver_takes_over_a_folder_of_the_old_layout(tmp_path):
    """A usage folder written file by file (before the ..data layout): the first delivery
    replaces its plain files with links into one version, and drops the names it lacks."""
    folder = tmp_path / "out" / "billing" / "jar"
    folder.mkdir(parents=True)
    for name in ("private_key.pem", "kid", "alg"):
        (folder / name).write_bytes(b"old " + name.encode())
    deliver(tmp_path / "out", "billing", "jar", {"private_key.pem": SECRET, "kid": b"k2"})
    version = os.readlink(folder / "..data")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["..data", version, "kid", "private_key.pem"])
    assert os.readlink(folder / "kid") == "..data/kid"
    assert (folder / "private_key.pem").read_bytes() == SECRET


def test_an_empty_keystore_folder_reads_as_empty_and_a_foreign_key_is_refused_at_once(tmp_path):
    """An empty keystore folder (a fresh volume) answers None without a key; once it holds
    items, even a read of an absent item refuses another key (before the caller acts)."""
    directory = tmp_path / "ks"
    directory.mkdir()
    assert FileKeystore(directory, environ={}).get("anything") is None
    FileKeystore(directory, master_key=KEY_A).put("a", SECRET)
    assert FileKeystore(directory, master_key=KEY_A).get("absent") is None
    with pytest.raises(KeystoreError, match="not the key this keystore was created with"):
        FileKeystore(directory, master_key=KEY_B).get("absent")


def _moved_away(directory: Path, tmp_path: Path) -> Path:
    return directory.rename(tmp_path / "elsewhere")


def _replaced_by_a_file(directory: Path, tmp_path: Path) -> Path:
    saved = directory.rename(tmp_path / "elsewhere")
    directory.write_text("not a keystore")
    return saved


def _master_key_removed(directory: Path, tmp_path: Path) -> Path:
    (directory / "master.key").rename(tmp_path / "master.key")
    return directory


def _master_key_garbage(directory: Path, tmp_path: Path) -> Path:
    (directory / "master.key").rename(tmp_path / "master.key")
    (directory / "master.key").write_bytes(b"garbage\n")
    return directory


def _master_key_another(directory: Path, tmp_path: Path) -> Path:
    (directory / "master.key").rename(tmp_path / "master.key")
    (directory / "master.key").write_bytes(KEY_B)
    return directory


def _restore(directory: Path, tmp_path: Path, saved: Path) -> None:
    if saved != directory:
        if directory.is_file():
            directory.unlink()
        saved.rename(directory)
    else:
        (tmp_path / "master.key").replace(directory / "master.key")


@pytest.mark.parametrize(("fault", "says"), [
    (_moved_away, r"master\.key is gone since this process opened the keystore"),
    (_replaced_by_a_file, r"cannot read .*master\.key \(Not a directory\)"),
    (_master_key_removed, r"master\.key is gone since this process opened the keystore"),
    (_master_key_garbage, r"master\.key no longer holds the key this process opened"),
    (_master_key_another, r"master\.key no longer holds the key this process opened"),
])
def test_an_open_keystore_whose_folder_or_master_key_goes_is_refused_until_restored(
        tmp_path, fault, says):
    """A keystore a process (the daemon) opened, then moved away, replaced by a file, or its
    master.key removed or replaced: every use is refused with one line naming the path, and
    nothing is written (no fresh folder at the old path, no item beside it); once restored,
    the same process goes on, and what it held is all there. Before, it went on with the key it
    held in memory: into a new, empty folder it made at the old path (the new private keys
    where no restore looks), or under a master.key no restart could open."""
    directory = tmp_path / "ks"
    ks = FileKeystore(directory, environ={})
    ks.put("a", SECRET)
    saved = fault(directory, tmp_path)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for use in (lambda: ks.put("b", SECRET), lambda: ks.put_new("b", SECRET),
                lambda: ks.get("a"), lambda: ks.get("b"), lambda: ks.delete("a")):
        with pytest.raises(KeystoreError, match=says) as info:
            use()
        assert str(directory) in str(info.value) and "\n" not in str(info.value)
        assert "restore" in str(info.value)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    _restore(directory, tmp_path, saved)
    assert ks.get("a") == SECRET
    ks.put("b", SECRET)
    assert FileKeystore(directory, environ={}).ids() == ["a", "b"]


def test_a_keystore_opened_with_an_environment_key_is_refused_once_its_folder_goes(tmp_path):
    """With the key from ORCHESTRATOR_MASTER_KEY there is no master.key to miss: the keystore's
    check value is what must still be there."""
    directory = tmp_path / "ks"
    ks = FileKeystore(directory, environ={ENV_MASTER_KEY: _b64url(KEY_A)})
    ks.put("a", SECRET)
    directory.rename(tmp_path / "elsewhere")
    with pytest.raises(KeystoreError, match=r"cannot read .*key-check \(No such file"):
        ks.put("b", SECRET)
    assert not directory.exists()
    (tmp_path / "elsewhere").rename(directory)
    ks.put("b", SECRET)
    assert ks.ids() == ["a", "b"]
