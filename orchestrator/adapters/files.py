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

__all__ = ["atomic_stream", "atomic_write", "create_once", "fsync_dir", "temporary_copy"]


def temporary_copy(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """``data`` in a new file beside ``path`` (``mode``), flushed to disk: to be linked or
    renamed."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return tmp


def create_once(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Write a new file atomically; never overwrites one another process made first. True when
    this call created it, False when ``path`` existed already (it is left as it was)."""
    tmp = temporary_copy(path, data, mode)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:  # lost a race, or made before: keep the other one
            return False
        fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


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
    tmp = temporary_copy(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if sync_dir:
        fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_stream(path: Path, mode: int = 0o644) -> Iterator[IO[str]]:
    """A text file written as a stream (too large to hold in memory) that appears at ``path``
    only whole: written to a temporary file beside it, flushed, then renamed over ``path``. An
    error on the way removes the temporary file and leaves ``path`` as it was."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
