"""Checkpoints: signed statements of the chain's head, kept away from the database, that anchor
the hash chain (CloudTrail's digest files are the model).

The chain alone proves only that the rows agree with each other: whoever can write the table can
rewrite a payload and recompute every hash after it, or cut the newest rows off, and the chain
still holds. A checkpoint states "at ``at`` the log of ``database`` held ``position`` events, and
the hash of the last one was ``hash``", signed with a key the database never sees. A log checked
against it, with the whole chain walked from genesis, shows:

* a rewrite at or before ``position``, every hash recomputed: the hash there differs;
* rows inserted, forged or reordered before ``position``: the hash there differs;
* rows cut off the end: the log ends before ``position``.

It cannot tell rows appended after the newest checkpoint, honest or forged, from honest growth:
nothing signed speaks of them yet. ``Report.unanchored`` names them; the next checkpoint anchors
whatever is there by then, so they are anchored only as far as the signer trusts its database.

This module is pure: the statement's bytes, a checkpoint's one-line JSON form, and the
comparison with a log. The signature (Ed25519) is made and checked by an adapter.

A checkpoint is one line of JSON (a file may hold several, one a line)::

    {"at":"2026-11-22T12:00:00.000000Z","database":"sqlite:///var/orchestrator.db",
     "format":"orchestrator-checkpoint/1","hash":"<64 hex>","key_id":"sha256:<64 hex>",
     "position":50,"signature":"<base64url, no padding>"}

``key_id`` is the SHA-256 of the signing key's public half as SPKI DER. The signed bytes are the
canonical JSON (keys sorted, no spaces, UTF-8) of every field but ``signature``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from events.chain import Break, ChainedRecord, Verified, verify

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointFormatError",
    "Disagreement",
    "Finding",
    "Report",
    "Statement",
    "check",
    "parse_checkpoint",
]

FORMAT = "orchestrator-checkpoint/1"
_SIGNED = ("at", "database", "format", "hash", "key_id", "position")
_FIELDS = frozenset((*_SIGNED, "signature"))
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"sha256:[0-9a-f]{64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class CheckpointFormatError(ValueError):
    """Text that is not a checkpoint; ``str()`` says why in a few words."""


@dataclass(frozen=True, slots=True)
class Statement:
    """What a checkpoint signs."""

    position: int
    hash: str
    at: str
    database: str
    key_id: str
    format: str = FORMAT

    def signed_bytes(self) -> bytes:
        fields = {name: getattr(self, name) for name in _SIGNED}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    statement: Statement
    signature: str  # base64url of the Ed25519 signature of statement.signed_bytes(), no padding

    def line(self) -> str:
        """The checkpoint as one line of JSON, newline included."""
        fields: dict[str, Any] = json.loads(self.statement.signed_bytes())
        fields["signature"] = self.signature
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """A checkpoint from its line; ``CheckpointFormatError`` when the text is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointFormatError(f"not JSON, or cut short ({exc.msg}, column {exc.colno})"
                                    ) from None
    if not isinstance(data, dict):
        raise CheckpointFormatError("not a JSON object")
    if data.get("format") != FORMAT:
        raise CheckpointFormatError(f"format {data.get('format')!r} is not {FORMAT!r}")
    if missing := sorted(_FIELDS - data.keys()):
        raise CheckpointFormatError(f"missing {', '.join(missing)}")
    if unknown := sorted(data.keys() - _FIELDS):
        raise CheckpointFormatError(f"unknown field {', '.join(unknown)}")
    position = data["position"]
    if type(position) is not int or position < 1:
        raise CheckpointFormatError("position is not a whole number of at least 1")
    for name, pattern in (("hash", _HEX64), ("key_id", _KEY_ID), ("signature", _B64URL)):
        if not isinstance(data[name], str) or not pattern.fullmatch(data[name]):
            raise CheckpointFormatError(f"{name} is not in its form")
    if not isinstance(data["at"], str) or not isinstance(data["database"], str):
        raise CheckpointFormatError("at and database must be text")
    return Checkpoint(Statement(position, data["hash"], data["at"], data["database"],
                                data["key_id"]), data["signature"])


class Finding(StrEnum):
    REWRITTEN = "rewritten"  # the log's hash at the checkpoint's position is another
    CUT = "cut"  # the log ends before the checkpoint's position
    UNREACHED = "unreached"  # the chain breaks before the position: nothing there to compare


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A checkpoint the log does not agree with, and what the log has instead."""

    source: str  # where the checkpoint was read: a file, with its line when it has several
    statement: Statement
    finding: Finding
    found: str | None = None  # REWRITTEN: the log's hash there; CUT: the log's head hash
    head_position: int | None = None  # CUT: where the log ends; UNREACHED: where it breaks

    def message(self) -> str:
        s = self.statement
        if self.finding is Finding.REWRITTEN:
            return (f"checkpoint {self.source} disagrees at position {s.position}: it signed "
                    f"hash {s.hash}, the log has {self.found} (the log up to position "
                    f"{s.position} changed after it was signed at {s.at})")
        if self.finding is Finding.CUT:
            return (f"checkpoint {self.source} is at position {s.position} (hash {s.hash}), but "
                    f"the log ends at position {self.head_position}: events "
                    f"{(self.head_position or 0) + 1} to {s.position} were removed")
        return (f"checkpoint {self.source} at position {s.position} cannot be checked: the "
                f"chain breaks before it, at position {self.head_position}")


@dataclass(frozen=True, slots=True)
class Report:
    chain: Break | Verified
    checked: int  # how many checkpoints
    disagreements: tuple[Disagreement, ...]
    newest: tuple[str, Statement] | None  # the checkpoint at the highest position

    @property
    def ok(self) -> bool:
        return isinstance(self.chain, Verified) and not self.disagreements

    @property
    def unanchored(self) -> tuple[int, int] | None:
        """The positions after the newest checkpoint, (first, last), when the log goes on past
        it: no checkpoint speaks for them, whether appended honestly or forged."""
        if not isinstance(self.chain, Verified) or self.newest is None:
            return None
        head = self.chain.head_position
        return (self.newest[1].position + 1, head) if head > self.newest[1].position else None


def check(checkpoints: Sequence[tuple[str, Statement]],
          records: Iterable[ChainedRecord]) -> Report:
    """Walk the chain from genesis (``records`` in position order) and compare each checkpoint,
    whose signature was already checked, with the log. One pass, whatever the count."""
    wanted = {s.position for _, s in checkpoints}
    found: dict[int, str] = {}

    def tapped() -> Iterator[ChainedRecord]:
        for rec in records:
            if rec.position in wanted:
                found[rec.position] = rec.hash
            yield rec

    chain = verify(tapped())
    out: list[Disagreement] = []
    for source, s in sorted(checkpoints, key=lambda item: item[1].position):
        if isinstance(chain, Break) and s.position >= chain.position:
            out.append(Disagreement(source, s, Finding.UNREACHED, head_position=chain.position))
        elif isinstance(chain, Verified) and s.position > chain.head_position:
            out.append(Disagreement(source, s, Finding.CUT, found=chain.head_hash,
                                    head_position=chain.head_position))
        elif found[s.position] != s.hash:
            out.append(Disagreement(source, s, Finding.REWRITTEN, found=found[s.position]))
    newest = max(checkpoints, key=lambda item: item[1].position, default=None)
    return Report(chain, len(checkpoints), tuple(out), newest)
