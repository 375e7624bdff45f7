"""The tenant's records (clients, their credential pool and slots, client grants) and the JSON
views the Management API answers with.

A client's credentials live in one *pool* (``credentials``, at most the pool cap); the *slots*
(``client_authentication_methods.<method>`` and ``signed_request_object``) hold only ids into the
pool (auth0-credentials.md §1, §3). ``pem`` is stored but never in a view (§1.2).
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from tests.peers.auth0.keys import load_certificate, load_material

__all__ = [
    "AUTH_METHOD_SLOTS",
    "JAR_SLOT",
    "SLOT_TYPES",
    "Client",
    "Credential",
    "Grant",
    "iso",
    "new_client_id",
    "new_credential_id",
    "new_grant_id",
    "new_secret",
    "parse_iso",
]

JAR_SLOT = "signed_request_object"
AUTH_METHOD_SLOTS = ("private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth")
# checklist 1: which credential type each slot holds
SLOT_TYPES = {
    "private_key_jwt": "public_key",
    JAR_SLOT: "public_key",
    "self_signed_tls_client_auth": "x509_cert",
    "tls_client_auth": "cert_subject_dn",
}
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_ALNUM = string.ascii_letters + string.digits


def _random(alphabet: str, length: int) -> str:
    # one urandom call per id (the per-character SystemRandom made seeding 5,000 clients slow);
    # the modulo bias is irrelevant for test identifiers
    return "".join(alphabet[byte % len(alphabet)] for byte in secrets.token_bytes(length))


def new_credential_id() -> str:
    return "cred_" + _random(_BASE58, 22)  # observed: cred_ + 22 base58-ish characters


def new_client_id() -> str:
    return _random(_ALNUM, 32)


def new_secret() -> str:
    return _random(_ALNUM + "-_", 64)  # "The generated secret is NOT base64 encoded."


def new_grant_id() -> str:
    return "cgr_" + _random(_ALNUM, 16)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: Any) -> float:
    if not isinstance(text, str):
        raise ValueError("expected an ISO 8601 date-time string")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass
class Credential:
    id: str
    client_id: str
    credential_type: str
    name: str | None
    created_at: float
    updated_at: float
    expires_at: float | None
    pem: str | None = None
    alg: str | None = None
    kid: str | None = None
    spki: bytes | None = None  # DER, for the duplicate-key rule
    thumbprint_sha256: str | None = None
    subject_dn: str | None = None

    def usable_at(self, now: float) -> bool:
        """Expired credentials stay listed and attached but are inoperable (§3)."""
        return self.expires_at is None or now < self.expires_at

    def public_key(self) -> PublicKeyTypes:
        assert self.pem is not None
        return load_material(self.pem).public_key

    def certificate_not_after(self) -> float | None:
        if self.credential_type != "x509_cert" or self.pem is None:
            return None
        return load_certificate(self.pem).not_valid_after_utc.timestamp()

    def view(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "credential_type": self.credential_type,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "expires_at": iso(self.expires_at),
        }
        if self.credential_type == "public_key":
            body["kid"] = self.kid
            body["alg"] = self.alg
        elif self.credential_type == "x509_cert":
            body["thumbprint_sha256"] = self.thumbprint_sha256
        else:
            body["subject_dn"] = self.subject_dn
        return body

    def snapshot(self) -> dict[str, Any]:
        return self.view() | {"pem": self.pem, "client_id": self.client_id}


@dataclass
class Client:
    client_id: str
    name: str
    client_secret: str
    order: int
    token_endpoint_auth_method: str | None = "client_secret_post"
    client_authentication_methods: dict[str, list[str]] | None = None
    signed_request_object: dict[str, Any] | None = None  # {"required": bool, "credentials": ids}
    app_type: str = "non_interactive"
    grant_types: list[str] = field(default_factory=lambda: ["client_credentials"])
    jwt_configuration: dict[str, Any] = field(default_factory=lambda: {"alg": "RS256"})
    extra: dict[str, Any] = field(default_factory=dict)
    secret_active_from: float = 0.0
    previous_secret: str | None = None  # accepted until secret_active_from (propagation)
    credentials: dict[str, Credential] = field(default_factory=dict)  # the pool, in order

    def slot_ids(self, slot: str) -> list[str]:
        if slot == JAR_SLOT:
            return list((self.signed_request_object or {}).get("credentials", []))
        return list((self.client_authentication_methods or {}).get(slot, []))

    def attached_slots(self, credential_id: str) -> list[str]:
        return [slot for slot in SLOT_TYPES if credential_id in self.slot_ids(slot)]

    def view(self, *, secrets_visible: bool, methods_visible: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "client_id": self.client_id,
            "name": self.name,
            "app_type": self.app_type,
            "grant_types": list(self.grant_types),
            "jwt_configuration": dict(self.jwt_configuration),
            "is_first_party": True,
            "global": False,
            **self.extra,
        }
        if self.token_endpoint_auth_method is not None:
            body["token_endpoint_auth_method"] = self.token_endpoint_auth_method
        # "after PKJWT is configured, client_secret is hidden" (§1.1)
        if secrets_visible and self.client_authentication_methods is None:
            body["client_secret"] = self.client_secret
        if methods_visible and self.client_authentication_methods is not None:
            body["client_authentication_methods"] = {
                slot: {"credentials": [{"id": cid} for cid in ids]}
                for slot, ids in self.client_authentication_methods.items()
            }
        if self.signed_request_object is not None:
            jar = self.signed_request_object
            body["signed_request_object"] = {
                "required": bool(jar.get("required", False)),
                "credentials": [{"id": cid} for cid in jar.get("credentials", [])],
            }
        return body

    def snapshot(self) -> dict[str, Any]:
        return self.view(secrets_visible=False, methods_visible=True) | {
            "client_secret": self.client_secret,
            "secret_active_from": self.secret_active_from,
            "previous_secret": self.previous_secret,
            "client_authentication_methods": self.client_authentication_methods,
            "credentials": [cred.snapshot() for cred in self.credentials.values()],
        }


@dataclass
class Grant:
    id: str
    client_id: str
    audience: str
    scope: list[str]

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "client_id": self.client_id, "audience": self.audience,
                "scope": list(self.scope)}
