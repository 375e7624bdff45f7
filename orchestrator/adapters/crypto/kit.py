"""``Cryptography``: the ``Crypto`` port on this package's functions. Each method imports the
module it calls when first called, so wiring the port (every command that builds the service
does) loads neither ``cryptography`` nor PyJWT."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.adapters.crypto.keys import KeySource
    from orchestrator.domain.material import GeneratedKey, PublicMaterial

__all__ = ["Cryptography"]


class Cryptography:
    """The ``Crypto`` port on ``cryptography`` and PyJWT (this package's functions), with an
    optional key source (the simulator's fast pooled-prime keys; fresh keys by default)."""

    def __init__(self, key_source: KeySource | None = None) -> None:
        self.key_source = key_source

    @staticmethod
    def new_credential_id() -> str:
        from orchestrator.adapters.crypto.client_secrets import new_credential_id

        return new_credential_id()

    @staticmethod
    def parse_pem(data: bytes, source: str = "PEM") -> PublicMaterial:
        from orchestrator.adapters.crypto.material import parse_pem

        return parse_pem(data, source)

    @staticmethod
    def subject_dn_material(dn: str) -> PublicMaterial:
        from orchestrator.adapters.crypto.material import subject_dn_material

        return subject_dn_material(dn)

    @staticmethod
    def private_key_pem(private_key_der: bytes) -> bytes:
        from orchestrator.adapters.crypto.keys import private_key_pem

        return private_key_pem(private_key_der)

    @staticmethod
    def public_material_of_private_key(private_key_der: bytes) -> PublicMaterial:
        from orchestrator.adapters.crypto.keys import public_material_of_private_key

        return public_material_of_private_key(private_key_der)

    @staticmethod
    def new_secret() -> str:
        from orchestrator.adapters.crypto.client_secrets import new_secret

        return new_secret()

    @staticmethod
    def secret_fingerprint(secret: str) -> str:
        from orchestrator.adapters.crypto.client_secrets import secret_fingerprint

        return secret_fingerprint(secret)

    @staticmethod
    def sign_client_assertion(private_key_der: bytes, *, alg: str, kid: str | None,
                              client_id: str, audience: str, now: datetime,
                              lifetime_seconds: int = 60, jti: str | None = None) -> str:
        from orchestrator.adapters.crypto.assertions import sign_client_assertion

        return sign_client_assertion(private_key_der, alg=alg, kid=kid, client_id=client_id,
                                     audience=audience, now=now,
                                     lifetime_seconds=lifetime_seconds, jti=jti)

    def generate_rsa(self, key_size: int) -> GeneratedKey:
        from orchestrator.adapters.crypto.keys import generate_rsa

        return generate_rsa(key_size, self.key_source)

    def generate_self_signed(self, key_size: int, subject_cn: str, not_before: datetime,
                             not_after: datetime) -> GeneratedKey:
        from orchestrator.adapters.crypto.keys import generate_self_signed

        return generate_self_signed(key_size, subject_cn, not_before, not_after, self.key_source)

    def issue_certificate(self, ca_cert_pem: bytes, ca_key_pem: bytes, subject_dn: str,
                          key_size: int, not_before: datetime, not_after: datetime) -> GeneratedKey:
        from orchestrator.adapters.crypto.keys import issue_certificate

        return issue_certificate(ca_cert_pem, ca_key_pem, subject_dn, key_size, not_before,
                                 not_after, self.key_source)
