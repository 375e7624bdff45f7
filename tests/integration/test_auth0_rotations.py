"""Whole rotations of each usage through the real rotator (``bootstrap.in_memory``, the app
registered with its Auth0 provider and client id) against the Auth0 emulator: at the end
exactly the new credential is attached, the old one is refused at the token endpoint, and the
retired one is deleted by the next rotation (nothing left behind). Then fifty rotations under
5xx, 409, lost answers and a tight rate limit.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestrator.adapters.crypto import PrimePairKeys
from orchestrator.app.service import secret_item_id
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import Proof
from orchestrator.domain.rotation import Params
from tests.peers.auth0 import Auth0Emulator
from tests.support.auth0_site import Site, accepted, pkjwt_app

PKJWT, JAR, MTLS, SECRET = "private_key_jwt", "jar", "mtls", "client_secret"
CREDENTIALS = "POST /api/v2/clients/{id}/credentials"
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


PARAMS = {
    PKJWT: Params(usage=PKJWT, algorithm="PS256", overlap=HOUR, lifetime=90 * DAY),
    JAR: Params(usage=JAR, algorithm="RS256", overlap=HOUR, lifetime=90 * DAY),
    MTLS: Params(usage=MTLS, algorithm=None, overlap=HOUR, lifetime=90 * DAY,
                 subject="CN={app}.clients.example"),
    SECRET: Params(usage=SECRET, algorithm=None, overlap=HOUR, accept_secret_gap=True),
}
SLOT = {PKJWT: "private_key_jwt", JAR: "signed_request_object",
        MTLS: "self_signed_tls_client_auth"}


def rotated(site: Site, app: str, rid: str) -> tuple[Any, Any]:
    rotation = site.state(app).rotations[rid]
    return (site.credential(app, rotation.new_credential_id),
            site.credential(app, rotation.old_credential_id or ""))


@pytest.mark.parametrize("usage", [PKJWT, JAR, MTLS])
def test_a_rotation_leaves_exactly_the_new_key_attached_and_the_old_refused(
        site: Site, usage: str) -> None:
    app, client_id = pkjwt_app(site, f"app-{usage.replace('_', '-')}")
    if usage == JAR:  # the client authenticates at PAR with the secret the orchestrator set
        site.rotate(app, PARAMS[SECRET])
    params = PARAMS[usage]
    first = site.rotate(app, params)
    second = site.rotate(app, params)
    new, old = rotated(site, app, second)
    assert old.id == site.state(app).rotations[first].new_credential_id
    assert site.attached(client_id, SLOT[usage]) == [new.provider_id]
    assert accepted(site, app, new)
    assert not accepted(site, app, old)  # jar: refused at PAR (invalid_request_object)
    # the next rotation frees the retired one's slot: deleted at Auth0, not left behind
    third = site.rotate(app, params)
    newest, _ = rotated(site, app, third)
    pool = {c["id"] for c in site.pool(client_id)}
    assert old.provider_id not in pool
    assert site.attached(client_id, SLOT[usage]) == [newest.provider_id]
    live = {c.provider_id for c in site.state(app).credentials.values() if c.live}
    assert pool == live  # nothing at the provider the log does not know
    assert site.count(CREDENTIALS) == 3


def test_a_ca_issued_certificate_rotation_keeps_its_one_registration(
        site: Site, ca: tuple[bytes, bytes]) -> None:
    app, client_id = pkjwt_app(site, "bank")
    params = Params(usage=MTLS, algorithm=None, overlap=HOUR, lifetime=30 * DAY,
                    subject="CN={app},O=Acme,C=DE", issuer_cert=ca[0], issuer_key=ca[1])
    site.rotate(app, params)
    second = site.rotate(app, params)
    new, old = rotated(site, app, second)
    [registration] = site.pool(client_id)
    assert registration["subject_dn"] == "C=DE\nO=Acme\nCN=bank"
    assert new.provider_id == old.provider_id == registration["id"]
    assert site.attached(client_id, "tls_client_auth") == [registration["id"]]
    assert accepted(site, app, new)
    assert site.count(CREDENTIALS) == 1  # the successor was confirmed, not uploaded


def test_a_client_secret_rotation_sets_the_secret_at_auth0(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    site.rotate(app, PARAMS[SECRET])
    site.rotate(app, PARAMS[SECRET])
    state = site.state(app)
    assert state.secret is not None and state.secret.version == 2
    current = site.keystore.get(secret_item_id(app, 2))
    previous = site.keystore.get(secret_item_id(app, 1))
    assert current is not None and previous is not None
    assert site.remote(client_id)["client_secret"] == current.decode()
    for secret, works in ((current, True), (previous, False)):
        try:
            site.provider.authenticate(app, Proof(client_id=client_id, usage=SECRET,
                                                  secret=secret.decode()), site.now())
            assert works
        except ProviderError:
            assert not works


def test_fifty_rotations_under_5xx_409_lost_answers_and_a_tight_rate_limit(
        emu: Auth0Emulator, key_source: PrimePairKeys) -> None:
    """Faults at the emulator: 5% 5xx, 2% 409 under load, 2% lost answers (on /oauth/* too),
    a bucket of 5 refilled at 4/s and no budget configured. Every rotation completes (the
    adapter retries within the call, the rotator after its backoff); no duplicate upload,
    nothing left behind, never 3 in a slot, every new key accepted, no 429 storm."""
    emu.configure(management_rate={"burst": 5, "per_second": 4},
                  faults={"seed": 11, "error_rate": 0.05, "conflict_rate": 0.02,
                          "lost_rate": 0.02, "apply_to_oauth": True})
    site = Site(emu, key_source)
    apps = [pkjwt_app(site, f"fleet-{n}") for n in range(5)]
    started = emu.clock.now()
    for _ in range(10):
        for app, client_id in apps:
            rid = site.rotate(app, PARAMS[PKJWT])
            new = site.credential(app, site.state(app).rotations[rid].new_credential_id)
            held = site.attached(client_id, "private_key_jwt")
            assert len(held) <= 2 and held[-1] == new.provider_id
    for app, client_id in apps:
        pool = site.pool(client_id)
        assert len({c["kid"] for c in pool}) == len(pool)  # no duplicate upload
        live = {c.provider_id for c in site.state(app).credentials.values() if c.live}
        assert {c["id"] for c in pool} == live  # nothing the log does not know
        newest = max((c for c in site.state(app).credentials.values() if c.live),
                     key=lambda c: c.added_at)
        assert accepted(site, app, newest)
    counts = emu.counters.snapshot()
    print("faulty run:", {k: counts[k] for k in ("total", "by_status", "rate_limited",
                                                   "faults")},
          f"paced {sum(site.slept):.1f} s of {emu.clock.now() - started:.0f} s virtual")
    faults = counts["faults"]
    assert faults.get("lost", 0) >= 5 and faults.get("409", 0) >= 1
    assert sum(faults.get(code, 0) for code in ("500", "502", "503")) >= 10
    assert counts["rate_limited"] <= 3  # paced, not a 429 storm
