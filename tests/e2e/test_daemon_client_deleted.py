"""A client deleted at the Auth0 tenant while the installed daemon runs: the daemon attempts no
rotation of its application, and says so at error level naming the application and what to do.

The daemon (``orchestrator daemon``, one process, on a virtual clock stepped by the test) runs
against the Auth0 emulator. At its first tick it compares both applications with the tenant and
rotates the one its policy selects. Then the other's client is deleted at the tenant behind the
orchestrator's back, and the policy is widened to it (an imported key is due at once: its size
is not the policy's). At the next tick the daemon's check finds the client gone (404): no
rotation is started, no step is tried, and one ``app_client_missing`` line says which
application and which client, and what the operator does. The other application's rotation
goes on to its end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.helpers import Cli, VirtualClock
from tests.peers.auth0 import Auth0Emulator
from tests.support.auth0_tenant import DOMAIN, NAME, Tenant
from tests.support.live import LiveDaemon

POLICY = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: keys}
spec:
  selector: {apps: [APPS]}
  credential: {usage: private_key_jwt}
  rotation: {every: 30d, beforeExpiry: 10d, overlap: 1h}
  lifetime: 60d
"""


def test_no_rotation_is_attempted_for_an_app_whose_client_was_deleted_while_the_daemon_runs(
        tmp_path: Path, sqlite_url: str) -> None:
    with Auth0Emulator({"domain": DOMAIN, "management_rate": None}) as emu:
        tenant = Tenant(emu, sqlite_url, tmp_path)
        start = datetime.now(UTC).replace(microsecond=0)
        keep = tenant.client("keep", 1, expires=start + timedelta(days=30))
        drop = tenant.client("drop", 2, expires=start + timedelta(days=30))
        tenant.cli("import", "--provider", NAME)
        policy = tenant.policies / "keys.yaml"
        policy.write_text(POLICY.replace("APPS", '"keep"'))
        clock = VirtualClock(tmp_path / "now", start)
        cli = Cli(sqlite_url, tenant.cli.keystore, tmp_path, clock=clock, init=False)
        cli.env.update({k: v for k, v in tenant.cli.env.items() if k != "ORCHESTRATOR_ACTOR"},
                       **clock.env)
        daemon = LiveDaemon(cli.env, tmp_path, clock, tmp_path / "daemon.log")
        try:
            assert started(cli) == {"keep"}  # both compared at the first tick; one rotated
            assert daemon.lines("app_client_missing") == []
            emu.tenant.delete_client(drop)  # behind the orchestrator's back
            policy.write_text(POLICY.replace("APPS", '"*"'))  # drop is due now
            daemon.step(timedelta(hours=2))  # past keep's overlap, and past the last check's 1h
        finally:
            assert daemon.stop() == 0
    (line,) = daemon.lines("app_client_missing")
    assert line["level"] == "error" and line["app"] == "drop" and line["client_id"] == drop
    assert line["provider"] == NAME
    assert line["fix"].startswith(f"client {drop!r} no longer exists at identity provider "
                                  f"{NAME!r} (deleted there; Auth0 {DOMAIN}: GET /clients/")
    assert f"orchestrator app register NAME --provider {NAME} --client-id ID" in line["fix"]
    assert started(cli) == {"keep"}  # no rotation of drop started ...
    tried = [e for e in daemon.lines() if e.get("app") == "drop"
             and str(e.get("event", "")).startswith("rotation_")]
    assert tried == []  # ... and no step of one tried
    completed = {e["stream"] for e in cli("audit", "--type", "rotation.completed",
                                          "--format", "json").json_lines()}
    assert completed == {"app:keep"}
    assert keep != drop


def started(cli: Cli) -> set[str]:
    return {e["stream"].removeprefix("app:") for e in cli(
        "audit", "--type", "rotation.started", "--format", "json").json_lines()}
