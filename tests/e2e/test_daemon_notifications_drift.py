"""Drift, told: the installed daemon against the Auth0 emulator, a client deleted at the tenant
behind its back; the Notifier beside the policies is told ``application.drifted`` once, signed,
and not again while the drift stays (the daemon compares the app again each hour).

The set-up is tests/e2e/test_daemon_client_deleted.py's; the receiver is a real ``http.server``
(tests/support/webhook_receiver.py) checking the signature with hmac alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.test_daemon_client_deleted import POLICY
from tests.helpers import Cli, VirtualClock
from tests.peers.auth0 import Auth0Emulator
from tests.support.auth0_tenant import DOMAIN, NAME, Tenant
from tests.support.live import LiveDaemon, poll
from tests.support.webhook_receiver import Receiver, verify

SECRET = "whsec-drift-9c2e"
NOTIFIER = """apiVersion: orchestrator/v1
kind: Notifier
metadata: {{name: drift-watch}}
spec:
  url: {url}
  secret: {{file: hook.secret}}
  events: [application.drifted]
"""


def test_a_drifted_application_is_told_once_while_it_stays_drifted(
        tmp_path: Path, sqlite_url: str) -> None:
    receiver = Receiver()
    with Auth0Emulator({"domain": DOMAIN, "management_rate": None}) as emu:
        tenant = Tenant(emu, sqlite_url, tmp_path)
        start = datetime.now(UTC).replace(microsecond=0)
        tenant.client("keep", 1, expires=start + timedelta(days=30))
        drop = tenant.client("drop", 2, expires=start + timedelta(days=30))
        tenant.cli("import", "--provider", NAME)
        (tenant.policies / "keys.yaml").write_text(POLICY.replace("APPS", '"keep"'))
        (tenant.policies / "hook.secret").write_text(SECRET + "\n")
        (tenant.policies / "notifier.yaml").write_text(NOTIFIER.format(url=receiver.url))
        clock = VirtualClock(tmp_path / "now", start)
        cli = Cli(sqlite_url, tenant.cli.keystore, tmp_path, clock=clock, init=False)
        cli.env.update({k: v for k, v in tenant.cli.env.items() if k != "ORCHESTRATOR_ACTOR"},
                       **clock.env)
        daemon = LiveDaemon(cli.env, tmp_path, clock, tmp_path / "daemon.log")
        try:
            assert receiver.received() == []  # both compared at the first tick: no drift
            emu.tenant.delete_client(drop)  # behind the orchestrator's back
            daemon.step(timedelta(hours=2))  # compared again: its client is gone
            (told,) = poll(receiver.received, "application.drifted",
                           alive=[daemon.process], logs=[daemon.log])
            daemon.step(timedelta(hours=2))  # compared again: still gone, told no more
            daemon.step(timedelta(hours=2))
        finally:
            assert daemon.stop() == 0
            receiver.close()
    assert [line["app"] for line in daemon.lines("app_client_missing")] == ["drop"] * 3
    assert receiver.received() == [told]
    verify(SECRET, told.headers, told.body)
    assert told.json["type"] == "application.drifted" and told.json["app"] == "drop"
    assert drop in told.json["data"]["detail"] and told.json["id"] == told.event_id
