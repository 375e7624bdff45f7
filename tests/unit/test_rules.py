"""The credential rules, as specifications: given events, when a command, then events or an error.

``decide`` is pure: every test folds a list of facts into an ``AppState`` with ``fold``, decides
one command at the fixed NOW, and compares the events (or the refusal). Keys and certificates are
real, made once per module with ``cryptography``; no database, no clock, no doubles.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from events import catalog as ev
from events.state import AppState, Credential, Secret, Status, evolve, fold
from orchestrator.adapters import crypto
from orchestrator.domain.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    OrchestratorError,
    RefusedError,
)
from orchestrator.domain.material import MaterialKind, PublicMaterial
from orchestrator.domain.rules import (
    ActivateCredential,
    AddCredential,
    ChangeExpiry,
    DeleteCredential,
    DisableCredential,
    ExpireDue,
    RegisterApplication,
    RotateSecret,
    claims_of,
    decide,
)
from tests.conftest import NOW
from tests.helpers import (
    certificate,
    ec_key,
    pkcs1_pem,
    rfc7638_thumbprint,
    rsa_key,
    rsa_public_pem_of_size,
    spki_fingerprint,
    spki_pem,
)

APP = "payments"
T0 = NOW - timedelta(days=30)  # when the given facts happened
PKJWT, JAR, MTLS = "private_key_jwt", "jar", "mtls"
ISSUED_DN = "CN=payments.example.com,O=Acme,C=DE"
CA_DN = "CN=Acme Issuing CA,O=Acme,C=DE"
PUBLIC_KEY = ev.CredentialKind.PUBLIC_KEY
X509_CERT = ev.CredentialKind.X509_CERT
CERT_SUBJECT_DN = ev.CredentialKind.CERT_SUBJECT_DN


# --- real keys and certificates, made once ------------------------------------------------------


@pytest.fixture(scope="module")
def k() -> SimpleNamespace:
    """RSA 2048 keys a-d (private_key_jwt, jar), m1-m3 and ca (mTLS), one each of 1024, 3072,
    4096 bits, one EC P-256, and an 8192-bit RSA public key."""
    keys = SimpleNamespace(**{n: rsa_key(2048) for n in ("a", "b", "c", "d", "m1", "m2", "m3",
                                                         "ca")})
    keys.r1024, keys.r3072, keys.r4096 = rsa_key(1024), rsa_key(3072), rsa_key(4096)
    keys.ec = ec_key()
    keys.r8192_pem = rsa_public_pem_of_size(8192)
    return keys


def pub(key) -> PublicMaterial:
    """The public material of a key, parsed from its SPKI PEM as the command line does."""
    return crypto.parse_pem(spki_pem(key))


@pytest.fixture(scope="module")
def certs(k: SimpleNamespace) -> SimpleNamespace:
    """Certificates as PublicMaterial: self-signed, CA-issued, expired, not yet valid, EC."""
    valid = {"not_before": NOW - timedelta(days=1), "not_after": NOW + timedelta(days=90)}
    return SimpleNamespace(
        self_signed=crypto.parse_pem(certificate(k.m1, "CN=payments-mtls", **valid)),
        issued=crypto.parse_pem(certificate(
            k.m2, ISSUED_DN, issuer_key=k.ca, issuer=CA_DN,
            not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=60))),
        expired=crypto.parse_pem(certificate(
            k.m3, "CN=old", not_before=NOW - timedelta(days=60),
            not_after=NOW - timedelta(days=1))),
        not_yet_valid=crypto.parse_pem(certificate(
            k.m3, "CN=early", not_before=NOW + timedelta(days=1),
            not_after=NOW + timedelta(days=60))),
        ec=crypto.parse_pem(certificate(k.ec, "CN=ec-client", **valid)),
    )


DN = crypto.subject_dn_material(ISSUED_DN)


# --- given / when / then ------------------------------------------------------------------------


REGISTERED = ev.ApplicationRegistered(app=APP, labels={"env": "prod"})


def given(*facts: ev.Event | tuple[ev.Event, datetime]) -> AppState:
    """The application's state after ``facts``: events (occurred at T0) or (event, at) pairs."""
    return fold(APP, [(f, T0) if isinstance(f, ev.Event) else f for f in facts])


def added(cid: str, m: PublicMaterial, usage: str = PKJWT, *, expires_at: datetime | None = None,
          kid: str | None = None) -> ev.CredentialAdded:
    """The fact that credential ``cid`` was added with material ``m``."""
    if usage == MTLS:
        kind = CERT_SUBJECT_DN if m.kind is MaterialKind.SUBJECT_DN or not m.self_signed \
            else X509_CERT
    else:
        kind = PUBLIC_KEY
    return ev.CredentialAdded(
        credential_id=cid, usage=usage, kind=kind,
        kid=kid or m.jwk_thumbprint or m.fingerprint.split(":")[1][:43],
        alg="RS256" if kind is PUBLIC_KEY else None, key_size=m.key_size,
        fingerprint=m.fingerprint, public_pem=m.public_pem if kind is PUBLIC_KEY else None,
        certificate_pem=m.certificate_pem, subject_dn=m.subject_dn, not_before=m.not_before,
        expires_at=expires_at,
    )


def activated(cid: str) -> ev.CredentialActivated:
    return ev.CredentialActivated(credential_id=cid)


def disabled(cid: str) -> ev.CredentialDisabled:
    return ev.CredentialDisabled(credential_id=cid)


def expired(cid: str, at: datetime) -> ev.CredentialExpired:
    return ev.CredentialExpired(credential_id=cid, expired_at=at)


def deleted(cid: str) -> ev.CredentialDeleted:
    return ev.CredentialDeleted(credential_id=cid)


def add(m: PublicMaterial, usage: str = PKJWT, cid: str = "cred_new", **options) -> AddCredential:
    """The command to add ``m`` for ``usage`` as ``cid``, decided at NOW."""
    return AddCredential(app=APP, credential_id=cid, usage=usage, material=m, at=NOW, **options)


def the_added(events: list[ev.Event]) -> ev.CredentialAdded:
    assert len(events) == 1 and isinstance(events[0], ev.CredentialAdded), events
    return events[0]


# --- registering an application ----------------------------------------------------------------


def test_an_unregistered_application_registers_with_its_labels() -> None:
    """Registering records application.registered with the app's name and labels."""
    assert decide(RegisterApplication(APP, NOW, {"env": "prod", "team": "core"}), given()) == [
        ev.ApplicationRegistered(app=APP, labels={"env": "prod", "team": "core"})
    ]


@pytest.mark.parametrize("app", ["a", "payments-api", "svc.v2_eu", "9lives", "x" * 64],
                         ids=lambda a: f"the name {a[:20]!r} is accepted")
def test_application_names_that_are_accepted(app: str) -> None:
    """1-64 letters, digits, '.', '_', '-' starting with a letter or digit are accepted."""
    assert decide(RegisterApplication(app, NOW), AppState(app=app)) == [
        ev.ApplicationRegistered(app=app, labels={})
    ]


@pytest.mark.parametrize(
    "app",
    ["", "-payments", ".hidden", "pay ments", "pay/ments", "x" * 65, "zahlungsdienst-ü", "a:b"],
    ids=["an empty name is refused", "a leading dash is refused", "a leading dot is refused",
         "a space is refused", "a slash is refused",
         "65 characters are refused (the provider's client id holds 64)",
         "a non-ASCII letter is refused", "a colon is refused"],
)
def test_application_names_that_are_refused(app: str) -> None:
    with pytest.raises(InputError, match=r"application name .* is not allowed"):
        decide(RegisterApplication(app, NOW), AppState(app=app))


@pytest.mark.parametrize(
    "labels",
    [{"env": ""}, {"": "prod"}, {"env": "pro d"}, {"-env": "prod"}, {"env": "x" * 64},
     {"env": "prod", "team": "core!"}],
    ids=["an empty value is refused", "an empty key is refused", "a space in a value is refused",
         "a key starting with a dash is refused", "a 64-character value is refused",
         "one bad label among good ones is refused"],
)
def test_labels_that_are_refused(labels: dict[str, str]) -> None:
    with pytest.raises(InputError, match=r"label .* is not allowed"):
        decide(RegisterApplication(APP, NOW, labels), given())


def test_labels_may_use_dots_slashes_and_63_characters() -> None:
    """Keys and values of 1-63 letters, digits, '.', '_', '/', '-' are accepted."""
    labels = {"k8s.io/team": "core_platform-1", "tier": "x" * 63}
    assert decide(RegisterApplication(APP, NOW, labels), given()) == [
        ev.ApplicationRegistered(app=APP, labels=labels)
    ]


def test_registering_twice_is_refused() -> None:
    """An application is registered once; a second registration is a conflict."""
    with pytest.raises(ConflictError, match="'payments' is already registered"):
        decide(RegisterApplication(APP, NOW), given(REGISTERED))


# --- unknown applications and credentials ------------------------------------------------------


UNKNOWN_APP_COMMANDS: list[tuple[str, Callable[[], object]]] = [
    ("adding a credential", lambda: add(DN, MTLS)),
    ("activating", lambda: ActivateCredential(APP, "cred_x", NOW)),
    ("disabling", lambda: DisableCredential(APP, "cred_x", NOW)),
    ("deleting", lambda: DeleteCredential(APP, "cred_x", NOW)),
    ("changing an expiry", lambda: ChangeExpiry(APP, "cred_x", NOW + timedelta(days=1), NOW)),
    ("expiring what is due", lambda: ExpireDue(APP, NOW)),
    ("rotating the secret", lambda: RotateSecret(APP, "sha256:00", NOW)),
]


@pytest.mark.parametrize("make", [m for _, m in UNKNOWN_APP_COMMANDS],
                         ids=[f"{n} on an unknown application is NotFound"
                              for n, _ in UNKNOWN_APP_COMMANDS])
def test_every_command_on_an_unknown_application_is_not_found(make) -> None:
    with pytest.raises(NotFoundError) as info:
        decide(make(), given())
    assert str(info.value) == ("application 'payments' is not registered "
                               "(register it with: orchestrator app register payments)")


LIFECYCLE_COMMANDS: list[tuple[str, Callable[[str], object]]] = [
    ("activating", lambda cid: ActivateCredential(APP, cid, NOW)),
    ("disabling", lambda cid: DisableCredential(APP, cid, NOW, force=True)),
    ("deleting", lambda cid: DeleteCredential(APP, cid, NOW, force=True)),
    ("changing the expiry of", lambda cid: ChangeExpiry(APP, cid, NOW + timedelta(days=1), NOW)),
]


@pytest.mark.parametrize("make", [m for _, m in LIFECYCLE_COMMANDS],
                         ids=[f"{n} an unknown credential is NotFound"
                              for n, _ in LIFECYCLE_COMMANDS])
def test_an_unknown_credential_is_not_found(make, k) -> None:
    state = given(REGISTERED, added("cred_a", pub(k.a)))
    with pytest.raises(NotFoundError) as info:
        decide(make("cred_nope"), state)
    assert str(info.value) == ("application 'payments' has no credential 'cred_nope' "
                               "(list them with: orchestrator credential list payments)")


@pytest.mark.parametrize("make", [m for _, m in LIFECYCLE_COMMANDS],
                         ids=[f"{n} a deleted credential is NotFound"
                              for n, _ in LIFECYCLE_COMMANDS])
def test_a_deleted_credential_is_not_found(make, k) -> None:
    state = given(REGISTERED, added("cred_a", pub(k.a)), deleted("cred_a"))
    with pytest.raises(NotFoundError, match=r"no credential 'cred_a' \(it was deleted\)"):
        decide(make("cred_a"), state)


# --- adding: one kind per usage ----------------------------------------------------------------


def test_a_private_key_jwt_key_is_added_as_a_public_key_with_every_public_fact(k) -> None:
    """An SPKI key for private_key_jwt: public_key, RS256, RFC 7638 kid, SPKI fingerprint."""
    m = pub(k.a)
    assert decide(add(m, PKJWT, name="signing key"), given(REGISTERED)) == [
        ev.CredentialAdded(
            credential_id="cred_new", usage=ev.Usage.PRIVATE_KEY_JWT, kind=PUBLIC_KEY,
            kid=rfc7638_thumbprint(k.a), alg="RS256", key_size=2048,
            fingerprint=spki_fingerprint(k.a), name="signing key",
            public_pem=spki_pem(k.a).decode(), certificate_pem=None, subject_dn=None,
            not_before=None, expires_at=None, generated=False,
        )
    ]


def test_a_jar_key_given_as_pkcs1_is_the_same_key_as_its_spki_form(k) -> None:
    """A PKCS#1 PEM for jar is a public_key whose fingerprint and kid are those of its SPKI."""
    event = the_added(decide(add(crypto.parse_pem(pkcs1_pem(k.b)), JAR), given(REGISTERED)))
    assert (event.usage, event.kind, event.alg) == (ev.Usage.JAR, PUBLIC_KEY, "RS256")
    assert event.fingerprint == spki_fingerprint(k.b)
    assert event.kid == rfc7638_thumbprint(k.b)
    assert event.public_pem == spki_pem(k.b).decode()


def test_a_self_signed_certificate_for_mtls_is_an_x509_cert_expiring_at_its_not_after(
        certs) -> None:
    """A self-signed mTLS certificate is an x509_cert, without alg, expiring at its notAfter."""
    event = the_added(decide(add(certs.self_signed, MTLS), given(REGISTERED)))
    assert (event.kind, event.alg, event.subject_dn) == (X509_CERT, None, None)
    assert event.certificate_pem == certs.self_signed.certificate_pem
    assert event.public_pem is None
    assert event.not_before == certs.self_signed.not_before
    assert event.expires_at == certs.self_signed.not_after == NOW + timedelta(days=90)


def test_a_ca_issued_certificate_for_mtls_is_matched_by_its_subject_dn(certs) -> None:
    """A CA-issued mTLS certificate is a cert_subject_dn carrying its subject DN and notAfter."""
    event = the_added(decide(add(certs.issued, MTLS), given(REGISTERED)))
    assert event.kind is CERT_SUBJECT_DN
    assert event.subject_dn == ISSUED_DN
    assert event.certificate_pem == certs.issued.certificate_pem
    assert event.expires_at == NOW + timedelta(days=60)


def test_a_subject_dn_alone_for_mtls_is_a_cert_subject_dn_without_expiry() -> None:
    """A subject DN alone is a cert_subject_dn with a dn-sha256 fingerprint and no expiry."""
    event = the_added(decide(add(DN, MTLS), given(REGISTERED)))
    assert (event.kind, event.subject_dn, event.expires_at) == (CERT_SUBJECT_DN, ISSUED_DN, None)
    assert event.fingerprint == DN.fingerprint and event.fingerprint.startswith("dn-sha256:")
    assert re.fullmatch(r"[0-9a-zA-Z\-_]{10,64}", event.kid)


def test_the_kind_override_makes_a_self_signed_certificate_a_subject_dn_match(certs) -> None:
    """kind=cert_subject_dn overrides self-signed detection for an mTLS certificate."""
    event = the_added(decide(add(certs.self_signed, MTLS, kind=CERT_SUBJECT_DN),
                             given(REGISTERED)))
    assert event.kind is CERT_SUBJECT_DN


def test_adding_with_activate_records_the_activation_too(k) -> None:
    """activate=True records credential.added then credential.activated."""
    events = decide(add(pub(k.a), activate=True), given(REGISTERED))
    assert [type(e) for e in events] == [ev.CredentialAdded, ev.CredentialActivated]
    assert events[1] == activated("cred_new")


def test_a_generated_key_is_recorded_as_generated(k) -> None:
    """A key the orchestrator generated is recorded with generated=True."""
    assert the_added(decide(add(pub(k.a), generated=True), given(REGISTERED))).generated is True


@pytest.mark.parametrize(
    ("usage", "material", "kind", "message"),
    [
        (MTLS, "bare key", None, "mtls needs an X.509 certificate"),
        (PKJWT, "dn", None, "a subject DN is only for mtls"),
        (JAR, "dn", None, "a subject DN is only for mtls"),
        (MTLS, "dn", X509_CERT, "a self-signed x509_cert needs the certificate itself"),
        (MTLS, "self-signed", PUBLIC_KEY, "mtls credentials are x509_cert or cert_subject_dn"),
        (PKJWT, "bare key", X509_CERT, "kind x509_cert is only for mtls"),
        ("client_secret", "bare key", None, "usage 'client_secret' is not known"),
    ],
    ids=["a bare public key for mtls is refused", "a subject DN for private_key_jwt is refused",
         "a subject DN for jar is refused", "x509_cert from a subject DN alone is refused",
         "an mtls public_key is refused", "x509_cert for private_key_jwt is refused",
         "an unknown usage is refused"],
)
def test_material_that_does_not_fit_the_usage_is_refused(usage, material, kind, message, k,
                                                         certs) -> None:
    m = {"bare key": pub(k.a), "dn": DN, "self-signed": certs.self_signed}[material]
    with pytest.raises(InputError, match=re.escape(message)):
        decide(add(m, usage, kind=kind), given(REGISTERED))


# --- RSA only, 2048 to 4096 bits ---------------------------------------------------------------


def test_an_ec_key_is_refused_and_the_message_names_rsa(k) -> None:
    """An EC P-256 key is refused; the message asks for an RSA key of 2048-4096 bits."""
    with pytest.raises(InputError, match=r"EC keys are not supported: use an RSA key of 2048 to "
                                         r"4096 bits"):
        decide(add(pub(k.ec), PKJWT), given(REGISTERED))


def test_an_ec_certificate_for_mtls_is_refused_and_the_message_names_rsa(certs) -> None:
    """An mTLS certificate with an EC key is refused like a bare EC key."""
    with pytest.raises(InputError, match="EC keys are not supported: use an RSA key"):
        decide(add(certs.ec, MTLS), given(REGISTERED))


@pytest.mark.parametrize("bits", [1024, 8192], ids=lambda b: f"a {b}-bit RSA key is refused")
def test_rsa_keys_outside_2048_to_4096_bits_are_refused(bits: int, k) -> None:
    m = pub(k.r1024) if bits == 1024 else crypto.parse_pem(k.r8192_pem)
    assert m.key_size == bits
    with pytest.raises(InputError, match=f"a {bits}-bit RSA key is not allowed: use 2048 to 4096"):
        decide(add(m, JAR), given(REGISTERED))


@pytest.mark.parametrize(("factors", "named"), [
    ((2, 3, 10007), 2), ((9973, 10007), 9973), ((7919, 9973, 10007), 7919)],
    ids=["an even modulus is refused naming 2",
         "a modulus divisible by the largest prime below 10,000 is refused",
         "of two small factors the smaller is named"])
def test_a_modulus_with_a_prime_factor_below_10000_is_refused(factors: tuple[int, ...],
                                                              named: int, k) -> None:
    real = pub(k.a)
    assert real.rsa_modulus is not None
    modulus = real.rsa_modulus * math.prod(factors)
    made_up = dataclasses.replace(real, rsa_modulus=modulus)
    with pytest.raises(InputError, match=f"modulus is divisible by {named}, so"):
        decide(add(made_up, JAR), given(REGISTERED))


@pytest.mark.parametrize("bits", [2048, 3072, 4096], ids=lambda b: f"a {b}-bit RSA key is accepted")
def test_rsa_keys_of_2048_to_4096_bits_are_accepted(bits: int, k) -> None:
    key = {2048: k.a, 3072: k.r3072, 4096: k.r4096}[bits]
    assert the_added(decide(add(pub(key), JAR), given(REGISTERED))).key_size == bits


# --- algorithms ---------------------------------------------------------------------------------


def test_the_algorithm_defaults_to_rs256(k) -> None:
    """Without --alg a public key is recorded as RS256."""
    assert the_added(decide(add(pub(k.a)), given(REGISTERED))).alg == "RS256"


@pytest.mark.parametrize("alg", ["RS256", "RS384", "PS256"], ids=lambda a: f"{a} is accepted")
def test_supported_algorithms_are_recorded(alg: str, k) -> None:
    assert the_added(decide(add(pub(k.a), JAR, alg=alg), given(REGISTERED))).alg == alg


@pytest.mark.parametrize("alg", ["RS512", "ES256", "HS256", "rs256", "none"],
                         ids=lambda a: f"{a} is refused, naming RS256, RS384, PS256")
def test_other_algorithms_are_refused_with_the_supported_ones_listed(alg: str, k) -> None:
    with pytest.raises(InputError) as info:
        decide(add(pub(k.a), PKJWT, alg=alg), given(REGISTERED))
    assert str(info.value) == f"algorithm {alg} is not supported: use RS256, RS384, PS256"


@pytest.mark.parametrize("material", ["self-signed", "dn"],
                         ids=["--alg with an mtls certificate is refused",
                              "--alg with an mtls subject DN is refused"])
def test_an_algorithm_for_mtls_is_refused(material: str, certs) -> None:
    m = certs.self_signed if material == "self-signed" else DN
    with pytest.raises(InputError, match="--alg applies to private_key_jwt and jar keys"):
        decide(add(m, MTLS, alg="RS256"), given(REGISTERED))


# --- key ids -----------------------------------------------------------------------------------


def test_the_default_kid_is_the_rfc_7638_thumbprint(k) -> None:
    """Without --kid the key id is the 43-character RFC 7638 thumbprint."""
    event = the_added(decide(add(pub(k.c)), given(REGISTERED)))
    assert event.kid == rfc7638_thumbprint(k.c)
    assert len(event.kid) == 43


@pytest.mark.parametrize("kid", ["abcdefghij", "K" * 64, "key_2026-11-A", "0123456789"],
                         ids=["10 characters are kept", "64 characters are kept",
                              "letters, digits, '-' and '_' are kept", "digits only are kept"])
def test_a_given_kid_matching_the_pattern_is_kept(kid: str, k) -> None:
    assert the_added(decide(add(pub(k.a), kid=kid), given(REGISTERED))).kid == kid


@pytest.mark.parametrize(
    "kid", ["abcdefghi", "K" * 65, "key.2026.11", "key 2026 11", "schlüssel-2026", "key/2026/11",
            ""],
    ids=["9 characters are refused", "65 characters are refused", "a dot is refused",
         "a space is refused", "a non-ASCII letter is refused", "a slash is refused",
         "an empty kid is refused"],
)
def test_a_given_kid_not_matching_the_pattern_is_refused(kid: str, k) -> None:
    with pytest.raises(InputError, match=r"is not allowed: use 10 to 64 characters from "
                                         r"\[0-9a-zA-Z-_\]"):
        decide(add(pub(k.a), kid=kid), given(REGISTERED))


# --- the same credential only once -------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "history"),
    [(PKJWT, ()), (JAR, ()), (PKJWT, ("deleted",)), (JAR, ("deleted",))],
    ids=["the same key again for the same usage is refused",
         "the same key for another usage is refused",
         "a deleted credential's key for the same usage is refused",
         "a deleted credential's key for another usage is refused"],
)
def test_the_same_key_is_never_added_twice_to_an_application(usage, history, k) -> None:
    facts = [REGISTERED, added("cred_a", pub(k.a), PKJWT)]
    if "deleted" in history:
        facts.append(deleted("cred_a"))
    with pytest.raises(ConflictError) as info:
        decide(add(pub(k.a), usage), given(*facts))
    assert str(info.value) == (
        "this key is already credential cred_a (private_key_jwt) of application 'payments'; "
        "the same credential can't be added twice: use a new key pair"
    )


def test_the_pkcs1_form_of_a_key_already_added_is_the_same_key(k) -> None:
    """A key given again as PKCS#1 is recognised as the SPKI key already added."""
    state = given(REGISTERED, added("cred_a", pub(k.a)))
    with pytest.raises(ConflictError, match="already credential cred_a"):
        decide(add(crypto.parse_pem(pkcs1_pem(k.a)), JAR), state)


def test_the_key_of_an_mtls_certificate_is_not_reused_for_private_key_jwt(k, certs) -> None:
    """A key pair serves one usage: an mTLS certificate's key can't become a JWT key."""
    state = given(REGISTERED, added("cred_m", certs.self_signed, MTLS))
    with pytest.raises(ConflictError, match=r"already credential cred_m \(mtls\)"):
        decide(add(pub(k.m1), PKJWT), state)


def test_the_same_subject_dn_is_refused_and_the_message_calls_it_a_subject_dn() -> None:
    """The same subject DN (spaces after commas aside) is refused as a duplicate."""
    state = given(REGISTERED, added("cred_dn", DN, MTLS))
    with pytest.raises(ConflictError, match="this subject DN is already credential cred_dn"):
        decide(add(crypto.subject_dn_material("CN=payments.example.com, O=Acme, C=DE"), MTLS),
               state)


@pytest.mark.parametrize("history", [(), ("deleted",)],
                         ids=["a kid in use on the app is refused",
                              "a kid of a deleted credential is refused"])
def test_the_same_kid_is_never_used_twice_on_an_application(history, k) -> None:
    facts = [REGISTERED, added("cred_a", pub(k.a), kid="team-key-0001")]
    if history:
        facts.append(deleted("cred_a"))
    with pytest.raises(ConflictError) as info:
        decide(add(pub(k.b), JAR, kid="team-key-0001"), given(*facts))
    assert str(info.value) == ("key id 'team-key-0001' is already used by credential cred_a of "
                               "application 'payments'; choose another --kid")


def test_claims_of_a_credential_added_are_its_fingerprint_and_kid(k) -> None:
    """The store enforces these once in the whole log, across applications."""
    event = added("cred_a", pub(k.a))
    assert claims_of(event) == (("fingerprint", spki_fingerprint(k.a)),
                                ("kid", rfc7638_thumbprint(k.a)))


@pytest.mark.parametrize(("client_id", "claimed"), [("c-1", "auth0-prod c-1"),
                                                     (None, "auth0-prod payments")])
def test_an_application_bound_to_a_provider_claims_its_client(
        client_id: str | None, claimed: str) -> None:
    """One client, one application: the store refuses a second binding in the append."""
    event = ev.ApplicationRegistered(app="payments", provider="auth0-prod", client_id=client_id)
    assert claims_of(event) == (("client", claimed),)


@pytest.mark.parametrize("event", [REGISTERED, activated("c"), deleted("c"),
                                   ev.SecretRotated(version=1, fingerprint="sha256:00")],
                         ids=lambda e: f"{e.type_name} claims nothing")
def test_other_events_claim_nothing(event: ev.Event) -> None:
    assert claims_of(event) == ()


# --- at most two live credentials per usage ----------------------------------------------------


def test_a_third_live_credential_is_refused_naming_both_and_the_limit(k) -> None:
    """A third live credential of a usage is refused, naming the two and the limit of 2."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), added("cred_b", pub(k.b)),
                  activated("cred_a"))
    with pytest.raises(RefusedError) as info:
        decide(add(pub(k.c)), state)
    assert str(info.value) == (
        "application 'payments' already has 2 private_key_jwt credentials (cred_a, cred_b); "
        "at most 2 are allowed: delete one first"
    )


@pytest.mark.parametrize("how", ["recorded", "past expires_at"],
                         ids=["credentials recorded as expired still count",
                              "credentials past their expiry without the event still count"])
def test_expired_credentials_still_count_against_the_limit(how: str, k) -> None:
    due = NOW - timedelta(days=1)
    facts: list = [REGISTERED, added("cred_a", pub(k.a), expires_at=due),
                   added("cred_b", pub(k.b), expires_at=due)]
    if how == "recorded":
        facts += [expired("cred_a", due), expired("cred_b", due)]
    with pytest.raises(RefusedError, match="at most 2 are allowed"):
        decide(add(pub(k.c)), given(*facts))


def test_a_deleted_credential_frees_its_slot(k) -> None:
    """After a deletion a usage with two credentials accepts a new one."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), added("cred_b", pub(k.b)),
                  deleted("cred_a"))
    assert the_added(decide(add(pub(k.c)), state)).credential_id == "cred_new"


def test_the_limit_is_per_usage(k) -> None:
    """Two private_key_jwt keys leave room for two jar keys."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), added("cred_b", pub(k.b)),
                  added("cred_c", pub(k.c), JAR))
    assert the_added(decide(add(pub(k.d), JAR), state)).usage is ev.Usage.JAR


def test_a_credential_id_already_used_is_a_conflict(k) -> None:
    """A credential id is never reused within an application."""
    state = given(REGISTERED, added("cred_a", pub(k.a)))
    with pytest.raises(ConflictError, match="credential id 'cred_a' already exists"):
        decide(add(pub(k.b), JAR, cid="cred_a"), state)


# --- expiry when adding ------------------------------------------------------------------------


def test_a_future_expiry_is_recorded(k) -> None:
    """An --expires-at in the future is recorded as given."""
    when = NOW + timedelta(days=90)
    assert the_added(decide(add(pub(k.a), expires_at=when), given(REGISTERED))).expires_at == when


@pytest.mark.parametrize("delta", [timedelta(0), -timedelta(seconds=1), -timedelta(days=400)],
                         ids=["an expiry equal to now is refused",
                              "an expiry a second ago is refused",
                              "an expiry last year is refused"])
def test_an_expiry_not_in_the_future_is_refused(delta: timedelta, k) -> None:
    with pytest.raises(InputError, match="is not in the future"):
        decide(add(pub(k.a), expires_at=NOW + delta), given(REGISTERED))


def test_a_naive_expiry_is_refused(k) -> None:
    """An expiry without a time zone is refused."""
    naive = (NOW + timedelta(days=1)).replace(tzinfo=None)
    with pytest.raises(InputError, match="--expires-at needs a time zone"):
        decide(add(pub(k.a), expires_at=naive), given(REGISTERED))


def test_an_expiry_in_another_time_zone_is_the_same_instant(k) -> None:
    """An expiry with a non-UTC offset is accepted as the same instant."""
    when = (NOW + timedelta(days=1)).astimezone(timezone(timedelta(hours=-5)))
    assert the_added(decide(add(pub(k.a), expires_at=when), given(REGISTERED))).expires_at == when


def test_an_expiry_after_the_certificate_not_after_is_refused(certs) -> None:
    """A certificate's credential can't outlive the certificate's notAfter."""
    with pytest.raises(InputError, match="is after the certificate's notAfter"):
        decide(add(certs.self_signed, MTLS, expires_at=NOW + timedelta(days=91)),
               given(REGISTERED))


def test_an_mtls_certificate_may_expire_before_its_not_after(certs) -> None:
    """An mTLS certificate may be given an expiry earlier than its notAfter."""
    when = NOW + timedelta(days=30)
    event = the_added(decide(add(certs.self_signed, MTLS, expires_at=when), given(REGISTERED)))
    assert event.expires_at == when


@pytest.mark.parametrize("usage", [MTLS, PKJWT],
                         ids=["parse_expiry_from_cert takes notAfter for mtls",
                              "parse_expiry_from_cert takes notAfter for a private_key_jwt cert"])
def test_parse_expiry_from_cert_takes_the_not_after(usage: str, certs) -> None:
    event = the_added(decide(add(certs.self_signed, usage, parse_expiry_from_cert=True),
                             given(REGISTERED)))
    assert event.expires_at == certs.self_signed.not_after


@pytest.mark.parametrize("material", ["bare key", "dn"],
                         ids=["parse_expiry_from_cert with a bare key is refused",
                              "parse_expiry_from_cert with a subject DN is refused"])
def test_parse_expiry_from_cert_needs_a_certificate(material: str, k) -> None:
    m, usage = (pub(k.a), PKJWT) if material == "bare key" else (DN, MTLS)
    with pytest.raises(InputError, match="--parse-expiry-from-cert needs a certificate"):
        decide(add(m, usage, parse_expiry_from_cert=True), given(REGISTERED))


def test_parse_expiry_from_cert_and_expires_at_exclude_each_other(certs) -> None:
    """parse_expiry_from_cert together with expires_at is refused."""
    with pytest.raises(InputError, match="exclude each other"):
        decide(add(certs.self_signed, MTLS, parse_expiry_from_cert=True,
                   expires_at=NOW + timedelta(days=1)), given(REGISTERED))


def test_an_expired_certificate_is_refused(certs) -> None:
    """A certificate past its notAfter is refused."""
    with pytest.raises(InputError, match=r"the certificate expired at .*; issue a new one"):
        decide(add(certs.expired, MTLS), given(REGISTERED))


def test_a_certificate_not_valid_yet_is_refused(certs) -> None:
    """A certificate before its notBefore is refused."""
    with pytest.raises(InputError, match=r"the certificate is not valid yet \(notBefore"):
        decide(add(certs.not_yet_valid, MTLS), given(REGISTERED))


def test_a_certificate_is_valid_from_its_not_before_up_to_but_not_at_its_not_after(
        certs) -> None:
    """A certificate is accepted at its notBefore and refused at its notAfter."""
    m = certs.self_signed
    at_start = AddCredential(APP, "cred_new", MTLS, m, at=m.not_before)
    assert the_added(decide(at_start, given(REGISTERED))).kind is X509_CERT
    at_end = AddCredential(APP, "cred_new", MTLS, m, at=m.not_after)
    with pytest.raises(InputError, match="the certificate expired"):
        decide(at_end, given(REGISTERED))


# --- activating --------------------------------------------------------------------------------


@pytest.mark.parametrize("history", [(), ("activated", "disabled")],
                         ids=["an added credential is activated",
                              "a disabled credential is activated again"])
def test_activating_a_credential_that_is_not_active(history, k) -> None:
    facts = [REGISTERED, added("cred_a", pub(k.a))]
    facts += [{"activated": activated, "disabled": disabled}[h]("cred_a") for h in history]
    assert decide(ActivateCredential(APP, "cred_a", NOW), given(*facts)) == [activated("cred_a")]


def test_activating_an_active_credential_records_nothing(k) -> None:
    """Activating an active credential twice records nothing the second time."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), activated("cred_a"))
    assert decide(ActivateCredential(APP, "cred_a", NOW), state) == []


@pytest.mark.parametrize(
    "facts",
    [("expired",), ("past expiry",), ("at expiry",), ("activated", "past expiry")],
    ids=["a credential recorded as expired can't be activated",
         "a credential past its expiry can't be activated before the event is recorded",
         "a credential whose expiry is exactly now can't be activated",
         "an active credential past its expiry is not re-activated"],
)
def test_activating_an_expired_credential_is_refused(facts, k) -> None:
    due = NOW if "at expiry" in facts else NOW - timedelta(hours=1)
    history = [REGISTERED, added("cred_a", pub(k.a), expires_at=due)]
    if "activated" in facts:
        history.append(activated("cred_a"))
    if "expired" in facts:
        history.append((expired("cred_a", due), due))
    with pytest.raises(RefusedError) as info:
        decide(ActivateCredential(APP, "cred_a", NOW), given(*history))
    assert str(info.value) == (
        f"credential cred_a expired at {due.isoformat()}; an expired credential can't be "
        "activated (add a new credential instead)"
    )


# --- disabling and deleting: never the last usable one, unless forced --------------------------


def test_disabling_the_last_active_credential_of_a_usage_is_refused(k) -> None:
    """The last active credential of a usage can't be disabled (other usages don't count)."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), activated("cred_a"),
                  added("cred_b", pub(k.b)), added("cred_j", pub(k.c), JAR), activated("cred_j"))
    with pytest.raises(RefusedError) as info:
        decide(DisableCredential(APP, "cred_a", NOW), state)
    assert str(info.value) == (
        "credential cred_a is the last active private_key_jwt credential of application "
        "'payments'; disabling it would stop the application authenticating: activate another "
        "one first, or use --force"
    )


def test_disabling_the_last_active_credential_with_force_records_that_it_was_forced(k) -> None:
    """With force the last active one is disabled and the event records forced=True."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), activated("cred_a"))
    assert decide(DisableCredential(APP, "cred_a", NOW, force=True), state) == [
        ev.CredentialDisabled(credential_id="cred_a", forced=True)
    ]


def test_disabling_is_allowed_while_another_credential_of_the_usage_is_active(k) -> None:
    """Disabling is allowed while another credential of the usage stays active."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), added("cred_b", pub(k.b)),
                  activated("cred_a"), activated("cred_b"))
    assert decide(DisableCredential(APP, "cred_a", NOW), state) == [
        ev.CredentialDisabled(credential_id="cred_a", forced=False)
    ]


def _rotating(k, *steps: str) -> AppState:
    """cred_a active (the application holds it); a rotation's new cred_b active, ``steps``
    recorded."""
    return given(REGISTERED, added("cred_a", pub(k.a)), activated("cred_a"),
                 ev.RotationStarted(rotation_id="rot_1", usage=PKJWT, reason="age",
                                    old_credential_id="cred_a", new_credential_id="cred_b"),
                 added("cred_b", pub(k.b)), activated("cred_b"),
                 *(ev.RotationStepRecorded(rotation_id="rot_1", step=s) for s in steps))


@pytest.mark.parametrize("command", [DisableCredential, DeleteCredential],
                         ids=["disabling", "deleting"])
def test_a_rotations_new_credential_not_yet_delivered_does_not_count_as_usable(
        k, command: type[DisableCredential] | type[DeleteCredential]) -> None:
    """The old credential while its successor is active but not delivered (the application does
    not have it, and a failed test would park the rotation and disable it): refused, naming
    why; found by tests/integration/test_stateful.py."""
    with pytest.raises(RefusedError) as info:
        decide(command(APP, "cred_a", NOW), _rotating(k, "generated", "registered", "tested"))
    assert "(cred_b, the new credential of a rotation in flight, is not delivered yet)" in str(
        info.value) and str(info.value).endswith("let the rotation finish first, or use --force")
    delivered = _rotating(k, "generated", "registered", "tested", "delivered")
    assert decide(command(APP, "cred_a", NOW), delivered)  # the application has cred_b now
    assert decide(command(APP, "cred_a", NOW, force=True), _rotating(k))


def test_another_active_credential_past_its_expiry_does_not_count_as_usable(k) -> None:
    """An active credential past its expiry does not keep the application authenticating."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), activated("cred_a"),
                  added("cred_b", pub(k.b), expires_at=NOW - timedelta(minutes=1)),
                  activated("cred_b"))
    with pytest.raises(RefusedError, match="is the last active private_key_jwt credential"):
        decide(DisableCredential(APP, "cred_a", NOW), state)


def test_disabling_a_credential_that_was_never_active_is_allowed(k) -> None:
    """A credential that was never active can be disabled without force."""
    state = given(REGISTERED, added("cred_a", pub(k.a)))
    assert decide(DisableCredential(APP, "cred_a", NOW), state) == [disabled("cred_a")]


def test_disabling_a_disabled_credential_records_nothing(k) -> None:
    """Disabling a disabled credential records nothing."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), activated("cred_a"), disabled("cred_a"))
    assert decide(DisableCredential(APP, "cred_a", NOW), state) == []


def test_disabling_an_expired_credential_is_refused(k) -> None:
    """An expired credential can't be disabled: it is already inoperable."""
    due = NOW - timedelta(days=1)
    state = given(REGISTERED, added("cred_a", pub(k.a), expires_at=due), activated("cred_a"),
                  (expired("cred_a", due), due))
    with pytest.raises(RefusedError, match="has expired; it is already inoperable"):
        decide(DisableCredential(APP, "cred_a", NOW, force=True), state)


def test_deleting_the_last_active_credential_is_refused(k) -> None:
    """The last active credential of a usage can't be deleted."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), activated("cred_a"))
    with pytest.raises(RefusedError, match="is the last active private_key_jwt credential of "
                                           "application 'payments'; deleting it would stop"):
        decide(DeleteCredential(APP, "cred_a", NOW), state)


def test_deleting_the_last_active_credential_with_force(k) -> None:
    """With force the last active credential is deleted."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), activated("cred_a"))
    assert decide(DeleteCredential(APP, "cred_a", NOW, force=True), state) == [deleted("cred_a")]


@pytest.mark.parametrize("history", [(), ("activated", "disabled"), ("expired",)],
                         ids=["an added credential is deleted", "a disabled credential is deleted",
                              "an expired credential is deleted"])
def test_deleting_a_credential_that_is_not_usable(history, k) -> None:
    due = NOW - timedelta(days=1)
    facts: list = [REGISTERED, added("cred_a", pub(k.a), expires_at=due)]
    facts += [{"activated": activated, "disabled": disabled}[h]("cred_a") for h in history
              if h != "expired"]
    if "expired" in history:
        facts.append((expired("cred_a", due), due))
    assert decide(DeleteCredential(APP, "cred_a", NOW), given(*facts)) == [deleted("cred_a")]


def test_deleting_one_of_two_active_credentials(k) -> None:
    """One of two active credentials of a usage can be deleted without force."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), added("cred_b", pub(k.b)),
                  activated("cred_a"), activated("cred_b"))
    assert decide(DeleteCredential(APP, "cred_b", NOW), state) == [deleted("cred_b")]


# --- changing the expiry -----------------------------------------------------------------------


@pytest.mark.parametrize("new", [timedelta(days=120), timedelta(days=10)],
                         ids=["the expiry moves later", "the expiry moves earlier, still future"])
def test_changing_the_expiry_to_another_future_time(new: timedelta, k) -> None:
    old = NOW + timedelta(days=60)
    state = given(REGISTERED, added("cred_a", pub(k.a), expires_at=old))
    assert decide(ChangeExpiry(APP, "cred_a", NOW + new, NOW), state) == [
        ev.CredentialExpiryChanged(credential_id="cred_a", expires_at=NOW + new,
                                   previous_expires_at=old)
    ]


def test_giving_an_expiry_to_a_credential_that_had_none(k) -> None:
    """A credential without expiry gets one; the previous expiry is recorded as None."""
    state = given(REGISTERED, added("cred_a", pub(k.a)))
    assert decide(ChangeExpiry(APP, "cred_a", NOW + timedelta(days=1), NOW), state) == [
        ev.CredentialExpiryChanged(credential_id="cred_a", expires_at=NOW + timedelta(days=1),
                                   previous_expires_at=None)
    ]


def test_changing_the_expiry_to_the_same_time_records_nothing(k) -> None:
    """Setting the expiry a credential already has records nothing."""
    when = NOW + timedelta(days=60)
    state = given(REGISTERED, added("cred_a", pub(k.a), expires_at=when))
    assert decide(ChangeExpiry(APP, "cred_a", when, NOW), state) == []


@pytest.mark.parametrize("delta", [timedelta(0), -timedelta(days=1)],
                         ids=["an expiry of now is refused", "an expiry in the past is refused"])
def test_changing_the_expiry_to_the_past_is_refused(delta: timedelta, k) -> None:
    state = given(REGISTERED, added("cred_a", pub(k.a), expires_at=NOW + timedelta(days=60)))
    with pytest.raises(InputError, match="expiry can only move to a future time"):
        decide(ChangeExpiry(APP, "cred_a", NOW + delta, NOW), state)


def test_changing_the_expiry_to_a_naive_time_is_refused(k) -> None:
    """A new expiry without a time zone is refused."""
    state = given(REGISTERED, added("cred_a", pub(k.a)))
    naive = (NOW + timedelta(days=1)).replace(tzinfo=None)
    with pytest.raises(InputError, match="--expires-at needs a time zone"):
        decide(ChangeExpiry(APP, "cred_a", naive, NOW), state)


@pytest.mark.parametrize("recorded", [True, False],
                         ids=["an expired credential gets no new expiry",
                              "a credential past its expiry gets no new expiry"])
def test_changing_the_expiry_of_an_expired_credential_is_refused(recorded: bool, k) -> None:
    due = NOW - timedelta(hours=2)
    facts: list = [REGISTERED, added("cred_a", pub(k.a), expires_at=due)]
    if recorded:
        facts.append((expired("cred_a", due), due))
    with pytest.raises(RefusedError, match="can't be given a new expiry"):
        decide(ChangeExpiry(APP, "cred_a", NOW + timedelta(days=30), NOW), given(*facts))


def test_an_mtls_certificate_keeps_its_not_after_as_expiry(certs) -> None:
    """An mTLS certificate's expiry can't be changed: it is the certificate's notAfter."""
    state = given(REGISTERED, added("cred_m", certs.self_signed, MTLS,
                                    expires_at=certs.self_signed.not_after))
    with pytest.raises(RefusedError, match="an mTLS certificate expires at its notAfter"):
        decide(ChangeExpiry(APP, "cred_m", NOW + timedelta(days=10), NOW), state)


def test_an_mtls_subject_dn_alone_may_be_given_an_expiry() -> None:
    """An mTLS subject DN without a certificate may be given an expiry."""
    state = given(REGISTERED, added("cred_dn", DN, MTLS))
    assert decide(ChangeExpiry(APP, "cred_dn", NOW + timedelta(days=10), NOW), state) == [
        ev.CredentialExpiryChanged(credential_id="cred_dn", expires_at=NOW + timedelta(days=10))
    ]


# --- expiring what is due ----------------------------------------------------------------------


def test_expire_due_records_exactly_the_live_unexpired_credentials_past_their_expiry(
        k, certs) -> None:
    """ExpireDue expires live credentials due at or before at, not deleted or expired ones."""
    past, later = NOW - timedelta(hours=1), NOW + timedelta(hours=1)
    state = given(
        REGISTERED,
        added("active_past", pub(k.a), expires_at=past), activated("active_past"),
        added("added_at_now", pub(k.b), JAR, expires_at=NOW),
        added("future", pub(k.c), expires_at=later),
        added("never", pub(k.d), JAR),
        added("already", DN, MTLS, expires_at=past), (expired("already", past), past),
        added("disabled_past", certs.self_signed, MTLS, expires_at=past), disabled("disabled_past"),
        added("gone", pub(k.m2), expires_at=past), deleted("gone"),
    )
    assert decide(ExpireDue(APP, NOW), state) == [
        expired("active_past", past), expired("added_at_now", NOW),
        expired("disabled_past", past),
    ]


def test_expire_due_with_nothing_due_records_nothing(k) -> None:
    """ExpireDue records nothing when no expiry has been reached."""
    state = given(REGISTERED, added("cred_a", pub(k.a), expires_at=NOW + timedelta(seconds=1)))
    assert decide(ExpireDue(APP, NOW), state) == []


# --- rotating the client secret ----------------------------------------------------------------


def test_secret_versions_count_up_and_grace_applies_only_when_there_was_a_previous_secret() -> None:
    """v1 has nothing to keep valid; v2 with 1h grace keeps v1 until at + 1h; v3 without none."""
    grace = timedelta(hours=1)
    state = given(REGISTERED)
    first = decide(RotateSecret(APP, "sha256:01", NOW, grace), state)
    assert first == [ev.SecretRotated(version=1, fingerprint="sha256:01",
                                      previous_valid_until=None)]
    state = evolve(state, first[0], NOW)
    later = NOW + timedelta(days=1)
    second = decide(RotateSecret(APP, "sha256:02", later, grace), state)
    assert second == [ev.SecretRotated(version=2, fingerprint="sha256:02",
                                       previous_valid_until=later + grace)]
    state = evolve(state, second[0], later)
    third = decide(RotateSecret(APP, "sha256:03", later + grace), state)
    assert third == [ev.SecretRotated(version=3, fingerprint="sha256:03",
                                      previous_valid_until=None)]


def test_a_zero_grace_keeps_nothing_valid() -> None:
    """A zero grace records no validity for the previous secret."""
    state = given(REGISTERED, ev.SecretRotated(version=1, fingerprint="sha256:01"))
    assert decide(RotateSecret(APP, "sha256:02", NOW, timedelta(0)), state) == [
        ev.SecretRotated(version=2, fingerprint="sha256:02", previous_valid_until=None)
    ]


def test_a_negative_grace_is_refused() -> None:
    """A negative grace is refused."""
    with pytest.raises(InputError, match="--grace can't be negative"):
        decide(RotateSecret(APP, "sha256:01", NOW, -timedelta(seconds=1)), given(REGISTERED))


def test_every_refusal_is_an_orchestrator_error_with_one_line(k) -> None:
    """Refusals are meant for the user: one line, never the key material."""
    state = given(REGISTERED, added("cred_a", pub(k.a)), added("cred_b", pub(k.b)))
    for command in (add(pub(k.a)), add(pub(k.c)), add(pub(k.ec)), add(pub(k.r1024)),
                    add(pub(k.c), alg="RS512"), ActivateCredential(APP, "nope", NOW)):
        with pytest.raises(OrchestratorError) as info:
            decide(command, state)
        text = str(info.value)
        assert "\n" not in text and "BEGIN" not in text


# --- the fold: evolve and fold -----------------------------------------------------------------


def test_fold_builds_the_application_and_a_credential_from_its_facts(k) -> None:
    """fold sets registration, labels, version and a credential's status and times."""
    state = given(REGISTERED, added("cred_a", pub(k.a), expires_at=NOW))
    assert (state.app, state.registered, state.registered_at, state.labels, state.version) == (
        APP, True, T0, {"env": "prod"}, 2)
    cred = state.credentials["cred_a"]
    assert (cred.status, cred.added_at, cred.updated_at, cred.kid, cred.fingerprint) == (
        Status.ADDED, T0, T0, rfc7638_thumbprint(k.a), spki_fingerprint(k.a))


def test_an_empty_history_is_an_unregistered_application() -> None:
    """No facts: an unregistered application at version 0 without credentials."""
    state = fold(APP, [])
    assert (state.registered, state.version, dict(state.credentials)) == (False, 0, {})


def test_the_first_activation_is_kept_when_a_credential_is_activated_again(k) -> None:
    """Re-activation keeps the first activated_at; disabled_at and updated_at move on."""
    t1, t2, t3 = T0 + timedelta(days=1), T0 + timedelta(days=2), T0 + timedelta(days=3)
    cred = given(REGISTERED, added("cred_a", pub(k.a)), (activated("cred_a"), t1),
                 (disabled("cred_a"), t2), (activated("cred_a"), t3)).credentials["cred_a"]
    assert (cred.status, cred.activated_at, cred.disabled_at, cred.updated_at) == (
        Status.ACTIVE, t1, t2, t3)


def test_each_fact_sets_its_status_and_its_time(k) -> None:
    """Expired and deleted facts set their status and time; each fact bumps the version."""
    t1, t2, t3 = T0 + timedelta(days=1), T0 + timedelta(days=2), T0 + timedelta(days=3)
    state = given(REGISTERED, added("cred_a", pub(k.a), expires_at=t2),
                  (activated("cred_a"), t1), (expired("cred_a", t2), t2),
                  (deleted("cred_a"), t3))
    cred = state.credentials["cred_a"]
    assert (cred.status, cred.expired_at, cred.deleted_at, cred.updated_at) == (
        Status.DELETED, t2, t3, t3)
    assert state.version == 5


def test_an_expiry_change_and_a_secret_rotation_are_folded(k) -> None:
    """expiry_changed sets expires_at; secret.rotated sets the secret's version and time."""
    t1 = T0 + timedelta(days=1)
    state = given(REGISTERED, added("cred_a", pub(k.a)),
                  (ev.CredentialExpiryChanged(credential_id="cred_a", expires_at=NOW), t1),
                  (ev.SecretRotated(version=1, fingerprint="sha256:01",
                                    previous_valid_until=None), t1))
    assert state.credentials["cred_a"].expires_at == NOW
    assert state.secret == Secret(1, "sha256:01", t1, None)


def test_a_fact_about_an_unknown_credential_changes_only_the_version() -> None:
    """The fold is total: a fact about an unknown credential only bumps the version."""
    before = given(REGISTERED)
    after = evolve(before, activated("cred_ghost"), NOW)
    assert after.version == before.version + 1
    assert dict(after.credentials) == {}


def _credential(status: Status, expires_at: datetime | None) -> Credential:
    return Credential(id="c", usage=ev.Usage.JAR, kind=PUBLIC_KEY, kid="kid-000000",
                      fingerprint="sha256:00", status=status, added_at=T0, updated_at=T0,
                      expires_at=expires_at)


@pytest.mark.parametrize(
    ("status", "expires_at", "effective", "usable", "live"),
    [
        (Status.ADDED, None, Status.ADDED, False, True),
        (Status.ACTIVE, None, Status.ACTIVE, True, True),
        (Status.ACTIVE, NOW + timedelta(seconds=1), Status.ACTIVE, True, True),
        (Status.ACTIVE, NOW, Status.EXPIRED, False, True),
        (Status.ACTIVE, NOW - timedelta(days=1), Status.EXPIRED, False, True),
        (Status.DISABLED, NOW - timedelta(days=1), Status.EXPIRED, False, True),
        (Status.DISABLED, None, Status.DISABLED, False, True),
        (Status.EXPIRED, NOW - timedelta(days=1), Status.EXPIRED, False, True),
        (Status.DELETED, NOW - timedelta(days=1), Status.DELETED, False, False),
        (Status.DELETED, None, Status.DELETED, False, False),
    ],
    ids=["added is not usable but live", "active without expiry is usable",
         "active until a second from now is usable", "active with expiry now is expired",
         "active past its expiry shows expired and is unusable",
         "disabled past its expiry shows expired", "disabled is not usable but live",
         "expired is live (still counts) and not usable",
         "deleted past expiry stays deleted and is not live", "deleted is not live"],
)
def test_effective_status_usable_and_live(status, expires_at, effective, usable, live) -> None:
    cred = _credential(status, expires_at)
    assert (cred.effective_status(NOW), cred.usable(NOW), cred.live) == (effective, usable, live)


def test_the_state_lists_live_and_usable_credentials_per_usage(k) -> None:
    """live() excludes deleted ones; usable() only active, unexpired ones, per usage."""
    state = given(REGISTERED,
                  added("a", pub(k.a)), activated("a"),
                  added("b", pub(k.b), expires_at=NOW - timedelta(days=1)), activated("b"),
                  added("c", pub(k.c), JAR), activated("c"),
                  added("d", pub(k.d), JAR), deleted("d"))
    assert [c.id for c in state.live(PKJWT)] == ["a", "b"]
    assert [c.id for c in state.usable(PKJWT, NOW)] == ["a"]
    assert [c.id for c in state.live(ev.Usage.JAR)] == ["c"]
    assert [c.id for c in state.usable(JAR, NOW)] == ["c"]
    assert state.live(MTLS) == []
