"""The Auth0 emulator under chaos, the installed daemon rotating through it, live traffic beside.

The emulator (tests/peers/auth0) runs as its own process, its Management API answering 5% of
requests with a 5xx, losing 2% of answers after doing the work (the connection closes without a
byte), and rate limited far below the tenant budget the orchestrator is told (so 429s come and
must be honoured). APPS clients are seeded with a client grant on an API; each is registered
with ``app register --provider --client-id`` and rotated by a private_key_jwt policy, by the
installed daemon (``tests/support/launch.py``, a virtual clock the test moves) over ROUNDS
rounds, while ``tests/support/token_client.py`` asks for tokens continuously for the first app
with what its delivery folder holds. The token endpoint is not faulted: a failed token request
would be a credential refused, never noise.

Each round moves the clock past ``every`` (each app's rotation uploads, attaches, tests and
delivers its new key), then past ``overlap`` (the old key detached, the rotation completed;
retention later deletes it). A step of a rotation that fails (a fault the adapter's own retries
did not absorb) is retried by the daemon after its backoff: the test moves the clock on by the
policy's ``maxBackoff`` until every app got there. Before any clock move, the token client has
made a request with the key last delivered to it (the overlap stands for the time the app takes
to read its folder again).

Verdicts, from the emulator's ``/__emulator/state`` after every delivery and every completion
(not only at the end): no client holds the same key twice (kid or public key), no slot holds
more than 2 credentials; at the end, after the last retention, each client's credentials are
exactly those the log says exist, its ``private_key_jwt`` slot exactly those it says are active,
and ``orchestrator drift`` finds nothing. After each completed rotation the first app's previous
key (replayed from what the token client kept) is refused. The token client's requests all
succeeded. No rotation parked.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.helpers import assert_key_belongs, read_delivered
from tests.peers.auth0.process import emulator_process
from tests.support.live import Rotations, Site, TokenClient, replay, rounds, settle
from tests.support.token_client import Options

APPS = ("chaos-1", "chaos-2", "chaos-3", "chaos-4")
ROUNDS = 13  # x 4 apps: 52 rotations, besides the 4 provisions
EVERY, OVERLAP, RETENTION = timedelta(hours=1), timedelta(minutes=10), timedelta(minutes=30)
RETRY_STEP = timedelta(minutes=5, seconds=1)  # the policy's maxBackoff, and a second
PROVIDER = "tenant"
API = "https://api.chaos.example/"
SLOTS = ("private_key_jwt", "self_signed_tls_client_auth", "tls_client_auth")
DOMAIN = "chaos-tenant.eu.auth0.com"  # the tenant's name; reached at the emulator's address
CHAOS = {
    "domain": DOMAIN,
    "management_rate": {"burst": 5, "per_second": 5.0},  # the tenant told: 16/s, burst 50
    "retry_after": True,
    "faults": {"seed": 20261130, "error_rate": 0.05, "lost_rate": 0.02},
    "clients": [{"client_id": f"{app}-client-id", "name": app, "app_type": "non_interactive",
                 "grants": [{"audience": API, "scope": []}]} for app in APPS],
}

POLICY = """apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {name: chaos-keys}
spec:
  selector: {apps: ["chaos-*"]}
  credential: {usage: private_key_jwt, algorithm: RS256, keySize: 2048}
  rotation:
    every: 1h
    beforeExpiry: 1d
    overlap: 10m
    retry: {attempts: 12, backoff: 1m, maxBackoff: 5m}
  lifetime: 30d
  retention: 30m
"""


def identity_provider(base_url: str) -> str:
    return f"""apiVersion: orchestrator/v1
kind: IdentityProvider
metadata: {{name: {PROVIDER}}}
spec:
  auth0:
    domain: {DOMAIN}
    baseUrl: {base_url}
    clientId: emulator-management-app
    clientSecret: {{env: AUTH0_MGMT_SECRET}}
    rateLimit: {{perSecond: 16, burst: 50}}
"""


@dataclass
class Checks:
    """What the emulator's state showed, each time it was looked at."""

    looks: int = 0
    most_in_a_slot: int = 0
    most_in_a_pool: int = 0
    problems: list[str] = field(default_factory=list)


def spki_of(pem: str) -> str:
    from cryptography import x509

    data = pem.encode()
    public = (x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data
              else serialization.load_pem_public_key(data))
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def ids(refs: Any) -> list[str]:
    """Credential ids from a slot as the state shows it: ids, ``{id}`` references, or an object
    holding them under ``credentials``."""
    if isinstance(refs, dict):
        refs = refs.get("credentials")
    return [r["id"] if isinstance(r, dict) else str(r) for r in refs or []]


def slot_ids(client: dict[str, Any], slot: str) -> list[str]:
    return ids((client.get("client_authentication_methods") or {}).get(slot))


def jar_ids(client: dict[str, Any]) -> list[str]:
    return ids(client.get("signed_request_object"))


def look(emulator: httpx.Client, rotations: Rotations, checks: Checks, when: str) -> None:
    """The emulator's clients of APPS, each checked against the log (read afresh; the daemon is
    idle and every rotation has gone past its upload): no key twice, at most 2 in a slot, the
    pool exactly the credentials the log says exist (none left behind, none unknown), the
    ``private_key_jwt`` slot exactly those it says are active."""
    state = emulator.get("/__emulator/state").json()
    clients = {c["name"]: c for c in state["clients"] if c["name"] in APPS}
    assert set(clients) == set(APPS), sorted(clients)
    rotations.refresh()
    checks.looks += 1
    for name, client in clients.items():
        pool = client["credentials"]
        statuses, provider_ids = rotations.statuses(name), rotations.provider_ids(name)
        exist = {provider_ids.get(c, c) for c, s in statuses.items() if s != "deleted"}
        active = {provider_ids.get(c, c) for c, s in statuses.items() if s == "active"}
        held = {c["id"] for c in pool}
        if held != exist:
            checks.problems.append(f"{when}: {name} holds {sorted(held - exist)} the log does not "
                                   f"know and lacks {sorted(exist - held)} ({statuses})")
        if set(slot_ids(client, "private_key_jwt")) != active:
            checks.problems.append(f"{when}: {name}'s private_key_jwt slot holds "
                                   f"{slot_ids(client, 'private_key_jwt')}, the log's active "
                                   f"ones are {sorted(active)}")
        checks.most_in_a_pool = max(checks.most_in_a_pool, len(pool))
        for what, values in (("kid", [c.get("kid") for c in pool if c.get("kid")]),
                             ("public key", [spki_of(c["pem"]) for c in pool if c.get("pem")])):
            twice = [v for v, n in Counter(values).items() if n > 1]
            if twice:
                checks.problems.append(f"{when}: {name} holds the same {what} twice: {twice}")
        for slot, in_slot in [*((s, slot_ids(client, s)) for s in SLOTS),
                              ("signed_request_object", jar_ids(client))]:
            checks.most_in_a_slot = max(checks.most_in_a_slot, len(in_slot))
            if len(in_slot) > 2:
                checks.problems.append(f"{when}: {name}'s {slot} holds {len(in_slot)}: {in_slot}")


@pytest.fixture
def emulator_url() -> Iterator[str]:
    with emulator_process(CHAOS) as url:
        yield url


class Neighbour:
    """Another tool on the same tenant: every few seconds a burst of client listings that
    empties the Management API bucket, so the daemon meets 429s however well it paces itself
    (its pacer learns from the answers' x-ratelimit headers)."""

    def __init__(self, base_url: str, burst: int = 5, every: float = 4.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        token = self.http.post("/__emulator/token", json={}).json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.burst, self.every = burst, every
        self.stopping = threading.Event()
        self.answers: Counter[str] = Counter()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(self.every):
            for _ in range(self.burst):
                try:
                    status = str(self.http.get("/api/v2/clients", params={"per_page": 5})
                                 .status_code)
                except httpx.HTTPError:
                    status = "lost"
                self.answers[status] += 1

    def stop(self) -> Counter[str]:
        self.stopping.set()
        self.thread.join(timeout=60)
        self.http.close()
        return self.answers


@pytest.mark.slow
def test_rotations_through_a_chaotic_auth0_with_live_token_traffic(emulator_url: str,
                                                                   tmp_path: Path) -> None:
    emulator = httpx.Client(base_url=emulator_url, timeout=30)
    assert emulator.get("/__emulator/health").json()["domain"] == DOMAIN
    site = Site(tmp_path)
    cli, policies, delivery = site.cli, site.policies, site.delivery
    (policies / "tenant.yaml").write_text(identity_provider(emulator_url))
    (policies / "chaos-keys.yaml").write_text(POLICY)
    cli.env["AUTH0_MGMT_SECRET"] = "emulator-management-secret"
    cli("policy", "validate")
    for app in APPS:
        cli("app", "register", app, "--provider", PROVIDER, "--client-id", f"{app}-client-id")
    emulator.post("/__emulator/counters/reset")

    daemon = site.daemon()
    neighbour = Neighbour(emulator_url)
    rotations = Rotations(site.db)
    checks = Checks()
    options = Options(api_audience=API)
    live_app = APPS[0]
    client: TokenClient | None = None
    refused = 0
    try:
        settle(daemon, rotations, APPS, lambda r, app: len(r.completed(app)) >= 1, RETRY_STEP)
        look(emulator, rotations, checks, "provisioned")
        client = TokenClient(delivery / live_app / "private_key_jwt", tmp_path / "client",
                             options)
        daemon.before_step = lambda: client.wait_using(
            rotations.refresh().delivered(live_app)[-1])

        for round_, phase in rounds(daemon, rotations, APPS, ROUNDS, every=EVERY,
                                    overlap=OVERLAP, retry=RETRY_STEP):
            look(emulator, rotations, checks, f"round {round_}, {phase}")
            if phase != "completed":
                continue

            done = rotations.completed(live_app)[-1]
            assert done.old_credential_id is not None
            client.wait_using(done.new_credential_id)
            old_ok, status, error = replay(client.kept(done.old_credential_id), options)
            new_ok, new_status, new_error = replay(client.kept(done.new_credential_id), options)
            assert new_ok, f"round {round_}: the current key was refused: {new_status} {new_error}"
            assert not old_ok and status == 401 and error == "invalid_client", (status, error)
            refused += 1

        # past the last retention: every disabled key is deleted
        daemon.step(RETENTION + timedelta(minutes=1))
        settle(daemon, rotations, APPS,
               lambda r, app: "disabled" not in r.statuses(app).values(), RETRY_STEP)
        stats = client.stop()
        client = None
    finally:
        if client is not None:
            client.stop()
        daemon.stop()
        neighbours = neighbour.stop()

    look(emulator, rotations, checks, "the end")  # every retired key deleted: one left each
    assert checks.problems == [], checks.problems
    for app in APPS:
        assert sorted(rotations.statuses(app).values()).count("active") == 1, app
        assert set(rotations.statuses(app).values()) == {"active", "deleted"}, app
    files = read_delivered(delivery / live_app / "private_key_jwt")
    current = json.loads(files["metadata.json"])["orchestrator_credential_id"]
    assert_key_belongs(files, rotations.credential(live_app, current)["public_pem"])

    drift = cli.run("drift", "--provider", PROVIDER)
    if "No such command" in drift.stderr:
        drift_said = "not run: the drift command has not landed"  # TODO(drift): run it
    else:
        assert drift.returncode == 0, str(drift)
        drift_said = "clean (exit 0)"

    counters = emulator.get("/__emulator/counters").json()
    ours = {route: statuses for route, statuses in counters["by_route"].items()
            if " /api/v2" in route and route != "GET /api/v2/clients"}  # not the neighbour's
    management = sum(n for statuses in ours.values() for n in statuses.values())
    def answered(*statuses: str) -> int:
        return sum(by_status.get(s, 0) for by_status in ours.values() for s in statuses)

    throttled, errors, lost = answered("429"), answered("500", "502", "503"), answered("lost")
    rotated = [r for app in APPS for r in rotations.completed(app) if r.old_credential_id]
    failed_attempts = rotations.failures()
    print(f"\nlive auth0 chaos: {len(rotated)} rotations ({len(APPS)} apps x {ROUNDS}), "
          f"{management} Management API requests, "
          f"{errors} 5xx and {lost} lost answers injected into them, {throttled} 429s "
          f"(the neighbour: {sum(neighbours.values())} requests, "
          f"{neighbours['429']} 429s); "
          f"{len(failed_attempts)} rotation steps failed and were retried by the daemon "
          f"({daemon.retry_steps} clock steps of maxBackoff); live client: {stats['requests']} token "
          f"requests, {stats['failures']} failures, {refused} old keys refused; emulator "
          f"looked at {checks.looks} times: at most {checks.most_in_a_slot} in a slot, "
          f"{checks.most_in_a_pool} in a pool; drift {drift_said}")
    assert daemon.lines("app_drifted") == []  # the daemon's own drift check, under the faults
    assert len(rotated) >= 50
    assert stats["requests"] > 0
    assert stats["failures"] == 0, stats["failure_samples"]
    assert refused == ROUNDS
    # the chaos happened (the adapter cannot avoid these; 429s it may, by pacing itself)
    assert lost > 0 and errors > 0
