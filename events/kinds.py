"""What a credential is for and what it is: the log's own small vocabulary, as plain enums (no
pydantic), so the read side can name them without loading the event catalog."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CredentialKind", "Usage"]


class Usage(StrEnum):
    PRIVATE_KEY_JWT = "private_key_jwt"
    JAR = "jar"
    MTLS = "mtls"


class CredentialKind(StrEnum):
    PUBLIC_KEY = "public_key"  # private_key_jwt and jar
    X509_CERT = "x509_cert"  # self-signed mTLS certificate
    CERT_SUBJECT_DN = "cert_subject_dn"  # CA-issued mTLS certificate, matched by subject DN
