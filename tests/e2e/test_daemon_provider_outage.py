"""The daemon through an identity provider's outage, as an operator meets it: the installed
daemon (``--once`` per tick, on a virtual clock) against the Auth0 emulator, whose address
is first one where nothing listens (the tenant is down) and then the tenant's again.

While the tenant is down each tick completes, logs one warning per failed step naming the
app, and writes nothing the provider did not confirm; once it is back the rotations resume
where they stopped and finish.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.helpers import Cli, VirtualClock
from tests.peers.auth0 import Auth0Emulator
from tests.support.auth0_tenant import DOMAIN, NAME, Tenant, resource_yaml

POLICY = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: keys}
spec:
  selector: {apps: ["*"]}
  credential: {usage: private_key_jwt}
  rotation: {every: 30d, beforeExpiry: 10d, overlap: 1h}
  lifetime: 60d
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tick(cli: Cli) -> list[dict[str, Any]]:
    result = cli.run("daemon", "--once", "--json-logs", "--drift-every", "0")
    assert result.returncode == 0, str(result)
    assert "Traceback" not in result.stderr
    return [json.loads(line) for line in result.stderr.splitlines()]


def test_the_daemon_rides_out_a_provider_outage(tmp_path: Path, sqlite_url: str) -> None:
    with Auth0Emulator({"domain": DOMAIN, "management_rate": None}) as emu:
        tenant = Tenant(emu, sqlite_url, tmp_path)
        start = datetime.now(UTC).replace(microsecond=0)
        for n in (1, 2):
            tenant.client(f"app{n}", n, expires=start + timedelta(days=2))
        tenant.cli("import", "--provider", NAME)
        clock = VirtualClock(tmp_path / "now", start)
        cli = Cli(sqlite_url, tenant.cli.keystore, tmp_path, clock=clock, init=False)
        cli.env.update({k: v for k, v in tenant.cli.env.items()
                        if k not in ("ORCHESTRATOR_ACTOR",)}, **clock.env)
        (tenant.policies / "keys.yaml").write_text(POLICY)
        resource = tenant.policies / "auth0.yaml"

        resource.write_text(resource_yaml(f"http://127.0.0.1:{closed_port()}"))  # down
        down = tick(cli)
        failed = [e for e in down if e["event"] == "rotation_step_failed"]
        assert sorted(e["app"] for e in failed) == ["app1", "app2"], down
        assert all(e["step"] == "register" and "cannot connect" in e["error"] for e in failed)
        assert not any(e["level"] in ("error", "critical") for e in down), down
        assert any(e["event"] == "tick_completed" for e in down)

        resource.write_text(resource_yaml(emu.base_url))  # back
        clock.advance(timedelta(minutes=10))  # past the rotations' backoff
        back = tick(cli)
        assert not [e for e in back if e["event"] == "rotation_step_failed"], back
        delivered = {e["app"] for e in back
                     if e["event"] == "rotation_step_completed" and e["step"] == "deliver"}
        assert delivered == {"app1", "app2"}
        assert tenant.drift().returncode == 0  # the tenant agrees with the log
