"""Checkpoint files: written one per checkpoint into a folder, read back from files and folders.

Each checkpoint is its own file, ``checkpoint-<at>-<position>.json`` (``at`` as
20261122T120000.000000Z, so names sort by time), holding its one JSON line. A file is created
whole or not at all (a temporary file, flushed, then linked to its name) and never changed
afterwards, which is what an operator shipping evidence off the host wants: copy each new file
once (rsync --ignore-existing, an object store with object lock) and never look back. The same
instant and head signed twice by one key give the same bytes (Ed25519 signatures are
deterministic), so a repeat is a no-op. ``cat checkpoint-*.json`` is a JSON Lines file, and
``read_checkpoints`` reads that too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

from events.anchor import Checkpoint, CheckpointFormatError, parse_checkpoint
from orchestrator.adapters.files import create_once
from orchestrator.domain.errors import InputError, OrchestratorError

__all__ = ["CheckpointFolder", "StreamSink", "file_name", "read_checkpoints"]

_SUFFIXES = (".json", ".jsonl")


def file_name(checkpoint: Checkpoint) -> str:
    statement = checkpoint.statement
    at = statement.at.replace("-", "").replace(":", "")
    return f"checkpoint-{at}-{statement.position:012d}.json"


class CheckpointFolder:
    """The ``CheckpointSink`` of the daemon and ``orchestrator checkpoint --out DIR``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, checkpoint: Checkpoint) -> str:
        path = self.folder / file_name(checkpoint)
        data = checkpoint.line().encode("utf-8")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if create_once(path, data, 0o644) or path.read_bytes() == data:
                return str(path)
        except OSError as exc:
            raise OrchestratorError(f"checkpoint folder {self.folder}: cannot write "
                                    f"{path.name} ({exc.strerror})") from None
        raise OrchestratorError(f"checkpoint {path} exists and holds another checkpoint; "
                                "nothing written")


class StreamSink:
    """``--out -``: the line on a stream (a pipe to another host), flushed."""

    def __init__(self, stream: IO[str], name: str = "stdout") -> None:
        self.stream, self.name = stream, name

    def write(self, checkpoint: Checkpoint) -> str:
        self.stream.write(checkpoint.line())
        self.stream.flush()
        return self.name


def read_checkpoints(paths: Sequence[Path]) -> list[tuple[str, Checkpoint]]:
    """Every checkpoint in ``paths``: files of one or more lines, and folders (their ``*.json``
    and ``*.jsonl`` files), each with where it was read (the file, and its line when the file
    has several). Anything that is not a checkpoint is one ``InputError`` naming file and line."""
    found: list[tuple[str, Checkpoint]] = []
    for path in paths:
        for file in _files(path):
            found.extend(_read_file(file))
    return found


def _files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"checkpoint folder {path}: no checkpoint files (*.json, *.jsonl) in it")
    return files


def _read_file(file: Path) -> list[tuple[str, Checkpoint]]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"checkpoint {file}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"checkpoint {file}: not UTF-8 text, so not a checkpoint") from None
    except OSError as exc:
        raise InputError(f"checkpoint {file}: cannot read it ({exc.strerror})") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise InputError(f"checkpoint {file}: empty, holds no checkpoint")
    out = []
    for number, line in lines:
        try:
            checkpoint = parse_checkpoint(line)
        except CheckpointFormatError as exc:
            raise InputError(f"checkpoint {file} line {number}: not a checkpoint: {exc}") from None
        out.append((str(file) if len(lines) == 1 else f"{file}:{number}", checkpoint))
    return out
