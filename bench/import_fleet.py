"""Importing a 5,000-client Auth0 tenant under its rate limit (issue 7, "What must be shown").

Starts the Auth0 emulator (``tests/peers/auth0``) as a process with ``--clients`` clients
(``--keyed`` of them holding Private Key JWT keys, one in five of those two keys, and
``--clashing`` sharing one name) and a Management API budget of ``--per-second`` requests a
second with a burst of ``--burst``; writes a policies folder holding one IdentityProvider
resource whose ``baseUrl`` is the emulator, with the same ``rateLimit``; then runs the real
``orchestrator init`` and ``orchestrator import --provider auth0-bench --json`` in
subprocesses on a fresh SQLite database, and reports:

* the wall time of the import;
* the Management API requests it made and the 429s it received (the emulator's counters);
* the bound the budget sets: a bucket of ``burst`` that refills at ``per-second`` lets N
  requests through no sooner than ``(N - burst) / per-second`` seconds, and the ratio of the
  wall time to it (1.0 is the budget's pace; the goal is 0 429s and a ratio close to 1);
* what was imported (applications, credentials, names given to the clashing clients);
* the same import run again (nothing new: it lists the clients and reads no credentials).

    python bench/import_fleet.py [--clients 5000] [--keyed 500] [--per-second 16] [--burst 50]
                                 [--out bench/results/import_fleet.json]

Run it from the repository (the emulator lives under tests/).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402

from orchestrator.adapters.crypto import PrimePairKeys  # noqa: E402
from tests.peers.auth0 import emulator_process  # noqa: E402

PROVIDER = "auth0-bench"
DOMAIN = "bench.auth0.test"


def _keys(count: int) -> list[str]:
    """``count`` distinct RSA-2048 public keys (SPKI PEM), made fast from pooled primes."""
    source = PrimePairKeys()
    return [source(2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        for _ in range(count)]


def _config(clients: int, keyed: int, clashing: int, per_second: float,
            burst: int) -> dict[str, Any]:
    two = keyed // 5
    pems = iter(_keys(keyed + two))
    specs = []
    for number in range(1, keyed + 1):
        keys = [next(pems)] + ([next(pems)] if number <= two else [])
        name = "billing api" if number <= clashing else f"keyed-{number:05d}"
        specs.append({"name": name, "token_endpoint_auth_method": None,
                      "client_authentication_methods": {"private_key_jwt": {"credentials": [
                          {"credential_type": "public_key", "pem": pem, "alg": "RS256",
                           "name": f"key {k}"} for k, pem in enumerate(keys)]}}})
    return {"domain": DOMAIN, "management_rate": {"burst": burst, "per_second": per_second},
            "clients": specs, "generate_clients": {"count": clients - keyed,
                                                   "name_prefix": "svc-"}}


def _control(base: str, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{base}/__emulator/{path}", method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        body = answer.read()
    return json.loads(body) if body else None


def _resource(base: str, per_second: float, burst: int) -> str:
    return (f"apiVersion: orchestrator/v1\nkind: IdentityProvider\nmetadata: {{name: {PROVIDER}}}\n"
            f"spec:\n  auth0:\n    domain: {DOMAIN}\n    baseUrl: {base}\n"
            "    clientId: emulator-management-app\n"
            "    clientSecret: {env: AUTH0_MGMT_SECRET}\n"
            f"    rateLimit: {{perSecond: {per_second:g}, burst: {burst}}}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--keyed", type=int, default=500)
    parser.add_argument("--clashing", type=int, default=20)
    parser.add_argument("--per-second", type=float, default=16.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--orchestrator",
                        default=str(Path(sys.executable).with_name("orchestrator")))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/import_fleet.json")
    args = parser.parse_args()
    config = _config(args.clients, args.keyed, args.clashing, args.per_second, args.burst)
    with emulator_process(config) as base, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "policies").mkdir()
        (folder / "policies/auth0.yaml").write_text(_resource(base, args.per_second, args.burst))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")},
               "ORCHESTRATOR_DB": f"sqlite:///{folder}/o.db",
               "ORCHESTRATOR_KEYSTORE": str(folder / "keystore"),
               "ORCHESTRATOR_POLICIES": str(folder / "policies"),
               "AUTH0_MGMT_SECRET": "emulator-management-secret"}
        subprocess.run([args.orchestrator, "init"], env=env, check=True, cwd=folder,
                       stdout=subprocess.DEVNULL)
        _control(base, "counters/reset", "POST")
        began = time.perf_counter()
        done = subprocess.run([args.orchestrator, "import", "--provider", PROVIDER, "--json"],
                              env=env, cwd=folder, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - began
        counters = _control(base, "counters")
        _control(base, "counters/reset", "POST")  # again: the clients are known, none is new
        began = time.perf_counter()
        rerun = subprocess.run([args.orchestrator, "import", "--provider", PROVIDER, "--json"],
                               env=env, cwd=folder, capture_output=True, text=True, check=False)
        rerun_wall = time.perf_counter() - began
        rerun_counters = _control(base, "counters")
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return 1
    document = json.loads(done.stdout)
    requests = sum(sum(statuses.values()) for route, statuses in counters["by_route"].items()
                   if "/api/v2/" in route)  # the Management API's bucket (not /oauth/token)
    bound = max(0.0, (requests - args.burst) / args.per_second)
    clashes = sorted(c["app"] for c in document["imported"] if c["client_name"] == "billing api")
    report = {
        "clients": args.clients, "keyed": args.keyed, "per_second": args.per_second,
        "burst": args.burst, "wall_s": round(wall, 1), "requests": requests,
        "all_requests": counters["total"],
        "rate_limited_429": counters["rate_limited"], "by_status": counters["by_status"],
        "by_route": counters["by_route"], "budget_bound_s": round(bound, 1),
        "ratio_to_bound": round(wall / bound, 3) if bound else None,
        "achieved_per_second": round(requests / wall, 2),
        "imported": document["summary"], "clashing_names": [*clashes[:5], "..."],
        "rerun": {"wall_s": round(rerun_wall, 2), "requests": rerun_counters["total"],
                  "rate_limited_429": rerun_counters["rate_limited"],
                  "summary": json.loads(rerun.stdout)["summary"] if rerun.returncode == 0
                  else rerun.stderr.strip()},
        "load": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.clients} clients ({args.keyed} with keys) under {args.per_second:g}/s, burst "
          f"{args.burst}: {wall:.1f} s, {requests} requests, "
          f"{counters['rate_limited']} answered 429; the budget's bound {bound:.1f} s "
          f"(ratio {report['ratio_to_bound']}); imported {document['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
