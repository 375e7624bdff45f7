"""A leader that lost its lease makes no further side effect: real daemon processes on PostgreSQL.

Two ``orchestrator daemon`` processes over ten applications with policies of a few seconds
(the churn of test_daemon_crash); once the leader has completed ten rotation steps, its lease
is lost in one of three ways:

* ``terminate``: its lock session is ended with ``pg_terminate_backend`` while it works on;
* ``sigstop``: it is paused with SIGSTOP, its sessions end under it (as a partition or
  ``idle_session_timeout`` would end them; PostgreSQL keeps a paused client's session, and its
  lock, otherwise), the standby takes over and acts, then it is resumed with SIGCONT, still
  believing it leads: the classic fencing case;
* ``pause``: it is paused with SIGSTOP and nothing else is done: its lease ends by its time
  limit (``--lease-timeout 3s``: the lock session's ``idle_session_timeout``, its transactions'
  ``idle_in_transaction_session_timeout``), the standby takes over and acts, then it is resumed;
  the loss is judged from the head read once the new leader holds the lease (a stopped process
  writes nothing);
* ``sigkill``: it is killed.

Judged: no rotation step completed by the old leader after the loss, by the log: its record lies
above the log's head at the loss (read under the append lock while the sessions are ended);
after a SIGCONT, a step the new leader had completed before the resume found its work done and
wrote nothing, so it is not one (a step is recorded once). Also: the old leader logs
``lease_lost`` or waits as a standby, the standby takes over and acts, and the whole log keeps
every invariant of ``assert_consistent``. The seconds from the loss to the new leader's first
completed step are printed (a measurement for bench/README.md, never asserted).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection

from events.sql import ADVISORY_LOCK_KEY
from events.store import Recorded
from tests.integration.test_daemon_crash import (  # noqa: F401  (sites: a fixture)
    Daemon,
    Site,
    assert_consistent,
    calm_down,
    leader_and_standby,
    sites,
    wait_until,
)


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of process ``pid``'s sockets (its database sessions among them): its
    socket inodes from /proc/PID/fd, matched in /proc/net/tcp and tcp6."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def leader_sessions(conn: Connection, leader: Daemon) -> list[int]:
    """The backend pids of the leader's sessions that hold an advisory lock (its lease, and an
    append of its in flight), and only its own: other tests' daemons may run on the same server
    at once."""
    ports = sorted(local_ports(leader.proc.pid))
    return list(conn.exec_driver_sql(
        "SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid() "
        "AND a.client_port = ANY(%(ports)s)", {"ports": ports}).scalars().all())


def terminate(conn: Connection, pids: list[int]) -> None:
    """End these sessions and wait until each has exited (and so released its locks)."""
    for pid in pids:
        assert conn.exec_driver_sql("SELECT pg_terminate_backend(%(pid)s, 30000)",
                                    {"pid": pid}).scalar(), f"backend {pid} did not exit"


def head(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT coalesce(max(position), 0) FROM events").scalar()
               or 0)


def end_lock_sessions(site: Site, leader: Daemon, *, running: bool) -> int:
    """End the leader's lock sessions; the log's head at the instant of the loss.

    A ``running`` leader's sessions are ended under the lock every append takes, so nothing is
    appended between the loss and the head read: an append of the old leader above that head
    is a side effect after the loss. (It waits for an append in flight to commit: that append
    passed its fence before the loss.) A stopped leader may be stopped holding that lock mid
    append: its sessions are ended first, and the head read after; it cannot act before it is
    resumed, long after."""
    with site.engine.connect() as conn:
        if running:
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(key)s)",
                                 {"key": ADVISORY_LOCK_KEY})
        pids = leader_sessions(conn, leader)
        assert pids, "the leader held no advisory lock"
        terminate(conn, pids)
        at_loss = head(conn)
        conn.commit()
    return at_loss


# what a completed step appends (orchestrator.app.rotator): a step_recorded of this name, or
# an event of this type about the step's credential
RECORDED_AS = {"generate": "generated", "register": "registered", "confirm": "registered",
               "test": "tested", "deliver": "delivered"}
APPENDS = {"free_slot": "credential.deleted", "activate": "credential.activated",
           "disable_old": "credential.disabled", "complete": "rotation.completed",
           "deliver": "secret.rotated"}


def recorded_by(records: list[Recorded], line: dict[str, object], head: int) -> bool:
    """The step of log line ``line`` is in the log at or below position ``head``. A step found
    recorded is never done again, so the old leader's step is the one found, and above ``head``
    it was appended after the loss."""
    step, credential = str(line["step"]), line.get("credential_id")
    assert step in RECORDED_AS or step in APPENDS, f"a step this test cannot place: {step}"
    for rec in records:
        if rec.position > head or rec.correlation_id != line["rotation_id"]:
            continue
        if rec.type == "rotation.step_recorded" and rec.payload["step"] == RECORDED_AS.get(step):
            return True
        if rec.type == APPENDS.get(step) and credential in (None, rec.payload.get(
                "credential_id")):
            return True
    return False


def stopped(pid: int) -> bool:
    """The process is stopped (state T in /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def at(line: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00"))


def taken_after(instant: datetime, *daemons: Daemon) -> tuple[Daemon, datetime] | None:
    """The first of ``daemons`` to log ``leadership_acquired`` after ``instant``, and when."""
    taken = [(at(line), n, daemon) for n, daemon in enumerate(daemons)
             for line in daemon.events("leadership_acquired") if at(line) > instant]
    if not taken:
        return None
    when, _, daemon = min(taken, key=lambda t: (t[0], t[1]))
    return daemon, when


def done_before(daemon: Daemon, line: dict[str, object], instant: datetime) -> bool:
    """``daemon`` completed the step of ``line`` (same rotation, step and credential) before
    ``instant``. A stopped old leader can do nothing before it is resumed, and a step is
    recorded once: one the new leader completed before the resume is the new leader's record,
    and the old leader's line for it, after the resume, is a step that found its work done and
    wrote nothing (its append of nothing reaches no fence)."""
    keys = ("rotation_id", "step", "credential_id")
    return any(all(done.get(k) == line.get(k) for k in keys) and at(done) < instant
               for done in daemon.events("rotation_step_completed"))


def next_step(daemon: Daemon, since: datetime) -> dict[str, object]:
    """The first rotation step ``daemon`` completes after ``since``."""
    return wait_until(lambda: next((s for s in daemon.events("rotation_step_completed")
                                    if at(s) > since), None),
                      60, f"a step by {daemon.name} as the new leader", watch=(daemon,))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("how", ["terminate", "sigstop", "pause", "sigkill"])
def test_a_deposed_leader_makes_no_side_effect(how: str, pg_url: str, tmp_path: Path,
                                               sites: Callable[[Path, str], Site],  # noqa: F811
                                               ) -> None:
    site = sites(tmp_path, pg_url)
    leader, standby = leader_and_standby(
        site, extra=("--lease-timeout", "3s") if how == "pause" else ())
    both = (leader, standby)
    standby.wait_log("leadership_waited")
    wait_until(lambda: len(leader.events("rotation_step_completed")) >= 10, 90,
               "ten steps by the leader", watch=both)

    paused = how in ("sigstop", "pause")
    if paused:  # the pause first: the loss is when its sessions end
        leader.proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: stopped(leader.proc.pid), 30, "the leader to stop")
    lost_at = datetime.now(UTC)
    at_loss = None
    if how == "sigkill":
        leader.kill()
        with site.engine.connect() as conn:
            at_loss = head(conn)
    elif how != "pause":
        at_loss = end_lock_sessions(site, leader, running=how == "terminate")
    # ``terminate`` leaves the old leader running: it learns of the loss, steps down, and may
    # take the lease again, at a new epoch, before the standby looks. Either is the new leader;
    # what is judged is the old one's steps between the loss and that new epoch.
    new_leader, retaken = wait_until(lambda: taken_after(lost_at, standby, leader), 60,
                                     "a new leader", watch=(standby,))
    if at_loss is None:  # its time limit ended the lease: nothing it wrote can lie above this
        with site.engine.connect() as conn:
            at_loss = head(conn)
    first_step = next_step(new_leader, retaken)
    resumed_at = None
    if paused:
        standby.wait_log("rotation_step_completed", count=3, timeout=60)
        resumed_at = datetime.now(UTC)
        leader.proc.send_signal(signal.SIGCONT)
    if how != "sigkill":  # it learns it leads no more, at its next check or append
        wait_until(lambda: leader.events("lease_lost") or [
            w for w in leader.events("leadership_waited") if at(w) > lost_at], 60,
            "the old leader to step down", watch=(leader, standby))

    records = site.records()
    after = [s for s in leader.events("rotation_step_completed")
             if at(s) > lost_at and (new_leader is standby or at(s) < retaken)
             and not recorded_by(records, s, at_loss)
             and not (resumed_at is not None and done_before(new_leader, s, resumed_at))]
    takeover = (at(first_step) - lost_at).total_seconds()
    print(f"\n{how}: {len(after)} steps by the old leader after the loss; the new leader's "
          f"first step {takeover:.2f}s after it; old leader logged lease_lost "
          f"{len(leader.events('lease_lost'))}x")
    assert after == [], after
    if new_leader is leader:
        assert leader.events("lease_lost"), "the old leader took the lease again unwarned"

    calm_down(site, *(daemon for daemon in both if daemon.alive))
    wait_until(lambda: site.settled(1), 90, "the rotations in flight to drain", watch=(standby,))
    for daemon in both:
        if daemon.alive:
            status, _ = daemon.stop()
            assert status == 0, daemon.tail()
    assert not standby.events("lease_lost")
    assert_consistent(site)
