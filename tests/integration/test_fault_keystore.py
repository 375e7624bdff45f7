"""The keystore made unreadable under a working daemon: it says so, stores and reads nothing,
loses nothing, and resumes once the keystore is restored.

As root no permission bit stops a read, so the keystore is made unusable the ways it happens:
its master.key moved away (a backup restored without it, a cleanup) or replaced by garbage (a
bad copy; another site's key is refused the same way, see tests/unit/test_keystore.py), and
the keystore folder moved away (a volume not mounted, a folder deleted) or replaced by a file. Each is done to the installed
daemon running four applications whose keys rotate every 2 s and client secrets every 5 s, held
a few seconds once the daemon met it, then undone. For each:

* the daemon keeps running; each step that needs the keystore fails with one line naming the
  path and what to do, recorded as a failed step and retried after its backoff (the policies'
  retry budget outlasts the fault, so nothing parks);
* it generates no key it cannot store and delivers none it cannot read: no credential is added,
  tested or delivered while the fault lasts (before the fix in ``adapters/keystore.py`` it went
  on with the key it held in memory: under a master.key that was gone or replaced, and, with
  the folder moved away, into a fresh empty folder it made at the old path, where the new
  private keys were lost to the restore);
* once restored, every application has a new key made and its rotation completed.

The verdict (``tests/support/fault_run.py``): ``assert_consistent`` with ``orchestrator
verify``, and the oracle: no instant without a usable key, each delivery folder holding its
current key, every live credential's private key in the restored keystore (opened with AES-GCM
alone), no orphan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from events import catalog as ev
from tests.integration.test_daemon_crash import (  # noqa: F401  (sites: a fixture)
    Site,
    sites,
    wait_until,
)
from tests.support.fault_run import (
    APPS,
    POLL,
    busy,
    calm,
    head,
    judge,
    lines_with,
    rotated_since,
)

pytestmark = pytest.mark.slow
HELD = 2.0  # seconds a fault is kept once the daemon met it: ticks of 0.2 s, retries of 1 s
# what may not be recorded while the keystore cannot be used
NEEDS_KEYSTORE = {ev.CredentialAdded.type_name, ev.SecretRotated.type_name}
NEEDS_KEYSTORE_STEPS = {"tested", "delivered"}


def master_key_gone(keystore: Path, aside: Path) -> Callable[[], None]:
    (keystore / "master.key").rename(aside / "master.key")
    return lambda: (aside / "master.key").rename(keystore / "master.key")


def master_key_replaced(content: bytes) -> Callable[[Path, Path], Callable[[], None]]:
    def fault(keystore: Path, aside: Path) -> Callable[[], None]:
        restore = master_key_gone(keystore, aside)
        (keystore / "master.key").write_bytes(content)
        return restore

    return fault


def folder_gone(keystore: Path, aside: Path) -> Callable[[], None]:
    keystore.rename(aside / "keystore")

    def restore() -> None:
        assert not keystore.exists(), "something was made where the keystore was"
        (aside / "keystore").rename(keystore)

    return restore


def folder_replaced_by_a_file(keystore: Path, aside: Path) -> Callable[[], None]:
    keystore.rename(aside / "keystore")
    keystore.write_text("not a keystore\n")

    def restore() -> None:
        keystore.unlink()
        (aside / "keystore").rename(keystore)

    return restore


FAULTS: list[tuple[str, Callable[[Path, Path], Callable[[], None]], str]] = [
    ("master.key moved away", master_key_gone, "master.key is gone"),
    ("master.key replaced by garbage", master_key_replaced(b"not a key\n"),
     "master.key no longer holds the key"),
    ("the keystore folder moved away", folder_gone, "master.key is gone"),
    ("the keystore folder replaced by a file", folder_replaced_by_a_file,
     "master.key (Not a directory)"),
]


def test_the_daemon_rides_out_an_unusable_keystore(
        tmp_path: Path, sites: Callable[..., Site]) -> None:  # noqa: F811
    site = sites(tmp_path, f"sqlite:///{tmp_path / 'orchestrator.db'}")
    aside = tmp_path / "aside"
    aside.mkdir()
    site.write_policies(busy())
    site.cli("policy", "validate", str(site.policies))
    site.register(*APPS)
    daemon = site.daemon(name="daemon")
    wait_until(lambda: rotated_since(site, 0) == set(APPS), 90,
               "a key rotation of every application", watch=(daemon,), every=POLL)

    for what, fault, says in FAULTS:
        seen = len(daemon.events("rotation_step_failed"))
        restore = fault(site.keystore, aside)
        said = wait_until(lambda seen=seen, says=says: lines_with(
            daemon, "rotation_step_failed", f"keystore {site.keystore}: ", says,
            '"retry_at": "', after=seen), 60, f"a step failing once {what}", watch=(daemon,),
            every=POLL)
        met = head(site)
        time.sleep(HELD)
        assert daemon.alive, daemon.tail()
        during = [r for r in site.records() if r.position > met]  # nothing it needs a key for
        assert not [r for r in during if r.type in NEEDS_KEYSTORE or (
            r.type == ev.RotationStepRecorded.type_name
            and r.payload["step"] in NEEDS_KEYSTORE_STEPS)], (what, during)
        assert "restore" in said[0]["error"], said[0]
        restore()
        restored = head(site)
        wait_until(lambda restored=restored: rotated_since(site, restored) == set(APPS), 90,
                   f"a new key of every application once {what} was undone",
                   watch=(daemon,), every=POLL)

    site.write_policies(calm())
    wait_until(site.settled, 90, "the rotations in flight to drain", watch=(daemon,),
               every=POLL)
    summary = judge(site, daemon)
    failed = [r.payload for r in site.records(ev.RotationFailed.type_name)]
    assert failed and all(f"keystore {site.keystore}: " in p["error"] and p["next_attempt_at"]
                          for p in failed), failed  # only the faults made here, each retried
    assert summary.completed >= (1 + len(FAULTS)) * len(APPS)
