"""Client secrets made by Auth0 (``secretRotation: rotate-secret``) against the Auth0 emulator.

Auth0 makes the secret (``POST /clients/{id}/rotate-secret``) and its answer is the only copy:
the adapter returns it and the rotation keeps it in the keystore at once. A repeat reads the
client first and sends nothing when the client holds the kept secret; after a lost answer it
holds one nobody has, so the repeat rotates again and that one is delivered. 5xx and 429 are
retried without a second rotation (the scope it needs, read:client_keys: test_auth0_scopes.py).
Each whole rotation ends with the delivered file's secret
accepted by the emulator's token endpoint (asked directly, not through the adapter) and the
previous one refused; no secret reaches a log line or the event log, only its fingerprint.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.adapters.crypto import PrimePairKeys
from orchestrator.adapters.delivery import FileDelivery
from orchestrator.app.service import secret_item_id
from orchestrator.domain.identity_provider import ProviderUnavailable, SecretRotation
from orchestrator.domain.rotation import Params, Reason, Step
from tests.peers.auth0 import Auth0Emulator
from tests.peers.kit import token_request
from tests.support.auth0_site import Site

ROTATE = "POST /api/v2/clients/{id}/rotate-secret"
READ = "GET /api/v2/clients/{id}"
PATCH = "PATCH /api/v2/clients/{id}"
API = "https://api.example.com/"
SECRET = Params(usage="client_secret", overlap=timedelta(hours=1), accept_secret_gap=True)
UNKNOWN = "a-secret-the-orchestrator-made-but-never-sent-" + "x" * 20


@pytest.fixture
def site(emu: Auth0Emulator, key_source: PrimePairKeys, tmp_path: Path) -> Site:
    return Site(emu, key_source, secret_rotation=SecretRotation.ROTATE_SECRET,
                delivery=FileDelivery(tmp_path / "delivery"))


def secret_app(site: Site, name: str = "billing") -> tuple[str, str]:
    """A client-secret client with a grant on an API (a token is 200), and its app."""
    client_id = site.client(name, grants=[{"audience": API, "scope": ["read:things"]}])
    return site.app(name, client_id), client_id


def token(site: Site, client_id: str, secret: str) -> int:
    """The emulator's token endpoint, asked directly: 200 accepted, 401 refused."""
    return token_request(site.emu, {"grant_type": "client_credentials", "client_id": client_id,
                                    "client_secret": secret, "audience": API}).status_code


def held(site: Site, client_id: str) -> str:
    return str(site.remote(client_id)["client_secret"])


def delivered(tmp_path: Path, app: str) -> tuple[str, str]:
    folder = tmp_path / "delivery" / app / "client_secret"
    return (folder / "client_secret").read_text(), (folder / "version").read_text()


# --- one call ----------------------------------------------------------------------------------


def test_auth0_makes_the_secret_and_a_repeat_sends_nothing(site: Site) -> None:
    app, client_id = secret_app(site)
    before = held(site, client_id)
    made = site.provider.set_secret(app, 1, UNKNOWN, None)
    assert made is not None and made == held(site, client_id)
    assert made not in (before, UNKNOWN)
    assert site.provider.set_secret(app, 1, made, None) is None  # it holds ours: nothing sent
    assert (site.count(ROTATE, 200), site.count(PATCH), site.count(READ, 200)) == (1, 0, 2)
    assert (token(site, client_id, made), token(site, client_id, before)) == (200, 401)


def test_a_lost_answer_is_found_by_reading_the_client_and_the_repeat_s_secret_returned(
        site: Site) -> None:
    app, client_id = secret_app(site)
    site.emu.faults.script("lost", method="POST", route="/api/v2/clients/{id}/rotate-secret")
    made = site.provider.set_secret(app, 1, UNKNOWN, None)
    assert made is not None and made == held(site, client_id)
    assert (site.count(ROTATE, "lost"), site.count(ROTATE, 200)) == (1, 1)
    assert site.count(READ, 200) == 2  # read before each rotation: the lost one was not ours
    assert token(site, client_id, made) == 200


def test_5xx_and_429_are_retried_without_a_second_rotation(site: Site) -> None:
    app, client_id = secret_app(site)
    site.emu.configure(retry_after=True)
    site.emu.faults.script("503", method="POST", route="/api/v2/clients/{id}/rotate-secret")
    site.emu.faults.script("429", method="POST", route="/api/v2/clients/{id}/rotate-secret",
                           seconds=3)
    made = site.provider.set_secret(app, 1, UNKNOWN, None)
    assert made is not None and made == held(site, client_id)
    assert [site.count(ROTATE, s) for s in (503, 429, 200)] == [1, 1, 1]
    assert sum(site.slept) >= 3  # the 429's Retry-After held the tenant's pacer


def test_a_failure_that_outlasts_the_attempts_is_provider_unavailable(site: Site) -> None:
    app, client_id = secret_app(site)
    before = held(site, client_id)
    site.emu.faults.script("500", method="POST", route="/api/v2/clients/{id}/rotate-secret",
                           count=4)
    with pytest.raises(ProviderUnavailable, match=r"rotate-secret: 500 .*gave up after 4"):
        site.provider.set_secret(app, 1, UNKNOWN, None)
    assert held(site, client_id) == before  # 5xx answered before the work


# --- whole rotations ---------------------------------------------------------------------------


def test_a_whole_rotation_delivers_the_secret_auth0_made(site: Site, tmp_path: Path) -> None:
    app, client_id = secret_app(site)
    seeded = held(site, client_id)
    with capture_logs() as logs:
        site.rotate(app, SECRET)
        first, _ = delivered(tmp_path, app)
        site.rotate(app, SECRET)
    secret, version = delivered(tmp_path, app)
    assert version == "2" and secret == held(site, client_id)
    assert site.keystore.get(secret_item_id(app, 2)) == secret.encode()
    assert [token(site, client_id, s) for s in (secret, first, seeded)] == [200, 401, 401]
    assert (site.count(ROTATE, 200), site.count(PATCH)) == (2, 0)  # never a custom secret
    state = site.state(app).secret
    assert state is not None and state.version == 2
    assert state.fingerprint == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    log_text = "".join(r.payload_json for r in site.core.store.read())
    for made in (secret, first):
        assert made not in log_text and made not in repr(logs)


def test_a_lost_answer_the_call_cannot_get_past_is_rotated_again_by_the_retry(
        site: Site, tmp_path: Path) -> None:
    """The rotation took effect, its answer was lost, and the reads that would find it fail
    until the call gives up: the register step fails. Meanwhile the client holds a secret
    nobody has, so the app's secret is already refused (as after any change: Auth0 keeps one).
    The rotation's retry reads the client, rotates again and delivers that secret."""
    app, client_id = secret_app(site)
    site.rotate(app, SECRET)
    old, _ = delivered(tmp_path, app)
    site.emu.faults.script("lost", method="POST", route="/api/v2/clients/{id}/rotate-secret")
    site.emu.faults.script("503", method="GET", route="/api/v2/clients/{id}", count=3)
    rid = site.rotator.start(app, SECRET.usage, Reason.MANUAL)
    assert rid is not None
    out = site.rotator.advance(app, rid, SECRET)
    assert out.failed and out.last.step is Step.REGISTER and not out.parked
    assert "gave up after 4 attempts" in (site.state(app).rotations[rid].last_error or "")
    assert token(site, client_id, old) == 401  # the window: refused before delivery
    site.finish(app, rid, SECRET)
    secret, version = delivered(tmp_path, app)
    assert version == "2" and secret == held(site, client_id)
    assert [token(site, client_id, s) for s in (secret, old)] == [200, 401]
    assert (site.count(ROTATE, "lost"), site.count(ROTATE, 200)) == (1, 2)  # v1, v2's repeat


def test_a_secret_changed_at_auth0_after_its_test_is_made_again_and_delivered(
        site: Site, tmp_path: Path) -> None:
    """Someone rotates the client's secret between the test and the delivery: delivery finds
    the client no longer holds the tested secret, has Auth0 make another (kept at once), fails
    the step, and its retry delivers the new one; the log's fingerprint is the delivered one."""
    app, client_id = secret_app(site)

    def behind_our_back(_: str, __: str, step: Step) -> None:
        if step is Step.TEST:
            site.emu.tenant.rotate_secret(client_id)

    site.rotator.on_step = behind_our_back
    rid = site.rotate(app, SECRET)
    secret, _ = delivered(tmp_path, app)
    assert secret == held(site, client_id) and token(site, client_id, secret) == 200
    assert site.state(app).rotations[rid].attempts == 1  # the delivery failed once
    state = site.state(app).secret
    assert state is not None
    assert state.fingerprint == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    assert site.count(ROTATE, 200) == 2  # registration, and the delivery's new one
