"""Key and certificate material as Auth0 sees it: PEM parsing, sizes, thumbprints, subject DNs.

Written independently of the orchestrator's crypto adapters (the emulator must not share their
mistakes): RFC 7638 thumbprints for ``kid``, base64url SHA-256 of the certificate's DER for
``thumbprint_sha256``, and the subject DN one ``ATTR=value`` per line in the certificate's own
order (auth0-credentials.md §1.2: ``C=XX\\nST=...\\nO=...\\nCN=...``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "Material",
    "b64url",
    "cert_thumbprint",
    "cert_valid_at",
    "dn_lines",
    "load_certificate",
    "load_material",
    "normalize_dn",
    "rfc7638_thumbprint",
    "spki_der",
]


@dataclass(frozen=True)
class Material:
    """What a PEM held: a public key and, when it was a certificate, the certificate."""

    public_key: PublicKeyTypes
    certificate: x509.Certificate | None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_certificate(pem: str | bytes) -> x509.Certificate:
    """The first certificate of a PEM text (the edge forwards only the first)."""
    data = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificate(data)


def load_material(pem: str) -> Material:
    """An SPKI or PKCS#1 public key, or an X.509 certificate; ValueError otherwise."""
    data = pem.strip().encode()
    if b"-----BEGIN CERTIFICATE-----" in data:
        cert = load_certificate(data)
        return Material(cert.public_key(), cert)
    if b"-----BEGIN RSA PUBLIC KEY-----" in data:
        key = serialization.load_pem_public_key(data)  # cryptography reads PKCS#1 too
        return Material(key, None)
    if b"-----BEGIN PUBLIC KEY-----" in data:
        return Material(serialization.load_pem_public_key(data), None)
    raise ValueError("not a PEM public key or certificate")


def spki_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def rfc7638_thumbprint(key: rsa.RSAPublicKey) -> str:
    numbers = key.public_numbers()

    def b64int(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    canonical = json.dumps({"e": b64int(numbers.e), "kty": "RSA", "n": b64int(numbers.n)},
                           separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def cert_thumbprint(cert: x509.Certificate) -> str:
    return b64url(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())


def cert_valid_at(cert: x509.Certificate, now: float) -> bool:
    return (cert.not_valid_before_utc.timestamp() <= now
            <= cert.not_valid_after_utc.timestamp())


def dn_lines(name: x509.Name) -> str:
    """``C=DE\\nO=Acme\\nCN=app``: one attribute per line, in the certificate's order."""
    parts = []
    for rdn in name.rdns:
        for attribute in rdn:
            parts.append(attribute.rfc4514_string())
    return "\n".join(parts)


def normalize_dn(text: str) -> tuple[str, ...]:
    """A stored or presented DN as comparable lines (whitespace around each line ignored)."""
    return tuple(line.strip() for line in text.strip().splitlines() if line.strip())
