"""Delivery: an application's current credential files, replaced as one set.

The layout is the one Kubernetes' AtomicWriter gives a projected volume::

    <directory>/<app>/<usage>/                    0700
        ..2026_11_30_17_40_00.123456_1f2e3d4c/    0700: one version of the set, each file 0600
        ..data -> ..2026_11_30_17_40_00.123456_1f2e3d4c
        kid -> ..data/kid
        private_key.pem -> ..data/private_key.pem
        ...

A delivery writes the whole new set into a new version folder, then swaps ``..data`` by renaming
a temporary symlink over it: the set changes at one instant. The names an application opens are
symlinks into ``..data/``; the previous version is removed after the swap.

Readers open files by path (``<usage>/kid``). A reader that needs two files of one version (a
``kid`` and the ``private_key.pem`` it names) opens ``<usage>/..data`` once, as a folder, and
reads both through it; if that fails with ENOENT, the version it opened was just replaced:
open ``..data`` again.

Nothing in the tree is followed. ``<app>`` and ``<usage>`` are opened with O_NOFOLLOW, every file
is created O_EXCL|O_NOFOLLOW inside the version folder this delivery just made, and a symlink
where the layout has none (or ``..data`` / a visible name that does not point where the layout
points it) refuses the delivery with one ``DeliveryError`` line before anything is written. An
OS error (ENOSPC, EACCES, EROFS...) is one ``DeliveryError`` line too, and the half-written
version folder is removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

from orchestrator.domain.errors import DeliveryError, InputError

__all__ = ["DATA", "FileDelivery", "deliver"]

DATA = "..data"
_PRIVATE_DIR = 0o700
_PRIVATE_FILE = 0o600
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class FileDelivery:
    """The ``Delivery`` port over a folder: ``<directory>/<app>/<usage>/``."""

    def __init__(self, directory: Path, clock: Callable[[], datetime] | None = None) -> None:
        self.directory = Path(directory)
        self.clock = clock  # names the version folders; only for the humans who look at them

    def deliver(self, app: str, usage: str, files: Mapping[str, bytes]) -> Path:
        return deliver(self.directory, app, usage, files,
                       now=self.clock() if self.clock is not None else None)


def _safe_component(value: str, what: str) -> str:
    bad = (
        not value
        or value in (".", "..")
        or "/" in value
        or "\\" in value
        or "\0" in value
        or (os.altsep is not None and os.altsep in value)
    )
    if bad:
        raise InputError(
            f"deliver: {what} {value!r:.60} is not a plain name; use letters, digits, '-', '_' "
            "without '/', '\\' or '..'"
        )
    return value


def deliver(directory: Path, app: str, usage: str, files: Mapping[str, bytes],
            now: datetime | None = None) -> Path:
    """Replace the set of ``<directory>/<app>/<usage>/`` with ``files`` at one instant (see the
    module's docstring) and return that folder."""
    target = Path(directory) / _safe_component(app, "application") / _safe_component(usage, "usage")
    for name in files:
        if _safe_component(name, "file name").startswith(".."):
            raise InputError(f"deliver: file name {name!r:.60} is reserved for the layout")
    try:
        with _opened(Path(directory), app, usage) as fd:
            _check(fd, target)
            version = _write_version(fd, target, files, now)
            _swap(fd, version)
            _link_names(fd, files)
            _remove_old(fd, version, files)
            os.fsync(fd)
    except OSError as exc:
        raise DeliveryError(
            f"delivery {target}: cannot write the files ({exc.strerror or type(exc).__name__}); "
            "free space or fix the permissions there, then try again"
        ) from None
    return target


@contextlib.contextmanager
def _opened(directory: Path, app: str, usage: str) -> Iterator[int]:
    """The usage folder, opened without following a link below ``directory`` (made 0700)."""
    directory.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    path = directory
    try:
        for component in (app, usage):
            path = path / component
            with contextlib.suppress(FileExistsError):
                os.mkdir(component, _PRIVATE_DIR, dir_fd=fd)
            try:
                child = os.open(component, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if _is_link(fd, component):
                    raise _planted(path, os.readlink(component, dir_fd=fd)) from None
                if isinstance(exc, NotADirectoryError):
                    raise DeliveryError(f"delivery {path}: is not a folder; remove it, then try "
                                        "again (nothing was written)") from None
                raise
            os.close(fd)
            fd = child
            os.fchmod(fd, _PRIVATE_DIR)
        yield fd
    finally:
        os.close(fd)


def _is_link(fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=fd).st_mode)
    except FileNotFoundError:
        return False


def _planted(path: Path, points_to: str) -> DeliveryError:
    return DeliveryError(
        f"delivery {path}: is a symbolic link (to {points_to!r:.80}) where the orchestrator "
        "keeps its own files; it does not follow links there: remove it, then try again "
        "(nothing was written)"
    )


def _check(fd: int, target: Path) -> None:
    """Refuse before writing anything if a link in the folder is not one the layout makes."""
    for name in os.listdir(fd):
        if not _is_link(fd, name):
            if name == DATA:
                raise DeliveryError(f"delivery {target / DATA}: is not the symlink this layout "
                                    "keeps there; remove it, then try again (nothing was written)")
            continue
        points_to = os.readlink(name, dir_fd=fd)
        if name == DATA:
            expected = points_to.startswith("..") and "/" not in points_to
        elif name.startswith(".."):
            expected = True  # a temporary link of an interrupted delivery: removed below
        else:
            expected = points_to == f"{DATA}/{name}"
        if not expected:
            raise _planted(target / name, points_to)


def _write_version(fd: int, target: Path, files: Mapping[str, bytes],
                   now: datetime | None) -> str:
    stamp = f"{now:%Y_%m_%d_%H_%M_%S.%f}_" if now is not None else ""
    version = f"..{stamp}{secrets.token_hex(4)}"
    os.mkdir(version, _PRIVATE_DIR, dir_fd=fd)
    try:
        vfd = os.open(version, _DIR_FLAGS, dir_fd=fd)
        try:
            os.fchmod(vfd, _PRIVATE_DIR)
            for name, data in files.items():
                _write_file(vfd, name, bytes(data))
            os.fsync(vfd)
        finally:
            os.close(vfd)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(version, dir_fd=fd)
        raise
    return version


def _write_file(dir_fd: int, name: str, data: bytes) -> None:
    ffd = os.open(name, _FILE_FLAGS, _PRIVATE_FILE, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(ffd, view):]
        os.fsync(ffd)
    finally:
        os.close(ffd)


def _replace_link(fd: int, points_to: str, name: str) -> None:
    """Make ``name`` a symlink to ``points_to`` at one instant (a new link renamed over it)."""
    temporary = f"..link_{secrets.token_hex(4)}"
    os.symlink(points_to, temporary, dir_fd=fd)
    try:
        os.rename(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=fd)
        raise


def _swap(fd: int, version: str) -> None:
    try:
        _replace_link(fd, version, DATA)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(version, dir_fd=fd)
        raise


def _link_names(fd: int, files: Mapping[str, bytes]) -> None:
    for name in files:
        if not (_is_link(fd, name) and os.readlink(name, dir_fd=fd) == f"{DATA}/{name}"):
            _replace_link(fd, f"{DATA}/{name}", name)


def _remove_old(fd: int, version: str, files: Mapping[str, bytes]) -> None:
    """Remove the older versions, interrupted deliveries' links, and names the set dropped."""
    for name in os.listdir(fd):
        if name in (version, DATA) or name in files:
            continue
        mode = os.lstat(name, dir_fd=fd).st_mode
        if name.startswith("..") and stat.S_ISDIR(mode):
            shutil.rmtree(name, dir_fd=fd)
        elif stat.S_ISLNK(mode) or stat.S_ISREG(mode):  # checked by _check: ours
            os.unlink(name, dir_fd=fd)
