"""The checkpoint key and checkpoint files on a real file system: the key's mode is its guard,
files are created whole and never changed, and anything that is not a checkpoint is one line
naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from events.anchor import Checkpoint, Statement
from orchestrator.adapters.anchor_files import CheckpointFolder, file_name, read_checkpoints
from orchestrator.adapters.anchor_keys import create_key, load_key, load_signer
from orchestrator.domain.errors import InputError, OrchestratorError
from tests.helpers import rsa_key, spki_pem

AT = "2026-11-22T12:00:00.000000Z"


def checkpoint(position: int, signature: str = "c2ln") -> Checkpoint:
    return Checkpoint(Statement(position, "a" * 64, AT, "sqlite:///o.db", "sha256:" + "b" * 64),
                      signature)


def test_a_new_key_is_0600_its_public_half_beside_it_and_neither_is_ever_replaced(
        tmp_path: Path) -> None:
    path = tmp_path / "keys" / "cp.key"
    made = create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_key(path.with_name("cp.key.pub")).key_id == made.key_id
    assert load_signer(path).key_id == made.key_id and made.key_id in repr(made)
    assert "PRIVATE" not in repr(made)
    before = path.read_bytes()
    with pytest.raises(InputError, match="exists: a key is never overwritten"):
        create_key(path)
    path.with_name("other.key.pub").write_text("x")
    with pytest.raises(InputError, match=r"other\.key\.pub exists"):
        create_key(path.with_name("other.key"))
    assert path.read_bytes() == before and not path.with_name("other.key").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_others_may_read_or_change_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "cp.key"
    create_key(path)
    path.chmod(mode)
    with pytest.raises(InputError) as caught:
        load_signer(path)
    assert str(caught.value) == (f"checkpoint key {path} has mode {mode:04o}: others may read "
                                 f"or change it; chmod 600 {path} (and consider it exposed)")


def test_a_read_only_key_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "cp.key"
    create_key(path)
    path.chmod(0o400)
    assert load_signer(path).sign(b"x")


def test_what_is_not_an_ed25519_key_is_refused_in_one_line(tmp_path: Path) -> None:
    rsa_file, public = tmp_path / "rsa.key", tmp_path / "rsa.pub"
    rsa = rsa_key()
    rsa_file.write_bytes(rsa.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    rsa_file.chmod(0o600)
    public.write_bytes(spki_pem(rsa))
    with pytest.raises(InputError, match="not an unencrypted Ed25519 private key"):
        load_signer(rsa_file)
    with pytest.raises(InputError, match="not an Ed25519 public key"):
        load_key(public)
    with pytest.raises(InputError, match="no such file; create one with: orchestrator "
                                         "checkpoint init-key"):
        load_signer(tmp_path / "missing.key")
    huge = tmp_path / "huge.pub"
    huge.write_bytes(b"x" * 70_000)
    with pytest.raises(InputError, match="larger than a key file"):
        load_key(huge)


def test_a_checkpoint_file_is_created_once_and_a_repeat_is_a_no_op(tmp_path: Path) -> None:
    folder = CheckpointFolder(tmp_path / "cps")
    where = folder.write(checkpoint(5))
    assert Path(where).name == file_name(checkpoint(5)) == (
        "checkpoint-20261122T120000.000000Z-000000000005.json")
    assert folder.write(checkpoint(5)) == where  # the same bytes: nothing to do
    with pytest.raises(OrchestratorError, match="exists and holds another checkpoint"):
        folder.write(checkpoint(5, signature="b3RoZXI"))
    assert Path(where).read_text() == checkpoint(5).line()
    assert [p.name for p in (tmp_path / "cps").iterdir()] == [Path(where).name]  # no leftovers


def test_files_folders_and_json_lines_are_read_with_where_each_came_from(tmp_path: Path) -> None:
    folder = CheckpointFolder(tmp_path / "cps")
    one, two = folder.write(checkpoint(1)), folder.write(checkpoint(2))
    joined = tmp_path / "all.jsonl"
    joined.write_text(checkpoint(1).line() + "\n" + checkpoint(2).line())
    found = read_checkpoints([tmp_path / "cps", joined, Path(one)])
    assert [(source, c.statement.position) for source, c in found] == [
        (one, 1), (two, 2), (f"{joined}:1", 1), (f"{joined}:3", 2), (one, 1)]


@pytest.mark.parametrize(("content", "message"), [
    (b"", "checkpoint {f}: empty, holds no checkpoint"),
    (b"\xff\xfe", "checkpoint {f}: not UTF-8 text, so not a checkpoint"),
    (b'{"format": "orchestrator-checkpoint/1"', "checkpoint {f} line 1: not a checkpoint: not "
                                                "JSON, or cut short"),
])
def test_a_file_that_holds_no_checkpoint_is_one_line(tmp_path: Path, content: bytes,
                                                     message: str) -> None:
    file = tmp_path / "cp.json"
    file.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_checkpoints([file])
    assert str(caught.value).startswith(message.format(f=file))
    assert "\n" not in str(caught.value)


def test_a_bad_line_among_good_ones_is_named(tmp_path: Path) -> None:
    file = tmp_path / "cps.jsonl"
    line = json.loads(checkpoint(1).line())
    del line["hash"]
    file.write_text(checkpoint(1).line() + json.dumps(line) + "\n")
    with pytest.raises(InputError, match="line 2: not a checkpoint: missing hash"):
        read_checkpoints([file])


def test_an_empty_folder_or_a_missing_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no checkpoint files"):
        read_checkpoints([tmp_path / "empty"])
    with pytest.raises(InputError, match="no such file"):
        read_checkpoints([tmp_path / "missing.json"])


def test_signatures_made_by_the_key_verify_only_for_their_bytes(tmp_path: Path) -> None:
    signer = create_key(tmp_path / "cp.key")
    signature = signer.sign(b"statement")
    assert signer.key.verifies(b"statement", signature)
    assert not signer.key.verifies(b"statemenT", signature)
    stranger = ed25519.Ed25519PrivateKey.generate()
    assert not signer.key.verifies(b"statement", stranger.sign(b"statement"))
