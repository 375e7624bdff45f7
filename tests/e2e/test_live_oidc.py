"""Live traffic during rotations, against an OpenID provider we did not write (node oidc-provider).

For each usage (private_key_jwt with RS256 and with PS256, JAR through pushed authorization
requests, self-signed mTLS over the provider's real TLS listener, CA-issued mTLS matched by its
subject DN) one application is bound to the provider through an ``IdentityProvider`` resource in
the policies folder, and the installed daemon (``tests/support/launch.py``: a virtual clock the
test moves) rotates its credential ROUNDS times under a ``RotationPolicy``, while
``tests/support/token_client.py``, a separate process that knows only the delivery folder, asks
the provider for tokens (or pushes authorization requests) continuously, over the wall clock.

Each round moves the daemon's clock past ``every`` (the rotation starts, registers, activates,
tests and delivers the new credential), then past ``overlap`` (the old one is disabled at the
provider and the rotation completes). Before any clock move the test waits until the client has
made a request with every credential delivered so far: the overlap (virtual minutes here, an
hour in production) stands for "longer than the app takes to read its folder again", which is
what an overlap is for. The verdicts:

* the client's requests all succeeded (``failures == 0``, ``requests > 0``);
* after each completed rotation, the previous credential (the version the client kept) is
  refused by the provider (401 ``invalid_client`` / ``invalid_request_object``), and the current
  one is accepted (the same replay, so a broken replay cannot pass as a refusal);
* the delivered private key belongs to the delivered certificate or public key, and to the
  credential the log registered;
* no rotation parked.

A CA-issued certificate is matched by subject DN and chain (RFC 8705 ``tls_client_auth``): every
certificate the daemon issues for the app has the same DN from the same CA, so the provider
cannot tell the previous one from the new one, and accepts it until it expires. That is asserted
as what it is (accepted, with its expiry in the log), never counted as a refusal.

The daemon's clock starts two days behind the wall clock and stays behind it: a CA-issued
certificate (valid from the daemon's "now" minus 5 minutes) must already be valid on the
provider's clock, which is the wall clock.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.helpers import assert_key_belongs, read_delivered, rsa_key
from tests.peers.oidc import OidcPeer
from tests.support.ca import write_ca
from tests.support.live import Rotations, Site, TokenClient, replay, rounds, settle
from tests.support.token_client import Options

ROUNDS = 20
EVERY, OVERLAP = timedelta(hours=1), timedelta(minutes=10)
RETRY_STEP = timedelta(minutes=5, seconds=1)  # the policy's maxBackoff, and a second
APP = "live-app"
PROVIDER = "peer"
REDIRECT = "https://app.example/cb"


@dataclass(frozen=True)
class Case:
    id: str
    usage: str
    credential: str  # the policy's credential, YAML flow text
    old_refused: bool = True
    client_auth: str | None = None  # how the app authenticates its PAR requests


CASES = [
    Case("private_key_jwt-RS256", "private_key_jwt",
         "{usage: private_key_jwt, algorithm: RS256, keySize: 2048}"),
    Case("private_key_jwt-PS256", "private_key_jwt",
         "{usage: private_key_jwt, algorithm: PS256, keySize: 2048}"),
    Case("jar-PAR", "jar", "{usage: jar, algorithm: RS256, keySize: 2048}",
         client_auth="private_key_jwt"),
    Case("mtls-self-signed", "mtls",
         '{usage: mtls, keySize: 2048, certificate: {subject: "CN={app},O=Acme,C=DE"}}'),
    Case("mtls-ca-subject-dn", "mtls",
         '{usage: mtls, keySize: 2048, certificate: {subject: "CN={app},O=Acme Bank,C=DE", '
         'issuer: {certificate: ca/ca.pem, key: ca/ca.key}}}', old_refused=False),
]


@pytest.fixture
def peer(oidc_provider: OidcPeer) -> OidcPeer:
    """The session's oidc-provider (tests/support/oidc_peer.py; skipped, saying why, without
    Node.js); each test's application is a client of its own there."""
    return oidc_provider


def identity_provider(peer: OidcPeer, token_file: Path) -> str:
    return f"""apiVersion: orchestrator/v1
kind: IdentityProvider
metadata: {{name: {PROVIDER}}}
spec:
  oidc:
    issuer: {peer.issuer}
    caFile: {peer.ca_file}
    initialAccessToken: {{file: {token_file}}}
"""


def rotation_policy(case: Case) -> str:
    return f"""apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {{name: live}}
spec:
  selector: {{apps: ["live-*"]}}
  credential: {case.credential}
  rotation:
    every: 1h
    beforeExpiry: 1d
    overlap: 10m
    retry: {{attempts: 6, backoff: 1m, maxBackoff: 5m}}
  lifetime: 30d
  retention: 30m
"""


def register_jar_client(peer: OidcPeer) -> tuple[str, str]:
    """A client that can make authorization requests (redirect URI, code), registered with the
    provider by RFC 7591 as its owner would; (client id, registration access token)."""
    context = ssl.create_default_context(cafile=str(peer.ca_file))
    with httpx.Client(verify=context, timeout=30) as http:
        discovery = http.get(f"{peer.issuer}/.well-known/openid-configuration").json()
        answer = http.post(discovery["registration_endpoint"],
                           headers={"Authorization": f"Bearer {peer.initial_access_token}"},
                           json={"client_name": APP, "redirect_uris": [REDIRECT],
                                 "response_types": ["code"], "grant_types": ["authorization_code"],
                                 "token_endpoint_auth_method": "private_key_jwt",
                                 "jwks": {"keys": []}})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["client_id"], body["registration_access_token"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_live_token_traffic_while_the_daemon_rotates(case: Case, peer: OidcPeer,
                                                    tmp_path: Path) -> None:
    site = Site(tmp_path)
    cli, policies, delivery = site.cli, site.policies, site.delivery
    token_file = tmp_path / "initial-access-token"
    token_file.write_text(peer.initial_access_token)
    (policies / "peer.yaml").write_text(identity_provider(peer, token_file))
    (policies / "live.yaml").write_text(rotation_policy(case))
    if "issuer:" in case.credential:
        ca_pem = write_ca(policies, rsa_key(), site.wall - timedelta(days=30),
                          site.wall + timedelta(days=3650))
        peer.add_client_ca(ca_pem)
    cli("policy", "validate")
    if case.usage == "jar":
        client_id, registration_token = register_jar_client(peer)
        (tmp_path / "rat").write_text(registration_token)
        cli("app", "register", APP, "--provider", PROVIDER, "--client-id", client_id,
            "--registration-token-file", tmp_path / "rat")
    else:
        cli("app", "register", APP, "--provider", PROVIDER, "--create")

    daemon = site.daemon()
    client: TokenClient | None = None
    rotations = Rotations(site.db)
    options = Options(ca_file=str(peer.ca_file), client_auth=case.client_auth)
    refused: list[str] = []
    accepted_until: list[datetime] = []  # CA-issued: the previous certificate's expiry
    try:
        settle(daemon, rotations, [APP], lambda r, app: len(r.completed(app)) == 1, RETRY_STEP)
        client = TokenClient(delivery / APP / case.usage, tmp_path / "client", options)
        daemon.before_step = lambda: client.wait_using(rotations.refresh().delivered(APP)[-1])

        for round_, phase in rounds(daemon, rotations, [APP], ROUNDS, every=EVERY,
                                    overlap=OVERLAP, retry=RETRY_STEP):
            if phase != "completed":
                continue
            done = rotations.completed(APP)[-1]
            assert done.old_credential_id is not None, done
            client.wait_using(done.new_credential_id)

            # the previous credential, replayed from what the client kept: refused by the
            # provider now that its rotation completed; the current one, the same way: accepted
            old_ok, status, error = replay(client.kept(done.old_credential_id), options)
            new_ok, new_status, new_error = replay(client.kept(done.new_credential_id), options)
            assert new_ok, f"round {round_}: the current credential was refused: {new_status} " \
                           f"{new_error} ({peer.last_refusal()})"
            if case.old_refused:
                assert not old_ok and status in (400, 401), (status, error)
                assert error in ("invalid_client", "invalid_request_object"), (status, error)
                refused.append(done.old_credential_id)
            else:
                # same subject DN, same CA: the provider cannot tell the certificates apart
                assert old_ok, f"round {round_}: {status} {error} ({peer.last_refusal()})"
                # until its expiry, which the log states and the certificate carries
                old = rotations.credential(APP, done.old_credential_id)
                cert = x509.load_pem_x509_certificate(old["certificate_pem"].encode())
                assert cert.not_valid_after_utc == datetime.fromisoformat(old["expires_at"])
                accepted_until.append(cert.not_valid_after_utc)

            files = read_delivered(delivery / APP / case.usage)
            meta = json.loads(files["metadata.json"])
            assert meta["orchestrator_credential_id"] == done.new_credential_id
            added = rotations.credential(APP, done.new_credential_id)
            assert_key_belongs(files, added.get("certificate_pem") or added["public_pem"])
        stats = client.stop()
        client = None
    finally:
        if client is not None:
            client.stop()
        daemon.stop()
    held = daemon.lines("app_drifted")  # the daemon's own drift check, every tick it ran
    drift = cli.run("drift", "--provider", PROVIDER)

    rotations.refresh()
    rotated = [r for r in rotations.completed(APP) if r.old_credential_id is not None]
    failures = rotations.failures()
    print(f"\nlive oidc {case.id}: {len(rotated)} rotations, {stats['requests']} token "
          f"requests, {stats['failures']} failures, {len(refused)} old credentials refused, "
          f"{len(stats['credentials'])} versions used, {len(failures)} failed rotation "
          f"attempts retried; statuses {stats['statuses']}")
    assert held == [], held
    assert drift.returncode == 0, str(drift)
    assert len(rotated) >= ROUNDS
    assert stats["requests"] > 0
    assert stats["failures"] == 0, stats["failure_samples"]
    assert len(stats["credentials"]) == ROUNDS + 1
    if case.old_refused:
        assert len(refused) == ROUNDS
    else:
        print(f"  previous certificates (same subject DN, same CA) accepted until they expire: "
              f"{len(accepted_until)}, the last until {max(accepted_until).isoformat()}")
        assert len(accepted_until) == ROUNDS
