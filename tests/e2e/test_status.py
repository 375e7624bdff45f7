"""``orchestrator status`` through the installed command, against a fleet built for it: two
provisioned key apps (one mid-rotation), a secret rotation parked by a refusing provider, a
JAR key expiring in three days and an app whose only key expired. Every number of both outputs
is checked against what was built; the leader is looked at while a real daemon holds the lease.

Everything runs under a virtual clock (``Cli(clock=...)``), so the instants are exact."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from events.codec import format_time
from tests.conftest import NOW
from tests.e2e.test_operator_view import KEYS, SECRETS, daemon_once, events
from tests.helpers import Cli, VirtualClock, json_daemon, wait_for

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@pytest.fixture
def fleet(tmp_path: Path, db_url: str) -> dict[str, Any]:
    clock = VirtualClock(tmp_path / "now", NOW)
    cli = Cli(db_url, tmp_path / "ks", tmp_path, clock=clock)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "keys.yaml").write_text(KEYS)  # pay-*: keys every 30d, lifetime 90d
    (policies / "secrets.yaml").write_text(SECRETS)  # svc-*: secrets, one attempt
    cli.env.update(ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"),
                   ORCHESTRATOR_POLICIES=str(policies))
    cli("app", "register", "pay-1", "pay-2")
    assert events(daemon_once(cli), "tick_completed")  # epoch 1: both provisioned at NOW
    cli("app", "register", "other-1", "other-2")
    jar = cli("credential", "add", "other-1", "--usage", "jar", "--generate", "--activate",
              "--expires-at", (NOW + 3 * DAY).isoformat(), "--json").json()["id"]
    cli("credential", "add", "other-2", "--usage", "private_key_jwt", "--generate",
        "--activate", "--expires-at", (NOW + HOUR).isoformat())
    clock.advance(2 * HOUR)  # other-2's only key has expired
    cli("app", "register", "svc-1")
    lines = daemon_once(cli, ORCHESTRATOR_PROVIDER="faulty:1.0")  # epoch 2: svc-1 parked
    assert events(lines, "rotation_parked")
    rotated = cli("rotate", "pay-1", "--usage", "private_key_jwt").stdout  # waits for overlap
    return {"cli": cli, "jar": jar, "rotation": rotated.split()[1].rstrip(":")}


def test_status_json_counts_the_fleet_as_built(fleet: dict[str, Any]) -> None:
    cli: Cli = fleet["cli"]
    doc = cli("status", "--json").json()
    assert at(doc["at"]) == NOW + 2 * HOUR
    assert doc["applications"] == {"registered": 5, "with_usable_credential": 4,
                                   "without_usable_credential": 1, "by_provider": {"local": 5}}
    # pay-1: its old key and the new one (both active during the overlap); pay-2: one;
    # other-2: one, expired; other-1: one JAR key; svc-1: no secret (its rotation parked)
    assert doc["credentials"] == {
        "by_status": {"active": 4, "added": 0, "disabled": 0, "expired": 1, "deleted": 0},
        "by_usage": {"jar": {"active": 1}, "private_key_jwt": {"active": 3, "expired": 1}},
        "client_secrets": 0}
    rotations = doc["rotations"]
    assert (rotations["in_flight"], rotations["parked"]) == (1, 1)
    assert [(r["app"], r["status"], r["usage"]) for r in rotations["list"]] == [
        ("svc-1", "parked", "client_secret"), ("pay-1", "running", "private_key_jwt")]
    assert rotations["list"][1]["rotation_id"] == fleet["rotation"]
    assert rotations["list"][0]["error"]  # what parked it
    soonest = doc["expiring_soonest"][0]
    assert (soonest["app"], soonest["credential_id"], at(soonest["expires_at"])) == (
        "other-1", fleet["jar"], NOW + 3 * DAY)
    assert soonest["expires_in_seconds"] == (3 * DAY - 2 * HOUR).total_seconds()
    assert "other-2" not in {e["app"] for e in doc["expiring_soonest"]}  # expired already
    due = {d["app"]: (at(d["due_at"]), d["check"]) for d in doc["next_rotations"]}
    assert due["pay-2"] == (NOW + 30 * DAY, "age")  # provisioned at NOW, every 30d
    assert due["pay-1"] == (NOW + 3 * HOUR, "running")  # tested at NOW+2h, overlap 1h
    assert [(a["app"], a["usage"]) for a in doc["without_usable_credential"]] == [
        ("other-2", "private_key_jwt")]
    assert doc["leader"]["lease_held"] is False and doc["leader"]["epoch"] == 2
    tick = doc["last_tick"]
    assert (tick["epoch"], at(tick["at"]), tick["ago_seconds"]) == (2, NOW + 2 * HOUR, 0)
    assert tick["holder"].startswith(f"{socket.gethostname()} pid ")
    assert (tick["did"]["failed"], tick["did"]["parked"]) == (1, 1)
    # the tick's last error line: the alarm raised after svc-1 was parked
    assert (tick["last_error"]["event"], tick["last_error"]["app"]) == (
        "app_without_usable_credential", "other-2")
    assert doc["drift"] == {"held": {}, "checked": True, "as_of": tick["at"]}
    assert doc["projection"]["lag"] == 0 and doc["policy_errors"] == []


def test_status_names_the_running_leader_and_its_tick_on_one_screen(
        fleet: dict[str, Any]) -> None:
    cli: Cli = fleet["cli"]
    with json_daemon(cli, "--interval", "3600") as (daemon, log):
        doc = wait_for(lambda: (d := cli("status", "--json").json())["last_tick"]["epoch"] == 3
                       and d, "the new leader's first tick", daemon, log)
        table = cli("status").stdout
    # SQLite: the flock's holder is the daemon's process; PostgreSQL: the advisory lock's
    # holder is the daemon's lock session, a backend of the server, with its client address
    looked = ({"pid": daemon.pid} if cli.db_url.startswith("sqlite") else
              {"backend_pid": doc["leader"]["backend_pid"], "address": "127.0.0.1"})
    assert doc["leader"] == {"lease_held": True, "epoch": 3,
                             "holder": f"{socket.gethostname()} pid {daemon.pid}",
                             "since": format_time(NOW + 2 * HOUR), **looked}
    assert isinstance(doc["leader"].get("backend_pid", daemon.pid), int)
    lines = table.splitlines()
    assert lines[0] == (f"Fleet at {doc['at']}: 5 applications (5 local), 1 without a usable "
                        "credential")
    assert lines[1].startswith(f"Leader: {socket.gethostname()} pid {daemon.pid}, epoch 3 "
                               f"since {doc['leader']['since']}; last tick {doc['at']} (0s ago)")
    assert "Rotations: 1 in flight, 1 parked" in lines
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("pay-", "svc-",
                                                                                "other-", "all"))}
    assert rows["all"][1:] == ["4", "0", "0", "1"]  # ACTIVE ADDED DISABLED EXPIRED
    assert "NO USABLE CREDENTIAL: application 'other-2' has no usable private_key_jwt " \
           "credential" in table
    assert any(line.split()[:3] == ["other-1", fleet["jar"], "jar"] for line in lines)
    after = cli("status", "--json").json()
    assert after["leader"]["lease_held"] is False  # the daemon stopped and let the lease go
    assert after["last_tick"]["epoch"] == 3
