"""TEST-ONLY harness for live-traffic runs: the installed daemon on a virtual clock, driven one
instant at a time, beside a token client process that knows only the delivery folder.

* ``LiveDaemon`` runs ``orchestrator daemon`` through ``tests/support/launch.py`` with the
  clock file of a ``VirtualClock``. The daemon acts only when its clock moves, so ``step(delta)``
  moves the clock and waits for the ``daemon_heartbeat`` line that follows the tick at the new
  instant (one per step of at least a minute: the heartbeat's period): when it returns, the
  daemon has done everything due at that instant and waits for the next one. A ``tick_failed``
  line fails the test at once. No timing is asserted; the waits have safety timeouts only.
* ``Rotations`` reads the events table with plain SQL (``tests.oracle``) and says, per
  application, which rotations completed, which one is in flight and where it stands.
* ``TokenClient`` runs ``tests/support/token_client.py`` as its own process and reads its stats;
  ``replay`` repeats one authentication with a version the client kept.
* ``Site`` is one run's folder (database, keystore, policies, delivery) and its command line on
  a virtual clock that starts two days behind the wall clock and stays behind it: a real
  provider checks certificates against the wall clock, and a certificate is valid from the
  daemon's "now" (minus a few minutes) on. ``rounds`` drives the daemon through rotations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from tests.helpers import LAUNCHER, Cli, VirtualClock
from tests.oracle import read_log
from tests.support.token_client import Options, accepted, attempt

__all__ = ["LiveDaemon", "Rotation", "Rotations", "Site", "TokenClient", "poll", "replay",
           "rounds", "settle"]

T = TypeVar("T")
HEARTBEAT = timedelta(minutes=1)  # orchestrator/entrypoints/daemon.py: one beat a minute at most
LOOK = 0.02  # seconds between two looks at what a test waits for
SAFETY = 300.0  # seconds: only a net under a stuck process; no verdict rests on it
TOKEN_CLIENT = Path(__file__).with_name("token_client.py")
# seconds the token client rests between two requests. Unpaced it asked 150 times a second and,
# with the provider answering, took a core from the daemon under test and from the other xdist
# worker (the chaos test: 163 s of CPU unpaced, 52 s paced, the same verdicts). No verdict rests on
# how dense the requests are: before every clock move a test waits until the client has used the
# version last delivered (``wait_using``), and every request of the run must succeed.
PAUSE = 0.05


def poll(check: Callable[[], T], what: str, *, alive: Sequence[subprocess.Popen[Any]] = (),
         logs: Sequence[Path] = (), timeout: float = SAFETY) -> T:
    """``check()`` until truthy; fails naming ``what`` (with the logs' tails) if a process of
    ``alive`` exits or the safety timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        dead = [p for p in alive if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-4000:]}"
                              for log in logs if log.exists())
            why = f"exited ({dead[0].returncode})" if dead else f"not within {timeout:.0f} s"
            raise AssertionError(f"waiting for {what}: {why}\n{tails}")
        time.sleep(LOOK)


class LiveDaemon:
    """``orchestrator daemon --json-logs`` under ``clock``, its log in ``log``."""

    def __init__(self, env: dict[str, str], cwd: Path, clock: VirtualClock, log: Path,
                 interval: float = 30.0) -> None:
        self.clock = clock
        self.log = log
        self._read: list[dict[str, Any]] = []  # the log's whole lines read so far
        self._offset = 0  # where in the log the next whole line starts
        self.beats_seen = 0
        self.retry_steps = 0  # steps ``settle`` took beyond the ones a test asked for
        # called before the clock moves: the test's invariant (e.g. the app uses what was
        # delivered, as it would within the overlap) holds before the daemon may act again
        self.before_step: Callable[[], object] = lambda: None
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*LAUNCHER, "daemon", "--json-logs", "--interval", str(interval)],
                env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self._wait_beat()  # the first tick, at the instant the clock shows now

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        """The daemon's JSON log lines so far (``event``: only those), read on from where the
        last look stopped: a look costs what was written since, not the whole log again."""
        with self.log.open("rb") as log:
            log.seek(self._offset)
            fresh = log.read()
        whole = fresh[:fresh.rfind(b"\n") + 1]  # a line still being written waits
        self._offset += len(whole)
        for raw in whole.decode(errors="replace").split("\n")[:-1]:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                self._read.append(line)
        return [line for line in self._read if event is None or line.get("event") == event]

    def _wait_beat(self) -> None:
        want = self.beats_seen + 1
        poll(lambda: len(self.lines("daemon_heartbeat")) >= want,
             f"the daemon's heartbeat #{want} (the tick at {self.clock.now().isoformat()})",
             alive=[self.process], logs=[self.log])
        self.beats_seen = want
        failed = self.lines("tick_failed")
        assert not failed, f"a tick failed: {failed[-1]}\n{self.log.read_text()[-4000:]}"

    def step(self, delta: timedelta) -> datetime:
        """Move the clock by ``delta`` and wait until the daemon has ticked at the new instant."""
        assert delta > HEARTBEAT, "a step shorter than the heartbeat's period cannot be awaited"
        self.before_step()
        at = self.clock.advance(delta)
        self._wait_beat()
        return at

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


# --- the log ----------------------------------------------------------------------------------


@dataclass
class Rotation:
    id: str
    app: str
    usage: str
    reason: str
    old_credential_id: str | None
    new_credential_id: str
    steps: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = False
    parked: bool = False
    last: str = "rotation.started"  # the type of its latest event

    @property
    def delivered(self) -> bool:
        return "delivered" in self.steps

    @property
    def waiting_retry(self) -> bool:
        """Its latest attempt failed and it waits for the retry (backoff on the daemon's clock)."""
        return self.last == "rotation.failed"


class Rotations:
    """The rotations of a SQLite database, by application, from a fresh read of the events."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.refresh()

    def refresh(self) -> Rotations:
        self.log = read_log(self.db)
        self.by_app: dict[str, list[Rotation]] = {}
        by_id: dict[str, Rotation] = {}
        for row in self.log.rows:
            data, kind = row["payload"], row["type"]
            if kind == "rotation.started":
                rotation = Rotation(data["rotation_id"], row["app"], data["usage"], data["reason"],
                                    data.get("old_credential_id"), data["new_credential_id"])
                by_id[rotation.id] = rotation
                self.by_app.setdefault(row["app"], []).append(rotation)
            elif (rotation_or_none := by_id.get(data.get("rotation_id", ""))) is not None:
                rotation_or_none.last = kind
                if kind == "rotation.step_recorded":
                    rotation_or_none.steps.append(data["step"])
                elif kind == "rotation.failed":
                    rotation_or_none.failures.append(data)
                elif kind == "rotation.completed":
                    rotation_or_none.completed = True
                elif kind == "rotation.parked":
                    rotation_or_none.parked = True
        return self

    def of(self, app: str) -> list[Rotation]:
        return self.by_app.get(app, [])

    def completed(self, app: str) -> list[Rotation]:
        return [r for r in self.of(app) if r.completed]

    def in_flight(self, app: str) -> Rotation | None:
        return next((r for r in self.of(app) if not r.completed and not r.parked), None)

    def parked(self) -> list[Rotation]:
        return [r for rs in self.by_app.values() for r in rs if r.parked]

    def failures(self) -> list[dict[str, Any]]:
        return [f for rs in self.by_app.values() for r in rs for f in r.failures]

    def delivered(self, app: str) -> list[str]:
        """The credentials delivered to ``app``, in order."""
        return [r.new_credential_id for r in self.of(app) if r.delivered]

    def statuses(self, app: str) -> dict[str, str]:
        """Each credential's status by its latest life event: added, active, disabled, expired
        or deleted (this module's own fold of the rows)."""
        life = {"credential.added": "added", "credential.activated": "active",
                "credential.disabled": "disabled", "credential.expired": "expired",
                "credential.deleted": "deleted"}
        out: dict[str, str] = {}
        for row in self.log.rows:
            if row["app"] == app and row["type"] in life:
                cid = row["payload"]["credential_id"]
                if out.get(cid) == "expired" and row["type"] != "credential.deleted":
                    continue  # expired is terminal until deleted
                out[cid] = life[row["type"]]
        return out

    def provider_ids(self, app: str) -> dict[str, str]:
        """credential id -> the provider's id for it (``credential.registered``)."""
        return {p["credential_id"]: p["provider_credential_id"]
                for p in self.payloads("credential.registered", app)}

    def payloads(self, kind: str, app: str | None = None) -> list[dict[str, Any]]:
        return [r["payload"] for r in self.log.rows
                if r["type"] == kind and (app is None or r["app"] == app)]

    def credential(self, app: str, credential_id: str) -> dict[str, Any]:
        """The ``credential.added`` payload of a credential."""
        return next(p for p in self.payloads("credential.added", app)
                    if p["credential_id"] == credential_id)


# --- the application's side -----------------------------------------------------------------


class TokenClient:
    """``token_client.py`` as its own process over ``folder``, keeping versions in ``keep``."""

    def __init__(self, folder: Path, workdir: Path, options: Options) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.options = options
        self.stats_file, self.keep = workdir / "stats.json", workdir / "versions"
        self.stop_file, self.log = workdir / "stop", workdir / "client.log"
        argv = [sys.executable, str(TOKEN_CLIENT), "--folder", str(folder),
                "--stats", str(self.stats_file), "--keep", str(self.keep),
                "--stop-file", str(self.stop_file), "--pause", str(PAUSE)]
        for flag, value in (("--ca-file", options.ca_file), ("--audience", options.audience),
                            ("--api-audience", options.api_audience),
                            ("--client-auth", options.client_auth)):
            if value:
                argv += [flag, value]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT)

    def stats(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.stats_file.read_text()))
        except (FileNotFoundError, ValueError):
            return {"requests": 0, "ok": 0, "failures": 0, "versions": []}

    def wait_using(self, credential_id: str) -> dict[str, Any]:
        """Until the client has made a request with the version holding ``credential_id``."""
        def using() -> dict[str, Any] | None:
            stats = self.stats()
            return stats if credential_id in stats.get("credentials", []) else None

        return poll(using, f"the token client using {credential_id}", alive=[self.process],
                    logs=[self.log])

    def kept(self, credential_id: str) -> dict[str, bytes]:
        """The files of the version the client saw holding ``credential_id``."""
        number = self.stats()["credentials"].index(credential_id) + 1
        folder = self.keep / f"{number:03d}"
        return {p.name: p.read_bytes() for p in folder.iterdir()}

    def stop(self) -> dict[str, Any]:
        self.stop_file.touch()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        stats = self.stats()
        assert stats.get("stopped"), f"the token client did not stop cleanly\n{self.log.read_text()}"
        return stats


def replay(files: dict[str, bytes], options: Options) -> tuple[bool, int, str | None]:
    """(accepted, status, error) of one authentication with a kept version's files."""
    status, error = attempt(files, options)
    return accepted(status, error), status, error


def settle(daemon: LiveDaemon, rotations: Rotations, apps: Sequence[str],
           done: Callable[[Rotations, str], bool], step: timedelta, max_steps: int = 40) -> int:
    """Until ``done(rotations, app)`` holds for every app, move the clock by ``step`` (the
    policy's ``maxBackoff`` and a little) and let the daemon act: a rotation whose step failed (a
    provider error) is retried after its backoff, one that became due a little later starts.
    Returns the steps taken. Fails when a rotation parks, or after ``max_steps``."""
    for steps in range(max_steps + 1):
        rotations.refresh()
        parked = rotations.parked()
        assert not parked, f"a rotation parked: {parked[0]}"
        pending = [app for app in apps if not done(rotations, app)]
        if not pending:
            return steps
        if steps < max_steps:
            daemon.step(step)
            daemon.retry_steps += 1
    latest = rotations.of(pending[0])[-1:]
    raise AssertionError(f"{pending}: not done after {max_steps} steps; {pending[0]}'s latest "
                         f"rotation: {latest}\n{daemon.log.read_text()[-3000:]}")


def rounds(daemon: LiveDaemon, rotations: Rotations, apps: Sequence[str], count: int, *,
           every: timedelta, overlap: timedelta, retry: timedelta) -> Iterator[tuple[int, str]]:
    """``count`` rounds of rotations of every app: the clock moved past ``every`` (each app's
    rotation generates, registers, activates, tests and delivers: yields ``(n, "delivered")``),
    then past ``overlap`` (the old credential disabled, the rotation completed: yields
    ``(n, "completed")``), retrying through ``settle`` wherever a step failed."""
    for n in range(1, count + 1):
        daemon.step(every)
        settle(daemon, rotations, apps, lambda r, app, n=n: len(r.delivered(app)) > n, retry)
        yield n, "delivered"
        daemon.step(overlap + timedelta(minutes=1))
        settle(daemon, rotations, apps, lambda r, app, n=n: len(r.completed(app)) > n, retry)
        yield n, "completed"


@dataclass
class Site:
    """One run's folder and its command line on a virtual clock behind the wall clock."""

    root: Path
    wall: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __post_init__(self) -> None:
        self.clock = VirtualClock(self.root / "clock", self.wall - timedelta(days=2))
        self.db = self.root / "orchestrator.db"
        self.cli = Cli(f"sqlite:///{self.db}", self.root / "keystore", self.root, clock=self.clock)
        self.policies, self.delivery = self.root / "policies", self.root / "delivery"
        self.policies.mkdir()
        self.cli.env.update(ORCHESTRATOR_POLICIES=str(self.policies),
                            ORCHESTRATOR_DELIVERY=str(self.delivery))

    def daemon(self) -> LiveDaemon:
        return LiveDaemon(self.cli.env, self.root, self.clock, self.root / "daemon.log")
