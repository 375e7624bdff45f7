"""An anchored log, as a user and an attacker meet it, on a real SQLite file and a real PostgreSQL
schema: the installed ``orchestrator`` signs checkpoints of the log's head (``checkpoint``),
and ``verify --checkpoint`` checks the log against them.

The attacker has the database and nothing else: raw SQL through the driver (sqlite3, psycopg),
the append-only triggers dropped, and every hash recomputed with hashlib, so the chain alone
holds after each attack (plain ``verify`` says ok, and the tests show it). What each attack
leaves for a checkpoint to catch, and what no checkpoint can catch, is pinned here.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy.engine import make_url

from tests.helpers import Cli, assert_refused

GENESIS = "0" * 64
RECORD = ("stream_id", "stream_version", "event_id", "type", "schema_version", "occurred_at",
          "recorded_at", "actor", "correlation_id", "causation_id", "payload")
COLUMNS = ("position", *RECORD, "prev_hash", "hash")
APPS = ("billing", "payments", "search", "mail", "ledger")  # positions 1 to 5
LATER = ("reports", "audit-ui")  # positions 6 and 7, registered after the checkpoint


def chain_hash(prev_hash: str, position: int, row: dict[str, Any]) -> str:
    """The log's hash of a row, written out here from the README, not imported."""
    record = json.dumps([row[c] for c in RECORD], separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(bytes.fromhex(prev_hash) + position.to_bytes(8, "big")
                            + record.encode("utf-8"))
    return digest.hexdigest()


def connect(db_url: str) -> Any:
    """A plain driver connection in autocommit mode: sqlite3 or psycopg, no SQLAlchemy."""
    url = make_url(db_url)
    if url.get_backend_name() == "postgresql":
        return psycopg.connect(host=url.host, port=url.port, user=url.username,
                               dbname=url.database, options=url.query.get("options"),
                               autocommit=True)
    return sqlite3.connect(url.database, isolation_level=None)


def stored_rows(conn: Any) -> list[dict[str, Any]]:
    cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM events ORDER BY position")
    return [dict(zip(COLUMNS, row, strict=True)) for row in cur.fetchall()]


class Attacker:
    """Write access to the database, and nothing else: the append-only triggers go first."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pg = isinstance(conn, psycopg.Connection)
        if self.pg:
            self.conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        else:
            self.conn.execute("DROP TRIGGER events_no_update")
            self.conn.execute("DROP TRIGGER events_no_delete")

    def sql(self, statement: str, *params: Any) -> None:
        self.conn.execute(statement.replace("?", "%s") if self.pg else statement, params)

    def rows(self) -> list[dict[str, Any]]:
        return stored_rows(self.conn)

    def rewrite(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the whole log with ``rows``, renumbered from 1 and chained afresh: a log
        whose chain holds from genesis to its head."""
        prev = GENESIS
        for position, row in enumerate(rows, 1):
            row.update(position=position, prev_hash=prev)
            row["hash"] = prev = chain_hash(prev, position, row)
        self.sql("DELETE FROM events")
        self.insert(rows)
        return rows

    def insert(self, rows: list[dict[str, Any]]) -> None:
        marks = ", ".join("?" * len(COLUMNS))
        for row in rows:
            self.sql(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({marks})",
                     *(row[c] for c in COLUMNS))

    def append_forged(self, count: int) -> list[dict[str, Any]]:
        """``count`` events of the attacker's, appended after the head with correct hashes."""
        head = self.rows()[-1]
        prev, forged = head["hash"], []
        for n in range(count):
            row = forged_row(f"shadow-{n}")
            row.update(position=head["position"] + 1 + n, prev_hash=prev)
            row["hash"] = prev = chain_hash(prev, row["position"], row)
            forged.append(row)
        self.insert(forged)
        return forged


def forged_row(app: str) -> dict[str, Any]:
    at = "2026-11-22T12:30:00.000000Z"
    return {"stream_id": f"app:{app}", "stream_version": 1, "event_id": str(uuid.uuid4()),
            "type": "application.registered", "schema_version": 1, "occurred_at": at,
            "recorded_at": at, "actor": "cli:alice", "correlation_id": None,
            "causation_id": None,
            "payload": json.dumps({"app": app, "client_id": None, "labels": {}, "provider": None},
                                  sort_keys=True, separators=(",", ":"))}


@dataclass
class Story:
    """Five applications registered, a checkpoint of that head (position 5) in its own folder,
    then two more registered: the log has grown honestly to position 7."""

    cli: Cli
    key: Path
    public: Path
    checkpoints: Path
    signed: dict[str, Any]  # the checkpoint's JSON
    rows: list[dict[str, Any]]  # the honest log, as stored

    @property
    def file(self) -> Path:
        (only,) = self.checkpoints.iterdir()
        return only

    def verify(self, *paths: Path, public: Path | None = None) -> Any:
        return self.cli.run("verify", *[a for p in paths or (self.checkpoints,)
                                        for a in ("--checkpoint", p)],
                            "--public-key", public or self.public)


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One key for the module, made by the installed command (it needs no database)."""
    home = tmp_path_factory.mktemp("offsite")
    key = home / "checkpoint.key"
    made = Cli("sqlite:///unused.db", home / "keystore", cwd=home, init=False)(
        "checkpoint", "init-key", key)
    public = key.with_name("checkpoint.key.pub")
    assert key.stat().st_mode & 0o777 == 0o600, made
    assert f"public key {public}, key id sha256:" in made.stdout
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    return key


@pytest.fixture
def story(db_url: str, tmp_path: Path, signing_key: Path) -> Iterator[Story]:
    cli = Cli(db_url, tmp_path / "keystore", cwd=tmp_path)
    cli("app", "register", *APPS)
    key, folder = signing_key, tmp_path / "checkpoints"
    written = cli("checkpoint", "--key", key, "--out", folder)
    (file,) = folder.iterdir()
    signed = json.loads(file.read_text())
    assert f"checkpoint {file}: position 5 hash {signed['hash']}" in written.stdout
    cli("app", "register", *LATER)
    with contextlib.closing(connect(db_url)) as conn:
        rows = stored_rows(conn)
    yield Story(cli, key, key.with_name("checkpoint.key.pub"), folder, signed, rows)


@pytest.fixture
def attacker(story: Story, db_url: str) -> Iterator[Attacker]:
    """Comes after the story: the log was written honestly, then the attacker arrives."""
    with contextlib.closing(connect(db_url)) as conn:
        yield Attacker(conn)


def test_an_honest_log_that_grew_after_the_checkpoint_verifies(story: Story) -> None:
    """The checkpoint agrees, and the two events after it are named as not anchored yet."""
    assert story.signed["position"] == 5 and story.signed["hash"] == story.rows[4]["hash"]
    result = story.verify()
    assert result.returncode == 0, str(result)
    assert result.stdout.splitlines() == [
        f"ok: 7 events, chain intact, head position 7 hash {story.rows[6]['hash']}",
        f"ok: 1 checkpoint(s) signed by {story.signed['key_id']} agree with the log; the "
        f"newest, {story.file}, anchors positions 1 to 5 (signed at {story.signed['at']})",
        "not anchored: positions 6 to 7 came after the newest checkpoint; no checkpoint speaks "
        "for them yet (honest growth and events forged at the end look alike until one does)",
    ]


def test_an_edited_payload_with_every_hash_recomputed_is_caught(story: Story,
                                                                attacker: Attacker) -> None:
    """The chain alone holds after the rewrite; the checkpoint names position 5, the hash it
    signed, the hash the log has now, and its own file."""
    rows = attacker.rows()
    rows[1]["payload"] = rows[1]["payload"].replace('"labels":{}', '"labels":{"env":"evil"}')
    forged = attacker.rewrite(rows)
    story.cli("projections", "rebuild")  # the read model made to agree: only the anchor is left
    plain = story.cli("verify")
    assert plain.stdout.startswith(f"ok: 7 events, chain intact, head position 7 hash "
                                   f"{forged[6]['hash']}")
    result = story.verify()
    assert_refused(result, f"checkpoint {story.file} disagrees at position 5: it signed hash "
                           f"{story.signed['hash']}, the log has {forged[4]['hash']}")
    assert forged[4]["hash"] != story.signed["hash"]


def test_two_events_forged_after_the_newest_checkpoint_are_not_vouched_for(
        story: Story, attacker: Attacker) -> None:
    """The honest limit: two events appended with correct hashes after the newest checkpoint
    look like growth to it. verify does not call them anchored: it names their positions as
    covered by no checkpoint. And the attacker cannot make them anchored: a checkpoint of the
    forged head signed with the attacker's own key is refused, and so is one that claims our
    key's id."""
    forged = attacker.append_forged(2)
    result = story.verify()
    assert result.returncode == 0, str(result)
    assert "not anchored: positions 6 to 9 came after the newest checkpoint" in result.stdout

    theirs = ed25519.Ed25519PrivateKey.generate()
    their_id = "sha256:" + hashlib.sha256(theirs.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    for claimed_id in (their_id, story.signed["key_id"]):
        fake = _signed({**story.signed, "position": 9, "hash": forged[-1]["hash"],
                        "key_id": claimed_id}, theirs)
        path = story.cli.cwd / f"forged-{claimed_id[7:15]}.json"
        path.write_text(json.dumps(fake) + "\n")
        refused = story.verify(story.checkpoints, path)
        if claimed_id == their_id:
            assert_refused(refused, f"checkpoint {path}: signed by key {their_id}, not by the "
                                    f"trusted key {story.signed['key_id']}")
        else:
            assert_refused(refused, f"checkpoint {path}: its signature does not verify with "
                                    f"key {story.signed['key_id']}")


def test_two_events_forged_before_the_checkpointed_position_are_caught(
        story: Story, attacker: Attacker) -> None:
    """Two events slipped in at positions 3 and 4, the honest ones after them renumbered and
    everything re-chained: position 5 now holds another event, and another hash."""
    rows = attacker.rows()
    forged = attacker.rewrite([*rows[:2], forged_row("shadow-0"), forged_row("shadow-1"),
                               *rows[2:]])
    story.cli("projections", "rebuild")  # the read model made to agree: only the anchor is left
    assert story.cli("verify").stdout.startswith("ok: 9 events, chain intact")
    assert_refused(story.verify(), f"disagrees at position 5: it signed hash "
                                   f"{story.signed['hash']}, the log has {forged[4]['hash']}")


def test_deleted_last_events_are_caught(story: Story, attacker: Attacker) -> None:
    """The newest four events deleted: the chain holds to position 3, the checkpoint says 5."""
    attacker.sql("DELETE FROM events WHERE position > ?", 3)
    story.cli("projections", "rebuild")  # the read model made to agree: only the anchor is left
    assert story.cli("verify").stdout.startswith(
        f"ok: 3 events, chain intact, head position 3 hash {story.rows[2]['hash']}")
    assert_refused(story.verify(), f"checkpoint {story.file} is at position 5 (hash "
                                   f"{story.signed['hash']}), but the log ends at position 3: "
                                   "events 4 to 5 were removed")


def test_a_checkpoint_changed_after_signing_is_refused(story: Story) -> None:
    """An edited position in the checkpoint file breaks its signature: one line, no check."""
    edited = story.cli.cwd / "edited.json"
    edited.write_text(json.dumps({**story.signed, "position": 4, "hash": story.rows[3]["hash"]}))
    assert_refused(story.verify(edited), f"checkpoint {edited}: its signature does not verify")


def test_a_truncated_checkpoint_file_is_one_line(story: Story) -> None:
    cut = story.cli.cwd / "cut.json"
    cut.write_bytes(story.file.read_bytes()[:90])
    assert_refused(story.verify(cut), f"checkpoint {cut} line 1: not a checkpoint: not JSON, "
                                      "or cut short")


def test_several_checkpoints_and_a_json_lines_file(story: Story, db_url: str) -> None:
    """Checkpoints concatenated into one JSON Lines file are read line by line; after the tail
    is cut, each checkpoint past the new head is listed on stdout and the first is the error."""
    second = story.cli("checkpoint", "--key", story.key, "--out", "-").stdout
    assert json.loads(second)["position"] == 7
    lines = story.cli.cwd / "all.jsonl"
    lines.write_text(story.file.read_text() + second)
    assert story.verify(lines).returncode == 0
    with contextlib.closing(connect(db_url)) as conn:
        Attacker(conn).sql("DELETE FROM events WHERE position > ?", 4)
    result = story.verify(lines)
    assert_refused(result, f"checkpoint {lines}:1 is at position 5", "(and 1 more")
    assert [line.split(" is at")[0] for line in result.stdout.splitlines()] == [
        f"checkpoint {lines}:1", f"checkpoint {lines}:2"]


def test_the_signature_checks_with_openssl_alone(story: Story) -> None:
    """An independent verifier: the signed bytes as the README describes them, the signature
    and the key id checked with the openssl command line, none of our code."""
    message = json.dumps({k: v for k, v in story.signed.items() if k != "signature"},
                         sort_keys=True, separators=(",", ":")).encode("utf-8")
    signature = base64.urlsafe_b64decode(story.signed["signature"] + "==")
    work = story.cli.cwd
    (work / "msg").write_bytes(message)
    (work / "sig").write_bytes(signature)
    try:
        checked = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(story.public), "-rawin",
             "-in", str(work / "msg"), "-sigfile", str(work / "sig")],
            capture_output=True, text=True, check=False)
    except FileNotFoundError:
        pytest.skip("no openssl command on this machine")
    assert checked.returncode == 0 and "Signature Verified Successfully" in checked.stdout, (
        checked.stdout + checked.stderr)
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(story.public), "-outform",
                          "DER"], capture_output=True, check=True).stdout
    assert story.signed["key_id"] == "sha256:" + hashlib.sha256(der).hexdigest()


def _signed(fields: dict[str, Any], key: ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    body = {k: v for k, v in fields.items() if k != "signature"}
    message = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    signature = base64.urlsafe_b64encode(key.sign(message)).rstrip(b"=").decode("ascii")
    return {**body, "signature": signature}
