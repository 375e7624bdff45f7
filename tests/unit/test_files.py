"""Files written whole or not at all (``orchestrator.adapters.files``), also when their folder
is moved or replaced while they are being written: the write fails, the path at the old place
is not made, and no temporary file is left behind in the folder wherever it went (before the
fix, a keystore folder moved away under a write kept a ``.<name>.<hex>.tmp`` for ever)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.adapters import files

Writer = Callable[[Path], Any]


def _stream(path: Path) -> None:
    with files.atomic_stream(path) as handle:
        handle.write("line\n")


WRITERS: dict[str, Writer] = {
    "atomic_write": lambda path: files.atomic_write(path, b"data"),
    "create_once": lambda path: files.create_once(path, b"data"),
    "atomic_stream": _stream,
}


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_a_write_leaves_the_file_and_nothing_else(tmp_path: Path, writer: Writer) -> None:
    folder = tmp_path / "items"
    folder.mkdir()
    writer(folder / "item.bin")
    assert sorted(p.name for p in folder.iterdir()) == ["item.bin"]
    assert (folder / "item.bin").read_bytes() in (b"data", b"line\n")


def test_create_once_keeps_what_was_there(tmp_path: Path) -> None:
    path = tmp_path / "item.bin"
    assert files.create_once(path, b"first") is True
    assert files.create_once(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["item.bin"]


def _moved(folder: Path, aside: Path) -> None:
    folder.rename(aside)


def _replaced_by_a_file(folder: Path, aside: Path) -> None:
    folder.rename(aside)
    folder.write_text("not a folder\n")


@pytest.mark.parametrize("fault", [_moved, _replaced_by_a_file], ids=["moved", "replaced"])
@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_a_folder_moved_mid_write_fails_the_write_and_keeps_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: Writer,
        fault: Callable[[Path, Path], None]) -> None:
    folder, aside = tmp_path / "items", tmp_path / "aside"
    folder.mkdir()
    (folder / "other.bin").write_bytes(b"kept")
    real_fsync = os.fsync
    done: list[bool] = []

    def fsync_then_move(fd: int) -> None:  # the temporary file is whole: now the folder goes
        real_fsync(fd)
        if not done:
            done.append(True)
            fault(folder, aside)

    monkeypatch.setattr(files.os, "fsync", fsync_then_move)
    with pytest.raises(OSError):
        writer(folder / "item.bin")
    assert done
    assert sorted(p.name for p in aside.iterdir()) == ["other.bin"]  # no .item.bin.*.tmp
    assert not folder.is_dir()  # nothing was made at the old path
