"""A fleet-wide rotation at the provider's pace (issue 10, target 2), in one run.

A. **Auth0 under its budget.** Starts the Auth0 emulator (``tests/peers/auth0``) as a process
   with ``--apps`` clients, each holding one Private Key JWT key that expires in 5 days; imports
   them with the real ``orchestrator import`` (the emulator unlimited for that: the import has
   its own bench, ``import_fleet.py``); then gives the emulator a Management API budget of
   ``--per-second`` requests a second with a burst of ``--burst``, gives the IdentityProvider
   resource the same ``rateLimit``, adds one RotationPolicy (private_key_jwt, ``beforeExpiry:
   14d``, so every application is due at once, ``overlap: 1s``) and runs the real ``orchestrator
   daemon`` (a process, its default interval unless ``--interval``) until every application's
   rotation has completed. Reported: the Management API requests the emulator answered
   (``/api/v2/``; the token endpoint, where each new key is tested, is another bucket), requests
   per rotation, 429s, the wall time from the daemon's launch to the last ``rotation.completed``,
   and the budget's bound: a bucket of ``burst`` refilling at ``per-second`` lets N requests
   through no sooner than ``(N - burst) / per-second`` seconds. ``fraction`` is the rotation rate
   over the rate that bound allows (``bound / wall``); the target is at least 0.9 with no 429.

B. **oidc-provider without a limit.** node ``oidc-provider`` (``tests/peers/oidc``), ``--oidc-apps``
   clients registered through it (``app register --create``, RFC 7591), their first keys issued
   by the daemon (RS256, untimed), then the policy switched to PS256 (same RSA-2048 keys): every
   application is due (``policy-changed``) and a new daemon rotates them all. Reported: rotations
   per second of wall time and per CPU-second of the daemon process (user + system, from its
   rusage: launch to exit), the node process's CPU over the same span, and, in the same run,
   bare RSA-2048 generation with ``cryptography`` (keys per CPU-second, one core).

    nice python bench/paced_rotation.py [--apps 2000] [--oidc-apps 200] [--per-second 16]
                                        [--burst 50] [--out bench/results/paced_rotation.json]

Run it from the repository (the peers live under tests/), with the orchestrator installed
beside this Python (``--orchestrator`` names another).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from orchestrator.adapters.crypto import PrimePairKeys  # noqa: E402
from tests.peers.auth0 import emulator_process  # noqa: E402
from tests.peers.oidc import node_available, start_oidc_provider  # noqa: E402

PROVIDER = "auth0-bench"
DOMAIN = "bench.auth0.test"
OIDC = "oidc-bench"
SETTLE_LIMIT = 3600.0  # a safety net: a run that stalls stops here and says so

KEY_POLICY = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {{name: fleet-keys}}
spec:
  selector: {{apps: ["*"]}}
  credential: {{usage: private_key_jwt, algorithm: {alg}, keySize: 2048}}
  rotation: {{every: 90d, beforeExpiry: 14d, overlap: 1s}}
  lifetime: 120d
  retention: 7d
"""


# --- the processes ---------------------------------------------------------------------------


def _env(folder: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")},
            "ORCHESTRATOR_DB": f"sqlite:///{folder}/o.db",
            "ORCHESTRATOR_KEYSTORE": str(folder / "keystore"),
            "ORCHESTRATOR_POLICIES": str(folder / "policies"),
            "ORCHESTRATOR_DELIVERY": str(folder / "delivery"),
            "AUTH0_MGMT_SECRET": "emulator-management-secret"}


def _run(orchestrator: str, env: dict[str, str], folder: Path, *args: str) -> str:
    done = subprocess.run([orchestrator, *args], env=env, cwd=folder, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"orchestrator {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout


def _completed(db: Path, since: int) -> tuple[int, int, str | None, str | None]:
    """(completed, parked, first started_at, last completed_at) among events after ``since``."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
        done, last = con.execute("select count(*), max(recorded_at) from events where type = "
                                 "'rotation.completed' and position > ?", (since,)).fetchone()
        parked = con.execute("select count(*) from events where type = 'rotation.parked' and "
                             "position > ?", (since,)).fetchone()[0]
        first = con.execute("select min(recorded_at) from events where type = "
                            "'rotation.started' and position > ?", (since,)).fetchone()[0]
    return int(done), int(parked), first, last


def _head(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return int(con.execute("select coalesce(max(position), 0) from events").fetchone()[0])


def _daemon(orchestrator: str, env: dict[str, str], folder: Path, db: Path, apps: int,
            interval: float | None, at_done: Any = None) -> dict[str, Any]:
    """Run the daemon until ``apps`` rotations completed after the log's head at launch; stop
    it (SIGTERM) and return its wall time, CPU time and what ``at_done()`` said at that
    moment."""
    since = _head(db)
    args = [orchestrator, "daemon", "--json-logs"]
    if interval is not None:
        args += ["--interval", f"{interval:g}"]
    log = (folder / "daemon.log").open("a")
    began = time.time()
    proc = subprocess.Popen(args, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    seen: tuple[int, int, str | None, str | None] = (0, 0, None, None)
    cpu_at_start = None  # the daemon's CPU when the first rotation had started (start-up)
    try:
        while time.time() - began < SETTLE_LIMIT:
            time.sleep(0.25)
            seen = _completed(db, since)
            if cpu_at_start is None and seen[2] is not None:
                cpu_at_start = _cpu(proc.pid)
            if seen[0] + seen[1] >= apps or proc.poll() is not None:
                break
        observed = at_done() if at_done is not None else None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(proc.pid, 0)
        log.close()
    done, parked, first, last = seen
    if done < apps:
        raise SystemExit(f"the daemon completed {done} of {apps} rotations ({parked} parked, "
                         f"exit status {status}); see {folder / 'daemon.log'}")
    assert last is not None and first is not None
    end = datetime.fromisoformat(last).timestamp()
    return {"completed": done, "parked": parked, "wall_s": end - began,
            "active_s": end - datetime.fromisoformat(first).timestamp(),
            "cpu_s": usage.ru_utime + usage.ru_stime, "startup_cpu_s": cpu_at_start,
            "observed": observed}


# --- A. Auth0 under its budget ----------------------------------------------------------------


def _control(base: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{base}/__emulator/{path}", method="GET" if body is None else "POST",
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        raw = answer.read()
    return json.loads(raw) if raw else None


def _clients(count: int) -> list[dict[str, Any]]:
    """``count`` clients, each with one RSA-2048 key (pooled primes: fast) expiring in 5 days."""
    source = PrimePairKeys()
    expires = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    return [{"name": f"svc-{n:05d}", "token_endpoint_auth_method": None,
             "client_authentication_methods": {"private_key_jwt": {"credentials": [{
                 "credential_type": "public_key", "alg": "RS256", "name": "imported",
                 "expires_at": expires,
                 "pem": source(2048).public_key().public_bytes(
                     serialization.Encoding.PEM,
                     serialization.PublicFormat.SubjectPublicKeyInfo).decode()}]}}}
            for n in range(count)]


def _auth0_resource(base: str, rate: tuple[float, int] | None) -> str:
    limit = f"    rateLimit: {{perSecond: {rate[0]:g}, burst: {rate[1]}}}\n" if rate else ""
    return (f"apiVersion: orchestrator/v1\nkind: IdentityProvider\nmetadata: {{name: {PROVIDER}}}\n"
            f"spec:\n  auth0:\n    domain: {DOMAIN}\n    baseUrl: {base}\n"
            "    clientId: emulator-management-app\n"
            f"    clientSecret: {{env: AUTH0_MGMT_SECRET}}\n{limit}")


def _management(counters: dict[str, Any]) -> int:
    """Requests to the Management API's bucket (``/api/v2/``, not ``/oauth/token``)."""
    return sum(sum(statuses.values()) for route, statuses in counters["by_route"].items()
               if "/api/v2/" in route)


def part_auth0(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    config = {"domain": DOMAIN, "management_rate": None, "clients": _clients(args.apps)}
    folder = tmp / "auth0"
    (folder / "policies").mkdir(parents=True)
    with emulator_process(config) as base:
        policies = folder / "policies"
        (policies / "auth0.yaml").write_text(_auth0_resource(base, None))
        env = _env(folder)
        _run(args.orchestrator, env, folder, "init")
        imported = json.loads(_run(args.orchestrator, env, folder, "import", "--provider",
                                   PROVIDER, "--json"))["summary"]
        # the budget from here on, at the tenant and in the resource; a full bucket, no counts
        rate = (args.per_second, args.burst)
        _control(base, "config", {"management_rate": {"per_second": rate[0],
                                                      "burst": rate[1]}})
        (policies / "auth0.yaml").write_text(_auth0_resource(base, rate))
        (policies / "keys.yaml").write_text(KEY_POLICY.format(alg="RS256"))
        _control(base, "counters/reset", {})
        run = _daemon(args.orchestrator, env, folder, folder / "o.db", args.apps,
                      args.interval, at_done=lambda: _control(base, "counters"))
    counters = run.pop("observed")
    requests = _management(counters)
    bound = max(0.0, (requests - args.burst) / args.per_second)
    wall = run["wall_s"]
    return {
        "apps": args.apps, "imported": imported, "per_second": args.per_second,
        "burst": args.burst, "interval_s": args.interval, **_rounded(run),
        "management_requests": requests,
        "requests_per_rotation": round(requests / args.apps, 3),
        "rate_limited_429": counters["rate_limited"], "by_route": counters["by_route"],
        "budget_bound_s": round(bound, 1),
        "rotations_per_s": round(args.apps / wall, 3),
        "bound_rotations_per_s": round(args.apps / bound, 3) if bound else None,
        "fraction": round(bound / wall, 3) if wall else None,
    }


# --- B. oidc-provider without a limit ----------------------------------------------------------


def _oidc_resource(peer: Any, token_file: Path) -> str:
    return (f"apiVersion: orchestrator/v1\nkind: IdentityProvider\nmetadata: {{name: {OIDC}}}\n"
            f"spec:\n  oidc:\n    issuer: {peer.issuer}\n    caFile: {peer.ca_file}\n"
            f"    initialAccessToken: {{file: {token_file}}}\n")


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _keygen_per_cpu_s(count: int) -> float:
    began = time.process_time()
    for _ in range(count):
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return count / (time.process_time() - began)


def part_oidc(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    available, why = node_available()
    if not available:
        return {"skipped": why}
    folder = tmp / "oidc"
    (folder / "policies").mkdir(parents=True)
    with start_oidc_provider(tmp / "oidc-peer") as peer:
        token = folder / "iat"
        token.write_text(peer.initial_access_token)
        (folder / "policies/oidc.yaml").write_text(_oidc_resource(peer, token))
        env = _env(folder)
        _run(args.orchestrator, env, folder, "init")
        names = [f"svc-{n:05d}" for n in range(args.oidc_apps)]
        for name in names:  # --create registers one client a name
            _run(args.orchestrator, env, folder, "app", "register", name, "--provider", OIDC,
                 "--create")
        policy = folder / "policies/keys.yaml"
        policy.write_text(KEY_POLICY.format(alg="RS256"))
        first = _daemon(args.orchestrator, env, folder, folder / "o.db", args.oidc_apps,
                        args.oidc_interval)
        policy.write_text(KEY_POLICY.format(alg="PS256"))  # every key is due: policy-changed
        node_before = _cpu(peer.process.pid)
        raw_before = _keygen_per_cpu_s(args.keygen)
        run = _daemon(args.orchestrator, env, folder, folder / "o.db", args.oidc_apps,
                      args.oidc_interval, at_done=lambda: _cpu(peer.process.pid))
        node_cpu = run.pop("observed") - node_before
        raw_after = _keygen_per_cpu_s(args.keygen)
    raw = (raw_before + raw_after) / 2
    per_cpu = args.oidc_apps / run["cpu_s"]
    working = args.oidc_apps / (run["cpu_s"] - (run["startup_cpu_s"] or 0.0))
    return {
        "apps": args.oidc_apps, "interval_s": args.oidc_interval,
        "provisioned": _rounded(first), **_rounded(run),
        "rotations_per_s": round(args.oidc_apps / run["wall_s"], 2),
        "rotations_per_cpu_s": round(per_cpu, 2),
        "rotations_per_cpu_s_after_startup": round(working, 2),
        "node_cpu_s": round(node_cpu, 2),
        "rsa2048_keygen_per_cpu_s": [round(raw_before, 2), round(raw_after, 2)],
        "ratio_to_keygen": round(per_cpu / raw, 3),
        "ratio_to_keygen_after_startup": round(working / raw, 3),
    }


def _rounded(run: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in run.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=2000)
    parser.add_argument("--per-second", type=float, default=16.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--interval", type=float, default=None,
                        help="the daemon's --interval in part A (default: the daemon's own)")
    parser.add_argument("--oidc-apps", type=int, default=200)
    parser.add_argument("--oidc-interval", type=float, default=None)
    parser.add_argument("--keygen", type=int, default=100,
                        help="bare RSA-2048 keys generated before and after part B")
    parser.add_argument("--skip", choices=("auth0", "oidc"))
    parser.add_argument("--orchestrator",
                        default=str(Path(sys.executable).with_name("orchestrator")))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/paced_rotation.json")
    parser.add_argument("--workdir", type=Path,
                        help="keep the databases and daemon logs here (default: a temporary folder)")
    args = parser.parse_args()
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir or Path(scratch)
        if args.skip != "auth0":
            a = report["auth0"] = part_auth0(args, tmp)
            print(f"A. {a['apps']} rotations through Auth0 at {a['per_second']:g}/s, burst "
                  f"{a['burst']}: {a['wall_s']} s, {a['management_requests']} requests "
                  f"({a['requests_per_rotation']} a rotation), {a['rate_limited_429']} answered "
                  f"429; the budget's bound {a['budget_bound_s']} s: {a['rotations_per_s']} "
                  f"rotations/s of {a['bound_rotations_per_s']}, fraction {a['fraction']}")
        if args.skip != "oidc":
            b = report["oidc"] = part_oidc(args, tmp)
            if "skipped" in b:
                print(f"B. skipped: {b['skipped']}")
            else:
                print(f"B. {b['apps']} rotations through oidc-provider: {b['wall_s']} s, "
                      f"{b['rotations_per_s']}/s; daemon CPU {b['cpu_s']} s "
                      f"({b['rotations_per_cpu_s']} rotations per CPU-second, "
                      f"{b['rotations_per_cpu_s_after_startup']} after start-up), node CPU "
                      f"{b['node_cpu_s']} s; bare RSA-2048 keygen "
                      f"{b['rsa2048_keygen_per_cpu_s']} keys per CPU-second: "
                      f"ratio {b['ratio_to_keygen']} "
                      f"({b['ratio_to_keygen_after_startup']} after start-up)")
    report["load"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
