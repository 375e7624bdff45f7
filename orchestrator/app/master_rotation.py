"""Moving every keystore item to a new master key: the loop over ``MasterKeyRotation``.

Each step is the keystore's and atomic; this loop only orders them, so a kill anywhere leaves a
state the next run resumes from: the new key recorded as next, some items moved, the old key
retired once none is left under it (items written meanwhile are moved before it is), and last
the new key installed where the old one was configured.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.app.ports import MasterKeyRotation, RotationStart

__all__ = ["MasterRotated", "rotate_master"]

BATCH = 100


@dataclass(frozen=True, slots=True)
class MasterRotated:
    start: RotationStart
    moved: int  # items this run re-encrypted
    installed: str  # where the new key now is, or what the operator must change


def rotate_master(keystore: MasterKeyRotation, new_key: bytes,
                  batch: int = BATCH) -> MasterRotated:
    """Re-encrypt every item under ``new_key`` and retire the old key; resumable."""
    start = keystore.begin_rotation(new_key)
    moved = 0
    if start is not RotationStart.FINISHED:
        while True:
            while ids := keystore.pending(batch):
                moved += sum(keystore.reencrypt(item_id) for item_id in ids)
            if keystore.finish():
                break
    return MasterRotated(start, moved, keystore.install(new_key))
