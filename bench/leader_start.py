"""Leader start at fleet scale: the time from ``orchestrator daemon``'s start to its first action.

Method. A PostgreSQL schema (or a SQLite file, ``--dialect sqlite``) is filled with ``--apps``
applications of ten events each (registered; a private_key_jwt key added and activated; a
rotation to a second key, started, its key added and activated, a step, completed; the first
key disabled and deleted), 1,000,000 events for the default 100,000 applications, written as
the store writes them (hash-chained rows, ``build_records``) by COPY / executemany, and the
read model is projected (``Projector.catch_up``, its rate reported). One application's current
key expired a minute before the run, so the first action any daemon must take is to expire it.
Then, ``--repeats`` times, ``orchestrator daemon --json-logs --interval 3600`` is started (a
policy selecting every application, the file keystore) and timed from the process's start to
its ``credential_expired`` line on stderr; its peak resident memory (``VmHWM``) is read at that
instant, and it is stopped with SIGTERM. Side by side in the same run, in process: the fleet a
new leader starts from, seeded from the read model (``FleetView(seed=Projector.seed)``, every
state decoded: ``all()``), against
the same fleet folded from the whole log (what a leader did before: ``FleetView`` without a
seed), each timed, and ``python -c 'import orchestrator.entrypoints.cli'`` (the imports a start
cannot avoid). (A build from before the seed cannot be started on this log: its schema is
newer than such a build knows.)

    python bench/leader_start.py [--apps 100000] [--dialect postgresql|sqlite] [--repeats 3]
                                 [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from run import fill_ours, pg_conninfo, pg_url  # bench/run.py: the event store benchmark's

from events import catalog as ev
from events.chain import GENESIS
from events.projector import Projector
from events.sql import SQLEventStore, create_engine, upgrade
from events.store import NewEvent, ReadFilter, build_records

NOW = datetime.now(UTC).replace(microsecond=0)
POLICY = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: fleet-keys}
spec:
  selector: {apps: ["app-*"]}
  credential: {usage: private_key_jwt}
  rotation: {every: 365d, beforeExpiry: 14d, overlap: 1h}
  lifetime: 400d
"""


def script(app: int) -> list[ev.Event]:
    """Ten events: registered, a key rotated once; app 0's current key expired a minute ago."""
    name, c0, c1, rid = f"app-{app}", f"c-{app}-0", f"c-{app}-1", f"r-{app}-0"
    expires = NOW - timedelta(minutes=1) if app == 0 else NOW + timedelta(days=60 + app % 30)

    def added(cid: str, at: datetime) -> ev.CredentialAdded:
        return ev.CredentialAdded(
            credential_id=cid, usage=ev.Usage.PRIVATE_KEY_JWT, kind=ev.CredentialKind.PUBLIC_KEY,
            kid=f"kid-{cid}", alg="RS256", key_size=2048, fingerprint=f"sha256:{cid}",
            expires_at=at)

    return [
        ev.ApplicationRegistered(app=name, labels={"team": f"t{app % 50}"}),
        added(c0, NOW + timedelta(days=30)),
        ev.CredentialActivated(credential_id=c0),
        ev.RotationStarted(rotation_id=rid, usage="private_key_jwt", reason="scheduled",
                           policy="fleet-keys", old_credential_id=c0, new_credential_id=c1),
        added(c1, expires),
        ev.CredentialActivated(credential_id=c1),
        ev.RotationStepRecorded(rotation_id=rid, step="activated", detail="published"),
        ev.RotationCompleted(rotation_id=rid, new_credential_id=c1, old_credential_id=c0),
        ev.CredentialDisabled(credential_id=c0),
        ev.CredentialDeleted(credential_id=c0),
    ]


def fill(url: str, dialect: str, location: str, apps: int) -> tuple[int, float, float]:
    """Write the log (``location``: the SQLite file or the PostgreSQL schema) and project it:
    (events, seconds writing, projector events/s)."""
    engine = create_engine(url)
    upgrade(engine)
    store = SQLEventStore(engine)
    began = time.perf_counter()
    pos, head, rows = 0, GENESIS, []
    at = NOW - timedelta(days=200)
    for app in range(apps):
        news = [NewEvent(e, at, "bench") for e in script(app)]
        recs = build_records(f"app:app-{app}", news, 1, pos, head, at)
        pos, head = recs[-1].position, recs[-1].hash
        rows.extend(store._rows(recs))
    fill_ours(dialect, location, rows)
    written = time.perf_counter() - began
    began = time.perf_counter()
    applied = Projector(engine, store).catch_up()
    rate = applied / (time.perf_counter() - began)
    engine.dispose()
    return len(rows), written, rate


def start_once(env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Seconds from the daemon's start to its first action, and its peak RSS in KiB then."""
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "daemon", "--json-logs",
                             "--interval", "3600", "--drift-every", "0",
                             "--checkpoint-every", "0"],
                            env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if '"credential_expired"' in line:
                took = time.perf_counter() - began
                status = Path(f"/proc/{proc.pid}/status").read_text()
                hwm = next(int(v.split()[0]) for k, v in
                           (row.split(":", 1) for row in status.splitlines()) if k == "VmHWM")
                return took, hwm
            if '"level": "error"' in line and "app_without_usable" not in line:
                raise RuntimeError(f"the daemon failed: {line}")
        raise RuntimeError(f"the daemon exited ({proc.wait()}) before acting: {line}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def arm(url: str, run: int) -> None:
    """Before every start but the first: give app-0 one more active key that expired a minute
    ago (two events, appended as the store appends), so each start has the same first action;
    the daemon catches up those two events as part of its start."""
    if run == 0:
        return
    engine = create_engine(url)
    store = SQLEventStore(engine)
    cid = f"c-0-run{run}"
    [last] = store.read(ReadFilter(stream_id="app:app-0", last=1))
    version = last.stream_version
    at = datetime.now(UTC)
    store.append("app:app-0", [
        NewEvent(ev.CredentialAdded(
            credential_id=cid, usage=ev.Usage.PRIVATE_KEY_JWT, kind=ev.CredentialKind.PUBLIC_KEY,
            kid=f"kid-{cid}", alg="RS256", key_size=2048, fingerprint=f"sha256:{cid}",
            expires_at=at - timedelta(minutes=1)), at, "bench"),
        NewEvent(ev.CredentialActivated(credential_id=cid), at, "bench")], version)
    engine.dispose()


def fleet_costs(url: str, apps: int) -> dict[str, float]:
    """Seconds to the fleet a leader acts on: seeded from the read model, and folded from the
    whole log; and the ratio."""
    from orchestrator.app.fleet import FleetView

    engine = create_engine(url)
    store = SQLEventStore(engine)
    projector = Projector(engine, store)
    projector.catch_up()
    began = time.perf_counter()
    seeded = FleetView(store, seed=projector.seed)
    seeded.all()  # every state decoded
    seed_s = time.perf_counter() - began
    began = time.perf_counter()
    folded = FleetView(store)
    folded.refresh()
    fold_s = time.perf_counter() - began
    assert len(seeded.all()) == len(folded.all()) == apps
    engine.dispose()
    return {"seeded_s": seed_s, "folded_from_zero_s": fold_s, "fold_over_seed": fold_s / seed_s}



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=100_000)
    parser.add_argument("--dialect", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "policies").mkdir()
        (work / "policies" / "fleet.yaml").write_text(POLICY)
        schema = f"bench_start_{uuid.uuid4().hex[:8]}"
        if args.dialect == "postgresql":
            with psycopg.connect(pg_conninfo(), autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            url, location = pg_url(schema), schema
        else:
            location = str(work / "bench.db")
            url = f"sqlite:///{location}"
        try:
            events, written, rate = fill(url, args.dialect, location, args.apps)
            print(f"log: {events} events, {args.apps} applications, written in {written:.1f}s; "
                  f"projected at {rate:,.0f} events/s", flush=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
            env.update(ORCHESTRATOR_DB=url, ORCHESTRATOR_KEYSTORE=str(work / "keystore"),
                       ORCHESTRATOR_KEYSTORE_BACKEND="file",
                       ORCHESTRATOR_POLICIES=str(work / "policies"),
                       ORCHESTRATOR_DELIVERY=str(work / "delivery"),
                       ORCHESTRATOR_ACTOR="scheduler")
            builds = {"this": here}
            results: dict[str, dict[str, Any]] = {b: {"seconds": [], "vmhwm_kib": []}
                                                  for b in builds}
            imports = []
            for repeat in range(args.repeats):
                for n, (build, root) in enumerate(builds.items()):
                    arm(url, repeat * len(builds) + n)
                    took, hwm = start_once(dict(env, PYTHONPATH=str(root)), work)
                    results[build]["seconds"].append(took)
                    results[build]["vmhwm_kib"].append(hwm)
                    print(f"{build}: first action {took:.2f}s after start, "
                          f"peak RSS {hwm / 1024:.0f} MiB", flush=True)
                began = time.perf_counter()
                subprocess.run([sys.executable, "-c", "import orchestrator.entrypoints.cli"],
                               env=dict(env, PYTHONPATH=str(here)), check=True)
                imports.append(time.perf_counter() - began)
            summary = {b: {"median_s": statistics.median(r["seconds"]),
                           "best_s": min(r["seconds"]),
                           "peak_rss_mib": max(r["vmhwm_kib"]) / 1024} for b, r in
                       results.items()}
            summary["import_only"] = {"median_s": statistics.median(imports)}
            summary["log"] = {"events": events, "apps": args.apps, "dialect": args.dialect,
                              "projector_events_per_s": rate}
            summary["fleet_in_process"] = fleet_costs(url, args.apps)
            print(json.dumps(summary, indent=2) if args.json else summary)
        finally:
            if args.dialect == "postgresql":
                with psycopg.connect(pg_conninfo(), autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
