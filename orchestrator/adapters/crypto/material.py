"""Public material: PEM keys and certificates, subject DNs, fingerprints, key ids.

Turns ``cryptography`` objects into ``PublicMaterial`` facts for the pure rules, with one-line
errors that never echo the input.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from dataclasses import replace
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from jwt.algorithms import RSAAlgorithm

from orchestrator.domain.errors import MaterialError
from orchestrator.domain.material import MaterialKind, PublicMaterial

__all__ = ["jwk_thumbprint", "parse_dn", "parse_pem", "spki_fingerprint", "subject_dn_material"]

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)


_PRIVATE_PEM = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY")


_KEY_TYPES: tuple[tuple[type, str], ...] = (
    (rsa.RSAPublicKey, "RSA"), (ec.EllipticCurvePublicKey, "EC"), (dsa.DSAPublicKey, "DSA"),
    (ed25519.Ed25519PublicKey, "Ed25519"), (ed448.Ed448PublicKey, "Ed448"),
    (x25519.X25519PublicKey, "X25519"), (x448.X448PublicKey, "X448"),
)  # fmt: skip

_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


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
            return _certificate_block_material(block)
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


@lru_cache(maxsize=256)
def _certificate_block_material(block: bytes) -> PublicMaterial:
    """The material of one PEM certificate block, remembered for the last 256 blocks (the
    answer is a pure function of the bytes and immutable): a rotation reads its new
    certificate three times, when it is made, when the rotator checks the stored key is its
    own, and when the provider verifies it, and each read costs a signature check."""
    return _certificate_material(x509.load_pem_x509_certificate(block))


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
