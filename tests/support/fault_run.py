"""What the fault tests (tests/integration/test_fault_*.py) share: a few applications whose
policies keep rotations in flight, and the verdict once the fault has cleared.

The installed daemon runs on a ``Site`` of tests/integration/test_daemon_crash.py; the verdict
is ``assert_consistent`` there (every invariant of the log, ``orchestrator verify`` among them,
no orphan in the keystore, no rotation parked) and this module's own checks, made with the
independent oracle (tests/oracle.py: the events table read with SQL and folded apart, keystore
items opened with AES-GCM alone, delivered keys judged with ``cryptography``):

* no application was ever without a usable key since its first delivery;
* each application's delivery folder holds its current key: the credential its last rotation
  delivered, and the private key of that credential's public key; one version of the set, and
  no half-written one beside it;
* every credential the log has not deleted has its private key in the keystore;
* the daemon's log is JSON lines only, with no traceback and no ``tick_failed``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events import catalog as ev
from events.sql import SQLEventStore
from events.store import ReadFilter
from tests.integration.test_daemon_crash import (
    COMPLETED,
    Daemon,
    Site,
    Summary,
    assert_consistent,
    key_policy,
    secret_policy,
)
from tests.oracle import (
    file_keystore_item,
    gaps,
    key_belongs_to_public_key,
    read_log,
)

__all__ = ["APPS", "POLL", "busy", "calm", "head", "judge", "lines_with", "rotated_since",
           "sqlite_path"]

# fault-a*: a disabled key kept until the next rotation frees its slot (free_slot deletes it);
# fault-b*: the disabled key deleted by retention a second later (the tick's delete)
APPS = ["fault-a0", "fault-a1", "fault-b0", "fault-b1"]
RETRY = "{attempts: 40, backoff: 1s, maxBackoff: 1s}"  # outlasts any fault a test makes
PKJWT = "private_key_jwt"
POLL = 0.25  # seconds between two looks at the log and the daemon's lines while waiting


def _policies(keys_every: str, secrets_every: str) -> dict[str, str]:
    keys = {"fault-keys-a": ("fault-a*", "1h"), "fault-keys-b": ("fault-b*", "1s")}
    made = {name: key_policy(name, apps, every=keys_every, overlap="1s", before_expiry="1m",
                             lifetime="2h", retention=retention, retry=RETRY)
            for name, (apps, retention) in keys.items()}
    made["fault-secrets"] = secret_policy("fault-secrets", "fault-*", every=secrets_every,
                                          overlap="2s", before_expiry="1m", retry=RETRY)
    return made


def busy() -> dict[str, str]:
    """A key rotation of each application every 2 s, a client secret's every 5 s."""
    return _policies("2s", "5s")


def calm() -> dict[str, str]:
    """Nothing new becomes due: what is in flight drains."""
    return _policies("1h", "1h")


def sqlite_path(site: Site) -> Path:
    return Path(site.db.removeprefix("sqlite:///"))


def rotated_since(site: Site, position: int) -> set[str]:
    """The applications with a new key generated after ``position`` by a rotation that has
    completed since (the work the fault stopped, done once it cleared)."""
    added: dict[str, str] = {}
    completed: set[str] = set()
    for rec in SQLEventStore(site.engine).read(ReadFilter(after=position, types=(
            ev.CredentialAdded.type_name, COMPLETED))):
        if rec.type == COMPLETED:
            completed.add(rec.payload["rotation_id"])
        elif rec.payload["usage"] == PKJWT and rec.correlation_id:
            added[rec.correlation_id] = rec.stream_id.removeprefix("app:")
    return {app for rotation, app in added.items() if rotation in completed}


def head(site: Site) -> int:
    """The log's last position."""
    (last,) = SQLEventStore(site.engine).read(ReadFilter(last=1))
    return last.position


def lines_with(daemon: Daemon, event: str, *fragments: str, after: int = 0
               ) -> list[dict[str, Any]]:
    """The daemon's ``event`` lines (those after its first ``after``) whose text holds every
    fragment."""
    return [line for line in daemon.events(event)[after:]
            if all(f in json.dumps(line) for f in fragments)]


def judge(site: Site, daemon: Daemon) -> Summary:
    """Stop the daemon (exit 0 on SIGTERM) and judge everything it left behind."""
    status, _ = daemon.stop()
    assert status == 0, daemon.tail()
    raw = daemon.log.read_text(errors="replace")
    assert "Traceback" not in raw, daemon.tail(40)
    bad = [line for line in daemon.lines()
           if line["event"] in ("(not json)", "tick_failed") or "exception" in line]
    assert not bad, bad[:3]

    summary = assert_consistent(site, failed_steps=True)
    log = read_log(sqlite_path(site))
    end = datetime.now(UTC)
    public = {r["payload"]["credential_id"]: r["payload"]["public_pem"] for r in log.rows
              if r["type"] == "credential.added"}
    deleted = {r["payload"]["credential_id"] for r in log.rows
               if r["type"] == "credential.deleted"}
    for app in APPS:
        delivered = [(at, cid) for cid in log.creds[app]
                     if (at := log.delivered_at(app, cid)) is not None]
        first, current = min(delivered)[0], max(delivered)[1]
        assert gaps(log.held_intervals(app, end), first, end) == [], app
        folder = site.delivery / app / PKJWT
        assert (folder / "credential_id").read_text() == current, app
        assert key_belongs_to_public_key((folder / "private_key.pem").read_bytes(),
                                         public[current]), app
        versions = [p.name for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
        assert versions == [(folder / "..data").readlink().name], (app, versions)
    for cid, pem in public.items():
        if cid not in deleted:
            held = file_keystore_item(site.keystore, cid)
            assert held is not None and key_belongs_to_public_key(held, pem), cid
    leftovers = [p.name for p in (site.keystore / "items").iterdir()
                 if not re.fullmatch(r"[A-Za-z0-9_-]+\.bin", p.name)]
    assert not leftovers, leftovers
    return summary
