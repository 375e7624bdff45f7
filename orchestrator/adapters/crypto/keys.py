"""Private keys and certificates: generation, issue by a CA, PKCS#8 storage form.

Reads no clock: every time is a parameter.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orchestrator.adapters.crypto.material import (
    _SPKI,
    _key_material,
    parse_dn,
    parse_pem,
    spki_fingerprint,
)
from orchestrator.domain.errors import InputError, MaterialError
from orchestrator.domain.material import GeneratedKey, PublicMaterial

__all__ = [
    "KeySource",
    "PrimePairKeys",
    "fingerprint_of_private_key",
    "generate_rsa",
    "generate_self_signed",
    "issue_certificate",
    "issued_by",
    "private_key_pem",
    "public_material_of_private_key",
]

_NO_ENCRYPTION = serialization.NoEncryption()


_PKCS8 = serialization.PrivateFormat.PKCS8




KeySource = Callable[[int], rsa.RSAPrivateKey]  # key size in bits -> a new RSA private key


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
    pem = cert.public_bytes(serialization.Encoding.PEM)  # read as the test will read it
    return GeneratedKey(private_key_der=_pkcs8_der(key), material=parse_pem(pem, "new certificate"))


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


class PrimePairKeys:
    """RSA keys from distinct pairs of pooled primes: fast, real, unique, and weak. Only for
    the simulator. k pooled primes give k(k-1)/2 keys; the pool grows as keys are taken.

    Each new prime ``p`` is paired with every prime ``q`` already pooled, so the CRT
    coefficients (q^-1 mod p) of its pairs share the modulus ``p``: they are computed
    together with one modular inverse and three multiplications a pair (Montgomery's batch
    inversion) rather than an extended Euclid each (0.25-0.5 ms a key, more than all the rest
    of a pooled key but the prime search)."""

    def __init__(self) -> None:
        self._pairs: dict[int, Iterator[tuple[int, int, int]]] = {}

    @staticmethod
    def _pair_stream(key_size: int) -> Iterator[tuple[int, int, int]]:
        """(p, q, q^-1 mod p) for each new pair of pooled primes."""
        primes: list[int] = []
        while True:
            numbers = rsa.generate_private_key(65537, key_size).private_numbers()
            for fresh in (numbers.p, numbers.q):
                for old, iqmp in zip(primes, _inverses(primes, fresh), strict=True):
                    yield fresh, old, iqmp
                primes.append(fresh)

    def __call__(self, key_size: int) -> rsa.RSAPrivateKey:
        stream = self._pairs.setdefault(key_size, self._pair_stream(key_size))
        p, q, iqmp = next(stream)
        e = 65537
        d = pow(e, -1, (p - 1) * (q - 1))
        public = rsa.RSAPublicNumbers(e, p * q)
        return rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), iqmp, public,
        ).private_key(unsafe_skip_rsa_key_validation=True)  # p and q are primes by construction


def _inverses(values: list[int], prime: int) -> list[int]:
    """Each of ``values`` inverted modulo ``prime`` (none a multiple of it): Montgomery's batch
    inversion, one ``pow(x, -1, prime)`` for all of them."""
    prefix = list(itertools.accumulate(values, lambda a, b: a * b % prime))
    if not prefix:
        return []
    inverse = pow(prefix[-1], -1, prime)  # (v0 * ... * vn)^-1
    out = [0] * len(values)
    for i in range(len(values) - 1, 0, -1):
        out[i] = inverse * prefix[i - 1] % prime
        inverse = inverse * values[i] % prime  # now (v0 * ... * v(i-1))^-1
    out[0] = inverse
    return out
