"""A CA-issued mTLS site for end-to-end tests: the CA's files and the policy that issues from it.

The policy ``bank-mtls`` selects ``bank-*`` and has the daemon issue each application a
certificate for ``CN={app},O=Acme Bank,C=DE`` from the CA in ``policies/ca/`` (rotation every
4 days, 1 day before expiry, a 1-hour overlap, certificates valid 6 days).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers import certificate

__all__ = ["CA_DN", "ca_mtls_policy", "subject_of", "write_ca"]

CA_DN = "CN=Acme Issuing CA,O=Acme,C=DE"


def ca_mtls_policy(max_backoff: str = "5m") -> str:
    return f"""apiVersion: orchestrator/v1
kind: RotationPolicy
metadata: {{name: bank-mtls}}
spec:
  selector: {{apps: ["bank-*"]}}
  credential:
    usage: mtls
    keySize: 2048
    certificate:
      subject: "CN={{app}},O=Acme Bank,C=DE"
      issuer: {{certificate: ca/ca.pem, key: ca/ca.key}}
  rotation:
    every: 4d
    beforeExpiry: 1d
    overlap: 1h
    retry: {{attempts: 2, backoff: 1m, maxBackoff: {max_backoff}}}
  lifetime: 6d
  retention: 1d
"""


def subject_of(app: str) -> str:
    return f"CN={app},O=Acme Bank,C=DE"


def write_ca(policies: Path, key: rsa.RSAPrivateKey, not_before: datetime,
             not_after: datetime) -> bytes:
    """The CA's certificate and key in ``policies/ca/`` (the certificate replaced if there)."""
    folder = policies / "ca"
    folder.mkdir(parents=True, exist_ok=True)
    pem = certificate(key, CA_DN, not_before=not_before, not_after=not_after, ca=True)
    (folder / "ca.pem").write_bytes(pem)
    (folder / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return pem
