"""Rotation throughput and tick cost, side by side with their limits, in one run.

    python bench/rotations.py                 # full: 200 key rotations, 100,000-app fleet
    python bench/rotations.py --quick         # smoke run: 20 rotations, 5,000 apps

A. Rotations per second end to end on SQLite (durable: WAL + synchronous=FULL), each rotation
   the whole process (started, generate + keystore, credential.added, register, activate, test
   with a signed client assertion verified by the local provider, deliver files, disable the
   old, completed), against the raw cost of generating the same RSA-2048 keys with
   ``cryptography`` alone. Target (issue 10): the orchestrator's own overhead under 15% of the
   key cost. Also with the read model's projector wired, as the daemon has it. Each round's
   numbers are kept (RSA keygen time is random: the medians hide a wide spread).
   Client secrets the same way (their raw cost, ``secrets.token_urlsafe``, is microseconds, so
   their rate is reported, not a ratio).

B. ``plan`` and ``tick`` over 100,000 applications with 200,000 credentials of which 1% are due
   (a disabled credential past retention: a delete each). ``plan`` over the whole fleet is the
   pure cost of looking at everyone; a steady-state ``tick`` plans only what changed or fell due
   (``planner.next_due``), so it should cost about what the due work costs done directly
   (1,000 deletes through the service), not what the fleet costs. Target (issue 10): at most
   1.2x. ``--tick-rounds`` steady ticks, each timed against its own direct work, one after the
   other (another 1% falls due each round): the median ratio and each round's.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from events import catalog as ev
from events.projector import Projector
from events.sql import SQLEventStore, create_engine, upgrade
from events.state import fold, stream_id
from events.store import EventStore, NewEvent
from orchestrator.adapters.delivery import FileDelivery
from orchestrator.adapters.keystore import FileKeystore
from orchestrator.app.service import Service
from orchestrator.bootstrap import wire
from orchestrator.domain import rules
from orchestrator.domain.planner import PlanPolicy, plan
from orchestrator.domain.rotation import Params, Reason
from orchestrator.entrypoints.logs import configure

DAY = timedelta(days=1)


def _rotations(tmp: Path, usage: str, count: int, projected: bool = False) -> float:
    """Seconds per rotation, end to end, on a durable SQLite file; ``projected``: with the
    read model's projector, as the daemon has it (the service catches it up after appending)."""
    engine = create_engine(f"sqlite:///{tmp / f'{usage}.db'}")
    upgrade(engine)
    store = SQLEventStore(engine)
    keystore = FileKeystore(tmp / f"ks-{usage}", master_key=b"k" * 32)
    # wired as the daemon wires it: the write path reads states from the in-memory fleet view
    core = wire(store, keystore=keystore, clock=lambda: datetime.now(UTC), policies=lambda: (),
                delivery=FileDelivery(tmp / f"delivery-{usage}"), actor="bench",
                projector=Projector(engine, store) if projected else None)
    service, rotator = core.service, core.rotator
    params = Params(usage=usage, algorithm="RS256" if usage != "client_secret" else None,
                    overlap=timedelta(0), lifetime=90 * DAY)
    apps = [f"app-{n:04d}" for n in range(count)]
    for app in apps:
        service.register_app(app, {})
    began = time.perf_counter()
    for app in apps:
        rid = rotator.start(app, usage, Reason.MANUAL)
        assert rid is not None
        outcome = rotator.advance(app, rid, params)
        assert outcome.last.step.value == "complete" and not outcome.failed, outcome
    elapsed = time.perf_counter() - began
    engine.dispose()
    return elapsed / count


def _raw_rsa(count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (time.perf_counter() - began) / count


def part_a(tmp: Path, count: int, repeats: int) -> dict[str, Any]:
    ours, raw, secrets, projected = [], [], [], []
    for _ in range(repeats):  # interleaved, so drift hits both sides alike
        raw.append(_raw_rsa(count))
        ours.append(_rotations(Path(tempfile.mkdtemp(dir=tmp)), "private_key_jwt", count))
        secrets.append(_rotations(Path(tempfile.mkdtemp(dir=tmp)), "client_secret", count))
        projected.append(_rotations(Path(tempfile.mkdtemp(dir=tmp)), "private_key_jwt", count,
                                    projected=True))
    key_s, raw_s, sec_s, proj_s = (statistics.median(x) for x in (ours, raw, secrets, projected))
    return {
        "key_rotations_per_s": 1 / key_s, "rsa2048_keys_per_s_raw": 1 / raw_s,
        "key_rotation_ms": key_s * 1000, "rsa2048_keygen_ms": raw_s * 1000,
        "overhead_ms": (key_s - raw_s) * 1000, "overhead_ratio": (key_s - raw_s) / raw_s,
        "secret_rotations_per_s": 1 / sec_s, "secret_rotation_ms": sec_s * 1000,
        "projected_key_rotation_ms": proj_s * 1000,
        "projected_overhead_ratio": (proj_s - raw_s) / raw_s,
        # each round's own numbers: the spread the medians hide (RSA keygen time is random)
        "rounds": [{"keygen_ms": r * 1000, "key_rotation_ms": o * 1000,
                    "overhead_ratio": (o - r) / r, "projected_key_rotation_ms": p * 1000,
                    "projected_overhead_ratio": (p - r) / r, "secret_rotation_ms": c * 1000}
                   for r, o, p, c in zip(raw, ours, projected, secrets, strict=True)],
    }


# --- B: plan and tick over a large fleet ---------------------------------------------------------


def _fleet_events(app: str, n: int, t0: datetime, due: bool) -> list[tuple[ev.Event, datetime]]:
    """An app with an active key and a disabled one; the disabled one is past retention when
    ``due``."""
    active, old = f"cred_{n:06d}a", f"cred_{n:06d}b"
    disabled_at = t0 - (8 * DAY if due else DAY)
    return [
        (ev.ApplicationRegistered(app=app, labels={"env": "prod"}), t0 - 60 * DAY),
        (ev.CredentialAdded(credential_id=old, usage="private_key_jwt", kind="public_key",
                            kid=f"kid{n:08d}old", fingerprint=f"sha256:{n:064x}"[:71] + "0",
                            alg="RS256", key_size=2048, expires_at=t0 + 300 * DAY),
         t0 - 60 * DAY),
        (ev.CredentialActivated(credential_id=old), t0 - 60 * DAY),
        (ev.CredentialAdded(credential_id=active, usage="private_key_jwt", kind="public_key",
                            kid=f"kid{n:08d}new", fingerprint=f"sha256:{n:064x}"[:71] + "1",
                            alg="RS256", key_size=2048, expires_at=t0 + 300 * DAY),
         disabled_at - DAY),
        (ev.CredentialActivated(credential_id=active), disabled_at - DAY),
        (ev.CredentialDisabled(credential_id=old), disabled_at),
    ]


def due_later(store: EventStore, service: Service, apps: list[str], now: datetime) -> None:
    """Disable each app's disabled key again, as of earlier: past retention 90 minutes after
    ``now``."""
    for app in apps:
        state = service.load(app)
        old = next(c for c in state.credentials.values() if c.status.value == "disabled")
        store.append(stream_id(app), [NewEvent(ev.CredentialDisabled(credential_id=old.id),
                                               now - 7 * DAY + timedelta(minutes=90), "bench")],
                     state.version)


def pending_deletes(service: Service, apps: list[str]) -> list[tuple[str, str]]:
    """Each app with its disabled key: the due work ``delete_pending`` does."""
    pending = []
    for app in apps:
        state = service.load(app)
        pending.append((app, next(c.id for c in state.credentials.values()
                                  if c.status.value == "disabled")))
    return pending


def delete_pending(service: Service, pending: list[tuple[str, str]], now: datetime) -> None:
    """The due work alone: each app's disabled key deleted through the service, no planning."""
    for app, cid in pending:
        service.execute(app, lambda s, a=app, c=cid: rules.DeleteCredential(a, c, now))
        service.forget_private(cid)


def delete_directly(service: Service, apps: list[str], now: datetime) -> tuple[float, float]:
    """``delete_pending`` on ``apps``: the seconds it took, wall and CPU (this process)."""
    pending = pending_deletes(service, apps)
    began, cpu = time.perf_counter(), time.process_time()
    delete_pending(service, pending, now)
    return time.perf_counter() - began, time.process_time() - cpu


@dataclass
class Fleet:
    """Part B's fleet on SQLite, wired as the daemon wires it, after its first tick."""

    store: SQLEventStore
    service: Service
    ticker: Any
    engine: Any
    now: list[datetime]  # the injected clock's instant (the bench moves it)
    apps: int
    plan_s: float
    load_s: float
    first_s: float

    DUE_EVERY = 100  # 1% of apps due at t0, another 1% each round

    def names(self, residue: int) -> list[str]:
        return [f"app-{n:06d}" for n in range(self.apps) if n % self.DUE_EVERY == residue]

    def next_round(self, round_: int) -> tuple[list[str], list[str]]:
        """An hour later another 1% falls due (residue ``round_``), noticed by an untimed tick;
        an hour after that a steady tick has them due. Returns them, and as many others
        (residue 50 + ``round_``) for the same due work done directly."""
        shifted = self.names(round_)
        due_later(self.store, self.service, shifted, self.now[0])
        self.now[0] += timedelta(hours=1)
        self.ticker.tick()  # notices the appends above (they changed those apps) -> not yet due
        self.now[0] += timedelta(hours=1)
        return shifted, self.names(50 + round_)[:len(shifted)]


def steady_fleet(tmp: Path, apps: int) -> Fleet:
    """``apps`` applications with two keys each, 1% due: planned whole (timed), then stored,
    loaded and ticked once (timed)."""
    t0 = datetime(2027, 6, 1, tzinfo=UTC)
    now = [t0]
    policy = PlanPolicy(name="keys", params=Params(usage="private_key_jwt", overlap=DAY,
                                                   lifetime=365 * DAY),
                        every=90 * DAY, before_expiry=14 * DAY, retention=7 * DAY)
    due_every = Fleet.DUE_EVERY
    histories = {f"app-{n:06d}": _fleet_events(f"app-{n:06d}", n, t0, n % due_every == 0)
                 for n in range(apps)}
    states = [fold(app, events) for app, events in histories.items()]
    began = time.perf_counter()
    full = plan([policy], states, t0)
    plan_s = time.perf_counter() - began
    assert len(full.actions) == apps // due_every, len(full.actions)

    engine = create_engine(f"sqlite:///{tmp / 'fleet.db'}?synchronous=normal")
    upgrade(engine)
    store = SQLEventStore(engine, clock=lambda: now[0])
    for app, events in histories.items():
        store.append(stream_id(app), [NewEvent(e, at, "bench") for e, at in events], 0)
    keystore = FileKeystore(tmp / "ks-fleet", master_key=b"k" * 32)
    policies = [policy]  # the same object each tick, as PolicySource gives while files are unchanged
    core = wire(store, keystore=keystore, clock=lambda: now[0], policies=lambda: policies,
                actor="bench")
    began = time.perf_counter()
    core.fleet.refresh()
    load_s = time.perf_counter() - began
    began = time.perf_counter()
    first = core.ticker.tick()  # plans everyone once: the start-up cost
    first_s = time.perf_counter() - began
    assert first.done["delete"] == apps // due_every, first
    return Fleet(store, core.service, core.ticker, engine, now, apps, plan_s, load_s, first_s)


def part_b(tmp: Path, apps: int, rounds: int = 7) -> dict[str, Any]:
    fleet = steady_fleet(tmp, apps)
    ticks, directs = [], []
    for round_ in range(1, rounds + 1):  # residues 1.. for the tick, 51.. for the direct work
        shifted, more = fleet.next_round(round_)
        # the tick first: done first, the direct work's apps (changed) would be the tick's too
        began, cpu = time.perf_counter(), time.process_time()
        report = fleet.ticker.tick()
        ticks.append((time.perf_counter() - began, time.process_time() - cpu))
        assert report.done["delete"] == len(shifted) == report.planned_apps, report
        directs.append(delete_directly(fleet.service, more, fleet.now[0]))
    ratios = [t[0] / d[0] for t, d in zip(ticks, directs, strict=True)]
    cpu_ratios = [t[1] / d[1] for t, d in zip(ticks, directs, strict=True)]
    tick_s, direct_s = (statistics.median(x[0] for x in xs) for xs in (ticks, directs))
    due_now = len(shifted)
    fleet.engine.dispose()
    return {
        "apps": apps, "credentials": 2 * apps, "due": due_now,
        "plan_full_fleet_s": fleet.plan_s, "plan_per_app_us": fleet.plan_s / apps * 1e6,
        "fleet_load_s": fleet.load_s, "first_tick_s": fleet.first_s,
        "steady_tick_s": tick_s, "steady_tick_planned_apps": due_now,
        "direct_due_work_s": direct_s, "tick_over_due_work": statistics.median(ratios),
        # CPU time of this process: what the load of other processes on the machine inflates
        # least (the deletes' appends run at synchronous=normal here: no fsync to wait for)
        "tick_over_due_work_cpu": statistics.median(cpu_ratios),
        "rounds": [{"steady_tick_s": t[0], "direct_due_work_s": d[0], "ratio": t[0] / d[0],
                    "steady_tick_cpu_s": t[1], "direct_due_work_cpu_s": d[1],
                    "cpu_ratio": t[1] / d[1]}
                   for t, d in zip(ticks, directs, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rotations", type=int, default=None)
    parser.add_argument("--apps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tick-rounds", type=int, default=7,
                        help="steady ticks timed, each against its own direct due work")
    parser.add_argument("--only", choices=("a", "b"), default=None, help="run one part")
    parser.add_argument("--out", type=Path, default=Path("bench/results/rotations.json"))
    args = parser.parse_args()
    configure(json_logs=True, level=logging.ERROR)
    count = args.rotations or (20 if args.quick else 100)
    apps = args.apps or (5_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory(prefix="bench-rot-") as tmp:
        a = part_a(Path(tmp), count, 1 if args.quick else args.repeats) if args.only != "b" else {}
        b = part_b(Path(tmp), apps, args.tick_rounds) if args.only != "a" else {}
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "python": platform.python_version(), "rotations": count, "a": a, "b": b}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    if a:
        _print_a(a, count, 1 if args.quick else args.repeats)
    if b:
        _print_b(b)


def _spread(values: list[float], fmt: str) -> str:
    return f"{format(min(values), fmt)}-{format(max(values), fmt)}"


def _print_a(a: dict[str, Any], count: int, repeats: int) -> None:
    rounds = a["rounds"]
    print(f"A. {count} rotations each, median of {repeats} rounds (spread: each round's)")
    print(f"   RSA-2048 key rotation end to end: {a['key_rotation_ms']:.1f} ms "
          f"({a['key_rotations_per_s']:.1f}/s)")
    print(f"   raw RSA-2048 keygen (cryptography): {a['rsa2048_keygen_ms']:.1f} ms "
          f"({a['rsa2048_keys_per_s_raw']:.1f}/s)")
    verdict = "PASS" if a["overhead_ratio"] < 0.15 else "MISS"
    print(f"   orchestrator overhead: {a['overhead_ms']:.1f} ms = "
          f"{a['overhead_ratio'] * 100:.0f}% of the key cost (rounds "
          f"{_spread([r['overhead_ratio'] * 100 for r in rounds], '.0f')}%; "
          f"target < 15%): {verdict}")
    print(f"   with the read model's projector (the daemon's wiring): "
          f"{a['projected_key_rotation_ms']:.1f} ms, overhead "
          f"{a['projected_overhead_ratio'] * 100:.0f}% (rounds "
          f"{_spread([r['projected_overhead_ratio'] * 100 for r in rounds], '.0f')}%)")
    print(f"   client secret rotation end to end: {a['secret_rotation_ms']:.1f} ms "
          f"({a['secret_rotations_per_s']:.1f}/s)")


def _print_b(b: dict[str, Any]) -> None:
    rounds = b["rounds"]
    print(f"B. {b['apps']:,} apps, {b['credentials']:,} credentials, {b['due']:,} due")
    print(f"   plan over the whole fleet: {b['plan_full_fleet_s']:.2f} s "
          f"({b['plan_per_app_us']:.1f} us/app)")
    print(f"   start-up: fleet load {b['fleet_load_s']:.2f} s, first tick {b['first_tick_s']:.2f} s")
    verdict = "PASS" if b["tick_over_due_work"] <= 1.2 else "MISS"
    print(f"   steady tick: {b['steady_tick_s']:.3f} s for {b['steady_tick_planned_apps']} apps "
          f"planned; the same due work done directly: {b['direct_due_work_s']:.3f} s "
          f"(medians of {len(rounds)} rounds); ratio {b['tick_over_due_work']:.2f} (rounds "
          f"{_spread([r['ratio'] for r in rounds], '.2f')}; target <= 1.2): {verdict}")
    print(f"   in CPU time: ratio {b['tick_over_due_work_cpu']:.2f} (rounds "
          f"{_spread([r['cpu_ratio'] for r in rounds], '.2f')})")

if __name__ == "__main__":
    main()
