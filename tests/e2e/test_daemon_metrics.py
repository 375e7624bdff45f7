"""``orchestrator daemon --listen``: the metrics and health endpoints of the installed daemon.

Each test starts the real daemon process (through the test launcher, on a virtual clock the
test moves, where time matters) with ``--listen 127.0.0.1:0`` and reads the port it chose from
its ``metrics_serving`` line; then it scrapes ``/metrics`` over HTTP and parses the text with
``prometheus_client``'s own parser, and asks ``/healthz`` and ``/readyz``. A tick is waited for
by the instant it ran at (``/readyz`` says ``last_tick_at``), never by a length of time.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import NOW
from tests.e2e.test_drift_command import JAR_POLICY, imported, tenant  # noqa: F401  (a fixture)
from tests.helpers import (
    LAUNCHER,
    ORCHESTRATOR,
    Cli,
    VirtualClock,
    json_events,
    policy_yaml,
    wait_for,
)
from tests.support.auth0_tenant import NAME, Tenant

DAY, MINUTE = timedelta(days=1), timedelta(minutes=1)
KEYS = policy_yaml("keys", '["svc-*"]',
                   "{usage: private_key_jwt, algorithm: RS256, keySize: 2048}",
                   "{every: 30d, beforeExpiry: 10d, overlap: 1h, "
                   "retry: {attempts: 2, backoff: 1m, maxBackoff: 1m}}",
                   lifetime="60d", extra="  retention: 1d\n")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SERIES = {  # the names (a counter's family is named without _total)
    "orchestrator_credential_expiration_timestamp_seconds",
    "orchestrator_credential_next_rotation_timestamp_seconds", "orchestrator_rotations",
    "orchestrator_rotations_parked", "orchestrator_apps_without_usable_credential",
    "orchestrator_drift", "orchestrator_provider_requests", "orchestrator_leader",
    "orchestrator_last_tick_timestamp_seconds", "orchestrator_tick_duration_seconds"}
README = Path(__file__).resolve().parents[2] / "README.md"


class Served:
    """One daemon process serving its endpoints; its JSON log in a file."""

    def __init__(self, cli: Cli, log: Path, *args: str, env: dict[str, str] | None = None,
                 launcher: bool = True) -> None:
        self.log = log
        program = list(LAUNCHER) if launcher else [str(ORCHESTRATOR)]
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [*program, "daemon", "--json-logs", "--listen", "127.0.0.1:0", *args],
                env={**cli.env, **(env or {})}, cwd=cli.cwd, stdout=subprocess.DEVNULL,
                stderr=err)
        (line,) = wait_for(lambda: json_events(log, "metrics_serving"), "metrics_serving",
                           self.proc, log)
        self.base = f"http://{line['address']}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode()

    def ready(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/readyz")
        return status, json.loads(body)

    def metrics(self) -> Samples:
        status, text = self.get("/metrics")
        assert status == 200, text
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def families(self) -> set[str]:
        """The metric families served (described, with samples or none yet)."""
        text = self.get("/metrics")[1]
        return {family.name for family in text_string_to_metric_families(text)}

    def tick_at(self, clock: VirtualClock, at: datetime) -> None:
        """Move the clock to ``at`` and wait for the tick the daemon runs there."""
        clock.set(at)
        wait_for(lambda: self.ready()[1].get("last_tick_at") == at.isoformat(),
                 f"a tick at {at.isoformat()}", self.proc, self.log)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def series(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return {key: value for (n, key), value in samples.items() if n == name and want <= key}


def value(samples: Samples, name: str, **labels: str) -> float:
    (found,) = series(samples, name, **labels).values()
    return found


def credentials(cli: Cli, app: str) -> list[dict[str, Any]]:
    return [c for c in json.loads(cli("credential", "list", app, "--json").stdout)
            if c["recorded_status"] == "active"]


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Cli, VirtualClock]]:
    clock = VirtualClock(tmp_path / "now", NOW)
    cli = Cli(f"sqlite:///{tmp_path / 'o.db'}", tmp_path / "ks", tmp_path, clock=clock)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "keys.yaml").write_text(KEYS)
    cli.env.update(ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"),
                   ORCHESTRATOR_POLICIES=str(policies))
    yield cli, clock


def test_each_series_follows_the_fleet_and_a_deleted_credential_leaves_none(
        site: tuple[Cli, VirtualClock], tmp_path: Path) -> None:
    """Provisioned, rotated by age, a credential deleted by hand: each scrape says so."""
    cli, clock = site
    cli("app", "register", "svc-a", "solo")  # solo: no policy selects it
    cli("credential", "add", "solo", "--usage", "private_key_jwt", "--generate", "--activate",
        "--expires-at", (NOW + 90 * DAY).isoformat())
    daemon = Served(cli, tmp_path / "daemon.log", "--interval", "60", "--drift-every", "0")
    try:
        daemon.tick_at(clock, NOW)  # the first tick provisions svc-a
        at = NOW
        while not series(daemon.metrics(), "orchestrator_rotations_total", result="completed"):
            at += MINUTE  # a step that waits on its settle delay: the next tick finishes it
            assert at < NOW + 10 * MINUTE, "svc-a was not provisioned"
            daemon.tick_at(clock, at)
        assert daemon.families() == SERIES
        alerts = README.read_text().split("groups:\n  - name: credential-orchestrator")[1]
        alerts = alerts.split("```")[0]
        named = set(re.findall(r"\b(orchestrator_[a-z_]+)\b", alerts))
        assert named and named <= {n for n in SERIES} | {"orchestrator_rotations_total"}, named
        m = daemon.metrics()
        (first,) = credentials(cli, "svc-a")
        (solo,) = credentials(cli, "solo")
        expiry = "orchestrator_credential_expiration_timestamp_seconds"
        assert series(m, expiry) == {
            frozenset({"app": "svc-a", "usage": "private_key_jwt", "credential_id": first["id"],
                       "kid": first["kid"]}.items()): ts(first["expires_at"]),
            frozenset({"app": "solo", "usage": "private_key_jwt", "credential_id": solo["id"],
                       "kid": solo["kid"]}.items()): ts(solo["expires_at"])}
        nxt = "orchestrator_credential_next_rotation_timestamp_seconds"
        age_due = (datetime.fromisoformat(first["activated_at"]) + 30 * DAY).timestamp()
        assert series(m, nxt) == {frozenset({"app": "svc-a", "usage": "private_key_jwt"}.items()):
                                  age_due}  # none for solo: no policy rotates it
        assert series(m, "orchestrator_rotations_total") == {
            frozenset({"usage": "private_key_jwt", "result": "completed"}.items()): 1.0}
        assert series(m, "orchestrator_rotations_parked") == {}
        assert value(m, "orchestrator_apps_without_usable_credential") == 0
        assert value(m, "orchestrator_leader") == 1
        assert value(m, "orchestrator_last_tick_timestamp_seconds") == at.timestamp()
        ticks = daemon.ready()[1]["ticks"]
        assert value(m, "orchestrator_tick_duration_seconds_count") == ticks
        calls = value(m, "orchestrator_provider_requests_total", provider="local", outcome="ok")
        assert calls >= 3  # register, activate, the test's authentication
        assert not series(m, "orchestrator_provider_requests_total", outcome="error")

        # 30 days on, svc-a's key is rotated by age; after the overlap the old one is disabled
        rotated = NOW + 31 * DAY
        daemon.tick_at(clock, rotated)
        daemon.tick_at(clock, rotated + 61 * MINUTE)
        m = daemon.metrics()
        (second,) = credentials(cli, "svc-a")
        assert second["id"] != first["id"]
        assert series(m, expiry, app="svc-a") == {
            frozenset({"app": "svc-a", "usage": "private_key_jwt", "credential_id": second["id"],
                       "kid": second["kid"]}.items()): ts(second["expires_at"])}
        assert value(m, nxt, app="svc-a") == (
            datetime.fromisoformat(second["activated_at"]) + 30 * DAY).timestamp()
        assert value(m, "orchestrator_rotations_total", result="completed") == 2
        assert value(m, "orchestrator_provider_requests_total", provider="local",
                     outcome="ok") > calls
        assert value(m, "orchestrator_last_tick_timestamp_seconds") == (
            rotated + 61 * MINUTE).timestamp()

        # solo's only key deleted by hand: its series is gone, and solo has no usable key
        cli("credential", "delete", "solo", solo["id"], "--force")
        daemon.tick_at(clock, rotated + 62 * MINUTE)
        m = daemon.metrics()
        assert series(m, expiry, app="solo") == {}
        assert set(series(m, expiry)) == set(series(m, expiry, app="svc-a"))
        assert value(m, "orchestrator_apps_without_usable_credential") == 1
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()[-3000:]


def test_a_parked_rotation_and_an_app_left_without_a_key_are_counted(
        site: tuple[Cli, VirtualClock], tmp_path: Path) -> None:
    """Every provider call fails (the faulty provider at rate 1): the rotation of a key about to
    expire fails, is parked after its two attempts, and the key expires."""
    cli, clock = site
    cli("app", "register", "svc-flaky")
    expires = NOW + 10 * MINUTE
    cli("credential", "add", "svc-flaky", "--usage", "private_key_jwt", "--generate",
        "--activate", "--expires-at", expires.isoformat())
    (old,) = credentials(cli, "svc-flaky")
    daemon = Served(cli, tmp_path / "daemon.log", "--interval", "60", "--drift-every", "0",
                    env={"ORCHESTRATOR_PROVIDER": "faulty:1"})
    try:
        daemon.tick_at(clock, NOW)  # due (expires within beforeExpiry): started, fails once
        m = daemon.metrics()
        assert value(m, "orchestrator_rotations_total", result="failed") == 1
        failures = sum(series(m, "orchestrator_provider_requests_total", provider="local")
                       .values())
        assert failures >= 1 and not series(m, "orchestrator_provider_requests_total",
                                            outcome="ok")
        assert series(m, "orchestrator_rotations_parked") == {}
        daemon.tick_at(clock, NOW + 2 * MINUTE)  # after its backoff: fails again, parked
        m = daemon.metrics()
        assert series(m, "orchestrator_rotations_parked") == {
            frozenset({"app": "svc-flaky", "usage": "private_key_jwt"}.items()): 1.0}
        assert value(m, "orchestrator_rotations_total", result="parked") == 1
        assert value(m, "orchestrator_rotations_total", result="failed") == 2
        assert value(m, "orchestrator_apps_without_usable_credential") == 0
        # the parked rotation's new key was never uploaded: the old key is the only one active
        assert set(series(m, "orchestrator_credential_expiration_timestamp_seconds")) == {
            frozenset({"app": "svc-flaky", "usage": "private_key_jwt",
                       "credential_id": old["id"], "kid": old["kid"]}.items())}
        daemon.tick_at(clock, expires + MINUTE)  # the old key expired
        m = daemon.metrics()
        assert value(m, "orchestrator_apps_without_usable_credential") == 1
        assert series(m, "orchestrator_credential_expiration_timestamp_seconds",
                      credential_id=old["id"]) == {}
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()[-3000:]


def test_a_leader_and_a_standby_each_say_their_role(
        site: tuple[Cli, VirtualClock], tmp_path: Path) -> None:
    """Two daemons on one SQLite file (the lease: a lock on the file): both alive and ready, the
    body naming each one's role; the standby serves the fleet's series too; when the leader
    stops, the standby leads."""
    cli, clock = site
    cli("app", "register", "svc-a")
    first = Served(cli, tmp_path / "first.log", "--interval", "60", "--drift-every", "0")
    second = None
    try:
        first.tick_at(clock, NOW)
        second = Served(cli, tmp_path / "second.log", "--interval", "60", "--drift-every", "0")
        wait_for(lambda: json_events(second.log, "leadership_waited"), "the standby waiting",
                 second.proc, second.log)
        for daemon, role in ((first, "leader"), (second, "standby")):
            assert daemon.get("/healthz") == (200, '{"status": "alive"}\n')
            status, body = daemon.ready()
            assert (status, body["status"], body["role"], body["database"]) == (
                200, "ready", role, "ok"), body
            assert body["policies"] == 1 and body["policy_errors"] == 0, body
        lead, spare = first.metrics(), second.metrics()
        assert value(lead, "orchestrator_leader") == 1 and value(spare, "orchestrator_leader") == 0
        assert not series(spare, "orchestrator_last_tick_timestamp_seconds")  # never ticked
        expiry = "orchestrator_credential_expiration_timestamp_seconds"
        nxt = "orchestrator_credential_next_rotation_timestamp_seconds"
        assert series(spare, expiry) == series(lead, expiry) != {}
        assert series(spare, nxt) == series(lead, nxt) != {}

        assert first.stop() == 0
        clock.set(NOW + MINUTE)  # the standby's next look at the lease
        wait_for(lambda: second.ready()[1]["role"] == "leader", "the standby leading",
                 second.proc, second.log)
        assert value(second.metrics(), "orchestrator_leader") == 1
    finally:
        for daemon in (first, second):
            if daemon is not None:
                assert daemon.stop() == 0, daemon.log.read_text()[-3000:]


def test_listen_is_refused_in_one_line_when_unusable(site: tuple[Cli, VirtualClock]) -> None:
    cli, _ = site
    for args, fragment in (
            (["--listen", "localhost:http"], "the port must be a number from 0 to 65535"),
            (["--listen", "::1:9464"], "write an IPv6 address in brackets"),
            (["--listen", "9464", "--once"], "--listen serves a running daemon"),
            (["--listen", "192.0.2.1:9464"], "--listen 192.0.2.1:9464: cannot listen there")):
        result = cli.run("daemon", *args)
        lines = result.stderr.splitlines()
        assert result.returncode != 0 and len(lines) == 1, str(result)
        assert lines[0].startswith("error: ") and fragment in lines[0], str(result)


@pytest.mark.slow
@pytest.mark.postgres
def test_readyz_answers_503_while_the_database_is_lost(tmp_path: Path) -> None:
    """A daemon on a private PostgreSQL cluster (tests/support/pg_cluster.py), on the real
    clock: ready as the leader; the cluster stopped: /readyz 503 naming the database's fault,
    /healthz still 200, /metrics still served (the daemon's own series); the cluster back:
    ready again, leading again."""
    from tests.support.pg_cluster import private_cluster

    with private_cluster() as cluster:
        cli = Cli(cluster.url(), tmp_path / "ks", tmp_path)
        policies = tmp_path / "policies"
        policies.mkdir()
        (policies / "keys.yaml").write_text(KEYS)
        cli.env.update(ORCHESTRATOR_DELIVERY=str(tmp_path / "delivery"),
                       ORCHESTRATOR_POLICIES=str(policies))
        cli("app", "register", "svc-a")
        daemon = Served(cli, tmp_path / "daemon.log", "--interval", "0.5", "--drift-every", "0",
                        launcher=False)
        try:
            wait_for(lambda: daemon.ready()[1].get("ticks"), "a tick", daemon.proc, daemon.log)
            status, body = daemon.ready()
            assert (status, body["role"], body["database"]) == (200, "leader", "ok"), body
            cluster.stop("fast")
            wait_for(lambda: daemon.ready()[0] == 503, "/readyz 503", daemon.proc, daemon.log)
            _, body = daemon.ready()
            assert body["status"] == "not ready" and body["database"] != "ok", body
            assert f"127.0.0.1:{cluster.port}" in json.dumps(body) or "connect" in json.dumps(
                body), body  # the driver's reason, naming where it could not connect
            assert daemon.get("/healthz")[0] == 200  # alive all the same
            m = daemon.metrics()
            assert series(m, "orchestrator_leader") and series(
                m, "orchestrator_last_tick_timestamp_seconds")
            assert not series(m, "orchestrator_credential_expiration_timestamp_seconds")
            cluster.start()
            wait_for(lambda: daemon.ready()[0] == 200, "ready again", daemon.proc, daemon.log)
            wait_for(lambda: daemon.ready()[1]["role"] == "leader", "leading again",
                     daemon.proc, daemon.log)
            assert series(daemon.metrics(), "orchestrator_credential_expiration_timestamp_seconds")
        finally:
            assert daemon.stop() == 0, daemon.log.read_text()[-3000:]


def test_drift_and_provider_requests_are_counted_against_a_tenant(
        tenant: Tenant, tmp_path: Path) -> None:  # noqa: F811
    """Against the Auth0 emulator (real clock): an app whose tenant has a key the log does not
    know is held (``orchestrator_drift`` 1), the clean one is 0 and rotated, the requests to
    the tenant are counted under the provider's name; repaired, the app's drift is 0."""
    drifted = imported(tenant, "daemon-drifted", 1)
    imported(tenant, "daemon-clean", 2)
    untested = "overlap: 1h, acceptUntested: true}"  # Auth0 tests no JAR key of a keyless client
    assert "overlap: 1h}" in JAR_POLICY
    (tenant.policies / "jar.yaml").write_text(JAR_POLICY.replace("overlap: 1h}", untested))
    tenant.add(drifted.client_id, 3)  # made at the tenant behind the orchestrator's back
    daemon = Served(tenant.cli, tmp_path / "daemon.log", "--interval", "0.5", "--drift-every",
                    "1h", launcher=False)
    try:
        def drift() -> dict[frozenset[tuple[str, str]], float]:
            return series(daemon.metrics(), "orchestrator_drift")

        wait_for(lambda: len(drift()) == 2, "both apps compared", daemon.proc, daemon.log)
        assert drift() == {frozenset({("app", "daemon-drifted")}): 1.0,
                           frozenset({("app", "daemon-clean")}): 0.0}
        wait_for(lambda: series(daemon.metrics(), "orchestrator_rotations_total",
                                result="completed"), "daemon-clean's JAR key", daemon.proc,
                 daemon.log)
        m = daemon.metrics()
        # each app's client read by the drift check, and the clean app's key uploaded, attached
        assert value(m, "orchestrator_provider_requests_total", provider=NAME, outcome="ok") >= 4
        assert not series(m, "orchestrator_provider_requests_total", provider="local")
        assert set(series(m, "orchestrator_credential_next_rotation_timestamp_seconds")) == {
            frozenset({("app", app), ("usage", "jar")}) for app in
            ("daemon-clean", "daemon-drifted")}

        assert tenant.drift("--app", "daemon-drifted", "--repair").returncode == 0
        wait_for(lambda: drift().get(frozenset({("app", "daemon-drifted")})) == 0,
                 "daemon-drifted agreeing", daemon.proc, daemon.log)
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()[-3000:]
