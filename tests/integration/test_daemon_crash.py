"""The real daemon process under SIGKILL, SIGTERM and a second daemon: nothing is lost or doubled.

Every test runs the installed ``orchestrator`` in fresh OS processes against a real database (a
SQLite file, or a PostgreSQL schema) and a real keystore folder, and judges only what they leave
behind: the event log, the keystore, the read models and the daemons' JSON logs.

* Every step boundary: run through the test-only launcher (tests/support/launch.py) with
  ``ORCHESTRATOR_TEST_CRASH=<before|after>:<step>:1``, the process SIGKILLs itself right after a
  step's outside work (keystore, provider, delivery files, before its events are appended) or
  right after they are appended; a daemon started again without it must finish the rotation. Key rotations (private_key_jwt, at capacity so that
  ``free_slot`` runs too) are started by the daemon; client-secret rotations by ``orchestrator
  rotate`` (a secret has no expiry, so only its age could make the daemon start one, and an age
  short enough for a test would make the next one due at once) and finished by the daemon.
* Random kills: a daemon over ten applications with policies of a few seconds SIGKILLs itself
  before or after a seeded random append (counted in appends, not in seconds, so where it dies
  does not depend on the machine's speed) and is restarted until 100 rotations have completed
  and it was killed 20 times (30 and 8 on PostgreSQL); then the policies calm down and a last
  daemon drains what is in flight.
* Two daemons on one PostgreSQL: one leads (the lease), the other waits, and takes over when the
  leader is killed; no work is done twice.
* SIGTERM in the middle of work: exit 0 within seconds, ``daemon_stopped`` logged, the log
  consistent, and the next daemon finishes what was in flight.

After each, ``assert_consistent`` checks the whole log: the hash chain (``orchestrator verify``
too); every rotation completed exactly once (a key rotation with one ``credential.added``);
never more than two live credentials per application and usage; no instant without a usable
credential held by an application that had one (``orchestrator.app.invariants``, at every event
instant; for client secrets also: the previous secret still accepted until the new one was
delivered); no old credential disabled before its successor passed the test; no rotation
failed; no private material in the log; no orphan in the keystore; and the read models equal a
rebuild from zero.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import Engine

from events import catalog as ev
from events.chain import Verified, verify
from events.codec import parse_time
from events.projector import Projector
from events.sql import SQLEventStore, create_engine
from events.state import STREAM_PREFIX, AppState, RotationStatus, evolve
from events.store import ReadFilter, Recorded
from orchestrator.adapters.keystore import FileKeystore
from orchestrator.app.invariants import check
from orchestrator.app.service import CredentialSource, secret_item_id
from orchestrator.bootstrap import Settings, System, bootstrap
from orchestrator.domain.rotation import Reason, Step
from tests.helpers import LAUNCHER, ORCHESTRATOR
from tests.support.launch import CRASH_ENV, STEPS

T = TypeVar("T")
STARTED, COMPLETED = ev.RotationStarted.type_name, ev.RotationCompleted.type_name
ENDED = (COMPLETED, ev.RotationParked.type_name, ev.RotationAbandoned.type_name)
PRIVATE_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
SECRET_UNTIL = re.compile(r"previous secret valid until (\d\S+)")  # a time, not "it is delivered"


# --- policies ----------------------------------------------------------------------------------


def key_policy(name: str, apps: str, *, every: str, overlap: str, before_expiry: str,
               lifetime: str, retention: str, retry: str) -> str:
    return f"""apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {{name: {name}}}
spec:
  selector: {{apps: ["{apps}"]}}
  credential: {{usage: private_key_jwt, algorithm: RS256, keySize: 2048}}
  rotation:
    every: {every}
    beforeExpiry: {before_expiry}
    overlap: {overlap}
    retry: {retry}
  lifetime: {lifetime}
  retention: {retention}
"""


def secret_policy(name: str, apps: str, *, every: str, overlap: str, before_expiry: str,
                  retry: str) -> str:
    return f"""apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {{name: {name}}}
spec:
  selector: {{apps: ["{apps}"]}}
  credential: {{usage: client_secret}}
  rotation:
    every: {every}
    beforeExpiry: {before_expiry}
    overlap: {overlap}
    retry: {retry}
"""


RETRY = "{attempts: 2, backoff: 1s, maxBackoff: 1s}"  # 1s of retries in the policy's sums

# The step-boundary scenarios: one rotation each, due at once because its active key expires
# within beforeExpiry; nothing else becomes due afterwards (every: 1d).
BOUNDARY_KEYS = key_policy("crash-keys", "pay-*", every="1d", overlap="1s", before_expiry="2h",
                           lifetime="2d", retention="1h", retry=RETRY)
BOUNDARY_SECRETS = secret_policy("crash-secrets", "svc-*", every="1d", overlap="1h",
                                 before_expiry="2h", retry=RETRY)


def churn_policies(every_keys: str, every_secrets: str) -> dict[str, str]:
    """Ten applications rnd-a0..a4 and rnd-b0..b4, each with a Private Key JWT key and a client
    secret. rnd-a* keep a disabled key until the next rotation frees its slot (free_slot);
    rnd-b* have it deleted by retention after a second (the tick's delete)."""
    return {
        "churn-keys-a": key_policy("churn-keys-a", "rnd-a*", every=every_keys, overlap="1s",
                                   before_expiry="5s", lifetime="2h", retention="1h",
                                   retry=RETRY),
        "churn-keys-b": key_policy("churn-keys-b", "rnd-b*", every=every_keys, overlap="1s",
                                   before_expiry="5s", lifetime="2h", retention="1s",
                                   retry=RETRY),
        # overlap (the previous secret's grace) outlasts a kill and a restart by far, even on
        # a loaded machine
        "churn-secrets": secret_policy("churn-secrets", "rnd-*", every=every_secrets,
                                       overlap="20s", before_expiry="25s", retry=RETRY),
    }


BUSY = churn_policies("2s", "30s")
CALM = churn_policies("1h", "1h")  # nothing new becomes due: what is in flight drains
CHURN_APPS = [f"rnd-{group}{n}" for group in "ab" for n in range(5)]


# --- processes ---------------------------------------------------------------------------------


def wait_until(check: Callable[[], T], timeout: float, what: str,
               watch: tuple[Daemon, ...] = (), every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout, or
    at once when a watched daemon died."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for daemon in watch:
            if not daemon.alive:
                pytest.fail(f"{daemon.name} exited ({daemon.proc.returncode}) while waiting for "
                            f"{what}\n{daemon.tail()}")
        if time.monotonic() > deadline:
            tails = "\n".join(d.tail() for d in watch)
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tails}")
        time.sleep(every)


class Daemon:
    """One ``orchestrator daemon`` process; its JSON log lines (stderr) go to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path,
                 log: Path) -> None:
        self.name = name
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log.read_bytes().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"event": "(not json)", "text": raw.decode(errors="replace")}
            if isinstance(line, dict):
                out.append(line)
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def tail(self, n: int = 15) -> str:
        text = self.log.read_bytes().decode(errors="replace").splitlines()[-n:]
        return f"--- last lines of {self.name}\n" + "\n".join(text)

    def wait_log(self, event: str, timeout: float = 60.0, count: int = 1) -> dict[str, Any]:
        def logged() -> list[dict[str, Any]]:
            lines = self.events(event)
            return lines if len(lines) >= count else []

        found = wait_until(logged, timeout, f"{count} x {event} in {self.name}'s log",
                           watch=(self,))
        return found[count - 1]

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout}s\n{self.tail()}")

    def kill(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM once its signal handlers are installed; (exit status, seconds to exit)."""
        self.wait_log("daemon_started")
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout), time.monotonic() - began

    def close(self) -> None:
        try:
            if self.alive:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        finally:
            self._out.close()


class Site:
    """One deployment: a database, a keystore, delivery and policy folders, and every process
    started on it (all killed by ``close``, whatever happened). The keystore and delivery
    folders are in ``data`` (default: ``root``, where the processes' logs go)."""

    def __init__(self, root: Path, db: str, data: Path | None = None) -> None:
        self.root = root
        self.db = db
        self.keystore = (data or root) / "keystore"
        self.delivery = (data or root) / "delivery"
        self.policies = root / "policies"
        self.policies.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        self.env.update(ORCHESTRATOR_DB=db, ORCHESTRATOR_KEYSTORE=str(self.keystore),
                        ORCHESTRATOR_DELIVERY=str(self.delivery),
                        ORCHESTRATOR_POLICIES=str(self.policies), ORCHESTRATOR_ACTOR="cli:test",
                        ORCHESTRATOR_KEYSTORE_BACKEND="file")  # read below as files
        self.daemons: list[Daemon] = []
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.db)
        return self._engine

    def close(self) -> None:
        try:
            for daemon in self.daemons:
                daemon.close()
        finally:
            if self._engine is not None:
                self._engine.dispose()

    # processes

    @contextmanager
    def system(self) -> Iterator[System]:
        """The library wired as the command line wires it, for setting a scene quickly."""
        system = bootstrap(Settings.from_env(self.env))
        try:
            yield system
        finally:
            system.close()

    def register(self, *apps: str) -> None:
        with self.system() as system:
            for app in apps:
                system.service.register_app(app, {})

    def program(self, crash_at: str | None) -> tuple[list[str], dict[str, str]]:
        """The installed command, or the launcher set to SIGKILL itself at ``crash_at``."""
        if crash_at is None:
            return [str(ORCHESTRATOR)], self.env
        return list(LAUNCHER), dict(self.env, **{CRASH_ENV: crash_at})

    def cli(self, *args: str, crash_at: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        program, env = self.program(crash_at)
        done = subprocess.run([*program, *args], env=env, cwd=self.root,
                              capture_output=True, text=True, timeout=120, check=False)
        if check:
            assert done.returncode == 0, (f"orchestrator {' '.join(args)}: exit "
                                          f"{done.returncode}\n{done.stdout}{done.stderr}")
        return done

    def daemon(self, *, crash_at: str | None = None, interval: float = 0.2,
               name: str | None = None, extra: tuple[str, ...] = ()) -> Daemon:
        name = name or f"daemon-{len(self.daemons) + 1}"
        program, env = self.program(crash_at)
        daemon = Daemon(name, [*program, "daemon", "--json-logs", "--interval", str(interval),
                               *extra],
                        env, self.root, self.root / f"{name}.log")
        self.daemons.append(daemon)
        return daemon

    def write_policies(self, policies: dict[str, str]) -> None:
        for name, text in policies.items():
            (self.policies / f"{name}.yaml").write_text(text)

    # the log

    def records(self, *types: str) -> list[Recorded]:
        return list(SQLEventStore(self.engine).read(ReadFilter(types=types)))

    def rotations(self) -> tuple[set[str], set[str]]:
        """(started, ended) rotation ids."""
        started: set[str] = set()
        ended: set[str] = set()
        for rec in self.records(STARTED, *ENDED):
            (started if rec.type == STARTED else ended).add(rec.payload["rotation_id"])
        return started, ended

    def completed(self) -> int:
        return len(self.records(COMPLETED))

    def settled(self, at_least: int = 1) -> bool:
        """At least ``at_least`` rotations completed and none in flight."""
        started, ended = self.rotations()
        return len(ended) >= at_least and started <= ended


def calm_down(site: Site, *daemons: Daemon) -> None:
    """Write the calm policies and wait until the leader plans with them: a tick that read the
    busy ones may still start a rotation, and ``settled`` must not be judged before it did."""
    before = len(site.records("policy.applied"))
    site.write_policies(CALM)
    wait_until(lambda: len(site.records("policy.applied")) >= before + len(CALM), 60,
               "the calm policies applied", watch=daemons)


@pytest.fixture
def sites() -> Iterator[Callable[[Path, str], Site]]:
    made: list[Site] = []

    def make(root: Path, db: str, data: Path | None = None) -> Site:
        made.append(Site(root, db, data))
        return made[-1]

    try:
        yield make
    finally:
        for site in made:
            site.close()


# --- the invariants ----------------------------------------------------------------------------


@dataclass
class Summary:
    events: int
    started: int
    completed: int
    by_usage: Counter[str]


def fold(records: list[Recorded]) -> dict[str, AppState]:
    states: dict[str, AppState] = {}
    for rec in records:
        if rec.stream_id.startswith(STREAM_PREFIX):
            app = rec.stream_id.removeprefix(STREAM_PREFIX)
            states[app] = evolve(states.get(app) or AppState(app=app), rec.event,
                                 rec.occurred_at)
    return states


def secret_grace(stream: list[Recorded], app: str, v: list[str]) -> None:
    """A client secret is usable by the application as long as the secret it holds is accepted:
    the previous one must stay valid (its grace) until the new one is delivered."""
    until: dict[str, datetime] = {}
    version: dict[str, int] = {}
    for rec in stream:
        rid = rec.correlation_id or ""
        if rec.type == ev.SecretRotated.type_name:
            version[rid] = rec.payload["version"]
            if rec.payload.get("previous_valid_until"):
                until[rid] = parse_time(rec.payload["previous_valid_until"])
        elif rec.type == ev.RotationStepRecorded.type_name and rid in version:
            match = SECRET_UNTIL.search(rec.payload.get("detail") or "")
            if rec.payload["step"] == "registered" and match:
                until[rid] = max(until.get(rid, rec.occurred_at), parse_time(match.group(1)))
            if (rec.payload["step"] == "delivered" and version[rid] > 1
                    and (rid not in until or rec.occurred_at > until[rid])):
                v.append(f"{app}: client secret v{version[rid]} delivered at "
                         f"{rec.occurred_at}, after the previous one stopped being accepted "
                         f"({until.get(rid)})")


def keystore_orphans(keystore: Path, states: dict[str, AppState], settled: bool) -> list[str]:
    """Keystore items that belong to nothing: allowed are the private key (and certificate) of
    every live credential, the current and previous client secret (ours and the local
    provider's hashes) and, while rotations are in flight, what their next step will claim."""
    allowed: set[str] = set()
    for app, state in states.items():
        for cred in state.credentials.values():
            if cred.live:
                allowed |= {cred.id, f"{cred.id}/certificate"}
        versions = [state.secret.version, state.secret.version - 1] if state.secret else []
        allowed.add(f"idp/{app}/secret")
        for rot in state.rotations.values():
            if rot.status is not RotationStatus.RUNNING or settled:
                continue
            if rot.usage == "client_secret":
                versions.append((state.secret.version if state.secret else 0) + 1)
            else:
                allowed |= {rot.new_credential_id, f"{rot.new_credential_id}/certificate"}
        for n in versions:
            allowed |= {secret_item_id(app, n), f"idp/{app}/secret/v{n}"}
    return [item for item in FileKeystore(keystore).ids() if item not in allowed]


def assert_consistent(site: Site, *, settled: bool = True, rebuild_via_cli: bool = False,
                      verify_via_cli: bool = True, failed_steps: bool = False) -> Summary:
    """Every invariant of the whole log; ``settled``: no rotation may be in flight;
    ``failed_steps``: a step may have failed and been retried (a fault the test made), but no
    rotation may have parked."""
    verifying = (subprocess.Popen([str(ORCHESTRATOR), "verify"], env=site.env, cwd=site.root,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 if verify_via_cli else None)
    try:
        records = site.records()
        v: list[str] = []
        chain = verify(records)
        assert isinstance(chain, Verified), chain
        for rec in records:
            if PRIVATE_PEM.search(rec.payload_json):
                v.append(f"private key material in the log at position {rec.position}")
        states = fold(records)
        by_stream: dict[str, list[Recorded]] = defaultdict(list)
        for rec in records:
            by_stream[rec.stream_id].append(rec)
        # at most two, always a usable credential held, disabled only after tested: at every
        # event instant and now (the simulator's checker)
        v.extend(check(((r.stream_id, r.event, r.occurred_at, r.correlation_id, r.position)
                        for r in records), datetime.now(UTC)).violations)
        for app in states:
            secret_grace(by_stream[STREAM_PREFIX + app], app, v)
        started = {r.payload["rotation_id"]: r for r in records if r.type == STARTED}
        completed = Counter(r.payload["rotation_id"] for r in records if r.type == COMPLETED)
        added = Counter(r.correlation_id for r in records
                        if r.type == ev.CredentialAdded.type_name and r.correlation_id)
        for rid, n in completed.items():
            if n != 1 or rid not in started:
                v.append(f"rotation {rid} completed {n} times (started: {rid in started})")
        for rid, n in added.items():
            if n != 1:
                v.append(f"rotation {rid} added {n} credentials")
        for rid, rec in started.items():
            usage = rec.payload["usage"]
            if settled and completed[rid] != 1:
                v.append(f"rotation {rid} ({usage}) did not complete")
            if completed[rid] and usage != "client_secret" and added[rid] != 1:
                v.append(f"completed rotation {rid} added {added[rid]} credentials")
        failures = (ev.RotationParked.type_name,) if failed_steps else (
            ev.RotationFailed.type_name, ev.RotationParked.type_name)
        for rec in records:
            if rec.type in failures:
                v.append(f"{rec.type} at position {rec.position}: {rec.payload}")
        v.extend(f"keystore orphan: {item}"
                 for item in keystore_orphans(site.keystore, states, settled))
        assert not v, "\n".join(v[:30])
        assert_projection_is_a_rebuild(site, via_cli=rebuild_via_cli)
        if verifying is not None:
            out, err = verifying.communicate(timeout=120)
            assert verifying.returncode == 0, out + err
            assert out.startswith(f"ok: {len(records)} events, chain intact"), out
        return Summary(len(records), len(started), sum(completed.values()),
                       Counter(r.payload["usage"] for r in started.values()))
    finally:
        if verifying is not None and verifying.poll() is None:
            verifying.kill()
            verifying.wait()


def assert_projection_is_a_rebuild(site: Site, *, via_cli: bool) -> None:
    """The read models the daemons kept incrementally equal a replay of the log from zero."""
    projector = Projector(site.engine, SQLEventStore(site.engine))
    projector.catch_up()
    before = projector.snapshot()
    if via_cli:
        assert site.cli("projections", "rebuild").stdout.startswith("read_models: rebuilt")
    else:
        projector.rebuild()
    assert projector.snapshot() == before


# --- a: every step boundary --------------------------------------------------------------------

# a key rotation's steps; confirm (a CA-issued certificate's register, recorded as "registered")
# is not among them
KEY_STEPS = [s.value for s in Step if s not in (Step.WAIT, Step.CONFIRM)]
SECRET_STEPS = ["start", "generate", "register", "test", "deliver", "complete"]
BOUNDARIES = [pytest.param("private_key_jwt", f"{when}:{step}", id=f"key-{when}:{step}")
              for step in ["start", *KEY_STEPS] for when in ("before", "after")]
BOUNDARIES += [pytest.param("client_secret", f"{when}:{step}", id=f"secret-{when}:{step}")
               for step in SECRET_STEPS for when in ("before", "after")]


def test_boundaries_cover_every_step_the_launcher_knows() -> None:
    points = {p.values[1] for p in BOUNDARIES if p.values[0] == "private_key_jwt"}
    assert points == {f"{when}:{step}" for when in ("before", "after") for step in STEPS}
    assert set(STEPS) == {"start", *KEY_STEPS}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A site for each usage, made once and copied by each scenario.

    pay-1: an active key expiring in an hour (due: beforeExpiry is 2h) and a second key added
    but never activated, so the rotation first frees that slot (two live keys at most).
    svc-1: client secret v1 and v2 (two rotations run in-process), so the scenario's v3
    rotation also deletes v1 from the keystore."""
    made: dict[str, Path] = {}
    for usage, app, policy in (("private_key_jwt", "pay-1", BOUNDARY_KEYS),
                               ("client_secret", "svc-1", BOUNDARY_SECRETS)):
        root = tmp_path_factory.mktemp(f"template-{usage}")
        site = Site(root, f"sqlite:///{root / 'orchestrator.db'}")
        try:
            site.write_policies({"crash": policy})
            site.cli("policy", "validate", str(site.policies))
            site.register(app)
            with site.system() as system:
                if usage == "private_key_jwt":
                    for active in (True, False):
                        system.service.add_credential(
                            app, usage, CredentialSource(generate=True), activate=active,
                            expires_at=datetime.now(UTC) + timedelta(hours=1) if active else None)
                else:
                    (loaded,) = system.policies.current()
                    for reason in (Reason.PROVISION, Reason.MANUAL):
                        rid = system.rotator.start(app, usage, reason, loaded.name)
                        assert rid is not None
                        system.rotator.advance(app, rid, loaded.params)
            assert site.completed() == (2 if usage == "client_secret" else 0)
        finally:
            site.close()
        made[usage] = root
    return made


@pytest.mark.slow
@pytest.mark.parametrize(("usage", "point"), BOUNDARIES)
def test_sigkill_at_every_step_boundary(usage: str, point: str, templates: dict[str, Path],
                                        tmp_path: Path, sites: Callable[[Path, str], Site]) -> None:
    root = tmp_path / "site"
    shutil.copytree(templates[usage], root, symlinks=True)  # the delivery layout is symlinks
    site = sites(root, f"sqlite:///{root / 'orchestrator.db'}")
    app = "pay-1" if usage == "private_key_jwt" else "svc-1"
    before = site.completed()
    state_before = fold(site.records())[app]
    crash_at = f"{point}:1"

    # the crash
    if usage == "private_key_jwt":
        crashed = site.daemon(crash_at=crash_at, name="crashed")
        assert crashed.wait(60) == -signal.SIGKILL, crashed.tail()
        assert not crashed.events("daemon_stopped")
    else:
        done = site.cli("rotate", app, "--usage", usage, crash_at=crash_at, check=False)
        assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    started, ended = site.rotations()
    if point == "before:start":
        assert site.completed() == before and started == ended  # nothing was recorded
        if usage == "client_secret":  # the operator runs the command again
            site.cli("rotate", app, "--usage", usage)
    elif point == "after:complete":
        assert site.completed() == before + 1
    else:
        assert started - ended, "the crash should leave the rotation in flight"

    # the restart, without the fault, finishes it
    daemon = site.daemon(name="restarted")
    daemon.wait_log("policies_loaded")
    wait_until(lambda: site.settled(before + 1), 60, "the rotation to complete", watch=(daemon,))
    status, _ = daemon.stop()
    assert status == 0, daemon.tail()

    summary = assert_consistent(site)
    assert summary.completed == before + 1
    state = fold(site.records())[app]
    (rotation,) = [r for r in state.rotations.values() if r.id not in state_before.rotations]
    assert rotation.status is RotationStatus.COMPLETED
    files = site.delivery / app / usage
    if usage == "private_key_jwt":
        old, spare = sorted(state_before.credentials.values(), key=lambda c: c.activated_at is None)
        assert rotation.old_credential_id == old.id
        assert state.credentials[old.id].status.value == "disabled"
        assert state.credentials[spare.id].status.value == "deleted"  # its slot was freed
        assert state.credentials[rotation.new_credential_id].status.value == "active"
        assert (files / "credential_id").read_text() == rotation.new_credential_id
    else:
        assert state.secret is not None and state.secret.version == 3
        assert (files / "version").read_text() == "3"
        assert secret_item_id(app, 1) not in FileKeystore(site.keystore).ids()


# --- b: random kills ---------------------------------------------------------------------------


@dataclass
class Churn:
    runs: int = 0
    kills: int = 0
    kills_in_startup: int = 0
    seconds: float = 0.0


def churn(site: Site, *, target: int, kills: int, seed: int, budget: float) -> Churn:
    """Start a daemon, SIGKILL it at a random moment, again, until ``target`` rotations have
    completed and it was killed ``kills`` times at least; then calm the policies and let one
    last daemon drain (stopped by SIGTERM)."""
    rng = random.Random(seed)
    stats = Churn()
    began = time.monotonic()
    while site.completed() < target or stats.kills < kills:
        assert time.monotonic() - began < budget, (
            f"only {site.completed()} rotations after {stats.kills} kills in {budget}s")
        # now and then in the first tick (its first appends), else anywhere in the run
        appends = rng.randint(1, 3) if rng.random() < 0.1 else rng.randint(4, 60)
        when = rng.choice(("before", "after"))
        daemon = site.daemon(name=f"churn-{stats.runs + 1}", crash_at=f"{when}:any:{appends}")
        stats.runs += 1
        try:
            status = daemon.wait(120)  # it kills itself at that append; never a verdict on speed
        finally:
            daemon.kill()
        assert status == -signal.SIGKILL, daemon.tail()
        stats.kills += 1
        stats.kills_in_startup += appends <= 3
    site.write_policies(CALM)
    site.cli("policy", "validate", str(site.policies))
    last = site.daemon(name="drain")
    wait_until(lambda: site.settled(target), 60, "the rotations in flight to drain",
               watch=(last,))
    status, _ = last.stop()
    assert status == 0, last.tail()
    stats.seconds = time.monotonic() - began
    return stats


def start_churn(site: Site) -> None:
    site.write_policies(BUSY)
    validated = site.cli("policy", "validate", str(site.policies))
    assert validated.stdout.count("ok ") == len(BUSY)
    site.register(*CHURN_APPS)


def report(name: str, stats: Churn, summary: Summary) -> None:
    print(f"\n{name}: {summary.completed} rotations completed ({dict(summary.by_usage)}), "
          f"{stats.kills} SIGKILLs ({stats.kills_in_startup} while starting up) over "
          f"{stats.runs} daemon runs, {summary.events} events, {stats.seconds:.0f}s")


@pytest.mark.slow
def test_random_sigkills_sqlite(tmp_path: Path, sites: Callable[[Path, str], Site]) -> None:
    site = sites(tmp_path, f"sqlite:///{tmp_path / 'orchestrator.db'}")
    start_churn(site)
    stats = churn(site, target=100, kills=20, seed=20261122, budget=900)
    summary = assert_consistent(site, rebuild_via_cli=True)
    report("sqlite", stats, summary)
    assert summary.completed >= 100
    assert summary.by_usage["private_key_jwt"] and summary.by_usage["client_secret"]


@pytest.mark.slow
@pytest.mark.postgres
def test_random_sigkills_postgres(pg_url: str, tmp_path: Path,
                                  sites: Callable[[Path, str], Site]) -> None:
    site = sites(tmp_path, pg_url)
    start_churn(site)
    stats = churn(site, target=30, kills=8, seed=7, budget=600)
    summary = assert_consistent(site, rebuild_via_cli=True)
    report("postgres", stats, summary)
    assert summary.completed >= 30


# --- c: two daemons on one PostgreSQL ----------------------------------------------------------


def leader_and_standby(site: Site, extra: tuple[str, ...] = ()) -> tuple[Daemon, Daemon]:
    """The churn on ``site`` and two daemons on it (``extra``: more daemon options): (the one
    that leads, the other)."""
    start_churn(site)
    first = site.daemon(name="first", extra=extra)
    second = site.daemon(name="second", extra=extra)
    both = (first, second)
    leader = wait_until(lambda: next((d for d in both if d.events("leadership_acquired")), None),
                        60, "a leader", watch=both)
    assert leader is not None
    return leader, second if leader is first else first


@pytest.mark.slow
@pytest.mark.postgres
def test_two_daemons_one_leader(pg_url: str, tmp_path: Path,
                                sites: Callable[[Path, str], Site]) -> None:
    site = sites(tmp_path, pg_url)
    leader, follower = leader_and_standby(site)
    both = (leader, follower)
    follower.wait_log("leadership_waited")
    wait_until(lambda: site.completed() >= 15, 90, "15 rotations", watch=both)
    assert not follower.events("leadership_acquired")
    assert not follower.events("rotation_step_completed")

    leader.kill()  # the session dies, and its advisory lock with it
    taken = follower.wait_log("leadership_acquired", timeout=30)
    at_kill = site.completed()
    wait_until(lambda: site.completed() >= at_kill + 15, 90, "15 more rotations",
               watch=(follower,))
    calm_down(site, follower)
    wait_until(lambda: site.settled(at_kill + 15), 60, "the rotations in flight to drain",
               watch=(follower,))
    status, _ = follower.stop()
    assert status == 0, follower.tail()

    # one acted at a time: the leader's steps all before the follower took over
    leader_steps = leader.events("rotation_step_completed")
    follower_steps = follower.events("rotation_step_completed")
    assert leader_steps and follower_steps
    assert max(s["timestamp"] for s in leader_steps) < taken["timestamp"]
    assert min(s["timestamp"] for s in follower_steps) > taken["timestamp"]
    summary = assert_consistent(site)
    assert summary.completed >= at_kill + 15
    # no duplicate work: one rotation at a time per application and usage, each key added once
    added = Counter(r.correlation_id for r in site.records(ev.CredentialAdded.type_name))
    assert set(added.values()) == {1}


# --- d: SIGTERM in the middle of work ----------------------------------------------------------


@pytest.mark.slow
def test_sigterm_finishes_the_step_and_exits_cleanly(tmp_path: Path,
                                                     sites: Callable[[Path, str], Site]) -> None:
    site = sites(tmp_path, f"sqlite:///{tmp_path / 'orchestrator.db'}")
    start_churn(site)
    site.write_policies(CALM)  # provisioning only: 40 rotations due in the first tick
    site.register(*(f"rnd-a{n}" for n in range(5, 15)))
    daemon = site.daemon(name="terminated")
    daemon.wait_log("rotation_step_completed", count=5)
    began = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    status = daemon.wait(15)
    seconds = time.monotonic() - began
    assert status == 0, daemon.tail()
    assert seconds < 30, f"took {seconds:.1f}s to stop"  # one step, even on a loaded machine
    events = [line.get("event") for line in daemon.lines()]
    assert "shutdown_requested" in events and events[-1] == "daemon_stopped", daemon.tail()
    assert "tick_interrupted" in events  # it stopped between actions, not after all of them
    assert all(line.get("level") != "error" for line in daemon.lines()), daemon.tail()
    completed = site.completed()
    assert 0 < completed < 40
    assert_consistent(site, settled=False)

    again = site.daemon(name="after")
    wait_until(lambda: site.settled(40), 90, "every application provisioned", watch=(again,))
    status, _ = again.stop()
    assert status == 0, again.tail()
    assert_consistent(site)
