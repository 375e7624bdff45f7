"""Keys, certificates, secrets, fingerprints and JWT client assertions (the crypto shell).

``cryptography`` and ``PyJWT`` do all the cryptography; these modules turn their objects into
``PublicMaterial`` facts for the pure rules, with one-line errors that never echo the input.
They read no clock: every time is a parameter. ``Cryptography`` is the ``Crypto`` port.

* ``material``: public keys, certificates, subject DNs, fingerprints and key ids;
* ``keys``: generating keys and certificates, a CA's issue, the stored (PKCS#8) form;
* ``client_secrets``: client secrets and credential ids;
* ``assertions``: client assertions, signed and verified.
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.adapters.crypto.assertions import (
    MAX_ASSERTION_BYTES,
    MAX_ASSERTION_LIFETIME,
    MAX_CLIENT_ID_LENGTH,
    MAX_JTI_LENGTH,
    AssertionInvalid,
    sign_client_assertion,
    sign_request_object,
    verify_client_assertion,
)
from orchestrator.adapters.crypto.client_secrets import (
    check_secret,
    hash_secret,
    new_credential_id,
    new_secret,
    secret_fingerprint,
)
from orchestrator.adapters.crypto.keys import (
    KeySource,
    PrimePairKeys,
    fingerprint_of_private_key,
    generate_rsa,
    generate_self_signed,
    issue_certificate,
    issued_by,
    private_key_pem,
    public_material_of_private_key,
)
from orchestrator.adapters.crypto.material import (
    jwk_thumbprint,
    parse_dn,
    parse_pem,
    spki_fingerprint,
    subject_dn_material,
)
from orchestrator.domain.material import GeneratedKey

__all__ = [
    "MAX_ASSERTION_BYTES",
    "MAX_ASSERTION_LIFETIME",
    "MAX_CLIENT_ID_LENGTH",
    "MAX_JTI_LENGTH",
    "AssertionInvalid",
    "Cryptography",
    "KeySource",
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
    "sign_request_object",
    "spki_fingerprint",
    "subject_dn_material",
    "verify_client_assertion",
]


class Cryptography:
    """The ``Crypto`` port on ``cryptography`` and PyJWT (this package's functions), with an
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
