"""Webhooks from the installed daemon to a real HTTP server: every kind once, signed; a receiver
down for 30 seconds loses nothing; a daemon SIGKILLed mid-delivery loses nothing, and what it
sends again carries the same event id.

The daemon (``orchestrator daemon`` through tests/support/launch.py) runs on a virtual clock
the test moves; the receiver (tests/support/webhook_receiver.py) is an ``http.server`` in this
process, and checks each signature with hmac alone, as the README tells a receiver to. What
the log holds is read with sqlite3, not through the product.

The site: ``web-1`` is provisioned by a policy (rotation.completed); ``stuck``'s delivery folder
is a file, so its provisioning fails and parks after two attempts (rotation.failed,
rotation.parked); ``lapsed`` holds a key expiring in two hours and no policy
(credential.expiring at 1d, then credential.expired and application.without_usable_credential);
``later`` holds one expiring in 20 days (credential.expiring at 30d); a broken file written while
the daemon runs is policy.rejected. Drift (application.drifted) needs an identity provider
that can be compared: tests/e2e/test_daemon_notifications_drift.py, against the Auth0
emulator.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import Cli, VirtualClock
from tests.support.live import LiveDaemon, poll
from tests.support.webhook_receiver import Delivery, Receiver, verify

T0 = datetime(2031, 5, 5, 9, 0, tzinfo=UTC)
SECRET = "whsec-e2e-5f1d0c7a"
SUBSCRIBED = ("credential.expired", "rotation.completed", "rotation.failed", "rotation.parked",
              "policy.rejected")
EVERY_KIND = {*SUBSCRIBED, "credential.expiring", "application.without_usable_credential"}
POLICY = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {{name: {name}}}
spec:
  selector: {{apps: ["{apps}"]}}
  credential: {{usage: private_key_jwt}}
  rotation: {{every: 30d, beforeExpiry: 10d, overlap: 1h,
             retry: {{attempts: 2, backoff: 1m, maxBackoff: 1d}}}}
  lifetime: 60d
"""
NOTIFIER = """apiVersion: orchestrator/v1
kind: Notifier
metadata: {{name: ops}}
spec:
  url: {url}
  secret: {{env: OPS_HOOK_SECRET}}
  thresholds: [30d, 7d, 1d]
  retry: {{backoff: 5s, maxBackoff: 10s}}
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def log_events(db: Path) -> list[tuple[str, str]]:
    """(event id, type) of every event of a subscribed type, in log order (sqlite3 alone)."""
    with sqlite3.connect(db) as conn:
        return [(event_id, kind) for event_id, kind in conn.execute(
            "SELECT event_id, type FROM events WHERE type IN (?, ?, ?, ?, ?) ORDER BY position",
            SUBSCRIBED)]


def kinds(deliveries: list[Delivery]) -> Counter[str]:
    return Counter(d.json["type"] for d in deliveries)


def test_every_kind_once_signed_through_an_outage_and_a_crash_mid_delivery(
        tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "orchestrator.db"
    clock = VirtualClock(tmp_path / "clock", T0)
    cli = Cli(f"sqlite:///{db}", tmp_path / "keystore", tmp_path, clock=clock)
    policies, delivery = tmp_path / "policies", tmp_path / "delivery"
    policies.mkdir()
    (policies / "web.yaml").write_text(POLICY.format(name="web", apps="web-*"))
    (policies / "stuck.yaml").write_text(POLICY.format(name="stuck", apps="stuck"))
    (policies / "ops.yaml").write_text(NOTIFIER.format(url=receiver.url))
    delivery.mkdir()
    (delivery / "stuck").write_text("a file where its folder should be\n")
    cli.env.update(ORCHESTRATOR_POLICIES=str(policies), ORCHESTRATOR_DELIVERY=str(delivery),
                   OPS_HOOK_SECRET=SECRET)
    cli("app", "register", "web-1", "stuck", "lapsed", "later")
    for app, expires in (("lapsed", T0 + timedelta(hours=2)), ("later", T0 + timedelta(days=20))):
        cli("credential", "add", app, "--usage", "private_key_jwt", "--generate", "--activate",
            "--expires-at", expires.isoformat())

    daemon = LiveDaemon(cli.env, tmp_path, clock, tmp_path / "daemon.log", interval=5)
    try:
        # the first tick: web-1 provisioned, stuck's first attempt failed, two keys expiring
        poll(lambda: kinds(receiver.received()) >= Counter(
            {"rotation.completed": 1, "rotation.failed": 1, "credential.expiring": 2}),
            "the first tick's notices", alive=[daemon.process], logs=[daemon.log])
        expiring = {d.json["app"]: d.json["data"]["threshold"] for d in receiver.received()
                    if d.json["type"] == "credential.expiring"}
        assert expiring == {"lapsed": "1d", "later": "30d"}

        daemon.step(timedelta(minutes=2))  # stuck's second attempt: failed again, parked
        (policies / "broken.yaml").write_text("apiVersion: orchestrator/v1\nkind: Notifier\n")
        daemon.step(timedelta(minutes=2))
        poll(lambda: kinds(receiver.received())["policy.rejected"] == 1
             and kinds(receiver.received())["rotation.parked"] == 1,
             "rotation.parked and policy.rejected", alive=[daemon.process], logs=[daemon.log])

        # the receiver goes down for 30 s of the daemon's clock while lapsed's key expires
        receiver.down()
        told = len(receiver.received())
        clock.advance(timedelta(hours=2))
        for attempt in (1, 2, 3, 4):  # at +0 s, +10 s, +20 s, +30 s (backoff 5 s, then 10 s)
            poll(lambda attempt=attempt: any(
                line["attempt"] == attempt for line in daemon.lines("notification_failed")),
                f"the delivery's attempt {attempt} failing", alive=[daemon.process],
                logs=[daemon.log])
            if attempt < 4:
                clock.advance(timedelta(seconds=10))
        receiver.up()
        clock.advance(timedelta(seconds=10))
        poll(lambda: kinds(receiver.received()[told:]) == Counter(
            {"credential.expired": 1, "application.without_usable_credential": 1}),
            "what happened while the receiver was down", alive=[daemon.process],
            logs=[daemon.log])
        assert [d.json["app"] for d in receiver.received()[told:]] == ["lapsed", "lapsed"]

        # SIGKILL mid-delivery: the receiver has the body, the daemon never gets the answer
        killed: list[Delivery] = []

        def kill(delivery: Delivery) -> None:
            if not killed:
                killed.append(delivery)
                os.kill(daemon.process.pid, signal.SIGKILL)
                daemon.process.wait()

        receiver.during = kill
        (policies / "broken-2.yaml").write_text("kind: Nothing\n")
        (policies / "broken-3.yaml").write_text("kind: Neither\n")
        told = len(receiver.received())
        clock.advance(timedelta(seconds=10))
        poll(lambda: daemon.process.poll() is not None, "the daemon killed mid-delivery")
        assert daemon.process.returncode == -signal.SIGKILL
        receiver.during = lambda _delivery: None
        for broken in policies.glob("broken*.yaml"):  # a daemon refuses to start on them
            broken.unlink()
        daemon = LiveDaemon(cli.env, tmp_path, clock, tmp_path / "daemon-2.log", interval=5)
        poll(lambda: len(receiver.received()) >= told + 3, "the deliveries after the restart",
             alive=[daemon.process], logs=[daemon.log])
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()[-3000:]

    every = receiver.received()
    after_crash = every[told:]
    assert [d.json["type"] for d in after_crash] == ["policy.rejected"] * 3
    assert after_crash[0].body == after_crash[1].body == killed[0].body  # the same, again
    assert after_crash[0].event_id == after_crash[1].event_id == killed[0].event_id
    ids = [d.event_id for d in every]
    assert [i for i, n in Counter(ids).items() if n > 1] == [killed[0].event_id]  # once, but it

    # every kind, each signed; every event of the log of a subscribed kind, told by its id
    assert set(kinds(every)) == EVERY_KIND
    for each in every:
        verify(SECRET, each.headers, each.body)
        assert each.json["id"] == each.event_id and each.json["notifier"] == "ops"
    in_log = log_events(db)
    told_ids = {d.event_id for d in every}
    assert [(i, k) for i, k in in_log if i not in told_ids] == []  # nothing lost
    assert Counter(k for _, k in in_log) == Counter(
        {"rotation.completed": 1, "rotation.failed": 2, "rotation.parked": 1,
         "credential.expired": 1, "policy.rejected": 3})
    assert kinds(every)["credential.expiring"] == 2  # each once, restart or not
