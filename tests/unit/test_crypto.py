"""Real-key tests for orchestrator.adapters.crypto: parsing, fingerprints, generation, assertions."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

from orchestrator.adapters import crypto
from orchestrator.domain.errors import InputError, MaterialError, ProviderError
from orchestrator.domain.material import MaterialKind

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
CLIENT = "Xq3hT0vY1cLxS8kWm2NpA7bRd5uZ9eFg"
AUD = "https://tenant.eu.auth0.com/"
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
PEM = serialization.Encoding.PEM


def _b64url_int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _expected_thumbprint(key: rsa.RSAPublicKey) -> str:
    numbers = key.public_numbers()
    e, n = _b64url_int(numbers.e), _b64url_int(numbers.n)
    canonical = '{"e":"' + e + '","kty":"RSA","n":"' + n + '"}'
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _cert(key, subject: str, signer=None, issuer: str | None = None, days: int = 30) -> bytes:
    """A PEM certificate for ``key``'s public half, signed by ``signer`` (default: itself)."""
    signer = signer or key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=days))
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(PEM)


@pytest.fixture(scope="module")
def rsa_keys() -> dict[int, rsa.RSAPrivateKey]:
    return {bits: rsa.generate_private_key(65537, bits) for bits in (2048, 3072, 4096)}


@pytest.fixture(scope="module")
def key(rsa_keys) -> rsa.RSAPrivateKey:
    return rsa_keys[2048]


@pytest.fixture(scope="module")
def key_der(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def public_pem(key) -> str:
    return key.public_key().public_bytes(PEM, SPKI).decode()


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    ca_key = rsa.generate_private_key(65537, 2048)
    key_pem = ca_key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return _cert(ca_key, "Acme Issuing CA", days=3650), key_pem


# --- parse_pem ------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_spki_pkcs1_and_certificate_share_fingerprint_and_thumbprint(rsa_keys, bits):
    """SPKI, PKCS#1 and a certificate of one RSA key give one fingerprint and RFC 7638 kid."""
    key = rsa_keys[bits]
    pub = key.public_key()
    spki_der = pub.public_bytes(serialization.Encoding.DER, SPKI)
    parsed = [
        crypto.parse_pem(pub.public_bytes(PEM, SPKI)),
        crypto.parse_pem(pub.public_bytes(PEM, serialization.PublicFormat.PKCS1)),
        crypto.parse_pem(_cert(key, "app")),
    ]
    assert {m.fingerprint for m in parsed} == {"sha256:" + hashlib.sha256(spki_der).hexdigest()}
    assert {m.jwk_thumbprint for m in parsed} == {_expected_thumbprint(pub)}
    assert {m.public_pem for m in parsed} == {pub.public_bytes(PEM, SPKI).decode()}
    assert [m.kind for m in parsed] == [MaterialKind.PUBLIC_KEY] * 2 + [MaterialKind.CERTIFICATE]
    assert all(m.key_type == "RSA" and m.key_size == bits for m in parsed)


def test_rfc7638_example_key_thumbprint():
    """The RFC 7638 section 3.1 example key yields the RFC's published thumbprint."""
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJEC"
        "PebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qv"
        "zqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
        "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    pub = RSAAlgorithm.from_jwk(json.dumps({"kty": "RSA", "n": n, "e": "AQAB"}))
    material = crypto.parse_pem(pub.public_bytes(PEM, serialization.PublicFormat.PKCS1))
    assert material.jwk_thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_ec_p256_key_parses_with_type_and_size():
    """An EC P-256 key parses (refusing it is the rules' job) with key_type EC, 256 bits."""
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(PEM, SPKI)
    material = crypto.parse_pem(pem)
    assert (material.key_type, material.key_size, material.jwk_thumbprint) == ("EC", 256, None)
    assert material.fingerprint.startswith("sha256:")


def test_ed25519_key_parses_without_size():
    """An Ed25519 key parses with key_type Ed25519 and no key size."""
    pem = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(PEM, SPKI)
    material = crypto.parse_pem(pem)
    assert (material.key_type, material.key_size) == ("Ed25519", None)


def test_rsa_1024_parses_with_its_size():
    """A 1024-bit RSA key parses and reports 1024 bits, so the rules can say why they refuse."""
    pem = rsa.generate_private_key(65537, 1024).public_key().public_bytes(PEM, SPKI)
    assert crypto.parse_pem(pem).key_size == 1024


def test_certificate_facts_are_filled(key):
    """A certificate fills subject, issuer, UTC validity dates and its own PEM."""
    pem = _cert(key, "app.example", days=10)
    material = crypto.parse_pem(b"Bag Attributes: x\n" + pem, source="app.pem")
    assert material.subject_dn == material.issuer_dn == "CN=app.example"
    assert material.self_signed is True
    assert material.not_before == NOW and material.not_before.tzinfo is not None
    assert material.not_after == NOW + timedelta(days=10)
    assert material.certificate_pem == pem.decode()


def test_a_chain_leaf_first_gives_the_leaf(key, ca):
    """A certificate chain, each certificate issued by the next: the leaf is the credential."""
    ca_key = serialization.load_pem_private_key(ca[1], password=None)
    leaf = _cert(key, "leaf", signer=ca_key, issuer="Acme Issuing CA")
    material = crypto.parse_pem(leaf + ca[0])
    assert material.subject_dn == "CN=leaf"


@pytest.mark.parametrize("order", ["unrelated", "issuer first", "key and certificate"])
def test_several_pem_blocks_that_are_not_a_chain_are_refused(key, ca, order):
    """Two blocks that are not a chain leaf first would leave one silently ignored."""
    ca_key = serialization.load_pem_private_key(ca[1], password=None)
    blocks = {
        "unrelated": _cert(key, "leaf") + ca[0],
        "issuer first": ca[0] + _cert(key, "leaf", signer=ca_key, issuer="Acme Issuing CA"),
        "key and certificate": key.public_key().public_bytes(PEM, SPKI) + ca[0],
    }[order]
    with pytest.raises(MaterialError, match="holds 2 PEM blocks"):
        crypto.parse_pem(blocks, "--pem two.pem")


NOT_PEM = [
    b"",
    b"\x00\x01\xffgarbage bytes s3cr3tvalue",
    b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5IHMzY3IzdHZhbHVl\n-----END PUBLIC KEY-----\n",
    b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydCBzM2NyM3R2YWx1ZQ==\n-----END CERTIFICATE-----\n",
    b"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA s3cr3tvalue\n",
    b"-----BEGIN X509 CRL-----\nczNjcjN0dmFsdWU=\n-----END X509 CRL-----\n",
]


@pytest.mark.parametrize("data", NOT_PEM)
def test_not_pem_is_refused_without_echoing_input(data):
    """Garbage or malformed PEM raises MaterialError naming the source, never quoting input."""
    with pytest.raises(MaterialError) as info:
        crypto.parse_pem(data, source="upload.pem")
    message = str(info.value)
    assert message.startswith("upload.pem: not a PEM public key or certificate")
    assert "s3cr3tvalue" not in message and "czNjcjN0" not in message and "\n" not in message


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_private_key_is_refused_without_echoing_it(key, fmt):
    """A private key PEM (alone or beside a certificate) is refused; no key text in the message."""
    pem = key.private_bytes(PEM, fmt, serialization.NoEncryption())
    for data in (pem, _cert(key, "app") + pem):
        with pytest.raises(MaterialError) as info:
            crypto.parse_pem(data, source="key.pem")
        message = str(info.value)
        assert message.startswith("key.pem: this is a private key")
        lines = [line for line in pem.decode().splitlines() if "-----" not in line]
        assert not any(line[:20] in message for line in lines)


# --- certificates: self-signed or issued, dates -----------------------------------------


def test_self_signed_needs_matching_names_and_own_signature(rsa_keys, key):
    """self_signed is true only when issuer == subject and the cert's own key verifies it."""
    assert crypto.parse_pem(_cert(key, "app")).self_signed is True
    forged = _cert(key, "app", signer=rsa_keys[3072])  # issuer == subject, other signer
    assert crypto.parse_pem(forged).self_signed is False


def test_generate_self_signed_is_self_signed_and_matches_private_key():
    """generate_self_signed yields a self-signed certificate whose key is the stored one."""
    generated = crypto.generate_self_signed(2048, "svc", NOW, NOW + timedelta(days=90))
    material = generated.material
    assert material.kind is MaterialKind.CERTIFICATE and material.self_signed is True
    assert material.subject_dn == "CN=svc"
    assert (material.not_before, material.not_after) == (NOW, NOW + timedelta(days=90))
    assert crypto.fingerprint_of_private_key(generated.private_key_der) == material.fingerprint
    assert crypto.parse_pem(material.certificate_pem.encode()) == material


def test_issue_certificate_is_not_self_signed(ca):
    """A CA-issued certificate carries the CA as issuer, is not self-signed, and fits its key."""
    generated = crypto.issue_certificate(
        ca[0], ca[1], "C=DE\nO=Acme, Inc.\nCN=billing", 2048, NOW, NOW + timedelta(days=30)
    )
    material = generated.material
    assert material.self_signed is False
    assert material.issuer_dn == "CN=Acme Issuing CA"
    assert material.subject_dn == "CN=billing,O=Acme\\, Inc.,C=DE"
    assert crypto.fingerprint_of_private_key(generated.private_key_der) == material.fingerprint
    ca_cert = x509.load_pem_x509_certificate(ca[0])
    x509.load_pem_x509_certificate(material.certificate_pem.encode()).verify_directly_issued_by(
        ca_cert
    )


def test_issue_certificate_refuses_mismatched_ca_key(ca, key):
    """issue_certificate refuses a CA key that does not belong to the CA certificate."""
    other = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(MaterialError, match="does not match"):
        crypto.issue_certificate(ca[0], other, "CN=x", 2048, NOW, NOW + timedelta(days=1))


def test_expired_certificate_keeps_its_dates():
    """An expired certificate still parses; its not_after lies before the given now."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    generated = crypto.generate_self_signed(2048, "old", start, start + timedelta(days=365))
    material = crypto.parse_pem(generated.material.certificate_pem.encode())
    assert material.not_after == datetime(2020, 12, 31, tzinfo=UTC) < NOW


def test_validity_must_be_aware_and_ordered():
    """Naive or reversed validity dates and an empty CN are refused before any key is made."""
    with pytest.raises(InputError):
        crypto.generate_self_signed(2048, "x", NOW, NOW - timedelta(days=1))
    with pytest.raises(InputError):
        crypto.generate_self_signed(2048, "x", NOW.replace(tzinfo=None), NOW.replace(tzinfo=None))
    with pytest.raises(MaterialError, match="subject CN"):
        crypto.generate_self_signed(2048, "", NOW, NOW + timedelta(days=1))


# --- subject DNs ------------------------------------------------------------------------


def test_subject_dn_forms_normalize_to_one_fingerprint():
    """RFC 4514, spaced RFC 4514 and Auth0's newline form normalize to the same DN."""
    forms = ["CN=app,O=Acme,C=DE", "CN=app, O=Acme, C=DE", "C=DE\nO=Acme\nCN=app\n", "C=DE\r\nO=Acme\r\nCN=app"]
    materials = [crypto.subject_dn_material(form) for form in forms]
    digest = hashlib.sha256(b"CN=app,O=Acme,C=DE").hexdigest()
    assert {m.fingerprint for m in materials} == {f"dn-sha256:{digest}"}
    assert {m.subject_dn for m in materials} == {"CN=app,O=Acme,C=DE"}
    assert all(m.kind is MaterialKind.SUBJECT_DN and m.key_type is None for m in materials)


def test_subject_dn_matches_certificate_subject(ca):
    """The DN material of a certificate's subject equals that certificate's subject_dn."""
    generated = crypto.issue_certificate(
        ca[0], ca[1], "CN=api,OU=Ops,O=Acme,C=DE", 2048, NOW, NOW + timedelta(days=1)
    )
    assert crypto.subject_dn_material("C=DE\nO=Acme\nOU=Ops\nCN=api").subject_dn == (
        generated.material.subject_dn
    )


@pytest.mark.parametrize("dn", ["", "   ", "garbage", "C=DEU", "FOO=bar", "C=DE\ngarbage", "CN="])
def test_bad_subject_dn_is_refused(dn):
    """An empty or unparsable subject DN raises MaterialError."""
    with pytest.raises(MaterialError, match="subject DN"):
        crypto.subject_dn_material(dn)


# --- generated keys ---------------------------------------------------------------------


def test_generate_rsa_material_matches_private_key():
    """generate_rsa yields a PUBLIC_KEY whose fingerprint is that of the private key."""
    generated = crypto.generate_rsa()
    assert generated.material.kind is MaterialKind.PUBLIC_KEY
    assert generated.material.key_size == 2048
    assert crypto.fingerprint_of_private_key(generated.private_key_der) == (
        generated.material.fingerprint
    )
    pem = crypto.private_key_pem(generated.private_key_der)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    reloaded = serialization.load_pem_private_key(pem, password=None)
    assert reloaded.public_key().public_bytes(PEM, SPKI).decode() == generated.material.public_pem
    assert generated.private_key_der.hex()[:32] not in repr(generated)
    assert "private_key_der" not in repr(generated)


# --- client assertions ------------------------------------------------------------------


def test_client_assertion_round_trip(key_der, public_pem):
    """A signed assertion verifies at a fixed now and carries the Auth0 claims and kid."""
    token = crypto.sign_client_assertion(
        key_der, alg="RS256", kid="kid-123456", client_id=CLIENT, audience=AUD, now=NOW
    )
    claims = crypto.verify_client_assertion(
        token, public_pem=public_pem, alg="RS256", client_id=CLIENT, audience=AUD, now=NOW
    )
    assert claims["iss"] == claims["sub"] == CLIENT and claims["aud"] == AUD
    assert claims["exp"] - claims["iat"] == 60 and claims["iat"] == int(NOW.timestamp())
    assert uuid.UUID(claims["jti"])
    assert jwt.get_unverified_header(token)["kid"] == "kid-123456"


@pytest.mark.parametrize("alg", ["RS384", "PS256"])
def test_client_assertion_other_algorithms(key_der, public_pem, alg):
    """RS384 and PS256 assertions verify when the credential's alg matches."""
    token = crypto.sign_client_assertion(
        key_der, alg=alg, kid=None, client_id=CLIENT, audience=AUD, now=NOW
    )
    assert "kid" not in jwt.get_unverified_header(token)
    crypto.verify_client_assertion(
        token, public_pem=public_pem, alg=alg, client_id=CLIENT, audience=AUD, now=NOW
    )


def _raw(key, **overrides) -> str:
    iat = int(NOW.timestamp())
    claims = {"iss": CLIENT, "sub": CLIENT, "aud": AUD, "iat": iat, "exp": iat + 60, "jti": "j1"}
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="RS256")


REJECTIONS = {
    "wrong alg": (lambda k, d: crypto.sign_client_assertion(d, alg="RS384", kid=None, client_id=CLIENT, audience=AUD, now=NOW), {}, "alg"),
    "wrong aud": (lambda k, d: _raw(k, aud="https://other.auth0.com/"), {}, "udience"),
    "iss != sub": (lambda k, d: _raw(k, iss="someone-else"), {}, "ssuer"),
    "sub != client": (lambda k, d: _raw(k, sub="someone-else"), {}, "ubject"),
    "lifetime > 300": (lambda k, d: crypto.sign_client_assertion(d, alg="RS256", kid=None, client_id=CLIENT, audience=AUD, now=NOW, lifetime_seconds=301), {}, "300"),
    "expired": (lambda k, d: _raw(k), {"now": NOW + timedelta(seconds=60)}, "expired"),
    "iat in future": (lambda k, d: _raw(k), {"now": NOW - timedelta(seconds=11)}, "iat"),
    "nbf in future": (lambda k, d: _raw(k, nbf=int(NOW.timestamp()) + 11), {}, "nbf"),
    "missing exp": (lambda k, d: _raw(k, exp=None), {}, "exp"),
    "missing jti": (lambda k, d: _raw(k, jti=None), {}, "jti"),
    "jti too long": (lambda k, d: _raw(k, jti="j" * 65), {}, "jti"),
    "too large": (lambda k, d: _raw(k, pad="x" * 1600), {}, "2048"),
    "other key": (lambda k, d: _raw(rsa.generate_private_key(65537, 2048)), {}, "ignature"),
    "not a jwt": (lambda k, d: "not.a.jwt", {}, "JWT"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_client_assertion_rejections(key, key_der, public_pem, case):
    """Each Auth0 assertion rule violation raises AssertionInvalid with a short reason."""
    make, extra, fragment = REJECTIONS[case]
    token = make(key, key_der)
    kwargs = {"public_pem": public_pem, "alg": "RS256", "client_id": CLIENT, "audience": AUD}
    kwargs.update({"now": NOW, **extra})
    with pytest.raises(crypto.AssertionInvalid) as info:
        crypto.verify_client_assertion(token, **kwargs)
    assert fragment in info.value.reason
    assert isinstance(info.value, ProviderError) and "\n" not in str(info.value)


def test_client_assertion_within_skew_is_accepted(key):
    """iat up to 10 s ahead of now (clock skew) is still accepted."""
    token = _raw(key)
    crypto.verify_client_assertion(
        token,
        public_pem=key.public_key().public_bytes(PEM, SPKI).decode(),
        alg="RS256",
        client_id=CLIENT,
        audience=AUD,
        now=NOW - timedelta(seconds=10),
    )


# --- secrets and ids --------------------------------------------------------------------


def test_secret_hash_and_check():
    """hash_secret is salted; check_secret accepts the secret and refuses others or junk."""
    secret = crypto.new_secret()
    assert len(secret) == 64 and secret != crypto.new_secret()
    stored = crypto.hash_secret(secret)
    assert stored.startswith("hmac-sha256$") and secret not in stored
    assert stored != crypto.hash_secret(secret)
    assert crypto.check_secret(secret, stored) is True
    assert crypto.check_secret(secret + "x", stored) is False
    assert crypto.check_secret(secret, "not-a-hash") is False
    assert crypto.check_secret(secret, "hmac-sha256$x$y") is False


def test_secret_fingerprint_format():
    """secret_fingerprint is "sha256:" + hex SHA-256 of the secret."""
    assert crypto.secret_fingerprint("abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()


def test_credential_id_format():
    """Credential ids are "cred_" + 22 base58 characters and do not repeat."""
    ids = {crypto.new_credential_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"cred_[1-9A-HJ-NP-Za-km-z]{22}", i) for i in ids)


def test_pooled_prime_keys_are_whole_rsa_keys_each_with_its_own_modulus() -> None:
    """The simulator's keys: 40 from a pool of pairs, each one passing OpenSSL's full RSA check
    (p and q prime, d, and the CRT values d mod p-1, d mod q-1 and q^-1 mod p, the last
    computed for a whole batch at once), each modulus new, each signing what its public key
    verifies."""
    source = crypto.PrimePairKeys()
    moduli = set()
    for _ in range(40):
        der = crypto.generate_rsa(2048, source).private_key_der
        key = serialization.load_der_private_key(der, password=None)  # validated: CRT included
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
        numbers = key.private_numbers()
        assert numbers.iqmp == rsa.rsa_crt_iqmp(numbers.p, numbers.q)
        moduli.add(numbers.public_numbers.n)
        token = crypto.sign_client_assertion(der, alg="PS256", kid="k", client_id="app",
                                             audience="aud", now=NOW)
        jwt.decode(token, key.public_key(), algorithms=["PS256"], audience="aud",
                   options={"verify_exp": False, "verify_iat": False})
    assert len(moduli) == 40
