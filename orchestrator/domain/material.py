"""Public credential material as the rules see it: parsed facts, no cryptography objects.

The shell (``orchestrator.adapters.crypto``) turns PEM files, subject DNs and generated keys into a
``PublicMaterial``; the pure rules (``orchestrator.domain.rules``) only read its fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = ["GeneratedKey", "MaterialKind", "PublicMaterial"]


class MaterialKind(StrEnum):
    PUBLIC_KEY = "public_key"  # a bare public key (SPKI or PKCS#1 PEM)
    CERTIFICATE = "certificate"  # an X.509 certificate (PEM)
    SUBJECT_DN = "subject_dn"  # only a subject distinguished name (CA-issued mTLS)


@dataclass(frozen=True, slots=True)
class PublicMaterial:
    kind: MaterialKind
    fingerprint: str  # "sha256:<hex>" of the SPKI DER, or "dn-sha256:<hex>" of the normalized DN
    key_type: str | None = None  # "RSA", "EC", "Ed25519", "DSA", ... ; None for a DN alone
    key_size: int | None = None
    jwk_thumbprint: str | None = None  # RFC 7638, base64url SHA-256; RSA keys only
    public_pem: str | None = None  # SPKI PEM of the key (also for certificates)
    certificate_pem: str | None = None
    subject_dn: str | None = None  # RFC 4514
    issuer_dn: str | None = None
    self_signed: bool = False
    not_before: datetime | None = None  # UTC, certificates only
    not_after: datetime | None = None  # UTC, certificates only
    rsa_exponent: int | None = None  # RSA keys only: the public numbers, for the rules' checks
    rsa_modulus: int | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GeneratedKey:
    """A freshly generated private key (PKCS#8 DER, for the keystore) and its public facts."""

    private_key_der: bytes = field(repr=False)
    material: PublicMaterial
