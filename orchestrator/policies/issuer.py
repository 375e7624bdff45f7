"""The CA a policy issues mTLS certificates with, checked when the policy loads (not when the
first rotation needs it): its certificate parses, is a CA (basicConstraints CA:TRUE, and may
sign certificates if it restricts its key usage), and its private key parses and is the
certificate's own. ``cryptography`` is used directly: the policies layer does not reach into
the adapters. Messages name the file, never its content.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

__all__ = ["MAX_ISSUER_FILE_BYTES", "issuer_problems"]

MAX_ISSUER_FILE_BYTES = 1024 * 1024
_FIELD = "spec.credential.certificate.issuer"
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def issuer_problems(certificate_file: Path, key_file: Path) -> list[str]:
    """One line (``<field>: <problem>; <fix>``) per problem; empty when the CA can issue."""
    cert_field, key_field = f"{_FIELD}.certificate", f"{_FIELD}.key"
    cert_bytes, cert_problem = _read(certificate_file, cert_field)
    key_bytes, key_problem = _read(key_file, key_field)
    problems = [p for p in (cert_problem, key_problem) if p]
    certificate = key = None
    if cert_bytes is not None:
        try:
            certificate = x509.load_pem_x509_certificate(cert_bytes)
        except ValueError:
            problems.append(f"{cert_field}: {certificate_file} is not a PEM certificate; give "
                            "the issuing CA's certificate (-----BEGIN CERTIFICATE-----)")
    if key_bytes is not None:
        try:
            key = serialization.load_pem_private_key(key_bytes, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            problems.append(f"{key_field}: {key_file} is not an unencrypted PEM private key; "
                            "give the CA's private key (-----BEGIN PRIVATE KEY-----)")
    if certificate is not None:
        problems.extend(_not_a_ca(certificate, certificate_file, cert_field))
    if certificate is not None and key is not None and (
            key.public_key().public_bytes(*_SPKI) != certificate.public_key().public_bytes(*_SPKI)):
        problems.append(f"{key_field}: {key_file} is not the key of {certificate_file}; give "
                        "the CA's own private key")
    return problems


def _read(path: Path, field: str) -> tuple[bytes | None, str | None]:
    if not path.is_file():
        return None, (f"{field}: {path} does not exist; fix the path (relative paths start at "
                      "the policy's folder)")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_ISSUER_FILE_BYTES + 1)
    except OSError as exc:
        return None, f"{field}: {path} cannot be read ({exc.strerror}); check its permissions"
    if len(data) > MAX_ISSUER_FILE_BYTES:
        return None, f"{field}: {path} is larger than 1 MiB; give the PEM file itself"
    return data, None


def _not_a_ca(certificate: x509.Certificate, path: Path, field: str) -> list[str]:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        is_ca = constraints.value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        return [f"{field}: {path} is not a CA certificate (no basicConstraints CA:TRUE), so "
                "certificates it issued would not be trusted; give the issuing CA's certificate"]
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    if not usage.key_cert_sign:
        return [f"{field}: {path} restricts its key usage without keyCertSign, so it may not "
                "sign certificates; give a CA certificate that may"]
    return []
