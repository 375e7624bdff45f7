"""PostgreSQL restarted under a working daemon: it keeps running, loses nothing, says so, resumes.

Six applications of test_daemon_crash's churn (policies of a few seconds, so rotations are
always in flight) on a private cluster (``tests/support/pg_cluster.py``: the shared server
serves other tests at the same time), and the installed daemon on it. Right after a rotation
step completed (inside a tick) the cluster is restarted with ``pg_ctl restart -m fast``
(sessions ended, a clean shutdown), with ``-m immediate`` (the server crashes and recovers), and
it is stopped for 15 s and started again. After each:

* the daemon process is still alive;
* it said what is wrong in one readable line at error level (``database_unavailable``, or
  ``lease_lost`` when the lease's session was what found the server gone), naming the database
  and what it does next; no traceback anywhere in its log; while the database was down for
  15 s, ``database_unavailable`` once (not a line per tick), and ``database_recovered`` after;
* it took the lease again at a new leader epoch (the lease's session died with the server);
* rotations resumed: after the last fault every application completes a rotation (a tick that
  failed part way forgot none of the applications it had taken).

Then the policies calm down, what is in flight drains, the daemon exits 0 on SIGTERM, and
``assert_consistent`` holds (every invariant of the log, ``orchestrator verify`` among them);
the tests' own oracle (``tests/oracle.py``, plain SQL and its own fold) finds no instant since
the first delivery at which an application held no usable key, and the files delivered to each
application are a usable key (its private key the log's public key) and the newest secret.

A second test runs a leader and a standby through one crash of the server: one of them leads
afterwards, at a new epoch, and no work is done twice. A third looks at the store and the lease
in this process: after a restart each kind of connection fails once (a pool keeps no dead
connection for later calls), with no traceback logged by SQLAlchemy's pool, and the lease says
why it was lost and is taken again at the next epoch.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from events.connections import fault
from events.sql import SQLEventStore, create_engine, upgrade
from events.store import LeaseLost
from orchestrator.adapters.lease import DatabaseLease
from tests.integration.test_daemon_crash import (  # noqa: F401  (sites: a fixture)
    CALM,
    Daemon,
    Site,
    assert_consistent,
    calm_down,
    churn_policies,
    sites,
    wait_until,
)
from tests.oracle import gaps, read_log
from tests.support.pg_cluster import Cluster, private_cluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

APPS = [f"rnd-{group}{n}" for group in "ab" for n in range(3)]  # of BUSY's selectors
BUSY = churn_policies("3s", "30s")  # keys rotated every few seconds: always one in flight
DOWN_SECONDS = 15
FAULT_LINES = {"database_unavailable", "lease_lost"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with private_cluster() as made:
        yield made


@pytest.fixture
def cluster_url(cluster: Cluster) -> str:
    """A fresh schema on the private cluster."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    finally:
        engine.dispose()
    return cluster.url(schema)


def under_way(apps: list[str]) -> int:
    """Rotations completed once the churn is under way: each app provisioned (a key and a
    secret), and a few keys rotated since."""
    return 2 * len(apps) + 3


def busy_site(site: Site, apps: list[str]) -> None:
    site.write_policies(BUSY)
    site.cli("policy", "validate", str(site.policies))
    site.register(*apps)


def since(daemon: Daemon, mark: int, *names: str) -> list[dict[str, Any]]:
    """The daemon's log lines after its first ``mark`` lines, of these events (all: none)."""
    return [line for line in daemon.lines()[mark:] if not names or line.get("event") in names]


def steps(daemon: Daemon) -> int:
    return len(daemon.events("rotation_step_completed"))


def mid_tick(daemon: Daemon) -> int:
    """Wait until the daemon completes a rotation step (it is inside a tick) with no outage
    open (it completed a tick since the last), and return the number of its log lines then."""
    wait_until(lambda: len(daemon.events("database_recovered"))
               == len(daemon.events("database_unavailable")), 90, "a tick completed",
               watch=(daemon,))
    seen = steps(daemon)
    wait_until(lambda: steps(daemon) > seen, 60, "a rotation step", watch=(daemon,), every=0.02)
    return len(daemon.lines())


def retaken(daemon: Daemon, mark: int, epoch: int, what: str) -> int:
    """Wait until the daemon took the lease at an epoch above ``epoch`` and completed a rotation
    step after that; the new epoch."""
    def step_after_new_epoch() -> int | None:
        lines = since(daemon, mark, "leadership_acquired", "rotation_step_completed")
        taken = next((i for i, line in enumerate(lines)
                      if line["event"] == "leadership_acquired" and line["epoch"] > epoch), None)
        if taken is None or not any(line["event"] == "rotation_step_completed"
                                    for line in lines[taken:]):
            return None
        return int(lines[taken]["epoch"])

    return wait_until(step_after_new_epoch, 90, f"the lease taken again and a step after {what}",
                      watch=(daemon,))


def assert_said(daemon: Daemon, mark: int, cluster: Cluster, what: str) -> dict[str, Any]:
    """One readable line at error level says the database went away, naming it and what the
    daemon does next; the first such line after ``mark``."""
    said = since(daemon, mark, *FAULT_LINES)
    assert said, f"nothing said about {what}\n{daemon.tail(30)}"
    line = said[0]
    assert line["level"] == "error", line
    assert f"127.0.0.1:{cluster.port}/postgres" in line["database"], line
    assert line["next"] and line["error"], line
    return line


def last_key(log: Any, app: str) -> Any:
    """The oracle's key of ``app`` delivered last."""
    delivered = [(at, cred) for cred in log.creds[app].values()
                 if (at := log.delivered_at(app, cred.id)) is not None]
    return max(delivered, key=lambda pair: pair[0])[1]


def assert_every_app_holds_usable_credentials(site: Site, apps: list[str]) -> None:
    """Judged by the oracle from the events table and by the delivered files themselves."""
    log = read_log(site.db)
    end = datetime.now(UTC)
    for app in apps:
        held = log.held_intervals(app, end)
        first = min(start for start, _ in held)
        assert gaps(held, first, end) == [], f"{app}: without a usable key at times"
        files = site.delivery / app / "private_key_jwt"
        key = log.creds[app][(files / "credential_id").read_text()]
        assert key is last_key(log, app) and any(a <= end <= b
                                                 for a, b in key.usable_intervals(end)), app
        private = serialization.load_pem_private_key((files / "private_key.pem").read_bytes(),
                                                     password=None)
        public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        assert key.certificate_pem is None
        (added,) = [r for r in log.rows if r["type"] == "credential.added"
                    and r["payload"]["credential_id"] == key.id]
        assert public.decode().strip() == added["payload"]["public_pem"].strip(), app
        versions = [r["payload"]["version"] for r in log.rows
                    if r["app"] == app and r["type"] == "secret.rotated"]
        assert int((site.delivery / app / "client_secret" / "version").read_text()) == max(
            versions), app


def completed_after(site: Site, position: int) -> set[str]:
    return {r.stream_id.removeprefix("app:") for r in site.records("rotation.completed")
            if r.position > position}


def head(site: Site) -> int:
    with site.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT coalesce(max(position), 0) FROM events").scalar())


def stopped_a_while(cluster: Cluster) -> None:
    cluster.stop("fast")
    time.sleep(DOWN_SECONDS)  # the outage itself: the daemon must wait it out, whatever its speed
    cluster.start()


FAULTS: list[tuple[str, Callable[[Cluster], None]]] = [
    ("pg_ctl restart -m fast", lambda c: c.restart("fast")),
    ("pg_ctl restart -m immediate", lambda c: c.restart("immediate")),
    (f"the server stopped for {DOWN_SECONDS}s", stopped_a_while),
]


def test_the_daemon_rides_out_postgres_restarts(
        cluster: Cluster, cluster_url: str, tmp_path: Path,
        sites: Callable[[Path, str], Site],  # noqa: F811
) -> None:
    site = sites(tmp_path, cluster_url)
    busy_site(site, APPS)
    daemon = site.daemon(name="survivor")
    wait_until(lambda: site.completed() >= under_way(APPS), 90, "the churn under way",
               watch=(daemon,))
    (first,) = daemon.events("leadership_acquired")
    epoch = first["epoch"]
    for what, cause in FAULTS:
        mark = mid_tick(daemon)
        cause(cluster)
        assert daemon.alive, daemon.tail()
        epoch_before, epoch = epoch, retaken(daemon, mark, epoch, what)
        said = assert_said(daemon, mark, cluster, what)
        print(f"\n{what}: {said['event']}: {said['error']} ({said['next']}); lease retaken at "
              f"epoch {epoch} (was {epoch_before})")
    # the long outage: said once, not at every tick while it lasted, and its end said too
    (down,) = since(daemon, mark, "database_unavailable")
    (back,) = wait_until(lambda: since(daemon, mark, "database_recovered"), 90,
                         "database_recovered", watch=(daemon,))
    assert back["unavailable_seconds"] >= DOWN_SECONDS - 1, back
    assert back["database"] == down["database"]

    # every application rotates again: none was forgotten by a tick cut short
    site.engine.dispose()  # this test's own connections died with the server too
    after = head(site)
    wait_until(lambda: completed_after(site, after) >= set(APPS), 90,
               "a rotation of every application after the last fault", watch=(daemon,))
    calm_down(site, daemon)
    wait_until(lambda: site.settled(under_way(APPS)), 90, "the rotations in flight to drain",
               watch=(daemon,))
    status, _ = daemon.stop()
    assert status == 0, daemon.tail()
    lines = daemon.lines()
    assert lines[-1]["event"] == "daemon_stopped"
    assert not [line for line in lines if "exception" in line or line["event"] in (
        "(not json)", "tick_failed", "unhandled_exception")], "a traceback in the daemon's log"

    summary = assert_consistent(site)
    assert_every_app_holds_usable_credentials(site, APPS)
    print(f"{summary.completed} rotations completed ({dict(summary.by_usage)}), "
          f"{summary.events} events")


def test_a_leader_and_a_standby_through_a_crash(
        cluster: Cluster, cluster_url: str, tmp_path: Path,
        sites: Callable[[Path, str], Site],  # noqa: F811
) -> None:
    site = sites(tmp_path, cluster_url)
    apps = APPS[:2] + APPS[3:4]  # fewer: one crash to ride out, by two daemons
    busy_site(site, apps)
    first, second = (site.daemon(name=name, interval=0.5) for name in ("first", "second"))
    both = (first, second)
    leader = wait_until(lambda: next((d for d in both if d.events("leadership_acquired")), None),
                        60, "a leader", watch=both)
    (acquired,) = leader.events("leadership_acquired")
    wait_until(lambda: site.completed() > 2 * len(apps), 90, "the churn under way", watch=both)
    marks = {d.name: len(d.lines()) for d in both}
    mid_tick(leader)
    cluster.restart("immediate")

    def new_leader() -> Daemon | None:
        return next((d for d in both for line in since(d, marks[d.name], "leadership_acquired")
                     if line["epoch"] > acquired["epoch"]), None)

    now_leading = wait_until(new_leader, 90, "a leader at a new epoch", watch=both)
    site.engine.dispose()  # this test's own connections died with the server too
    at = steps(now_leading)
    wait_until(lambda: steps(now_leading) > at, 90, "a step by the new leader", watch=both)
    other = second if now_leading is first else first
    assert not since(other, marks[other.name], "leadership_acquired"), other.tail()
    calm_down(site, *both)
    wait_until(lambda: site.settled(2 * len(apps) + 1), 90, "the rotations in flight to drain",
               watch=both)
    for daemon in both:
        status, _ = daemon.stop()
        assert status == 0, daemon.tail()
    summary = assert_consistent(site)  # each key added once, each rotation completed once
    assert_every_app_holds_usable_credentials(site, apps)
    print(f"\n{now_leading.name} leads after the crash (the leader was {leader.name}); "
          f"{summary.completed} rotations completed")


def test_after_a_restart_each_connection_fails_once_and_quietly(
        cluster: Cluster, cluster_url: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine(cluster_url)
    try:
        upgrade(engine)
        store, lease = SQLEventStore(engine), DatabaseLease(engine)
        assert lease.acquire()
        epoch = lease.epoch
        pooled = [engine.raw_connection() for _ in range(3)]  # three idle in the pool
        for conn in pooled:
            conn.close()
        cluster.restart("fast")
        with caplog.at_level(logging.INFO):
            with pytest.raises(Exception) as first:  # the driver's own error, on a hot path
                list(store.read())
            assert fault(engine, first.value), first.value
            assert list(store.read()) == []  # the pool was emptied: a fresh connection
            with pytest.raises(LeaseLost, match=r"database session is lost: .*connection"):
                lease.confirm()
            assert lease.acquire() and lease.epoch == (epoch or 0) + 1
            for conn in [engine.raw_connection() for _ in range(3)]:  # SQLAlchemy's own path
                conn.close()
            cluster.restart("immediate")
            with pytest.raises(sa.exc.OperationalError) as core, engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            assert core.value.connection_invalidated and fault(engine, core.value)
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1
            lease.release()
        assert not [r for r in caplog.records if r.name.startswith("sqlalchemy")], [
            r.getMessage() for r in caplog.records]
    finally:
        engine.dispose()
