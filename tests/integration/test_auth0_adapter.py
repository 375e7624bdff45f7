"""The Auth0 adapter against the Auth0 emulator (tests/peers/auth0), in process: every
Provider and Inventory method, checked at the emulator (its snapshot and request counters).

The token endpoint test must accept an attached key and refuse a detached or deleted one; a
register repeated after a lost answer finds the first upload; a slot never gets a third key.
One virtual clock serves the orchestrator, the adapter and the emulator: nothing sleeps.
Faults and the pacer: test_auth0_adapter_faults.py; whole rotations: test_auth0_rotations.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from events.kinds import CredentialKind
from orchestrator.adapters.crypto import PrimePairKeys
from orchestrator.adapters.providers.auth0 import Auth0Provider, RateLimit
from orchestrator.adapters.providers.auth0.token_endpoint import MTLS_UNTESTABLE
from orchestrator.app.service import CredentialSource, secret_item_id
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import Proof, TestSkipped
from orchestrator.policies.identity_providers import IdentityProvider
from tests.conftest import NOW
from tests.helpers import rsa_key, spki_pem
from tests.peers.auth0 import Auth0Emulator, Clock
from tests.support.auth0_site import Site, accepted, key, pkjwt_app, proof, registered

PKJWT, JAR, MTLS, SECRET = "private_key_jwt", "jar", "mtls", "client_secret"
CREDENTIALS = "POST /api/v2/clients/{id}/credentials"
POOL = "GET /api/v2/clients/{id}/credentials"
PATCH_CLIENT = "PATCH /api/v2/clients/{id}"
TOKEN = "POST /oauth/token"
HOUR, DAY = timedelta(hours=1), timedelta(days=1)



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
    """A key is uploaded without a look at the pool first (one request); the repeat is refused
    by Auth0 as a key the client holds, and finds that copy: one copy, the same id."""
    app, client_id = pkjwt_app(site)
    cred = key(site, app)
    first = site.provider.register(app, cred)
    assert (site.count(CREDENTIALS, 201), site.count(POOL)) == (1, 0)
    assert site.provider.register(app, cred) == first
    assert (site.count(CREDENTIALS, 201), site.count(CREDENTIALS, 400)) == (1, 1)
    assert site.count(POOL) == 1 and len(site.pool(client_id)) == 1


def test_register_after_a_lost_answer_finds_the_upload_instead_of_a_duplicate(
        site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = key(site, app)
    site.emu.faults.script("lost", method="POST", route="/api/v2/clients/{id}/credentials")
    provider_id = site.provider.register(app, cred)
    assert [c["id"] for c in site.pool(client_id)] == [provider_id]
    # the repeat's upload is refused as a duplicate, and the pool read finds the first one
    assert site.count(CREDENTIALS, "lost") == 1 and site.count(CREDENTIALS, 400) == 1


def test_a_subject_dn_after_a_lost_answer_is_found_not_made_twice(
        site: Site, ca: tuple[bytes, bytes]) -> None:
    """Auth0 has no key to refuse a second copy of a subject DN for: the repeat finds the first
    upload in the pool before it uploads."""
    app, client_id = pkjwt_app(site)
    issued = site.crypto.issue_certificate(ca[0], ca[1], "CN=payments,O=Acme,C=DE", 2048,
                                           NOW - HOUR, NOW + 30 * DAY)
    by_dn = site.service.add_credential(app, MTLS, CredentialSource(
        pem=issued.material.certificate_pem.encode()), kind=CredentialKind.CERT_SUBJECT_DN)
    site.emu.faults.script("lost", method="POST", route="/api/v2/clients/{id}/credentials")
    provider_id = site.provider.register(app, by_dn)
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
    assert site.provider.register(app, cert) == cert_id  # refused as a duplicate, found
    assert site.provider.register(app, by_dn) == dn_id  # found before any upload
    assert (site.count(CREDENTIALS, 201), site.count(CREDENTIALS, 400)) == (2, 1)


def test_a_full_pool_is_refused_naming_the_cap(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    for _ in range(2):
        registered(site, app, PKJWT)
        registered(site, app, JAR)
    fifth = key(site, app, MTLS)  # a usage with room left in the log, none at the client
    with pytest.raises(ProviderError, match="maximum of 4 credentials; a slot must be freed"):
        site.provider.register(app, fifth)
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
    site.provider.activate(app, first.id)
    outside = site.emu.tenant.create_credential(client_id, {  # attached behind the log's back
        "credential_type": "public_key", "pem": spki_pem(rsa_key()).decode()}).id
    site.emu.tenant.update_client(client_id, {"client_authentication_methods": {
        "private_key_jwt": {"credentials": [{"id": first.provider_id}, {"id": outside}]}}})
    patches = site.count(PATCH_CLIENT)
    with pytest.raises(ProviderError, match=re.escape("client_authentication_methods.private_key_jwt")):
        site.provider.activate(app, second.id)
    assert site.count(PATCH_CLIENT) == patches
    assert site.attached(client_id, "private_key_jwt") == [first.provider_id, outside]


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


def test_a_second_authentication_method_is_refused_naming_the_one_in_use(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    signing, cert = registered(site, app, PKJWT), registered(site, app, MTLS)
    site.provider.activate(app, signing.id)
    with pytest.raises(ProviderError, match="authenticates with private_key_jwt"):
        site.provider.activate(app, cert.id)
    assert site.attached(client_id, "private_key_jwt") == [signing.provider_id]
    site.provider.deactivate(app, signing.id)  # an empty method gives way
    site.provider.activate(app, cert.id)
    assert site.remote(client_id)["client_authentication_methods"] == {
        "self_signed_tls_client_auth": [cert.provider_id]}


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
    assert len(everything) == 231  # the management application the adapter uses is left out
    assert site.emu.config.management.client_id not in {c.client_id for c in everything}
    assert site.count("GET /api/v2/clients") == 3
    fleet = list(site.provider.clients("fleet-*"))
    assert len(fleet) == 231
    pools = site.count("GET /api/v2/clients/{id}/credentials")
    known = list(site.provider.clients("fleet-special", known={client_id}))
    assert [(c.client_id, c.credentials) for c in known] == [(client_id, ())]
    assert site.count("GET /api/v2/clients/{id}/credentials") == pools  # not read
    special = site.provider.client(client_id)
    assert special.name == "fleet-special" and special.auth_method == "private_key_jwt"
    by_id = {c.provider_id: c for c in special.credentials}
    assert by_id[signing.provider_id].attached == (PKJWT,)
    assert by_id[signing.provider_id].kid == signing.kid
    assert by_id[jar.provider_id].attached == () and by_id[loose.provider_id].attached == ()
    assert next(c for c in fleet if c.name == "fleet-00001").auth_method == "client_secret_post"
    with pytest.raises(ProviderError, match="The client does not exist"):
        site.provider.client("no-such-client")


def test_bootstrap_builds_the_provider_an_identity_provider_resource_describes(
        site: Site, tmp_path: Path) -> None:
    from orchestrator.bootstrap import build_identity_provider

    management = site.emu.config.management
    (tmp_path / "auth0-secret").write_text(management.client_secret + "\n")
    resource = IdentityProvider.model_validate({
        "apiVersion": "orchestrator/v1", "kind": "IdentityProvider",
        "metadata": {"name": "auth0-prod"},
        "spec": {"auth0": {"domain": site.emu.domain, "baseUrl": site.emu.base_url,
                           "clientId": management.client_id,
                           "clientSecret": {"file": "auth0-secret"},
                           "rateLimit": {"perSecond": 16, "burst": 50},
                           "maxCredentials": 3}}}, context={"base": tmp_path})
    provider = build_identity_provider("auth0-prod", resource, state_of=site.service.load,
                                       keystore=site.keystore, wall_clock=site.emu.clock.now)
    assert isinstance(provider, Auth0Provider)
    assert provider.pacer.limit == RateLimit(16.0, 50)
    app, client_id = pkjwt_app(site)
    assert provider.client(client_id).client_id == client_id
    assert provider.capabilities(app).per_client == 3
