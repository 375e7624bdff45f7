"""The hash chain over the log: every record's hash covers its predecessor's hash.

``hash(n) = SHA-256(prev_hash(n) || position(n) as 8 bytes big-endian || record_bytes(n))`` with
``prev_hash(1) = GENESIS``. Including the position means a deleted, inserted or reordered row
breaks the chain at that row, not only a changed one. ``verify`` walks records in position order
and names the first position where the chain does not hold.

A chain alone cannot notice the newest rows being cut off the end, nor a rewrite whose every
hash was recomputed: compare the head position and hash with one kept elsewhere, signed
(``events.anchor``: the checkpoints ``orchestrator verify --checkpoint`` checks).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["GENESIS", "Break", "ChainedRecord", "Verified", "link", "verify"]

GENESIS = "0" * 64


def link(prev_hash: str, position: int, record: bytes) -> str:
    """The hash of the record at ``position`` that follows ``prev_hash``."""
    digest = hashlib.sha256(bytes.fromhex(prev_hash))
    digest.update(position.to_bytes(8, "big"))
    digest.update(record)
    return digest.hexdigest()


class ChainedRecord(Protocol):
    @property
    def position(self) -> int: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...
    def record_bytes(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Break:
    """Where and why the chain first fails to hold."""

    position: int
    reason: str

    def message(self) -> str:
        return f"chain broken at position {self.position}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Verified:
    count: int
    head_position: int
    head_hash: str


def verify(records: Iterable[ChainedRecord], after: tuple[int, str] = (0, GENESIS)
           ) -> Break | Verified:
    """Walk the records in stored order; the first break, or a summary when all holds.

    ``after`` is a head already verified, (position, hash): the records are then those after
    it, and the walk goes on from there (``count`` counts only them)."""
    expected_position = after[0] + 1
    prev = after[1]
    count = 0
    for rec in records:
        if rec.position != expected_position:
            if rec.position > expected_position:
                return Break(expected_position, f"position {expected_position} is missing "
                             f"(next stored position is {rec.position})")
            return Break(rec.position, f"position {rec.position} is out of order "
                         f"(expected {expected_position})")
        if rec.prev_hash != prev:
            return Break(rec.position, "prev_hash does not match the hash of the previous record")
        if link(prev, rec.position, rec.record_bytes()) != rec.hash:
            return Break(rec.position, "record content does not match its hash")
        prev = rec.hash
        expected_position += 1
        count += 1
    return Verified(count=count, head_position=expected_position - 1, head_hash=prev)
