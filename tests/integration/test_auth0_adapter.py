"""The Auth0 adapter against the Auth0 emulator (tests/peers/auth0), in process.

Every Provider and Inventory method is driven against the emulator's HTTP server and checked
at the emulator (its snapshot and its request counters); the token endpoint test must accept an
attached key and refuse a detached or deleted one; faults (a lost answer, 5xx, 429) are
injected by the emulator; whole rotations run through the real rotator. One virtual clock
serves the orchestrator, the adapter and the emulator: nothing sleeps.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from events.kinds import CredentialKind
from orchestrator.adapters.crypto import PrimePairKeys
from orchestrator.adapters.providers.auth0 import Auth0Provider, Pacer, RateLimit
from orchestrator.adapters.providers.auth0.token_endpoint import MTLS_UNTESTABLE
from orchestrator.app.service import CredentialSource, secret_item_id
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import Proof, ProviderUnavailable, TestSkipped
from orchestrator.domain.rotation import Params
from tests.conftest import NOW
from tests.helpers import certificate, rsa_key
from tests.peers.auth0 import Auth0Emulator, Clock
from tests.support.auth0_site import Site

PKJWT, JAR, MTLS, SECRET = "private_key_jwt", "jar", "mtls", "client_secret"
CREDENTIALS = "POST /api/v2/clients/{id}/credentials"
PATCH_CLIENT = "PATCH /api/v2/clients/{id}"
TOKEN = "POST /oauth/token"
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
CA_DN = "CN=Test Issuing CA,O=Acme,C=DE"


@pytest.fixture(scope="module")
def key_source() -> PrimePairKeys:
    return PrimePairKeys()


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization

    key = rsa_key()
    pem = certificate(key, CA_DN, not_before=NOW - 10 * DAY, not_after=NOW + 3650 * DAY,
                      ca=True)
    return pem, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())


def emulator(**config: Any) -> Auth0Emulator:
    config.setdefault("management_rate", None)
    return Auth0Emulator(config, clock=Clock(NOW))


@pytest.fixture
def emu() -> Any:
    with emulator() as running:
        yield running


@pytest.fixture
def site(emu: Auth0Emulator, key_source: PrimePairKeys) -> Site:
    return Site(emu, key_source)


def pkjwt_app(site: Site, name: str = "payments") -> tuple[str, str]:
    """A client-secret client at the tenant with no grant, and the app bound to it."""
    client_id = site.client(name)
    return site.app(name, client_id), client_id


def key(site: Site, app: str, usage: str = PKJWT, alg: str | None = None, **options: Any) -> Any:
    """A new key (or self-signed certificate, for mtls) of the app, in the log and keystore."""
    return site.service.add_credential(app, usage, CredentialSource(generate=True), alg=alg,
                                       **options)


def registered(site: Site, app: str, usage: str = PKJWT, **options: Any) -> Any:
    """A new key of the app, uploaded and its provider id recorded as the rotator does."""
    from events import catalog as ev

    cred = key(site, app, usage, **options)
    provider_id = site.provider.register(app, cred)
    assert provider_id is not None
    site.service.append_decided(app, lambda s: ([ev.CredentialRegistered(
        credential_id=cred.id, provider="auth0-test", provider_credential_id=provider_id)],
        site.now()))
    return site.credential(app, cred.id)


def proof(site: Site, app: str, cred: Any) -> Proof:
    return Proof(client_id=site.state(app).provider_client_id, usage=cred.usage,
                 credential=cred, private_key_der=site.keystore.get(cred.id))


def accepted(site: Site, app: str, cred: Any) -> bool:
    try:
        site.provider.authenticate(app, proof(site, app, cred), site.now())
        return True
    except ProviderError as refused:
        assert not isinstance(refused, ProviderUnavailable), refused
        return False


# --- the Management API token ---------------------------------------------------------------


def test_the_management_token_is_fetched_once_and_cached(site: Site) -> None:
    _, client_id = pkjwt_app(site)
    for _ in range(3):
        site.provider.client(client_id)
    assert site.count(TOKEN) == 1
    rebuilt = site.build()  # resources reloaded: the process's token is reused
    rebuilt.client(client_id)
    assert site.count(TOKEN) == 1


def test_the_token_is_fetched_again_shortly_before_it_expires(site: Site) -> None:
    _, client_id = pkjwt_app(site)
    site.provider.client(client_id)
    site.advance(timedelta(seconds=86400 - 61))
    site.provider.client(client_id)
    assert site.count(TOKEN) == 1
    site.advance(timedelta(seconds=2))  # within the last minute: replaced before Auth0 refuses
    site.provider.client(client_id)
    assert site.count(TOKEN) == 2
    assert site.count(status=401) == 0


def test_a_401_from_the_api_fetches_a_new_token_once(emu: Auth0Emulator,
                                                     key_source: PrimePairKeys) -> None:
    site = Site(emu, key_source)
    _, client_id = pkjwt_app(site)
    frozen = Clock(NOW)  # the adapter's clock stands still: its cached token looks fresh
    provider = Auth0Provider("auth0-test", domain=emu.domain,
                             client_id=emu.config.management.client_id,
                             client_secret=emu.config.management.client_secret,
                             base_url=emu.base_url, state_of=site.service.load,
                             keystore=site.keystore, wall_clock=frozen.now, sleep=frozen.advance)
    provider.client(client_id)
    emu.clock.advance(86400 + 1)  # the tenant says it has expired
    assert provider.client(client_id).client_id == client_id
    assert emu.counters.count("GET /api/v2/clients/{id}", 401) == 1
    assert emu.counters.count(TOKEN, 200) == 2


def test_a_refused_management_secret_is_one_line_without_the_secret(emu: Auth0Emulator,
                                                                    key_source: PrimePairKeys
                                                                    ) -> None:
    site = Site(emu, key_source, secret="not-the-secret-4711")
    _, client_id = pkjwt_app(site)
    with pytest.raises(ProviderError) as refused:
        site.provider.client(client_id)
    assert "check clientSecret" in str(refused.value)
    assert "not-the-secret-4711" not in str(refused.value)
    assert emu.config.management.client_secret not in str(refused.value)


# --- register ----------------------------------------------------------------------------------


def test_register_uploads_the_public_key_with_our_kid_and_expiry(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = key(site, app, alg="PS256", expires_at=NOW + 90 * DAY)
    provider_id = site.provider.register(app, cred)
    [held] = site.pool(client_id)
    assert provider_id == held["id"] and provider_id.startswith("cred_")
    assert (held["credential_type"], held["kid"], held["alg"]) == ("public_key", cred.kid, "PS256")
    assert held["expires_at"].startswith((NOW + 90 * DAY).strftime("%Y-%m-%dT%H:%M:%S"))
    assert held["pem"] == cred.public_pem and len(held["name"]) <= 128
    assert site.attached(client_id, "private_key_jwt") == []  # created, not enabled


def test_register_again_finds_the_first_upload(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = key(site, app)
    first = site.provider.register(app, cred)
    assert site.provider.register(app, cred) == first
    assert site.count(CREDENTIALS) == 1 and len(site.pool(client_id)) == 1


def test_register_after_a_lost_answer_finds_the_upload_instead_of_a_duplicate(
        site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = key(site, app)
    site.emu.faults.script("lost", method="POST", route="/api/v2/clients/{id}/credentials")
    provider_id = site.provider.register(app, cred)
    assert [c["id"] for c in site.pool(client_id)] == [provider_id]
    assert site.count(CREDENTIALS, "lost") == 1 and site.count(CREDENTIALS) == 1


def test_register_of_a_certificate_and_of_a_subject_dn(site: Site, ca: tuple[bytes, bytes]
                                                       ) -> None:
    app, client_id = pkjwt_app(site)
    cert = key(site, app, MTLS)
    cert_id = site.provider.register(app, cert)
    issued = site.crypto.issue_certificate(ca[0], ca[1], "CN=payments,O=Acme,C=DE", 2048,
                                           NOW - HOUR, NOW + 30 * DAY)
    by_dn = site.service.add_credential(app, MTLS, CredentialSource(
        pem=issued.material.certificate_pem.encode()), kind=CredentialKind.CERT_SUBJECT_DN)
    dn_id = site.provider.register(app, by_dn)
    pool = {c["id"]: c for c in site.pool(client_id)}
    assert pool[cert_id]["credential_type"] == "x509_cert"
    assert pool[cert_id]["pem"] == cert.certificate_pem
    assert pool[dn_id]["credential_type"] == "cert_subject_dn"
    assert pool[dn_id]["subject_dn"] == "C=DE\nO=Acme\nCN=payments"
    assert site.provider.register(app, cert) == cert_id
    assert site.provider.register(app, by_dn) == dn_id
    assert site.count(CREDENTIALS) == 2


def test_a_full_pool_is_refused_naming_the_cap(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    for _ in range(2):
        registered(site, app, PKJWT)
        registered(site, app, JAR)
    other = site.app("payments-twin", client_id)  # a second app on the same client
    with pytest.raises(ProviderError, match="maximum of 4 credentials; a slot must be freed"):
        site.provider.register(other, key(site, other))
    assert len(site.pool(client_id)) == 4


def test_the_same_key_under_another_kid_is_reported(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = key(site, app)
    site.emu.tenant.create_credential(client_id, {"credential_type": "public_key",
                                                  "pem": cred.public_pem,
                                                  "kid": "uploaded-by-hand"})
    with pytest.raises(ProviderError, match=r"already holds the key .* under another key id"):
        site.provider.register(app, cred)


# --- activate, deactivate, remove --------------------------------------------------------------


def test_the_first_key_switches_a_secret_client_in_the_same_patch(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    assert site.remote(client_id)["token_endpoint_auth_method"] == "client_secret_post"
    cred = registered(site, app)
    site.provider.activate(app, cred.id)
    remote = site.remote(client_id)
    assert remote["client_authentication_methods"] == {"private_key_jwt": [cred.provider_id]}
    assert "token_endpoint_auth_method" not in remote  # null: the secret no longer authenticates
    assert site.count(PATCH_CLIENT) == 1


def test_activate_and_deactivate_change_only_their_slot_and_only_when_needed(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    signing, jar = registered(site, app, PKJWT), registered(site, app, JAR)
    site.provider.activate(app, signing.id)
    site.provider.activate(app, jar.id)
    site.provider.activate(app, jar.id)  # attached already: no call
    assert site.count(PATCH_CLIENT) == 2
    assert site.attached(client_id, "private_key_jwt") == [signing.provider_id]
    assert site.attached(client_id, "signed_request_object") == [jar.provider_id]
    site.provider.deactivate(app, signing.id)
    site.provider.deactivate(app, signing.id)  # detached already: no call
    assert site.count(PATCH_CLIENT) == 3
    assert site.attached(client_id, "private_key_jwt") == []
    assert site.attached(client_id, "signed_request_object") == [jar.provider_id]


def test_a_third_key_for_a_slot_is_refused_before_anything_is_sent(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    first, second = registered(site, app), registered(site, app)
    for cred in (first, second):
        site.provider.activate(app, cred.id)
    other = site.app("payments-twin", client_id)
    third = registered(site, other)
    patches = site.count(PATCH_CLIENT)
    with pytest.raises(ProviderError, match=re.escape("client_authentication_methods.private_key_jwt")):
        site.provider.activate(other, third.id)
    assert site.count(PATCH_CLIENT) == patches
    assert site.attached(client_id, "private_key_jwt") == [first.provider_id, second.provider_id]


def test_activate_without_a_recorded_provider_id_finds_the_upload(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = key(site, app)
    site.provider.register(app, cred)  # its id not recorded (a crash before the record)
    site.provider.activate(app, cred.id)
    assert site.attached(client_id, "private_key_jwt") == [site.pool(client_id)[0]["id"]]


def test_remove_detaches_then_deletes_and_absent_is_done(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = registered(site, app)
    site.provider.activate(app, cred.id)
    site.provider.remove(app, cred.id)
    assert site.pool(client_id) == [] and site.attached(client_id, "private_key_jwt") == []
    site.provider.remove(app, cred.id)  # gone: 404 is done
    assert site.count("DELETE /api/v2/clients/{id}/credentials/{credential_id}", 404) == 1


def test_a_lost_patch_is_read_again_not_blindly_repeated(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = registered(site, app)
    site.emu.faults.script("lost", method="PATCH", route="/api/v2/clients/{id}")
    site.provider.activate(app, cred.id)
    assert site.attached(client_id, "private_key_jwt") == [cred.provider_id]
    assert site.count(PATCH_CLIENT, "lost") == 1 and site.count(PATCH_CLIENT) == 1


# --- the test at the token endpoint -------------------------------------------------------------


def test_an_attached_key_authenticates_and_a_detached_or_deleted_one_is_refused(
        site: Site) -> None:
    app, _ = pkjwt_app(site)
    cred = registered(site, app, alg="PS256")
    assert not accepted(site, app, cred)  # uploaded, not attached
    site.provider.activate(app, cred.id)
    assert accepted(site, app, cred)  # 403 access_denied: no grant, yet authenticated
    site.provider.deactivate(app, cred.id)
    assert not accepted(site, app, cred)
    site.provider.activate(app, cred.id)
    site.provider.remove(app, cred.id)
    with pytest.raises(ProviderError, match="Auth0 refused private_key_jwt credential"):
        site.provider.authenticate(app, proof(site, app, cred), site.now())


def test_an_app_with_a_grant_gets_a_token(site: Site) -> None:
    api = "https://api.example.com/"
    client_id = site.client("granted", grants=[{"audience": api, "scope": ["read:things"]}])
    app = site.app("granted", client_id)
    provider = site.build(audience=api)
    cred = registered(site, app)
    provider.activate(app, cred.id)
    provider.authenticate(app, proof(site, app, cred), site.now())
    assert site.count(TOKEN, 200) >= 1 and site.count(TOKEN, 403) == 0


def test_the_client_secret_is_set_and_the_previous_one_stops_at_once(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    before = site.remote(client_id)["client_secret"]
    site.provider.set_secret(app, 1, "a-new-secret-of-our-own-" + "x" * 20, None)
    assert site.remote(client_id)["client_secret"] == "a-new-secret-of-our-own-" + "x" * 20

    def test(secret: str) -> bool:
        try:
            site.provider.authenticate(app, Proof(client_id=client_id, usage=SECRET,
                                                  secret=secret, secret_version=1), site.now())
            return True
        except ProviderError:
            return False

    assert test("a-new-secret-of-our-own-" + "x" * 20)
    assert not test(before)
    assert site.provider.capabilities(app).secret_overlap is False


def test_a_wrong_secret_answered_access_denied_401_is_still_refused(emu: Auth0Emulator,
                                                                    key_source: PrimePairKeys
                                                                    ) -> None:
    emu.configure(wrong_secret_error="access_denied")
    site = Site(emu, key_source)
    app, client_id = pkjwt_app(site)
    with pytest.raises(ProviderError, match="access_denied"):
        site.provider.authenticate(app, Proof(client_id=client_id, usage=SECRET,
                                              secret="wrong", secret_version=1), site.now())


def test_a_jar_key_is_tested_by_a_pushed_authorization_request(site: Site) -> None:
    app, _ = pkjwt_app(site)
    jar = registered(site, app, JAR)
    with pytest.raises(TestSkipped, match="holds no private_key_jwt key or client secret"):
        site.provider.authenticate(app, proof(site, app, jar), site.now())
    # the client authenticates with a private_key_jwt key the orchestrator holds
    signing = registered(site, app, PKJWT)
    site.provider.activate(app, signing.id)
    site.service.activate(app, signing.id)
    with pytest.raises(ProviderError, match=r"Auth0 refused jar credential .*invalid_request_object"):
        site.provider.authenticate(app, proof(site, app, jar), site.now())  # not attached
    site.provider.activate(app, jar.id)
    site.provider.authenticate(app, proof(site, app, jar), site.now())
    assert site.count("POST /oauth/par", 201) == 1


def test_a_jar_key_of_a_secret_client_is_tested_with_the_client_secret(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    secret = site.remote(client_id)["client_secret"]
    from events import catalog as ev

    site.keystore.put(secret_item_id(app, 1), secret.encode())
    site.service.append_decided(app, lambda s: ([ev.SecretRotated(
        version=1, fingerprint=site.crypto.secret_fingerprint(secret))], site.now()))
    jar = registered(site, app, JAR)
    site.provider.activate(app, jar.id)
    site.provider.authenticate(app, proof(site, app, jar), site.now())
    assert site.count("POST /oauth/par", 201) == 1


def test_mtls_is_untestable_without_the_customer_edge(emu: Auth0Emulator,
                                                      key_source: PrimePairKeys) -> None:
    site = Site(emu, key_source, mtls_edge=False)
    app, _ = pkjwt_app(site)
    cert = registered(site, app, MTLS)
    site.provider.activate(app, cert.id)
    with pytest.raises(TestSkipped, match="set mtlsEdge"):
        site.provider.authenticate(app, proof(site, app, cert), site.now())
    assert site.provider.capabilities(app).why_untestable(MTLS) == MTLS_UNTESTABLE


def test_mtls_through_the_edge_headers_self_signed_and_ca_issued(site: Site,
                                                                 ca: tuple[bytes, bytes]) -> None:
    app, _ = pkjwt_app(site)
    cert = registered(site, app, MTLS)
    assert site.provider.capabilities(app).why_untestable(MTLS) is None
    site.provider.activate(app, cert.id)
    assert accepted(site, app, cert)
    site.provider.deactivate(app, cert.id)
    assert not accepted(site, app, cert)
    bank, bank_client = pkjwt_app(site, "bank")
    issued = site.crypto.issue_certificate(ca[0], ca[1], "CN=bank,O=Acme,C=DE", 2048,
                                           NOW - HOUR, NOW + 30 * DAY)
    by_dn = site.service.add_credential(bank, MTLS, CredentialSource(
        pem=issued.material.certificate_pem.encode()), kind=CredentialKind.CERT_SUBJECT_DN)
    site.keystore.put(by_dn.id, issued.private_key_der)
    site.provider.register(bank, by_dn)
    site.provider.activate(bank, by_dn.id)
    assert site.attached(bank_client, "tls_client_auth") == [site.pool(bank_client)[0]["id"]]
    assert accepted(site, bank, by_dn)


# --- what it is, and the inventory ---------------------------------------------------------------


def test_capabilities_and_metadata(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    caps = site.provider.capabilities(app)
    assert (caps.per_slot, caps.per_client, caps.secret_overlap) == (2, 4, False)
    assert site.provider.metadata(app) == {
        "issuer": f"https://{site.emu.domain}/",
        "token_endpoint": f"{site.emu.base_url}/oauth/token",
        "audience": f"https://{site.emu.domain}/", "client_id": client_id}


def test_inventory_pages_through_every_client_with_its_credentials(site: Site) -> None:
    from tests.peers.auth0.control import generate_clients

    generate_clients(site.emu, 230, "fleet-")
    app, client_id = pkjwt_app(site, "fleet-special")
    signing, jar = registered(site, app, PKJWT), registered(site, app, JAR)
    site.provider.activate(app, signing.id)
    loose = registered(site, app, PKJWT)  # in the pool, in no slot
    everything = list(site.provider.clients())
    assert len(everything) == 232  # with the management application
    assert site.count("GET /api/v2/clients") == 3
    fleet = list(site.provider.clients("fleet-*"))
    assert len(fleet) == 231
    special = site.provider.client(client_id)
    assert special.name == "fleet-special" and special.auth_method == "private_key_jwt"
    by_id = {c.provider_id: c for c in special.credentials}
    assert by_id[signing.provider_id].attached == (PKJWT,)
    assert by_id[signing.provider_id].kid == signing.kid
    assert by_id[jar.provider_id].attached == () and by_id[loose.provider_id].attached == ()
    assert next(c for c in fleet if c.name == "fleet-00001").auth_method == "client_secret_post"
    with pytest.raises(ProviderError, match="The client does not exist"):
        site.provider.client("no-such-client")


# --- transport failures, 5xx, 429 and the pacer ----------------------------------------------------


def test_5xx_and_409_are_retried_within_the_call(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = registered(site, app)
    site.emu.faults.script("503", method="GET", route="/api/v2/clients/{id}")
    site.emu.faults.script("409", method="PATCH", route="/api/v2/clients/{id}")
    site.provider.activate(app, cred.id)
    assert site.attached(client_id, "private_key_jwt") == [cred.provider_id]
    assert site.count("GET /api/v2/clients/{id}", 503) == 1
    assert site.count(PATCH_CLIENT, 409) == 1 and site.count(PATCH_CLIENT, 200) == 1
    assert len(site.slept) == 2 and all(0 < s <= 1.0 for s in site.slept)  # backoff, jittered


def test_a_failure_that_outlasts_the_attempts_is_provider_unavailable(site: Site) -> None:
    app, _ = pkjwt_app(site)
    cred = key(site, app)
    site.emu.faults.script("500", method="GET", count=10)
    with pytest.raises(ProviderUnavailable, match=r"500 .*gave up after 4 attempts"):
        site.provider.register(app, cred)
    assert site.count(CREDENTIALS) == 0  # never uploaded blind
    assert site.count("GET /api/v2/clients/{id}/credentials", 500) == 4


def test_nothing_from_httpx_escapes(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = key(site, app)

    def malformed(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 86400})
        return httpx.Response(200, content=b"<html>proxy error</html>")

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for transport, reason in ((httpx.MockTransport(malformed), "malformed JSON"),
                              (httpx.MockTransport(broken), "timed out")):
        provider = site.build(transport=transport)
        with pytest.raises(ProviderUnavailable, match=reason):
            provider.register(app, cred)
    refused = site.build()
    site.emu.stop()
    with pytest.raises(ProviderUnavailable, match="cannot connect"):
        refused.client(client_id)


def test_a_tls_failure_is_provider_unavailable(site: Site) -> None:
    _, client_id = pkjwt_app(site)
    provider = Auth0Provider("tls", domain=site.emu.domain, client_id="x", client_secret="y",
                             base_url=site.emu.base_url.replace("http://", "https://"),
                             state_of=site.service.load, keystore=site.keystore,
                             wall_clock=site.emu.clock.now, sleep=site.sleep)
    with pytest.raises(ProviderUnavailable, match="TLS failure"):
        provider.client(client_id)


def test_a_429_waits_for_the_time_the_tenant_names(emu: Auth0Emulator,
                                                   key_source: PrimePairKeys) -> None:
    emu.configure(management_rate={"burst": 3, "per_second": 0.5}, retry_after=True)
    site = Site(emu, key_source, rate_limit=(0.5, 3))
    _, client_id = pkjwt_app(site)
    site.provider.client(client_id)  # two reads: one token left, as far as the pacer knows
    with httpx.Client(base_url=emu.api_url) as elsewhere:  # another process takes it
        token = emu.management_token()
        assert elsewhere.get("/clients", headers={"authorization": f"Bearer {token}"}
                             ).status_code == 200
    site.provider.client(client_id)  # 429, Retry-After: 2 (the next token at 0.5/s)
    assert emu.counters.snapshot()["rate_limited"] == 1
    assert sum(site.slept) >= 2.0 + 2.0  # held 2 s, then paced 2 s for the second read
    assert emu.counters.count("GET /api/v2/clients/{id}", 200) == 2


def test_the_pacer_learns_the_budget_and_avoids_a_429_storm(emu: Auth0Emulator,
                                                            key_source: PrimePairKeys) -> None:
    emu.configure(management_rate={"burst": 5, "per_second": 2})
    site = Site(emu, key_source)  # no rateLimit configured: learned from x-ratelimit-*
    _, client_id = pkjwt_app(site)
    for _ in range(30):
        site.provider.client(client_id)
    limited = emu.counters.snapshot()["rate_limited"]
    assert limited <= 1, limited
    assert emu.counters.count("GET /api/v2/clients/{id}", 200) == 30
    assert sum(site.slept) >= (60 - 5) / 2 * 0.9  # 60 reads at 2/s after a burst of 5


def test_a_configured_budget_paces_every_provider_of_the_tenant_with_no_429(
        emu: Auth0Emulator, key_source: PrimePairKeys) -> None:
    emu.configure(management_rate={"burst": 10, "per_second": 4})
    site = Site(emu, key_source, rate_limit=(4.0, 10))
    _, client_id = pkjwt_app(site)
    other = site.build()  # the resource reloaded: the same pacer
    assert other.pacer is site.provider.pacer
    for provider in [site.provider, other] * 15:
        provider.client(client_id)
    assert emu.counters.snapshot()["rate_limited"] == 0
    assert emu.counters.count(status=200) == 61  # the token, and 60 reads


def test_the_pacer_shares_one_bucket_between_threads() -> None:
    import threading

    waits: list[float] = []
    pacer = Pacer(RateLimit(per_second=10, burst=5), lambda: 1000.0, waits.append)
    threads = [threading.Thread(target=pacer.acquire) for _ in range(25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 5 at once, then one every 0.1 s: each caller reserves its own token, no race, no spin
    assert sorted(round(w, 6) for w in waits) == [round(0.1 * n, 6) for n in range(1, 21)]


def test_no_secret_or_key_reaches_a_log_line_or_an_error(emu: Auth0Emulator,
                                                         key_source: PrimePairKeys) -> None:
    emu.configure(faults={"seed": 3, "error_rate": 0.3})
    site = Site(emu, key_source, attempts=8)
    app, _ = pkjwt_app(site)
    with capture_logs() as logs:
        cred = registered(site, app)
        site.provider.activate(app, cred.id)
        site.provider.set_secret(app, 1, "sekret-" + "s" * 30, None)
    assert any(entry["event"] == "auth0_call_retried" for entry in logs)
    text = repr(logs)
    for secret in ("sekret-" + "s" * 30, emu.config.management.client_secret,
                   cred.public_pem.splitlines()[1]):
        assert secret not in text


# --- whole rotations through the real rotator ---------------------------------------------------

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
    if usage != JAR:  # a jar key is refused at PAR the same way; tested above
        assert not accepted(site, app, old)
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
