"""Keys, certificates, secrets, fingerprints and JWT client assertions (the crypto shell).

``cryptography`` and ``PyJWT`` do all the cryptography; this module turns their objects into
``PublicMaterial`` facts for the pure rules, with one-line errors that never echo the input.
It reads no clock: every time is a parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jwt.algorithms import RSAAlgorithm

from orchestrator.domain.errors import InputError, MaterialError, ProviderError
from orchestrator.domain.material import GeneratedKey, MaterialKind, PublicMaterial

__all__ = [
    "MAX_ASSERTION_BYTES",
    "MAX_ASSERTION_LIFETIME",
    "MAX_CLIENT_ID_LENGTH",
    "MAX_JTI_LENGTH",
    "_KEY_TYPES",
    "AssertionInvalid",
    "Cryptography",
    "PrimePairKeys",
    "check_secret",
    "fingerprint_of_private_key",
    "generate_rsa",
    "generate_self_signed",
    "hash_secret",
    "issue_certificate",
    "issued_by",
    "jwk_thumbprint",
    "new_credential_id",
    "new_secret",
    "parse_dn",
    "parse_pem",
    "private_key_pem",
    "public_material_of_private_key",
    "secret_fingerprint",
    "sign_client_assertion",
    "spki_fingerprint",
    "subject_dn_material",
    "verify_client_assertion",
]

MAX_ASSERTION_BYTES = 2048
MAX_ASSERTION_LIFETIME = 300
MAX_JTI_LENGTH = 64
MAX_CLIENT_ID_LENGTH = 64
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_PRIVATE_PEM = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY")
_KEY_TYPES: tuple[tuple[type, str], ...] = (
    (rsa.RSAPublicKey, "RSA"), (ec.EllipticCurvePublicKey, "EC"), (dsa.DSAPublicKey, "DSA"),
    (ed25519.Ed25519PublicKey, "Ed25519"), (ed448.Ed448PublicKey, "Ed448"),
    (x25519.X25519PublicKey, "X25519"), (x448.X448PublicKey, "X448"),
)  # fmt: skip
_NO_ENCRYPTION = serialization.NoEncryption()
_PKCS8 = serialization.PrivateFormat.PKCS8
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


KeySource = Callable[[int], rsa.RSAPrivateKey]  # key size in bits -> a new RSA private key


class AssertionInvalid(ProviderError):
    """A client assertion (Private Key JWT) that the token endpoint must refuse."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"client assertion rejected: {reason}")
        self.reason = reason


def parse_pem(data: bytes, source: str = "PEM") -> PublicMaterial:
    """Parse an SPKI / PKCS#1 public key or an X.509 certificate PEM into ``PublicMaterial``.

    One block only, or a certificate chain leaf first (each certificate issued by the next;
    the leaf is the credential): two unrelated blocks would leave one of them silently
    ignored. Any private key block is refused. Error messages name ``source`` and never quote
    ``data``.
    """
    if _PRIVATE_PEM.search(data):
        raise MaterialError(
            f"{source}: this is a private key; give the public key or the certificate, "
            "never the private key"
        )
    not_pem = MaterialError(
        f"{source}: not a PEM public key or certificate "
        "(expected -----BEGIN PUBLIC KEY-----, RSA PUBLIC KEY or CERTIFICATE)"
    )
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
    if not blocks:
        raise not_pem
    try:
        if len(blocks) > 1:
            return _certificate_material(_leaf_of_chain(blocks, source))
        label, block = blocks[0]
        if label == b"CERTIFICATE":
            return _certificate_material(x509.load_pem_x509_certificate(block))
        if label in (b"PUBLIC KEY", b"RSA PUBLIC KEY"):
            return _key_material(serialization.load_pem_public_key(block))
    except UnsupportedAlgorithm:
        raise MaterialError(
            f"{source}: the key algorithm is not supported; give an RSA key or certificate"
        ) from None
    except (ValueError, TypeError):
        raise not_pem from None
    raise not_pem


def _leaf_of_chain(blocks: list[tuple[bytes, bytes]], source: str) -> x509.Certificate:
    """The first certificate of a chain in which each certificate is issued by the next."""
    refused = MaterialError(
        f"{source}: holds {len(blocks)} PEM blocks; give one public key or one certificate "
        "(a certificate chain is accepted leaf first, each certificate issued by the next)")
    if any(label != b"CERTIFICATE" for label, _ in blocks):
        raise refused
    chain = [x509.load_pem_x509_certificate(block) for _, block in blocks]
    for certificate, issuer in itertools.pairwise(chain):
        try:
            certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise refused from None
    return chain[0]


def subject_dn_material(dn: str) -> PublicMaterial:
    """Material for a subject DN given as RFC 4514 or in Auth0's newline form (C first)."""
    normalized = parse_dn(dn).rfc4514_string()
    digest = hashlib.sha256(normalized.encode("utf-8")).hexdigest()
    return PublicMaterial(
        kind=MaterialKind.SUBJECT_DN, fingerprint=f"dn-sha256:{digest}", subject_dn=normalized
    )


def parse_dn(dn: str) -> x509.Name:
    """Parse "CN=app,O=Acme,C=DE" (RFC 4514) or one ATTR=value per line, most significant first."""
    text = dn.strip()
    try:
        if "\n" in text:
            name = x509.Name([_rdn_from_line(line) for line in text.splitlines() if line.strip()])
        else:
            try:
                name = x509.Name.from_rfc4514_string(text)
            except ValueError:  # tolerate "CN=app, O=Acme" (space after the separator)
                name = x509.Name.from_rfc4514_string(re.sub(r"(?<!\\),\s+", ",", text))
    except ValueError:
        shown = repr(dn if len(dn) <= 80 else dn[:77] + "...")
        raise MaterialError(
            f"subject DN {shown}: cannot be parsed; write it as CN=app,O=Acme,C=DE "
            "or one ATTRIBUTE=value per line"
        ) from None
    if len(name) == 0:
        raise MaterialError("subject DN is empty; give at least CN=<name>")
    return name


def _rdn_from_line(line: str) -> x509.RelativeDistinguishedName:
    """One "ATTR=value" line (value unescaped) -> RDN; cryptography maps ATTR to its OID."""
    key, sep, value = (part.strip() for part in line.partition("="))
    if not sep or not key or not value:
        raise ValueError("not ATTRIBUTE=value")
    oid = next(iter(x509.Name.from_rfc4514_string(f"{key}=XX"))).oid  # XX: valid for any ATTR
    return x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)])


def spki_fingerprint(public_key: PublicKeyTypes) -> str:
    """"sha256:" + hex SHA-256 of the SubjectPublicKeyInfo DER of ``public_key``."""
    der = public_key.public_bytes(serialization.Encoding.DER, _SPKI)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def jwk_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 thumbprint of an RSA key: base64url SHA-256 of canonical {"e","kty","n"}."""
    jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")
    return _b64(hashlib.sha256(canonical).digest())


def _key_material(public_key: PublicKeyTypes) -> PublicMaterial:
    key_type = next((n for cls, n in _KEY_TYPES if isinstance(public_key, cls)), None)
    numbers = (public_key.public_numbers() if isinstance(public_key, rsa.RSAPublicKey)
               else None)
    return PublicMaterial(
        kind=MaterialKind.PUBLIC_KEY,
        fingerprint=spki_fingerprint(public_key),
        key_type=key_type or type(public_key).__name__,
        key_size=getattr(public_key, "key_size", None),
        jwk_thumbprint=(
            jwk_thumbprint(public_key) if isinstance(public_key, rsa.RSAPublicKey) else None
        ),
        public_pem=public_key.public_bytes(serialization.Encoding.PEM, _SPKI).decode("ascii"),
        rsa_exponent=numbers.e if numbers else None,
        rsa_modulus=numbers.n if numbers else None,
    )


def _certificate_material(cert: x509.Certificate) -> PublicMaterial:
    key = _key_material(cert.public_key())
    self_signed = False
    if cert.issuer == cert.subject:
        try:
            cert.verify_directly_issued_by(cert)
            self_signed = True
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            pass
    return replace(
        key,
        kind=MaterialKind.CERTIFICATE,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        subject_dn=cert.subject.rfc4514_string(),
        issuer_dn=cert.issuer.rfc4514_string(),
        self_signed=self_signed,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _new_rsa(key_size: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def _pkcs8_der(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, _PKCS8, _NO_ENCRYPTION)


def _issue(
    subject: x509.Name,
    issuer: x509.Name,
    signer: PrivateKeyTypes | None,
    key_size: int,
    not_before: datetime,
    not_after: datetime,
    key_source: KeySource | None = None,
) -> GeneratedKey:
    """A new RSA key and a clientAuth certificate for it, signed by ``signer`` (None: itself)."""
    if not_before.tzinfo is None or not_after.tzinfo is None:
        raise InputError("certificate validity: give timezone-aware datetimes (UTC)")
    if not_after <= not_before:
        raise InputError("certificate validity: not_after must be later than not_before")
    key = (key_source or _new_rsa)(key_size)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if signer is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())  # type: ignore[arg-type]
        builder = builder.add_extension(aki, critical=False)
    signer = signer or key
    edwards = isinstance(signer, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    cert = builder.sign(signer, None if edwards else hashes.SHA256())  # type: ignore[arg-type]
    return GeneratedKey(private_key_der=_pkcs8_der(key), material=_certificate_material(cert))


def generate_rsa(key_size: int = 2048, key_source: KeySource | None = None) -> GeneratedKey:
    """A new RSA key pair (e = 65537); the material is a PUBLIC_KEY."""
    key = (key_source or _new_rsa)(key_size)
    return GeneratedKey(private_key_der=_pkcs8_der(key), material=_key_material(key.public_key()))


def generate_self_signed(
    key_size: int, subject_cn: str, not_before: datetime, not_after: datetime,
    key_source: KeySource | None = None,
) -> GeneratedKey:
    """A new RSA key and a self-signed SHA-256 certificate for it (subject CN=subject_cn)."""
    try:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    except ValueError:
        raise MaterialError(f"subject CN {subject_cn!r:.70}: must be 1 to 64 characters") from None
    return _issue(name, name, None, key_size, not_before, not_after, key_source)


def issue_certificate(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    subject_dn: str,
    key_size: int,
    not_before: datetime,
    not_after: datetime,
    key_source: KeySource | None = None,
) -> GeneratedKey:
    """A new RSA key and a certificate for ``subject_dn`` issued by the given CA (SHA-256)."""
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError:
        raise MaterialError("CA certificate: not a PEM certificate") from None
    try:
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise MaterialError("CA key: not an unencrypted PEM private key") from None
    if spki_fingerprint(ca_key.public_key()) != spki_fingerprint(ca_cert.public_key()):
        raise MaterialError("CA key: does not match the CA certificate; give the CA's own key")
    return _issue(parse_dn(subject_dn), ca_cert.subject, ca_key, key_size, not_before, not_after,
                  key_source)


def issued_by(certificate_pem: bytes, ca_pem: bytes, at: datetime) -> bool:
    """Whether the certificate is signed by the CA certificate ``ca_pem`` (names and signature),
    and that CA is a CA valid at ``at``: the check a TLS edge makes before it forwards a client
    certificate as CA-verified. Intermediates are not followed."""
    try:
        leaf = x509.load_pem_x509_certificate(certificate_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    try:
        if not ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        pass
    return ca.not_valid_before_utc <= at < ca.not_valid_after_utc


def _load_private_der(private_key_der: bytes) -> PrivateKeyTypes:
    try:
        # Our own keys, read back from the authenticated (AES-GCM) keystore: skip the costly
        # RSA consistency check (~80 ms a key), which guards against malformed foreign keys.
        return serialization.load_der_private_key(
            private_key_der, password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise MaterialError("private key: not an unencrypted PKCS#8 DER key") from None


def private_key_pem(private_key_der: bytes) -> bytes:
    """PKCS#8 PEM (unencrypted) of a stored PKCS#8 DER private key, for delivery to an app."""
    key = _load_private_der(private_key_der)
    return key.private_bytes(serialization.Encoding.PEM, _PKCS8, _NO_ENCRYPTION)


def public_material_of_private_key(private_key_der: bytes) -> PublicMaterial:
    """The public facts of a stored private key (to resume a rotation without a new key)."""
    public = _load_private_der(private_key_der).public_key()
    return parse_pem(public.public_bytes(serialization.Encoding.PEM, _SPKI), "stored key")


def fingerprint_of_private_key(private_key_der: bytes) -> str:
    """The "sha256:" SPKI fingerprint of the public half of a PKCS#8 DER private key."""
    return spki_fingerprint(_load_private_der(private_key_der).public_key())


def new_secret() -> str:
    """A new client secret: 48 random bytes, base64url (64 characters)."""
    return secrets.token_urlsafe(48)


def secret_fingerprint(secret: str) -> str:
    """"sha256:" + hex SHA-256 of the secret (identifies it; not for verification)."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str) -> str:
    """Salted hash for verifying a client secret later: "hmac-sha256$<salt>$<digest>" (base64url).

    The secrets hashed here are 384-bit random values (``new_secret``): no work factor makes
    those harder to guess, so a salted HMAC-SHA256 is the right cost (microseconds, not the
    tens of milliseconds of a password hash)."""
    salt = secrets.token_bytes(16)
    digest = hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).digest()
    return f"hmac-sha256${_b64(salt)}${_b64(digest)}"


def check_secret(secret: str, stored: str) -> bool:
    """True when ``secret`` matches a ``hash_secret`` value (constant-time); False on a
    mismatch or a malformed value."""
    try:
        scheme, salt, expected = stored.split("$")
        if scheme != "hmac-sha256":
            return False
        digest = hmac.new(_unb64(salt), secret.encode("utf-8"), hashlib.sha256).digest()
        return hmac.compare_digest(digest, _unb64(expected))
    except (ValueError, TypeError):
        return False


def new_credential_id() -> str:
    """A credential id in Auth0's observed form: "cred_" + 22 base58 characters."""
    return "cred_" + "".join(secrets.choice(_BASE58) for _ in range(22))


def _epoch(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return int(now.timestamp())


def sign_client_assertion(
    private_key_der: bytes,
    *,
    alg: str,
    kid: str | None,
    client_id: str,
    audience: str,
    now: datetime,
    lifetime_seconds: int = 60,
    jti: str | None = None,
) -> str:
    """A signed client assertion: iss = sub = client_id, aud, iat = now, exp, jti (uuid4)."""
    iat = _epoch(now)
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": iat,
              "exp": iat + lifetime_seconds, "jti": jti if jti is not None else str(uuid.uuid4())}  # fmt: skip
    headers = {"kid": kid} if kid is not None else None
    key = _load_private_der(private_key_der)
    return jwt.encode(claims, key, algorithm=alg, headers=headers)  # type: ignore[arg-type]


def verify_client_assertion(
    token: str,
    *,
    public_pem: str,
    alg: str,
    client_id: str,
    audience: str,
    now: datetime,
    leeway_seconds: int = 10,
) -> dict[str, Any]:
    """Verify a client assertion by Auth0's rules at ``now``; return its claims.

    PyJWT checks signature, alg, iss = sub = client_id, aud and that exp/jti exist; times are
    checked here against ``now`` (PyJWT would read the real clock): iat/nbf at most
    ``leeway_seconds`` ahead, now < exp <= iat + 300. Raises ``AssertionInvalid``.
    """
    current = _epoch(now)
    if len(token.encode("utf-8")) > MAX_ASSERTION_BYTES:
        raise AssertionInvalid(f"assertion is larger than {MAX_ASSERTION_BYTES} bytes")
    if len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise AssertionInvalid(f"iss/sub longer than {MAX_CLIENT_ID_LENGTH} characters")
    try:
        header_alg = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError:
        raise AssertionInvalid("not a JWT") from None
    if header_alg != alg:
        raise AssertionInvalid(f"header alg {str(header_alg)[:16]!r} is not {alg!r}")
    try:
        key = serialization.load_pem_public_key(public_pem.encode("ascii"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise AssertionInvalid("the credential's public key cannot be loaded") from None
    options = {"verify_exp": False, "verify_iat": False, "verify_nbf": False,
               "require": ["iss", "sub", "aud", "exp", "jti"]}  # fmt: skip
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[alg], audience=audience, issuer=client_id,  # type: ignore[arg-type]
            subject=client_id, leeway=timedelta(seconds=leeway_seconds), options=options,  # type: ignore[arg-type]
        )  # fmt: skip
    except jwt.InvalidTokenError as error:
        raise AssertionInvalid(str(error) or type(error).__name__) from None
    times: dict[str, int] = {}
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise AssertionInvalid(f"{name} must be a number")
            times[name] = int(value)
    for name in ("iat", "nbf"):
        if times.get(name, current) > current + leeway_seconds:
            raise AssertionInvalid(f"{name} is in the future")
    if times["exp"] <= current:
        raise AssertionInvalid("assertion has expired (exp)")
    if times["exp"] - times.get("iat", current) > MAX_ASSERTION_LIFETIME:
        raise AssertionInvalid(f"exp is more than {MAX_ASSERTION_LIFETIME} s after iat")
    if not claims["jti"] or len(claims["jti"]) > MAX_JTI_LENGTH:
        raise AssertionInvalid(f"jti must be 1 to {MAX_JTI_LENGTH} characters")
    return claims


class Cryptography:
    """The ``Crypto`` port on ``cryptography`` and PyJWT (this module's functions), with an
    optional key source (the simulator's fast pooled-prime keys; fresh keys by default)."""

    def __init__(self, key_source: KeySource | None = None) -> None:
        self.key_source = key_source

    new_credential_id = staticmethod(new_credential_id)
    parse_pem = staticmethod(parse_pem)
    subject_dn_material = staticmethod(subject_dn_material)
    private_key_pem = staticmethod(private_key_pem)
    public_material_of_private_key = staticmethod(public_material_of_private_key)
    new_secret = staticmethod(new_secret)
    secret_fingerprint = staticmethod(secret_fingerprint)
    sign_client_assertion = staticmethod(sign_client_assertion)

    def generate_rsa(self, key_size: int) -> GeneratedKey:
        return generate_rsa(key_size, self.key_source)

    def generate_self_signed(self, key_size: int, subject_cn: str, not_before: datetime,
                             not_after: datetime) -> GeneratedKey:
        return generate_self_signed(key_size, subject_cn, not_before, not_after, self.key_source)

    def issue_certificate(self, ca_cert_pem: bytes, ca_key_pem: bytes, subject_dn: str,
                          key_size: int, not_before: datetime, not_after: datetime) -> GeneratedKey:
        return issue_certificate(ca_cert_pem, ca_key_pem, subject_dn, key_size, not_before,
                                 not_after, self.key_source)


class PrimePairKeys:
    """RSA keys from distinct pairs of pooled primes: fast, real, unique, and weak. Only for
    the simulator. k pooled primes give k(k-1)/2 keys; the pool grows as keys are taken."""

    def __init__(self) -> None:
        self._pairs: dict[int, Iterator[tuple[int, int]]] = {}

    @staticmethod
    def _pair_stream(key_size: int) -> Iterator[tuple[int, int]]:
        primes: list[int] = []
        while True:
            numbers = rsa.generate_private_key(65537, key_size).private_numbers()
            for fresh in (numbers.p, numbers.q):
                for old in primes:
                    yield old, fresh
                primes.append(fresh)

    def __call__(self, key_size: int) -> rsa.RSAPrivateKey:
        stream = self._pairs.setdefault(key_size, self._pair_stream(key_size))
        p, q = next(stream)
        e = 65537
        d = pow(e, -1, (p - 1) * (q - 1))
        public = rsa.RSAPublicNumbers(e, p * q)
        return rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
            public,
        ).private_key(unsafe_skip_rsa_key_validation=True)  # p and q are primes by construction
