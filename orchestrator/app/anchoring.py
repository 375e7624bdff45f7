"""Anchoring the log (``events.anchor``): a signed checkpoint of its head, on demand
(``orchestrator checkpoint``) or every so often on the daemon's clock (``AnchorWatch``); and the
log checked against checkpoints (``orchestrator verify --checkpoint``).

A head is signed only after the chain up to it was walked and holds, so a checkpoint never
vouches for a log that was broken already. The daemon walks the whole chain for its first
checkpoint, then only what was appended after the head it signed last: that head is kept in
memory, as the daemon verified it, never read back from the database.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from events.anchor import Checkpoint, Report, Statement, check
from events.chain import GENESIS, Break, Verified, verify
from events.store import EventStore, ReadFilter
from events.times import format_time
from orchestrator.app.ports import CheckpointKey, CheckpointSigner, CheckpointSink
from orchestrator.domain.errors import EvidenceError, RefusedError

__all__ = ["AnchorWatch", "Anchorer", "Written", "check_log"]

log = structlog.get_logger("orchestrator.anchor")


@dataclass(frozen=True)
class Written:
    checkpoint: Checkpoint
    where: str
    head: Verified  # the head it signed, verified from genesis: where the next walk goes on


class Anchorer:
    """Signs the log's head and writes the checkpoint."""

    def __init__(self, store: EventStore, signer: CheckpointSigner, sink: CheckpointSink,
                 clock: Callable[[], datetime], database: str) -> None:
        self.store, self.signer, self.sink = store, signer, sink
        self.clock, self.database = clock, database

    def write(self, trusted: Verified | None = None) -> Written:
        """Walk the chain (from ``trusted``, a head verified before, else from genesis), sign its
        head, write the checkpoint. Refused, writing nothing, on a broken chain or an empty log."""
        after = (0, GENESIS) if trusted is None else (trusted.head_position, trusted.head_hash)
        walked = verify(self.store.read(ReadFilter(after=after[0])), after)
        if isinstance(walked, Break):
            raise EvidenceError(f"{walked.message()}; no checkpoint written (run "
                                "orchestrator verify --checkpoint with the checkpoints you hold)")
        if walked.head_position == 0:
            raise RefusedError("the log is empty: nothing to checkpoint yet")
        statement = Statement(walked.head_position, walked.head_hash,
                              format_time(self.clock()), self.database, self.signer.key_id)
        signature = base64.urlsafe_b64encode(self.signer.sign(statement.signed_bytes()))
        checkpoint = Checkpoint(statement, signature.rstrip(b"=").decode("ascii"))
        where = self.sink.write(checkpoint)
        head = Verified(walked.head_position, walked.head_position, walked.head_hash)
        return Written(checkpoint, where, head)


class AnchorWatch:
    """The daemon's checkpoints: one at its first tick, then one a tick once ``every`` has
    passed on the injected clock since the last. A sink that fails is tried again at the next
    tick; a broken chain is reported (``chain_broken``, error level) and tried again after
    ``every``, signing nothing meanwhile."""

    def __init__(self, anchorer: Anchorer, every: timedelta,
                 clock: Callable[[], datetime]) -> None:
        self.anchorer, self.every, self.clock = anchorer, every, clock
        self._last: datetime | None = None
        self._trusted: Verified | None = None

    def run(self) -> Written | None:
        now = self.clock()
        if self._last is not None and now < self._last + self.every:
            return None
        try:
            written = self.anchorer.write(self._trusted)
        except EvidenceError as exc:
            self._last = now
            log.error("chain_broken", error=str(exc))
            return None
        except RefusedError:  # an empty log: the first event gets a checkpoint at the next tick
            return None
        except Exception as exc:  # the sink or the disk: the next tick tries again
            log.error("checkpoint_failed", error=str(exc))
            return None
        self._last, self._trusted = now, written.head
        statement = written.checkpoint.statement
        log.info("checkpoint_written", position=statement.position, hash=statement.hash,
                 file=written.where)
        return written


def check_log(store: EventStore, checkpoints: Sequence[tuple[str, Checkpoint]],
              key: CheckpointKey) -> Report:
    """Each checkpoint's signature checked against the trusted ``key`` (refused, with the
    first that fails, before anything else), then the whole chain walked and compared."""
    for source, checkpoint in checkpoints:
        _check_signature(source, checkpoint, key)
    return check([(source, c.statement) for source, c in checkpoints], store.read())


def _check_signature(source: str, checkpoint: Checkpoint, key: CheckpointKey) -> None:
    statement = checkpoint.statement
    if statement.key_id != key.key_id:
        raise EvidenceError(f"checkpoint {source}: signed by key {statement.key_id}, not by the "
                            f"trusted key {key.key_id}: not our checkpoint, or check it with "
                            "its own key's --public-key")
    if not key.verifies(statement.signed_bytes(), _unb64(checkpoint.signature)):
        raise EvidenceError(f"checkpoint {source}: its signature does not verify with key "
                            f"{key.key_id}: it was changed after signing, or forged")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""

