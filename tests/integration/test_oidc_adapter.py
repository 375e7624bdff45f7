"""The OIDC adapter against a real OpenID provider (node oidc-provider, tests/peers/oidc).

Each method of ``OidcProvider`` is exercised on the peer, and whole rotations run through the
production rotator (``bootstrap.in_memory`` with the adapter as the identity provider the app is
bound to) for private_key_jwt (RS256, PS256, and RS256 to PS256), JAR through pushed
authorization requests, self-signed mTLS and CA-issued mTLS. After each rotation the provider
itself is asked: the new credential authenticates and the old one is refused. After every step
the client's record is read back: never more than 2 keys of a usage, and the old key there until
its successor passed the test. The registration access token rotates on every update and the
kept one always works; a lost update answer is detected and recovered by handing a token over;
a transport failure is ``ProviderUnavailable``, never an httpx exception.

Clock: the peer checks assertions and certificates against the real clock, so the world's
clock starts at the real time and jumps only forward over the overlaps.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from events import catalog as ev
from events.state import AppState, Credential, RotationStatus, Status
from orchestrator.adapters import crypto
from orchestrator.adapters.crypto import Cryptography, PrimePairKeys
from orchestrator.adapters.keystore import MemoryKeystore
from orchestrator.adapters.providers.oidc import OidcProvider
from orchestrator.adapters.providers.oidc.record import jwk_of
from orchestrator.adapters.providers.oidc.registration import SERVER_MANAGED
from orchestrator.app.onboarding import bind_client
from orchestrator.app.ports import ClientRegistrar, Inventory, Provider
from orchestrator.app.service import CredentialSource
from orchestrator.bootstrap import Core, build_identity_provider, in_memory
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import Proof, ProviderUnavailable, TestSkipped
from orchestrator.domain.rotation import Params, Reason, Recorded, Step
from orchestrator.policies.identity_providers import IdentityProvider
from tests.helpers import certificate, private_der, rsa_key
from tests.peers.oidc import OidcPeer

IDP = "oidc-test"
APP = "payments"
PKJWT, JAR, MTLS = "private_key_jwt", "jar", "mtls"
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT = "https://payments.example.test/callback"
CA_DN = "CN=OIDC Adapter Test CA,O=Example"


def params(usage: str, **more: Any) -> Params:
    return Params(usage=usage, algorithm=None if usage == MTLS else more.pop("algorithm", "RS256"),
                  overlap=HOUR, lifetime=90 * DAY, attempts=3, **more)


@pytest.fixture(scope="module")
def key_source() -> PrimePairKeys:
    return PrimePairKeys()


@pytest.fixture(scope="module")
def http(oidc_provider: OidcPeer) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(oidc_provider.ca_file))
    with httpx.Client(verify=context, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def meta(oidc_provider: OidcPeer, http: httpx.Client) -> dict[str, Any]:
    return dict(http.get(f"{oidc_provider.issuer}/.well-known/openid-configuration").json())


# --- the world: the production rotator, the adapter as the app's identity provider ---------------


class World:
    def __init__(self, peer: OidcPeer, key_source: PrimePairKeys, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.now = datetime.now(UTC)
        self.peer = peer
        named: dict[str, Provider] = {}
        self.core: Core = in_memory(lambda: self.now, crypto=Cryptography(key_source),
                                    actor="cli:test", identity_providers=lambda: named)
        self.idp = OidcProvider(IDP, issuer=peer.issuer, state_of=self.core.service.load,
                                keystore=self.core.keystore,
                                initial_access_token=peer.initial_access_token,
                                ca_file=peer.ca_file, transport=transport)
        named[IDP] = self.idp
        self.adapters = [self.idp]
        self.keystore = self.core.keystore
        self.records: list[tuple[Step, dict[str, Any]]] = []  # the record after every step

    def state(self, app: str = APP) -> AppState:
        return self.core.service.load(app)

    def client_id(self, app: str = APP) -> str:
        return self.state(app).provider_client_id

    def record(self, app: str = APP) -> dict[str, Any]:
        return self.idp.registrations.read(self.client_id(app))

    def token(self, app: str = APP) -> str:
        raw = self.keystore.get(f"idp/{IDP}/{self.client_id(app)}/registration-token")
        assert raw is not None
        return str(json.loads(raw)["token"])

    def watch(self) -> None:
        """Read the client's record back after every step of every rotation."""
        self.core.rotator.on_step = lambda app, rid, step: self.records.append(
            (step, self.record(app)))

    def rotate(self, usage: str, p: Params, reason: Reason = Reason.MANUAL,
               app: str = APP) -> str:
        rid = self.core.rotator.start(app, usage, reason)
        assert rid is not None
        for _ in range(6):
            rotation = self.state(app).rotations[rid]
            if rotation.status is not RotationStatus.RUNNING:
                break
            out = self.core.rotator.advance(app, rid, p)
            assert not out.failed, self.state(app).rotations[rid].last_error
            if out.last.step is Step.WAIT and out.last.not_before is not None:
                self.now = max(self.now, out.last.not_before)
        assert self.state(app).rotations[rid].status is RotationStatus.COMPLETED
        return rid

    def old_and_new(self, rid: str, app: str = APP) -> tuple[Credential, Credential]:
        rotation = self.state(app).rotations[rid]
        credentials = self.state(app).credentials
        assert rotation.old_credential_id is not None
        return credentials[rotation.old_credential_id], credentials[rotation.new_credential_id]

    def private(self, cred: Credential) -> bytes:
        key = self.keystore.get(cred.id)
        assert key is not None
        return key


@pytest.fixture
def world(oidc_provider: OidcPeer, key_source: PrimePairKeys) -> Iterator[World]:
    w = World(oidc_provider, key_source)
    yield w
    for adapter in w.adapters:
        adapter.close()


def created(world: World, app: str = APP) -> str:
    """``app`` bound to a client the adapter registers for it (RFC 7591)."""
    assert bind_client(world.core.service, world.idp, app, {}, IDP, create=True)
    return world.client_id(app)


def adopted(world: World, http: httpx.Client, meta: dict[str, Any], body: dict[str, Any],
            app: str = APP) -> dict[str, Any]:
    """``app`` bound to a client registered outside the orchestrator, its token handed over."""
    answer = http.post(meta["registration_endpoint"], json=body, headers={
        "Authorization": f"Bearer {world.peer.initial_access_token}"})
    assert answer.status_code == 201, answer.text
    client = dict(answer.json())
    assert bind_client(world.core.service, world.idp, app, {}, IDP, client_id=client["client_id"],
                       registration_token=client["registration_access_token"])
    return client


# --- asking the provider directly ---------------------------------------------------------------


def token_request(http: httpx.Client, meta: dict[str, Any], client_id: str, cred: Credential,
                  key_der: bytes) -> httpx.Response:
    assertion = crypto.sign_client_assertion(
        key_der, alg=cred.alg or "RS256", kid=cred.kid, client_id=client_id,
        audience=meta["issuer"], now=datetime.now(UTC))
    return http.post(meta["token_endpoint"], data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion})


def mtls_token_request(peer: OidcPeer, meta: dict[str, Any], client_id: str, cert_pem: str,
                       key_der: bytes, folder: Path) -> httpx.Response:
    folder.mkdir(exist_ok=True)
    cert_file, key_file = folder / f"{uuid.uuid4().hex}.pem", folder / f"{uuid.uuid4().hex}.key"
    cert_file.write_text(cert_pem)
    key_file.write_bytes(crypto.private_key_pem(key_der))
    context = ssl.create_default_context(cafile=str(peer.ca_file))
    context.load_cert_chain(cert_file, key_file)
    with httpx.Client(verify=context, timeout=30) as client:
        return client.post(meta["token_endpoint"], data={"grant_type": "client_credentials",
                                                         "client_id": client_id})


def pushed(http: httpx.Client, meta: dict[str, Any], client_id: str, jar: Credential,
           jar_der: bytes, auth: Credential, auth_der: bytes) -> httpx.Response:
    now = int(datetime.now(UTC).timestamp())
    key = serialization.load_der_private_key(jar_der, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    request = jwt.encode({"iss": client_id, "aud": meta["issuer"], "client_id": client_id,
                          "response_type": "code", "redirect_uri": REDIRECT, "scope": "openid",
                          "iat": now, "nbf": now, "exp": now + 60, "jti": uuid.uuid4().hex},
                         key, algorithm=jar.alg or "RS256", headers={"kid": jar.kid})
    assertion = crypto.sign_client_assertion(
        auth_der, alg=auth.alg or "RS256", kid=auth.kid, client_id=client_id,
        audience=meta["issuer"], now=datetime.now(UTC))
    return http.post(meta["pushed_authorization_request_endpoint"], data={
        "client_id": client_id, "request": request, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion})


def accepted(answer: httpx.Response) -> bool:
    """Authenticated: a token, or an error that comes after authentication."""
    return answer.status_code == 200 or (
        answer.status_code == 400 and answer.json().get("error") == "unauthorized_client")


def refused(answer: httpx.Response) -> bool:
    return answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def kids(record: dict[str, Any]) -> list[str]:
    return [k["kid"] for k in (record.get("jwks") or {}).get("keys", [])]


# --- the ports ------------------------------------------------------------------------------------


def test_the_adapter_is_a_provider_an_inventory_and_a_client_registrar(world: World) -> None:
    assert isinstance(world.idp, Provider)
    assert isinstance(world.idp, Inventory)
    assert isinstance(world.idp, ClientRegistrar)


def test_capabilities_and_metadata_come_from_discovery(world: World, meta: dict[str, Any]) -> None:
    created(world)
    caps = world.idp.capabilities(APP)
    assert caps.usages == {PKJWT, JAR, MTLS}
    assert caps.per_slot == 2 and caps.secret_overlap is False
    assert caps.why_untestable(JAR) is None  # the peer offers PAR
    assert world.idp.metadata(APP) == {
        "issuer": meta["issuer"], "token_endpoint": meta["token_endpoint"],
        "audience": meta["issuer"], "client_id": world.client_id(),
        "pushed_authorization_request_endpoint": meta["pushed_authorization_request_endpoint"]}


def test_bootstrap_builds_the_adapter_an_identity_provider_resource_describes(
    world: World, oidc_provider: OidcPeer, tmp_path: Path
) -> None:
    """From a real resource: the issuer, the initial access token from a file (relative to the
    resource), the CA bundle its TLS is verified with; the adapter built creates a client."""
    (tmp_path / "iat").write_text(oidc_provider.initial_access_token + "\n")
    resource = IdentityProvider.model_validate({
        "apiVersion": "orchestrator/v1", "kind": "IdentityProvider",
        "metadata": {"name": IDP},
        "spec": {"oidc": {"issuer": oidc_provider.issuer, "initialAccessToken": {"file": "iat"},
                          "caFile": str(oidc_provider.ca_file)}}}, context={"base": tmp_path})
    built = build_identity_provider(IDP, resource, state_of=world.core.service.load,
                                    keystore=world.keystore)
    assert isinstance(built, OidcProvider)
    client_id = built.create("built")
    assert built.client(client_id).name == "built"
    built.close()


def test_a_client_secret_is_refused_saying_why(world: World) -> None:
    created(world)
    with pytest.raises(ProviderError, match="RFC 7592 cannot rotate a client secret"):
        world.idp.set_secret(APP, 2, "s3cret-value", None)
    with pytest.raises(ProviderError, match="cannot rotate a client secret"):
        world.idp.authenticate(APP, Proof(client_id=world.client_id(), usage="client_secret",
                                          secret="s3cret-value"), world.now)


# --- register, activate, deactivate, remove: the whole record, idempotent ----------------------


def test_activate_and_deactivate_change_only_the_key_and_are_idempotent(
    world: World, http: httpx.Client, meta: dict[str, Any]
) -> None:
    """register changes nothing at the provider (the record holds only attached keys) and
    returns the key id; activate puts the key in jwks with the method and algorithm, keeping
    every other field; a repeat sends nothing (the token does not rotate); deactivate takes it
    out; remove of an absent key is fine."""
    adopted(world, http, meta, {
        "client_name": "payments", "grant_types": ["client_credentials", "authorization_code"],
        "response_types": ["code"], "redirect_uris": [REDIRECT], "contacts": ["ops@example.test"],
        "token_endpoint_auth_method": "client_secret_basic"})
    before = world.record()
    cred = world.core.service.add_credential(APP, PKJWT, _generated(), alg="PS256")
    token = world.token()
    assert world.idp.register(APP, cred) == cred.kid
    assert world.token() == token and kids(world.record()) == []  # nothing changed

    world.idp.activate(APP, cred.id)
    after = world.record()
    assert world.token() != token  # the update rotated it, and the new one is kept
    assert kids(after) == [cred.kid]
    jwk = after["jwks"]["keys"][0]
    assert jwk["alg"] == "PS256" and jwk["use"] == "sig"
    assert after["token_endpoint_auth_method"] == "private_key_jwt"
    assert after["token_endpoint_auth_signing_alg"] == "PS256"
    untouched = {k: v for k, v in before.items() if k not in (
        *SERVER_MANAGED, "jwks", "token_endpoint_auth_method", "client_secret")}
    assert {k: after.get(k) for k in untouched} == untouched
    assert accepted(token_request(http, meta, world.client_id(), cred, world.private(cred)))

    token = world.token()
    world.idp.activate(APP, cred.id)  # already there: no PUT, so no new token
    assert world.token() == token

    world.idp.deactivate(APP, cred.id)
    assert kids(world.record()) == []
    assert refused(token_request(http, meta, world.client_id(), cred, world.private(cred)))
    token = world.token()
    world.idp.deactivate(APP, cred.id)
    world.idp.remove(APP, cred.id)
    assert world.token() == token  # absent: nothing sent


def test_authenticate_is_a_real_token_request(world: World) -> None:
    """Accepted: None (the provider does not say which key matched); a key that is not attached:
    refused with invalid_client; a client without the client_credentials grant: the key
    authenticated before unauthorized_client, so it passes."""
    created(world)
    cred = world.core.service.add_credential(APP, PKJWT, _generated(), alg="RS256")
    proof = Proof(client_id=world.client_id(), usage=PKJWT, credential=cred,
                  private_key_der=world.private(cred))
    with pytest.raises(ProviderError, match=r"refused .* \(invalid_client"):
        world.idp.authenticate(APP, proof, world.now)
    world.idp.activate(APP, cred.id)
    assert world.idp.authenticate(APP, proof, world.now) is None
    world.idp.registrations.update(world.client_id(), lambda r: {
        **r, "grant_types": ["authorization_code"], "response_types": ["code"],
        "redirect_uris": [REDIRECT]})
    assert world.idp.authenticate(APP, proof, world.now) is None  # unauthorized_client


def test_jar_without_a_redirect_uri_cannot_be_tested(world: World) -> None:
    created(world)  # a client_credentials client: no authorization request can be made
    cred = world.core.service.add_credential(APP, JAR, _generated(), alg="PS256")
    world.idp.activate(APP, cred.id)
    with pytest.raises(TestSkipped, match="no redirect_uris"):
        world.idp.authenticate(APP, Proof(client_id=world.client_id(), usage=JAR, credential=cred,
                                          private_key_der=world.private(cred)), world.now)


def test_another_auth_method_is_refused_while_the_current_one_holds_a_credential(
    world: World
) -> None:
    created(world)
    key = world.core.service.add_credential(APP, PKJWT, _generated(), alg="RS256")
    world.idp.activate(APP, key.id)
    cert = world.core.service.add_credential(APP, MTLS, _generated())
    with pytest.raises(ProviderError, match="authenticates with private_key_jwt"):
        world.idp.register(APP, cert)
    with pytest.raises(ProviderError, match="authenticates with private_key_jwt"):
        world.idp.activate(APP, cert.id)
    assert world.record()["token_endpoint_auth_method"] == "private_key_jwt"


# --- whole rotations through the rotator ---------------------------------------------------------


def _steps_before_test(world: World, old: Credential, new: Credential) -> None:
    """Read back after every step: at most 2 keys, and the old one there until the new one
    passed the test."""
    tested = False
    for step, record in world.records:
        present = kids(record)
        assert len(present) <= 2, (step, present)
        if not tested:
            assert old.kid in present, f"old key gone at {step} before the test"
        tested = tested or step is Step.TEST


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_private_key_jwt_rotates_and_the_old_key_is_refused_after_completion(
    world: World, http: httpx.Client, meta: dict[str, Any], alg: str
) -> None:
    client_id = created(world)
    p = params(PKJWT, algorithm=alg)
    world.rotate(PKJWT, p, Reason.PROVISION)
    token = world.token()
    world.watch()
    rid = world.rotate(PKJWT, p)
    old, new = world.old_and_new(rid)
    assert new.provider_id == new.kid  # credential.registered: the provider knows it by kid
    assert old.status is Status.DISABLED and new.status is Status.ACTIVE
    assert accepted(token_request(http, meta, client_id, new, world.private(new)))
    assert refused(token_request(http, meta, client_id, old, world.private(old)))
    assert kids(world.record()) == [new.kid]
    assert world.record()["token_endpoint_auth_signing_alg"] == alg
    _steps_before_test(world, old, new)
    assert world.token() != token  # rotated by the updates, kept each time
    delivered = world.idp.metadata(APP)
    assert delivered["client_id"] == client_id and delivered["audience"] == meta["issuer"]


def test_rs256_to_ps256_overlaps_without_pinning_one_algorithm(
    world: World, http: httpx.Client, meta: dict[str, Any]
) -> None:
    """The record has one token_endpoint_auth_signing_alg: while an RS256 and a PS256 key
    overlap it is left out (each key's own alg still pins it), and set again after."""
    client_id = created(world)
    world.rotate(PKJWT, params(PKJWT, algorithm="RS256"), Reason.PROVISION)
    seen: list[tuple[Step, Any, bool]] = []

    def step(app: str, rid: str, done: Step) -> None:
        rotation = world.state(app).rotations[rid]
        old = world.state(app).credentials[rotation.old_credential_id or ""]
        seen.append((done, world.record(app).get("token_endpoint_auth_signing_alg"),
                     accepted(token_request(http, meta, client_id, old, world.private(old)))))

    world.core.rotator.on_step = step
    rid = world.rotate(PKJWT, params(PKJWT, algorithm="PS256"))
    _, new = world.old_and_new(rid)
    assert new.alg == "PS256"
    during = [alg for s, alg, _ in seen if s in (Step.ACTIVATE, Step.TEST, Step.DELIVER)]
    assert during and all(alg is None for alg in during)
    assert all(old_works for s, _, old_works in seen if s is not Step.DISABLE_OLD
               and s is not Step.COMPLETE)
    assert world.record()["token_endpoint_auth_signing_alg"] == "PS256"


def test_jar_rotates_tested_through_par_with_the_client_authenticated_by_its_own_key(
    world: World, http: httpx.Client, meta: dict[str, Any]
) -> None:
    client_id = adopted(world, http, meta, {
        "client_name": "payments", "grant_types": ["authorization_code"],
        "response_types": ["code"], "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}})["client_id"]
    world.rotate(PKJWT, params(PKJWT), Reason.PROVISION)
    signer = next(iter(world.state().credentials.values()))
    jar = params(JAR, algorithm="PS256")
    world.rotate(JAR, jar, Reason.PROVISION)
    world.watch()
    rid = world.rotate(JAR, jar)
    old, new = world.old_and_new(rid)
    assert world.record()["request_object_signing_alg"] == "PS256"
    assert world.record()["token_endpoint_auth_signing_alg"] == "RS256"
    ok = pushed(http, meta, client_id, new, world.private(new), signer, world.private(signer))
    assert ok.status_code == 201, ok.text
    gone = pushed(http, meta, client_id, old, world.private(old), signer, world.private(signer))
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_request_object"
    assert sorted(kids(world.record())) == sorted([signer.kid, new.kid])
    tested = False
    for step, record in world.records:  # the jar keys: never more than 2, the old one kept
        jar_kids = [k for k in kids(record) if k != signer.kid]
        assert len(jar_kids) <= 2
        assert tested or old.kid in jar_kids
        tested = tested or step is Step.TEST


def test_self_signed_mtls_rotates_over_the_peers_tls_listener(
    world: World, http: httpx.Client, meta: dict[str, Any], tmp_path: Path
) -> None:
    client_id = created(world)
    p = params(MTLS, subject="CN={app}.clients.example")
    world.rotate(MTLS, p, Reason.PROVISION)
    world.watch()
    rid = world.rotate(MTLS, p)
    old, new = world.old_and_new(rid)
    assert new.kind is ev.CredentialKind.X509_CERT
    record = world.record()
    assert record["token_endpoint_auth_method"] == "self_signed_tls_client_auth"
    assert [k["kid"] for k in record["jwks"]["keys"] if "x5c" in k] == [new.kid]
    assert accepted(mtls_token_request(world.peer, meta, client_id, new.certificate_pem or "",
                                       world.private(new), tmp_path))
    assert refused(mtls_token_request(world.peer, meta, client_id, old.certificate_pem or "",
                                      world.private(old), tmp_path))
    _steps_before_test(world, old, new)


def test_ca_issued_mtls_rotates_by_subject_dn(
    world: World, meta: dict[str, Any], tmp_path: Path, key_source: PrimePairKeys
) -> None:
    """The record holds the subject DN once: the successor certificate (same DN, same CA)
    changes nothing at the provider (no update, the token does not rotate). The provider matches
    the DN after chain validation, so the old certificate keeps authenticating until it expires
    (RFC 8705 has nothing else to withdraw); a certificate of that DN from another CA never does."""
    ca_key, rogue_key = rsa_key(), rsa_key()
    now = datetime.now(UTC)
    ca = certificate(ca_key, CA_DN, not_before=now - HOUR, not_after=now + 400 * DAY, ca=True)
    world.peer.add_client_ca(ca)
    ca_key_pem = ca_key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    client_id = created(world)
    p = params(MTLS, subject="CN={app},OU=Payments,O=Example", issuer_cert=ca,
               issuer_key=ca_key_pem)
    world.rotate(MTLS, p, Reason.PROVISION)
    record = world.record()
    assert record["token_endpoint_auth_method"] == "tls_client_auth"
    assert record["tls_client_auth_subject_dn"] == f"CN={APP},OU=Payments,O=Example"
    token = world.token()
    rid = world.rotate(MTLS, p)
    old, new = world.old_and_new(rid)
    assert new.kind is ev.CredentialKind.CERT_SUBJECT_DN and new.subject_dn == old.subject_dn
    assert world.token() == token  # confirm: found registered, nothing sent
    assert accepted(mtls_token_request(world.peer, meta, client_id, new.certificate_pem or "",
                                       world.private(new), tmp_path))
    assert accepted(mtls_token_request(world.peer, meta, client_id, old.certificate_pem or "",
                                       world.private(old), tmp_path))
    rogue_key_der = private_der(rogue_key)
    rogue = certificate(rogue_key, f"CN={APP},OU=Payments,O=Example",
                        not_before=now - HOUR, not_after=now + DAY, issuer_key=rogue_key,
                        issuer="CN=Rogue CA").decode()
    assert refused(mtls_token_request(world.peer, meta, client_id, rogue, rogue_key_der, tmp_path))


def test_a_second_subject_dn_is_refused_while_the_first_is_in_use(
    world: World, key_source: PrimePairKeys
) -> None:
    created(world)
    first = world.core.service.add_credential(APP, MTLS, _dn("CN=payments,O=Example"),
                                              kind=ev.CredentialKind.CERT_SUBJECT_DN,
                                              activate=True)
    world.idp.activate(APP, first.id)
    second = world.core.service.add_credential(APP, MTLS, _dn("CN=payments-2,O=Example"),
                                               kind=ev.CredentialKind.CERT_SUBJECT_DN)
    with pytest.raises(ProviderError, match="RFC 8705 allows one per client"):
        world.idp.register(APP, second)
    world.idp.deactivate(APP, first.id)  # the last DN: no mTLS left, the record stays valid
    record = world.record()
    assert "tls_client_auth_subject_dn" not in record or not record["tls_client_auth_subject_dn"]
    assert record["token_endpoint_auth_method"] == "self_signed_tls_client_auth"


# --- the registration access token ---------------------------------------------------------------


class LosingAnswers(httpx.BaseTransport):
    """The real network, except that the answer to the next PUT is lost after the provider
    applied it (what a timeout after sending looks like); the lost answer is kept for the test."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.lose_next_put = False
        self.lost: dict[str, Any] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.inner.handle_request(request)
        if request.method == "PUT" and self.lose_next_put:
            self.lose_next_put = False
            answer.read()
            self.lost = answer.json()
            raise httpx.ReadTimeout("answer lost", request=request)
        return answer


def test_a_lost_update_answer_is_detected_and_recovered_by_handing_a_token_over(
    oidc_provider: OidcPeer, key_source: PrimePairKeys
) -> None:
    network = LosingAnswers(httpx.HTTPTransport(
        verify=ssl.create_default_context(cafile=str(oidc_provider.ca_file))))
    world = World(oidc_provider, key_source, transport=network)
    created(world)
    cred = world.core.service.add_credential(APP, PKJWT, _generated(), alg="RS256")
    network.lose_next_put = True
    with pytest.raises(ProviderUnavailable, match="answer lost"):
        world.idp.activate(APP, cred.id)
    assert network.lost is not None and kids(network.lost) == [cred.kid]  # it was applied
    with pytest.raises(ProviderError, match=(
            r"refused the registration access token of client .* \(401\).*orchestrator app "
            rf"register {APP} --provider {IDP} --client-id .* --registration-token-file FILE "
            "--exist-ok")):
        world.idp.activate(APP, cred.id)
    # the operator gets a new token (here: the lost answer's) and hands it over
    assert not bind_client(world.core.service, world.idp, APP, {}, IDP,
                           registration_token=network.lost["registration_access_token"],
                           exist_ok=True)
    world.idp.activate(APP, cred.id)  # already there: management works again
    assert kids(world.record()) == [cred.kid]


class FailingOnce(MemoryKeystore):
    def __init__(self) -> None:
        super().__init__()
        self.fail_next_token_write = False

    def put(self, item_id: str, data: bytes) -> None:
        if self.fail_next_token_write and item_id.endswith("/registration-token"):
            self.fail_next_token_write = False
            from orchestrator.domain.errors import KeystoreError

            raise KeystoreError("keystore: disk full (injected)")
        super().put(item_id, data)


def test_a_new_token_the_keystore_could_not_write_is_kept_in_memory_and_written_next_time(
    oidc_provider: OidcPeer, key_source: PrimePairKeys
) -> None:
    keystore = FailingOnce()
    world = World(oidc_provider, key_source)
    idp = OidcProvider(IDP, issuer=oidc_provider.issuer, state_of=world.core.service.load,
                       keystore=keystore, initial_access_token=oidc_provider.initial_access_token,
                       ca_file=oidc_provider.ca_file)
    client_id = idp.create(APP)
    world.core.service.register_app(APP, {}, IDP, client_id)
    cred = world.core.service.add_credential(APP, PKJWT, _generated(), alg="RS256")
    keystore.put(cred.id, world.private(cred))
    keystore.fail_next_token_write = True
    from orchestrator.domain.errors import KeystoreError

    with pytest.raises(KeystoreError, match="kept in memory"):
        idp.activate(APP, cred.id)
    assert kids(idp.registrations.read(client_id)) == [cred.kid]  # the kept token works
    stored = json.loads(keystore.get(idp.registrations.token_item(client_id)) or b"{}")["token"]
    fresh = OidcProvider(IDP, issuer=oidc_provider.issuer, state_of=world.core.service.load,
                         keystore=keystore, ca_file=oidc_provider.ca_file)
    assert kids(fresh.registrations.read(client_id)) == [cred.kid]  # written by the next call
    assert stored
    idp.close()
    fresh.close()


def test_two_processes_updating_one_client_both_land(
    world: World, oidc_provider: OidcPeer
) -> None:
    """Process A reads the record, process B updates it (the token rotates), then A's update
    is refused: A reads the newer token from the keystore and does its GET-modify-PUT again,
    so neither change is lost."""
    client_id = created(world)
    first = world.core.service.add_credential(APP, PKJWT, _generated(), alg="RS256")
    second = world.core.service.add_credential(APP, JAR, _generated(), alg="PS256")
    other = OidcProvider(IDP, issuer=oidc_provider.issuer, state_of=world.core.service.load,
                         keystore=world.keystore, ca_file=oidc_provider.ca_file)
    interleaved = False

    def change(record: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal interleaved
        if not interleaved:
            interleaved = True
            other.activate(APP, second.id)  # B lands between A's GET and A's PUT
        return {**record, "jwks": {"keys": [*(record.get("jwks") or {}).get("keys", []),
                                            jwk_of(first)]}}

    world.idp.registrations.update(client_id, change)
    assert sorted(kids(world.record())) == sorted([first.kid, second.kid])
    other.close()


def test_the_inventory_lists_the_clients_it_holds_a_token_for(world: World) -> None:
    payments = created(world)
    billing = created(world, "billing")
    cred = world.core.service.add_credential(APP, PKJWT, _generated(), alg="RS256")
    world.idp.activate(APP, cred.id)
    listed = {c.client_id: c for c in world.idp.clients()}
    assert set(listed) >= {payments, billing}
    assert [c.client_id for c in world.idp.clients("bill*")] == [billing]
    remote = world.idp.client(payments)
    assert remote.name == APP and remote.auth_method == "private_key_jwt"
    assert [(c.kid, c.fingerprint, c.alg) for c in remote.credentials] == [
        (cred.kid, cred.fingerprint, "RS256")]
    assert remote.has_secret is False


def test_create_repeated_after_a_crash_finds_the_first_client(world: World) -> None:
    first = world.idp.create(APP)  # crash here: the log never heard of it
    assert world.idp.create(APP) == first
    assert bind_client(world.core.service, world.idp, APP, {}, IDP, create=True)
    assert world.client_id() == first
    assert world.idp.create(APP) != first  # once recorded, a new create is a new client


def test_a_wrong_registration_token_registers_nothing(world: World) -> None:
    client_id = world.idp.create("unbound")  # a client at the provider no app is bound to
    with pytest.raises(ProviderError, match="refused the registration access token given"):
        bind_client(world.core.service, world.idp, APP, {}, IDP,
                    client_id=client_id, registration_token="not-the-token")
    assert not world.state().registered


# --- transport failures -----------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_provider_is_unavailable(
    world: World, oidc_provider: OidcPeer
) -> None:
    """Every call to a provider nothing listens for: ProviderUnavailable, naming the failure."""
    client_id = created(world)
    world.rotate(PKJWT, params(PKJWT), Reason.PROVISION)
    cred = next(iter(world.state().credentials.values()))
    issuer = f"https://127.0.0.1:{_closed_port()}"
    keystore = MemoryKeystore()  # the client's token, as kept for a provider at that address
    keystore.put(f"idp/{IDP}/{client_id}/registration-token", json.dumps(
        {"token": world.token(), "uri": f"{issuer}/reg/{client_id}"}).encode())
    gone = OidcProvider(IDP, issuer=issuer, state_of=world.core.service.load, keystore=keystore,
                        ca_file=oidc_provider.ca_file)
    proof = Proof(client_id=client_id, usage=PKJWT, credential=cred,
                  private_key_der=world.private(cred))
    calls: list[Callable[[], object]] = [
        lambda: gone.metadata(APP), lambda: gone.register(APP, cred),
        lambda: gone.activate(APP, cred.id), lambda: gone.deactivate(APP, cred.id),
        lambda: gone.authenticate(APP, proof, world.now), lambda: list(gone.clients())]
    for call in calls:
        with pytest.raises(ProviderUnavailable, match="ConnectError"):
            call()
    gone.close()


def test_a_stopped_peer_makes_the_rotation_fail_and_retry_not_crash(
    tmp_path: Path, key_source: PrimePairKeys
) -> None:
    from tests.peers.oidc import node_available, start_oidc_provider

    available, why = node_available()
    if not available:
        pytest.skip(why)
    with start_oidc_provider(tmp_path / "peer") as peer:
        world = World(peer, key_source)
        created(world)
        world.rotate(PKJWT, params(PKJWT), Reason.PROVISION)
        peer.stop()
        rid = world.core.rotator.start(APP, PKJWT, Reason.MANUAL)
        assert rid is not None
        out = world.core.rotator.advance(APP, rid, params(PKJWT))
        assert out.failed and not out.parked
        rotation = world.state().rotations[rid]
        assert rotation.status is RotationStatus.RUNNING
        assert rotation.last_error is not None and "ConnectError" in rotation.last_error
        assert not rotation.done(Recorded.REGISTERED)
        world.idp.close()


@pytest.mark.parametrize("answer", [
    httpx.Response(503, text="down"),
    httpx.Response(429, headers={"retry-after": "7"}, json={"error": "slow_down"}),
    httpx.Response(200, text="<html>not json</html>"),
    httpx.Response(200, json=["not", "an", "object"]),
])
def test_server_errors_rate_limits_and_malformed_answers_are_unavailable(
    world: World, answer: httpx.Response
) -> None:
    mock = OidcProvider(IDP, issuer="https://idp.example.test", state_of=world.core.service.load,
                        keystore=world.keystore, transport=httpx.MockTransport(lambda r: answer))
    with pytest.raises(ProviderUnavailable):
        mock.metadata(APP)


@pytest.mark.parametrize("error", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused"),
                                   httpx.RemoteProtocolError("reset")])
def test_httpx_errors_never_escape(world: World, error: Exception) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    mock = OidcProvider(IDP, issuer="https://idp.example.test", state_of=world.core.service.load,
                        keystore=world.keystore, transport=httpx.MockTransport(fail))
    with pytest.raises(ProviderUnavailable, match=type(error).__name__):
        mock.metadata(APP)


def test_a_compressed_answer_is_read_once_decoded(world: World) -> None:
    """The adapter reads answers itself (no further than its bound) and hands them on decoded."""
    document = {"issuer": "https://idp.example.test", "token_endpoint": "https://t.example/t"}
    answer = httpx.Response(200, headers={"content-encoding": "gzip"},
                            content=gzip.compress(json.dumps(document).encode()))
    mock = OidcProvider(IDP, issuer="https://idp.example.test", state_of=world.core.service.load,
                        keystore=world.keystore, transport=httpx.MockTransport(lambda r: answer))
    world.core.service.register_app(APP, {}, IDP, "c1")
    assert mock.metadata(APP)["token_endpoint"] == "https://t.example/t"


# --- small builders ---------------------------------------------------------------------------


def _generated() -> CredentialSource:
    return CredentialSource(generate=True, key_size=2048)


def _dn(dn: str) -> CredentialSource:
    return CredentialSource(subject_dn=dn)
