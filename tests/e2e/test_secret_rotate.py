"""``orchestrator secret rotate`` is the daemon's rotation of the client secret, driven to its
end by the command: recorded, registered, tested, delivered, overlapped, safe under concurrency.

The oracle is independent of the command's own account: the log's latest ``secret.rotated`` is
read from the events table with SQLAlchemy, the delivered files through ``..data``, fingerprints
are computed here with hashlib, and the identity provider (the local one, over the keystore) is
asked which secret it accepts.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from events.state import AppState
from orchestrator.adapters.keystore import FileKeystore
from orchestrator.adapters.providers.local import LocalProvider
from orchestrator.domain.errors import ProviderError
from tests.helpers import Cli, Result, assert_refused, read_delivered, site_cli

CONCURRENT = 8
ROUNDS = 3


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return site_cli(db_url, tmp_path, "svc")


def fingerprint(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Rotated:
    version: int
    fingerprint: str
    previous_valid_until: datetime | None
    occurred_at: datetime


def rotated_events(db_url: str) -> list[Rotated]:
    """svc's ``secret.rotated`` events, in log order, read straight from the events table."""
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT payload, occurred_at FROM events WHERE stream_id = 'app:svc' "
                "AND type = 'secret.rotated' ORDER BY position")).all()
    finally:
        engine.dispose()
    found = []
    for payload, occurred_at in rows:
        data = json.loads(payload)
        until = data.get("previous_valid_until")
        found.append(Rotated(data["version"], data["fingerprint"],
                             datetime.fromisoformat(until) if until else None,
                             datetime.fromisoformat(occurred_at)))
    return found


def provider(cli: Cli) -> LocalProvider:
    """The identity provider as the orchestrator runs it by default: its secret records are in
    the keystore (the state reader is not used for secrets)."""
    return LocalProvider(lambda app: AppState(app=app), FileKeystore(cli.keystore))


def delivered(cli: Cli) -> tuple[str, int]:
    files = read_delivered(cli.cwd / "delivery" / "svc" / "client_secret")
    return files["client_secret"].decode(), int(files["version"])


def shown(result: Result) -> tuple[int, str]:
    """(version, secret) of a successful ``secret rotate``: stderr names the version, stdout is
    the secret alone."""
    assert result.returncode == 0, str(result)
    (line,) = result.stderr.splitlines()
    version = int(line.split("client secret version ", 1)[1].split(";", 1)[0])
    (secret,) = result.stdout.splitlines()
    return version, secret


def assert_one_secret(cli: Cli, shown_secrets: list[tuple[int, str]]) -> tuple[int, str]:
    """The provider accepts as current exactly the secret that the log's latest secret.rotated
    names, a command showed, and the delivery files hold; (version, secret)."""
    latest = rotated_events(cli.db_url)[-1]
    named = [(v, s) for v, s in shown_secrets if fingerprint(s) == latest.fingerprint]
    assert named, f"no command showed the secret of the log's latest secret.rotated v{latest.version}"
    version, secret = named[0]
    assert version == latest.version
    assert provider(cli).verify_secret("svc", secret, datetime.now(UTC)) == latest.version, (
        "the provider is behind the log")
    assert delivered(cli) == (secret, version)
    return version, secret


def test_the_previous_secret_stays_valid_for_the_default_grace_and_the_files_follow(
        cli: Cli) -> None:
    """Without --grace: each new secret is delivered to the app's files and accepted at once,
    and the previous one stays valid for the default grace (1h, the help says so) after the
    new one is delivered, not a moment longer."""
    first_version, first = shown(cli("secret", "rotate", "svc"))
    second_version, second = shown(cli("secret", "rotate", "svc"))
    assert (first_version, second_version) == (1, 2)

    latest = rotated_events(cli.db_url)[-1]
    assert latest.previous_valid_until is not None, "the previous secret was invalid at once"
    grace_from = latest.previous_valid_until - timedelta(hours=1)  # the delivery instant
    assert grace_from <= latest.occurred_at <= grace_from + timedelta(seconds=30)
    idp = provider(cli)
    assert idp.verify_secret("svc", first, datetime.now(UTC)) == 1  # within the grace
    assert idp.verify_secret("svc", first, latest.previous_valid_until
                             - timedelta(microseconds=1)) == 1
    with pytest.raises(ProviderError):
        idp.verify_secret("svc", first, latest.previous_valid_until)
    assert idp.verify_secret("svc", second, latest.previous_valid_until) == 2
    assert assert_one_secret(cli, [(1, first), (2, second)]) == (2, second)
    assert "else 1h" in cli("secret", "rotate", "--help").stdout


def test_concurrent_secret_rotations_never_leave_the_provider_behind_the_log(cli: Cli) -> None:
    """Rounds of 8 `secret rotate` processes at once on one app: each either shows a secret or
    is refused with one line (a rotation is already in flight); after each round the provider
    accepts exactly the secret of the log's latest secret.rotated, the one in the delivery files
    and the one its command showed; every shown secret is one the log recorded."""
    refusals = successes = 0
    for _ in range(ROUNDS):
        with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            results = list(pool.map(lambda _: cli.run("secret", "rotate", "svc"),
                                    range(CONCURRENT)))
        ok = [shown(r) for r in results if r.returncode == 0]
        for refused in (r for r in results if r.returncode != 0):
            assert_refused(refused, "a rotation of client_secret is already in flight for 'svc'")
            assert refused.stdout == ""
            refusals += 1
        assert ok, "no rotation succeeded in the round"
        successes += len(ok)
        assert_one_secret(cli, ok)
        recorded = {r.fingerprint: r.version for r in rotated_events(cli.db_url)}
        assert all(recorded.get(fingerprint(s)) == v for v, s in ok)
    rotations = cli("rotations", "--all", "--json").json()
    assert len(rotations) == successes
    assert {r["status"] for r in rotations} == {"completed"}
    print(f"{ROUNDS} rounds of {CONCURRENT}: {successes} rotated, {refusals} refused")


def test_a_provider_failure_parks_the_rotation_with_one_line_and_the_previous_secret(
        cli: Cli) -> None:
    """Every provider call failing (ORCHESTRATOR_PROVIDER=faulty:1): one error line, a non-zero
    exit, no secret shown, the previous secret still the one the log, the files and the provider
    agree on; run again with the provider back, the parked rotation finishes."""
    version, first = shown(cli("secret", "rotate", "svc"))
    cli.env["ORCHESTRATOR_PROVIDER"] = "faulty:1"
    failed = cli.run("secret", "rotate", "svc")
    del cli.env["ORCHESTRATOR_PROVIDER"]
    assert_refused(failed, "parked at register", "provider: set_secret failed",
                   "the previous secret stays valid", "run this command again")
    assert failed.stdout == ""
    assert assert_one_secret(cli, [(version, first)]) == (1, first)
    (parked,) = [r for r in cli("rotations", "--json").json() if r["status"] == "parked"]

    again = cli("secret", "rotate", "svc")
    assert shown(again)[0] == 2
    assert assert_one_secret(cli, [shown(again)]) == shown(again)
    finished = {r["rotation_id"]: r["status"] for r in cli("rotations", "--all", "--json").json()}
    assert finished[parked["rotation_id"]] == "completed"


def test_the_default_grace_is_the_overlap_of_the_policy_that_selects_the_app(cli: Cli) -> None:
    """With a client_secret policy selecting svc (overlap 3h), the previous secret stays valid
    3h after delivery; --grace overrides it."""
    policies = cli.cwd / "policies"
    policies.mkdir()
    (policies / "secrets.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: RotationPolicy\nmetadata: {name: svc-secret}\n"
        "spec:\n  selector: {apps: [svc]}\n  credential: {usage: client_secret}\n"
        "  rotation: {every: 30d, beforeExpiry: 7d, overlap: 3h}\n")
    for grace, expected in ((None, timedelta(hours=3)), ("45m", timedelta(minutes=45))):
        cli("secret", "rotate", "svc")
        result = cli("secret", "rotate", "svc", *(("--grace", grace) if grace else ()))
        assert result.stderr.startswith("svc: client secret version"), str(result)
        latest = rotated_events(cli.db_url)[-1]
        assert latest.previous_valid_until is not None
        granted = latest.previous_valid_until - latest.occurred_at
        assert expected - timedelta(seconds=30) <= granted <= expected, granted
    assert {r["policy"] for r in cli("rotations", "--all", "--json").json()} == {"svc-secret"}


def test_rotations_shows_an_error_only_while_it_holds_the_rotation(cli: Cli) -> None:
    """A parked rotation shows why it parked; once it was retried and completed, rotations
    --all shows no error for it (the failure is history: --json keeps it as last_error)."""
    shown(cli("secret", "rotate", "svc"))
    cli.env["ORCHESTRATOR_PROVIDER"] = "faulty:1"
    assert cli.run("secret", "rotate", "svc").returncode != 0
    del cli.env["ORCHESTRATOR_PROVIDER"]
    (parked,) = [r for r in cli("rotations", "--json").json() if r["status"] == "parked"]
    assert "set_secret failed" in parked["error"]
    row = next(line for line in cli("rotations").stdout.splitlines()
               if parked["rotation_id"] in line)
    assert "parked" in row and "set_secret failed" in row

    shown(cli("secret", "rotate", "svc"))  # the parked rotation, retried to its end
    done = {r["rotation_id"]: r for r in cli("rotations", "--all", "--json").json()}
    assert done[parked["rotation_id"]]["status"] == "completed"
    assert done[parked["rotation_id"]]["error"] is None
    assert "set_secret failed" in done[parked["rotation_id"]]["last_error"]
    table = cli("rotations", "--all").stdout
    row = next(line for line in table.splitlines() if parked["rotation_id"] in line)
    assert "completed" in row and row.rstrip().endswith("-"), row
    assert "set_secret failed" not in table
