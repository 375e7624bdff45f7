"""``orchestrator audit export``: the log as JSON Lines a SIEM re-verifies on its own, on SQLite
and PostgreSQL. The oracle is ``reverify`` below: a few lines of hashlib and json written from
the README's description, importing none of our code."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Cli, assert_refused


def reverify(lines: list[str], prev: str = "0" * 64, first: int = 1) -> str:
    """What a SIEM runs: each line's hash recomputed from its prev_hash, position and record
    bytes, each prev_hash the line before's hash, positions gap-free. The head hash, or an
    AssertionError naming the first line that does not hold."""
    for position, line in enumerate(lines, first):
        row = json.loads(line)
        assert row["position"] == position, f"line of position {position}: gap or reorder"
        assert row["prev_hash"] == prev, f"position {position}: prev_hash is not the hash before"
        digest = hashlib.sha256(bytes.fromhex(prev) + position.to_bytes(8, "big")
                                + row["record"].encode("utf-8")).hexdigest()
        assert digest == row["hash"], f"position {position}: record does not match its hash"
        prev = digest
    return prev


NAME = "Zürich ✓ a\u2028b"  # not ASCII, and a line separator str.splitlines() would split at


def _log(db_url: str, tmp_path: Path) -> Cli:
    cli = Cli(db_url, tmp_path / "keystore", cwd=tmp_path)
    cli("app", "register", "billing", "payments", "search")
    cli("credential", "add", "billing", "--usage", "private_key_jwt", "--generate",
        "--activate", "--name", NAME)
    return cli


def test_an_export_re_verifies_with_hashlib_alone(db_url: str, tmp_path: Path) -> None:
    """Every line of the export holds against the independent oracle, its head is the head
    ``verify`` reports, and each record is the event ``audit --format json`` shows."""
    cli = _log(db_url, tmp_path)
    out = tmp_path / "evidence" / "log.jsonl"
    out.parent.mkdir()
    said = cli("audit", "export", "--out", out)
    lines = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert said.stdout == f"exported {len(lines)} events (positions 1 to {len(lines)}) to {out}\n"
    head = reverify(lines)
    assert cli("verify").stdout.startswith(f"ok: {len(lines)} events, chain intact, head "
                                           f"position {len(lines)} hash {head}")
    assert cli("audit", "export").stdout.split("\n")[:-1] == lines  # stdout: the same lines
    shown = {e["position"]: e for e in cli("audit", "--format", "json").json_lines()}
    for line in lines:
        row = json.loads(line)
        record: list[Any] = json.loads(row["record"])
        event = shown[row["position"]]
        assert record[:5] == [event["stream"], event["stream_version"], event["event_id"],
                              event["type"], 1]
        assert json.loads(record[10]) == event["payload"]
    added = json.loads(json.loads(lines[3])["record"])
    assert added[3] == "credential.added" and json.loads(added[10])["name"] == NAME


def test_the_oracle_finds_an_edited_export_line(db_url: str, tmp_path: Path) -> None:
    """The oracle can fail: one record changed in the file is named at its position."""
    cli = _log(db_url, tmp_path)
    lines = cli("audit", "export").stdout.split("\n")[:-1]
    row = json.loads(lines[2])
    row["record"] = row["record"].replace("search", "searcj")
    lines[2] = json.dumps(row)
    with pytest.raises(AssertionError, match=r"^position 3: record does not match its hash"):
        reverify(lines)


def test_an_export_goes_on_from_an_earlier_one(db_url: str, tmp_path: Path) -> None:
    """--after N continues an export: its first prev_hash is the earlier export's last hash."""
    cli = _log(db_url, tmp_path)
    earlier = cli("audit", "export").stdout.split("\n")[:-1]
    cli("app", "register", "mail")
    later = cli("audit", "export", "--after", str(len(earlier))).stdout.split("\n")[:-1]
    assert len(later) == 1
    reverify(later, prev=reverify(earlier), first=len(earlier) + 1)


def test_an_export_that_cannot_be_written_is_one_line_and_leaves_nothing(
        sqlite_url: str, tmp_path: Path) -> None:
    cli = Cli(sqlite_url, tmp_path / "keystore", cwd=tmp_path)
    cli("app", "register", "billing")
    target = tmp_path / "missing" / "log.jsonl"
    assert_refused(cli.run("audit", "export", "--out", target), f"--out {target}: cannot "
                   "write it (No such file or directory); nothing written")
    assert not target.parent.exists()
