"""Files written so that a crash leaves the old content or the new, never a part: a temporary
file in the same folder, flushed to disk, then renamed (replace) or linked (create once), and
the folder flushed so the new name survives a power loss too."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_stream", "atomic_write", "create_once", "fsync_dir"]

# a folder opened only to name files in it: O_PATH (Linux) needs no read permission on it
_FOLDER = os.O_DIRECTORY | getattr(os, "O_PATH", os.O_RDONLY)


@contextlib.contextmanager
def _staged(path: Path, mode: int) -> Iterator[tuple[int, str, int]]:
    """A new temporary file beside ``path``: (its folder's descriptor, its name there, its own
    descriptor, to be written). It is made, and on the way out removed (when the caller did not
    rename it), through the folder's descriptor, not by path: when the folder is moved or
    replaced meanwhile (a keystore restored from backup, a volume unmounted), the caller's
    rename by path fails, and the temporary file is still removed from the folder it went to
    rather than left there for ever."""
    folder = os.open(path.parent, _FOLDER)
    try:
        name = f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, dir_fd=folder)
        try:
            yield folder, name, fd
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=folder)  # gone already when renamed
    finally:
        os.close(folder)


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def create_once(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Write a new file atomically; never overwrites one another process made first. True when
    this call created it, False when ``path`` existed already (it is left as it was)."""
    with _staged(path, mode) as (folder, name, fd):
        _write_all(fd, data)
        try:
            os.link(name, path, src_dir_fd=folder)
        except FileExistsError:  # lost a race, or made before: keep the other one
            return False
        fsync_dir(path.parent)
        return True


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically: temp file (0600) in the same dir, fsync, rename
    (and fsync the folder, unless the caller does that once for several files)."""
    with _staged(path, 0o600) as (folder, name, fd):
        _write_all(fd, data)
        os.replace(name, path, src_dir_fd=folder)
    if sync_dir:
        fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_stream(path: Path, mode: int = 0o644) -> Iterator[IO[str]]:
    """A text file written as a stream (too large to hold in memory) that appears at ``path``
    only whole: written to a temporary file beside it, flushed, then renamed over ``path``. An
    error on the way removes the temporary file and leaves ``path`` as it was."""
    with _staged(path, mode) as (folder, name, fd):
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path, src_dir_fd=folder)
    fsync_dir(path.parent)
