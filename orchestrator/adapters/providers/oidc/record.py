"""What a client's registration record holds for each credential, and the changes that attach
and detach one. Pure functions of a record (a dict, as read) and the log's credentials.

* a private_key_jwt or JAR key: an entry of the inline ``jwks`` (``kid`` ours, ``use: sig``,
  ``alg`` its algorithm, so the provider verifies it with that algorithm only);
* a self-signed mTLS certificate: a ``jwks`` entry with the certificate in ``x5c``
  (``self_signed_tls_client_auth`` matches the presented certificate against it);
* a CA-issued mTLS certificate: ``tls_client_auth_subject_dn`` (RFC 8705 section 2.1.2).

Attaching also sets what the usage needs: ``token_endpoint_auth_method`` (private_key_jwt,
self_signed_tls_client_auth or tls_client_auth), ``token_endpoint_auth_signing_alg`` and
``request_object_signing_alg``. A record has one value of each, where a rotation needs two
credentials at once; so:

* the signing algorithm fields are set when every key of the usage in the record has one
  algorithm and removed (any algorithm the provider allows) while an RS256 key overlaps with a
  PS256 one; each key's own ``alg`` still pins it to its algorithm;
* the auth method is one per client (as at Auth0): attaching a credential of another method is
  refused while the record still holds a credential of the current one (switching would cut the
  app off before the new credential is tested); from a client secret or no method it switches;
* a client has one subject DN: a certificate of another DN is refused while a usable credential
  of the log (or one the log does not know) holds the current one. Detaching the last DN leaves
  the client on ``self_signed_tls_client_auth`` with no certificate, which authenticates nothing
  (RFC 8705 has no tls_client_auth client without a subject).

What RFC 7591 cannot express: the ``jwks`` is one key set for client authentication and request
objects, so a JAR key of a private_key_jwt client could sign a client assertion too (unless its
``alg`` differs from ``token_endpoint_auth_signing_alg``), and a private_key_jwt key a request
object. The orchestrator never uses a key for both.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from events.kinds import CredentialKind, Usage
from events.state import Credential
from orchestrator.adapters.crypto import parse_dn, spki_fingerprint
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import RemoteClient, RemoteCredential

__all__ = [
    "AUTH_METHOD",
    "KEY_AUTH_METHODS",
    "attach",
    "auth_method_of",
    "detach",
    "jwk_of",
    "matches",
    "remote_client",
]

PRIVATE_KEY_JWT, SELF_SIGNED, TLS_CLIENT_AUTH = (
    "private_key_jwt", "self_signed_tls_client_auth", "tls_client_auth")
KEY_AUTH_METHODS = frozenset({PRIVATE_KEY_JWT, SELF_SIGNED, TLS_CLIENT_AUTH})
AUTH_METHOD = {CredentialKind.X509_CERT: SELF_SIGNED, CredentialKind.CERT_SUBJECT_DN: TLS_CLIENT_AUTH}
SIGNING_ALG_FIELD = {Usage.PRIVATE_KEY_JWT: "token_endpoint_auth_signing_alg",
                     Usage.JAR: "request_object_signing_alg"}

Record = dict[str, Any]


def auth_method_of(cred: Credential) -> str | None:
    """The token endpoint auth method a credential is for (None: a JAR key)."""
    if cred.usage == Usage.PRIVATE_KEY_JWT:
        return PRIVATE_KEY_JWT
    return AUTH_METHOD.get(cred.kind) if cred.usage == Usage.MTLS else None


def jwk_of(cred: Credential) -> dict[str, Any]:
    """The public JWK of a key or self-signed certificate credential."""
    x5c = None
    if cred.kind is CredentialKind.X509_CERT:
        cert = x509.load_pem_x509_certificate((cred.certificate_pem or "").encode())
        public_key: object = cert.public_key()
        x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    else:
        public_key = serialization.load_pem_public_key((cred.public_pem or "").encode())
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ProviderError(f"credential {cred.id}: only RSA keys can be registered")
    jwk: dict[str, Any] = dict(RSAAlgorithm.to_jwk(public_key, as_dict=True))
    jwk.update(kid=cred.kid, use="sig")
    if cred.alg:
        jwk["alg"] = cred.alg
    if x5c is not None:
        jwk["x5c"] = x5c
    return jwk


def _keys(record: Record) -> list[dict[str, Any]]:
    jwks = record.get("jwks")
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    return [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []


def _same_dn(a: str, b: str) -> bool:
    try:
        return parse_dn(a) == parse_dn(b)
    except Exception:  # a DN we cannot parse is not ours
        return a == b


def attach(record: Record, cred: Credential, log: Mapping[str, Credential],
           at: datetime) -> Record | None:
    """The record with ``cred`` attached (None: it is already); ``log``: the app's credentials
    by id. Raises ProviderError where attaching would cut off a credential still in use."""
    new = copy.deepcopy(record)
    method = auth_method_of(cred)
    if method is not None:
        _switch_method(new, method, log, at)
    if cred.kind is CredentialKind.CERT_SUBJECT_DN:
        dn = cred.subject_dn or ""
        present = new.get("tls_client_auth_subject_dn")
        if isinstance(present, str) and present and not _same_dn(present, dn):
            holders = [c for c in log.values() if c.subject_dn and _same_dn(c.subject_dn, present)]
            if not holders or any(c.usable(at) for c in holders):
                raise ProviderError(
                    f"client {new.get('client_id')!r} authenticates with the subject DN "
                    f"{present!r}; RFC 8705 allows one per client, so {dn!r} cannot overlap "
                    "with it: issue the new certificate for the same subject")
        if not (isinstance(present, str) and _same_dn(present, dn)):
            new["tls_client_auth_subject_dn"] = dn
    else:
        jwk = jwk_of(cred)
        keys = _keys(new)
        found = next((k for k in keys if k.get("kid") == cred.kid), None)
        if found is not None and (found.get("n"), found.get("e")) != (jwk["n"], jwk["e"]):
            raise ProviderError(f"client {new.get('client_id')!r} already holds another key "
                                f"with the key id {cred.kid!r}")
        if found is None:
            new["jwks"] = {"keys": [*keys, jwk]}
        _pin_algorithms(new, log, extra=cred)
    return None if new == record else new


def detach(record: Record, cred: Credential, log: Mapping[str, Credential]) -> Record | None:
    """The record without ``cred`` (None: it holds none)."""
    new = copy.deepcopy(record)
    if cred.kind is CredentialKind.CERT_SUBJECT_DN:
        present = new.get("tls_client_auth_subject_dn")
        if not (isinstance(present, str) and _same_dn(present, cred.subject_dn or "")):
            return None
        new.pop("tls_client_auth_subject_dn", None)
        if new.get("token_endpoint_auth_method") == TLS_CLIENT_AUTH:
            new["token_endpoint_auth_method"] = SELF_SIGNED  # with no certificate: nothing
            if not isinstance(new.get("jwks"), dict):
                new["jwks"] = {"keys": []}
        return new
    keys = _keys(new)
    kept = [k for k in keys if k.get("kid") != cred.kid]
    if len(kept) == len(keys):
        return None
    new["jwks"] = {"keys": kept}
    _pin_algorithms(new, log)
    return new


def _switch_method(record: Record, method: str, log: Mapping[str, Credential],
                   at: datetime) -> None:
    current = record.get("token_endpoint_auth_method")
    if current == method:
        return
    if current in KEY_AUTH_METHODS and _method_in_use(record, current, log):
        raise ProviderError(
            f"client {record.get('client_id')!r} authenticates with {current} and still holds "
            f"a credential for it; one client has one token endpoint auth method, so a "
            f"{method} credential would cut that one off before it is tested: remove the "
            f"{current} credentials first, or use another client")
    record["token_endpoint_auth_method"] = method


def _method_in_use(record: Record, method: str, log: Mapping[str, Credential]) -> bool:
    jar_kids = {c.kid for c in log.values() if c.usage == Usage.JAR}
    if method == TLS_CLIENT_AUTH:
        return bool(record.get("tls_client_auth_subject_dn"))
    if method == SELF_SIGNED:
        return any("x5c" in k for k in _keys(record))
    return any("x5c" not in k and k.get("kid") not in jar_kids for k in _keys(record))


def _pin_algorithms(record: Record, log: Mapping[str, Credential],
                    extra: Credential | None = None) -> None:
    """Each signing usage's algorithm field: the one algorithm of the usage's keys in the
    record (by the log), or absent while two algorithms overlap."""
    by_kid = {c.kid: c for c in log.values()}
    if extra is not None:
        by_kid[extra.kid] = extra
    held = [by_kid[k["kid"]] for k in _keys(record) if k.get("kid") in by_kid]
    for usage, field in SIGNING_ALG_FIELD.items():
        algs = {c.alg for c in held if c.usage == usage and c.alg}
        if len(algs) == 1:
            record[field] = next(iter(algs))
        elif len(algs) > 1:
            record.pop(field, None)


# --- as the provider reports it (import, drift) ----------------------------------------------


def matches(record: Record, pattern: str | None) -> bool:
    name = str(record.get("client_name") or record.get("client_id") or "")
    return pattern is None or fnmatch.fnmatchcase(name, pattern)


def remote_client(record: Record) -> RemoteClient:
    """A client as its record says; every ``jwks`` key serves client authentication (when the
    method is private_key_jwt) and request objects alike (RFC 7591 has one key set)."""
    method = record.get("token_endpoint_auth_method")
    credentials = [_remote_key(k, method) for k in _keys(record)]
    dn = record.get("tls_client_auth_subject_dn")
    if isinstance(dn, str) and dn:
        credentials.append(RemoteCredential(
            provider_id=dn, kind=CredentialKind.CERT_SUBJECT_DN, subject_dn=dn,
            attached=(Usage.MTLS.value,) if method == TLS_CLIENT_AUTH else ()))
    return RemoteClient(
        client_id=str(record.get("client_id")),
        name=str(record.get("client_name") or record.get("client_id")),
        auth_method=method if isinstance(method, str) else None,
        credentials=tuple(credentials), has_secret=bool(record.get("client_secret")))


def _remote_key(jwk: dict[str, Any], method: object) -> RemoteCredential:
    kid = str(jwk.get("kid") or "")
    fingerprint: str | None = None
    public_pem: str | None = None
    try:
        public_key = RSAAlgorithm.from_jwk(json.dumps(
            {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}))
        if isinstance(public_key, rsa.RSAPublicKey):
            fingerprint = spki_fingerprint(public_key)
            public_pem = public_key.public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    except (KeyError, ValueError, TypeError):
        pass
    certificate_pem = thumbprint = None
    x5c = jwk.get("x5c")
    if isinstance(x5c, list) and x5c:
        try:
            der = base64.b64decode(x5c[0])
            certificate_pem = x509.load_der_x509_certificate(der).public_bytes(
                serialization.Encoding.PEM).decode()
            thumbprint = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
        except (ValueError, TypeError):  # not base64 text, not a certificate
            pass
        attached: tuple[str, ...] = (Usage.MTLS.value,) if method == SELF_SIGNED else ()
        kind = CredentialKind.X509_CERT
    else:
        attached = ((Usage.PRIVATE_KEY_JWT.value,) if method == PRIVATE_KEY_JWT else ()) + (
            Usage.JAR.value,)
        kind = CredentialKind.PUBLIC_KEY
    return RemoteCredential(
        provider_id=kid, kind=kind, attached=attached, kid=kid or None,
        alg=jwk.get("alg") if isinstance(jwk.get("alg"), str) else None,
        fingerprint=fingerprint, thumbprint=thumbprint, public_pem=public_pem,
        certificate_pem=certificate_pem)
