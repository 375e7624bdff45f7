"""Auth0's JSON and our values, both ways (auth0-credentials.md sections 1 and 2).

* where each credential goes: usage and kind -> credential type and slot
  (``client_authentication_methods.<method>`` or ``signed_request_object``);
* the create body of a credential (``pem``, ``alg``, ``kid``, ``expires_at``, ``name``);
* how our credential is recognised in the client's pool (Auth0 never returns the ``pem``): by
  ``kid`` (ours, or the RFC 7638 thumbprint Auth0 computes when none is sent), by the
  certificate's SHA-256 thumbprint, or by subject DN;
* the client PATCH that puts a slot's list of ``{id}`` references, other slots kept as they are;
* clients and credentials as ``RemoteClient`` / ``RemoteCredential`` values.

What the tenant returns is data, never trusted to have the documented shape: a field of the
wrong type (a ``kid`` that is not text, a slot that is not an object) is taken as absent.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from events.kinds import CredentialKind, Usage
from events.state import Credential
from orchestrator.adapters import crypto
from orchestrator.domain.errors import MaterialError, ProviderError
from orchestrator.domain.identity_provider import RemoteClient, RemoteCredential

__all__ = [
    "AUTH_METHOD_SLOTS",
    "JAR_SLOT",
    "KID_PATTERN",
    "MAX_NAME",
    "attached_usages",
    "auth0_dn",
    "auth0_kid",
    "auth_method",
    "create_body",
    "credential_type",
    "iso",
    "matches",
    "remote_client",
    "remote_credential",
    "slot_ids",
    "slot_of",
    "slot_patch",
    "slot_path",
    "slots_of_usage",
]

JAR_SLOT = "signed_request_object"
AUTH_METHOD_SLOTS = ("private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth")
KID_PATTERN = re.compile(r"[0-9a-zA-Z\-_]{10,64}")
MAX_NAME = 128
MAX_PER_SLOT = 2

_SLOT_USAGE = {"private_key_jwt": Usage.PRIVATE_KEY_JWT, JAR_SLOT: Usage.JAR,
               "tls_client_auth": Usage.MTLS, "self_signed_tls_client_auth": Usage.MTLS}


def slot_of(cred: Credential) -> str:
    """The slot that lets ``cred`` authenticate (HELPERS.md: usage -> Auth0 slot)."""
    if cred.usage is Usage.PRIVATE_KEY_JWT:
        return "private_key_jwt"
    if cred.usage is Usage.JAR:
        return JAR_SLOT
    if cred.kind is CredentialKind.CERT_SUBJECT_DN:
        return "tls_client_auth"
    return "self_signed_tls_client_auth"


def slots_of_usage(usage: str) -> tuple[str, ...]:
    """The slots a credential of ``usage`` can be attached to."""
    return tuple(slot for slot, used in _SLOT_USAGE.items() if str(used) == usage)


def slot_path(slot: str) -> str:
    return slot if slot == JAR_SLOT else f"client_authentication_methods.{slot}"


def credential_type(cred: Credential) -> str:
    return str(cred.kind)  # public_key, x509_cert, cert_subject_dn: Auth0's own names


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def auth0_dn(dn: str) -> str:
    """A DN in Auth0's form: one ``ATTR=value`` per line, most significant first."""
    name = crypto.parse_dn(dn)
    return "\n".join(attr.rfc4514_string() for rdn in name.rdns for attr in rdn)


def _same_dn(ours: str, theirs: str) -> bool:
    try:
        return crypto.parse_dn(ours) == crypto.parse_dn(theirs)
    except MaterialError:
        return ours.strip() == theirs.strip()


def _certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def _thumbprint(certificate_pem: str) -> str:
    der = _certificate(certificate_pem).public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def _auto_kid(cred: Credential) -> str | None:
    """The kid Auth0 generates for a public key: its RFC 7638 thumbprint."""
    if not cred.public_pem:
        return None
    return crypto.parse_pem(cred.public_pem.encode("ascii"), "public key").jwk_thumbprint


def auth0_kid(cred: Credential) -> str:
    """The kid Auth0 holds for a public key we uploaded: ours when it has Auth0's form (it is
    sent), else the thumbprint Auth0 computes."""
    if KID_PATTERN.fullmatch(cred.kid):
        return cred.kid
    return _auto_kid(cred) or cred.kid


def create_body(cred: Credential, name: str) -> dict[str, Any]:
    """``POST /clients/{id}/credentials`` for ``cred`` (created, not yet attached)."""
    body: dict[str, Any] = {"credential_type": credential_type(cred), "name": name[:MAX_NAME]}
    if cred.kind is CredentialKind.PUBLIC_KEY:
        if not cred.public_pem:
            raise ProviderError(f"credential {cred.id} has no public key to upload")
        body["pem"] = cred.public_pem
        body["alg"] = cred.alg or "RS256"
        if KID_PATTERN.fullmatch(cred.kid):
            body["kid"] = cred.kid
        if cred.expires_at is not None:
            body["expires_at"] = iso(cred.expires_at)
    elif cred.kind is CredentialKind.X509_CERT:
        if not cred.certificate_pem:
            raise ProviderError(f"credential {cred.id} has no certificate to upload")
        body["pem"] = cred.certificate_pem
    elif cred.certificate_pem:  # "the most reliable way ... is to upload the whole PEM"
        body["pem"] = cred.certificate_pem
    elif cred.subject_dn:
        body["subject_dn"] = auth0_dn(cred.subject_dn)
    else:
        raise ProviderError(f"credential {cred.id} has neither a certificate nor a subject DN")
    return body


def matches(cred: Credential, remote: Mapping[str, Any]) -> bool:
    """Whether the pool item ``remote`` is the upload of ``cred``."""
    if remote.get("credential_type") != credential_type(cred):
        return False
    if cred.kind is CredentialKind.PUBLIC_KEY:
        kid = remote.get("kid")
        return kid is not None and kid in {cred.kid, _auto_kid(cred)}
    if cred.kind is CredentialKind.X509_CERT:
        return bool(cred.certificate_pem) and remote.get("thumbprint_sha256") == _thumbprint(
            cred.certificate_pem or "")
    theirs = remote.get("subject_dn")
    ours = cred.subject_dn or (
        _certificate(cred.certificate_pem).subject.rfc4514_string() if cred.certificate_pem
        else None)
    return isinstance(theirs, str) and ours is not None and _same_dn(ours, theirs)


def _text(value: Any) -> str | None:
    """``value`` when it is non-empty text, else None (a field of the wrong type is absent)."""
    return value if isinstance(value, str) and value else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _methods(client: Mapping[str, Any]) -> dict[str, Any]:
    return _object(client.get("client_authentication_methods"))


def slot_ids(client: Mapping[str, Any], slot: str) -> list[str]:
    """The credential ids the client's ``slot`` holds, in order."""
    holder = _object(client.get(JAR_SLOT) if slot == JAR_SLOT else _methods(client).get(slot))
    items = holder.get("credentials")
    refs = [_text(item.get("id")) for item in items if isinstance(item, dict)] if isinstance(
        items, list) else []
    return [ref for ref in refs if ref is not None]


def slot_patch(client: Mapping[str, Any], slot: str, ids: Sequence[str]) -> dict[str, Any]:
    """The client PATCH that makes ``slot`` hold exactly ``ids`` (``{id}`` references only),
    every other slot as it is. The first key on a client still on a client secret switches it
    in the same request (``token_endpoint_auth_method: null``, reference section 1.1)."""
    if len(ids) > MAX_PER_SLOT:
        raise ProviderError(f"refusing to attach {len(ids)} credentials to {slot_path(slot)} of "
                            f"Auth0 client {client.get('client_id')}: at most {MAX_PER_SLOT} "
                            "per slot (detach one first)")
    refs = [{"id": cid} for cid in ids]
    if slot == JAR_SLOT:
        current = _object(client.get(JAR_SLOT))
        return {JAR_SLOT: {"required": bool(current.get("required", False)),
                           "credentials": refs}}
    methods = dict(_methods(client))
    others = [m for m in AUTH_METHOD_SLOTS if m != slot and slot_ids(client, m)]
    if others and ids:
        raise ProviderError(
            f"Auth0 client {client.get('client_id')} authenticates with {others[0]} "
            f"({len(slot_ids(client, others[0]))} credential(s) attached); Auth0 holds one client "
            f"authentication method at a time, so {slot} cannot be added beside it")
    for method in AUTH_METHOD_SLOTS:
        if method != slot and method in methods and not slot_ids(client, method):
            del methods[method]  # an empty method of another kind gives way
    methods[slot] = {"credentials": refs}
    body: dict[str, Any] = {"client_authentication_methods": methods}
    if ids and client.get("token_endpoint_auth_method") is not None:
        body["token_endpoint_auth_method"] = None
    return body


def attached_usages(client: Mapping[str, Any], credential_id: str) -> tuple[str, ...]:
    slots = (*AUTH_METHOD_SLOTS, JAR_SLOT)
    return tuple(dict.fromkeys(str(_SLOT_USAGE[s]) for s in slots
                               if credential_id in slot_ids(client, s)))


def auth_method(client: Mapping[str, Any]) -> str | None:
    """How the client authenticates: its client authentication method, else its
    ``token_endpoint_auth_method``."""
    methods = _methods(client)
    for method in AUTH_METHOD_SLOTS:
        if method in methods:
            return method
    return _text(client.get("token_endpoint_auth_method"))


def remote_credential(item: Mapping[str, Any], client: Mapping[str, Any]) -> RemoteCredential:
    kind = CredentialKind(str(item.get("credential_type")))
    cid = str(item["id"])
    kid = _text(item.get("kid"))
    return RemoteCredential(
        provider_id=cid, kind=kind, attached=attached_usages(client, cid),
        kid=kid, alg=_text(item.get("alg")),
        thumbprint=_text(item.get("thumbprint_sha256")) or (
            kid if kind is CredentialKind.PUBLIC_KEY else None),
        subject_dn=_text(item.get("subject_dn")), expires_at=_parse_time(item.get("expires_at")),
        name=_text(item.get("name")))


def remote_client(client: Mapping[str, Any],
                  credentials: Sequence[Mapping[str, Any]]) -> RemoteClient:
    kinds = {k.value for k in CredentialKind}
    known = [item for item in credentials if _text(item.get("credential_type")) in kinds]
    method = auth_method(client)
    return RemoteClient(
        client_id=str(client["client_id"]),
        name=_text(client.get("name")) or str(client["client_id"]),
        auth_method=method,
        credentials=tuple(remote_credential(item, client) for item in known),
        has_secret=method in ("client_secret_post", "client_secret_basic"))
