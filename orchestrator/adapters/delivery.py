"""Delivery: an application's current credential files, written where it picks them up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from orchestrator.adapters.keystore import _fsync_dir, atomic_write
from orchestrator.domain.errors import InputError

__all__ = ["FileDelivery", "deliver"]


class FileDelivery:
    """The ``Delivery`` port over a folder: ``<directory>/<app>/<usage>/``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def deliver(self, app: str, usage: str, files: Mapping[str, bytes]) -> Path:
        return deliver(self.directory, app, usage, files)


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


def deliver(directory: Path, app: str, usage: str, files: Mapping[str, bytes]) -> Path:
    """Write an app's current credential files to ``<directory>/<app>/<usage>/`` (each 0600,
    replaced atomically) and return that folder."""
    target = Path(directory) / _safe_component(app, "application") / _safe_component(usage, "usage")
    for name in files:
        _safe_component(name, "file name")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write(target / name, bytes(data), sync_dir=False)
    _fsync_dir(target)  # once for all the renames
    return target
