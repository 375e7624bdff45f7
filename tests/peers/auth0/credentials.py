"""The credential rules of auth0-credentials.md §9 (checklist items 2, 3 and 5), as pure
functions of a request body, the client's pool and the time.

Messages quoted by the reference are reproduced exactly; where the reference marks a message
UNCONFIRMED the text here is ours and the tests pin only the status and a stable fragment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from tests.peers.auth0.errors import ApiError, bad_request
from tests.peers.auth0.keys import (
    cert_thumbprint,
    dn_lines,
    load_material,
    rfc7638_thumbprint,
    spki_der,
)
from tests.peers.auth0.model import Credential, new_credential_id, parse_iso

__all__ = [
    "ALGORITHMS",
    "CREDENTIAL_TYPES",
    "DUPLICATE_KEY",
    "build_credential",
    "invalid_body",
    "new_expiry",
    "pool_cap_error",
]

ALGORITHMS = ("RS256", "RS384", "PS256")
CREDENTIAL_TYPES = ("public_key", "x509_cert", "cert_subject_dn")
DUPLICATE_KEY = "credentials contains public keys that already exist in client"
_CREATE_KEYS = {"credential_type", "name", "subject_dn", "pem", "alg",
                "parse_expiry_from_cert", "expires_at", "kid"}
_PUBLIC_KEY_ONLY = ("alg", "parse_expiry_from_cert", "expires_at", "kid")
_KID = re.compile(r"^[0-9a-zA-Z\-_]{10,64}$")


def invalid_body(message: str) -> ApiError:
    return bad_request(f"Payload validation error: {message}", "invalid_body")


def pool_cap_error(cap: int) -> ApiError:
    return bad_request(f"A client can have a maximum of {cap} credentials.")


def _present(body: dict[str, Any], key: str) -> bool:
    return body.get(key) is not None


def build_credential(body: Any, client_id: str, pool: Iterable[Credential],
                     now: float) -> Credential:
    """A new credential from a create body (``POST .../credentials`` or inline in
    ``POST /clients``), checked against the client's current ``pool`` for duplicates.
    The pool cap is the caller's (it counts a whole batch)."""
    if not isinstance(body, dict):
        raise invalid_body("Expected type object")
    unknown = sorted(set(body) - _CREATE_KEYS)
    if unknown:
        raise invalid_body(f"Additional properties not allowed: {','.join(unknown)}")
    kind = body.get("credential_type")
    if kind not in CREDENTIAL_TYPES:
        raise invalid_body(f"No enum match for: {kind!r} on property credential_type "
                           f"(expected one of {', '.join(CREDENTIAL_TYPES)})")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 128):
        raise invalid_body("String is too long (max 128) on property name"
                           if isinstance(name, str) else "Expected type string on name")
    cred = Credential(id=new_credential_id(), client_id=client_id, credential_type=kind,
                      name=name, created_at=now, updated_at=now, expires_at=None)
    if kind == "public_key":
        _public_key(cred, body)
    else:
        misplaced = [key for key in _PUBLIC_KEY_ONLY if _present(body, key)]
        if misplaced:
            raise invalid_body(f"{', '.join(misplaced)} is only allowed for public_key "
                               "credentials")
        if kind == "x509_cert":
            _x509(cred, body)
        else:
            _subject_dn(cred, body)
    _refuse_duplicates(cred, pool)
    return cred


def _pem(body: dict[str, Any]) -> str:
    pem = body.get("pem")
    if not isinstance(pem, str) or not pem.strip():
        raise invalid_body("Missing required property: pem")
    return pem


def _material(pem: str) -> Any:
    try:
        return load_material(pem)
    except ValueError as error:  # UNCONFIRMED text ("an invalid certificate error", D/pkjwt)
        raise bad_request("Invalid certificate or public key: the PEM could not be parsed",
                          "invalid_body") from error


def _public_key(cred: Credential, body: dict[str, Any]) -> None:
    if _present(body, "subject_dn"):
        raise invalid_body("subject_dn is only allowed for cert_subject_dn credentials")
    pem = _pem(body)
    material = _material(pem)
    key = material.public_key
    if not isinstance(key, rsa.RSAPublicKey):  # RSA only (§3; EC undocumented)
        raise bad_request("Only RSA public keys are supported", "invalid_body")
    if not 2048 <= key.key_size <= 4096:  # §3; message UNCONFIRMED
        raise bad_request(f"RSA key size must be between 2048 and 4096 bits "
                          f"(got {key.key_size})", "invalid_body")
    alg = body.get("alg") if _present(body, "alg") else "RS256"
    if alg not in ALGORITHMS:
        raise invalid_body(f"No enum match for: {alg!r} on property alg "
                           f"(expected one of {', '.join(ALGORITHMS)})")
    parse_expiry = body.get("parse_expiry_from_cert")
    if parse_expiry is not None and not isinstance(parse_expiry, bool):
        raise invalid_body("Expected type boolean on property parse_expiry_from_cert")
    if parse_expiry:
        if material.certificate is None:  # D/pkjwt: an error; text UNCONFIRMED
            raise bad_request("parse_expiry_from_cert requires a certificate in pem",
                              "invalid_body")
        if _present(body, "expires_at"):
            raise bad_request("parse_expiry_from_cert and expires_at are mutually exclusive",
                              "invalid_body")
        cred.expires_at = material.certificate.not_valid_after_utc.timestamp()
    elif _present(body, "expires_at"):
        cred.expires_at = _expiry(body["expires_at"])
    kid = body.get("kid")
    if kid is not None and (not isinstance(kid, str) or not _KID.match(kid)):
        raise invalid_body(f"String does not match pattern ^[0-9a-zA-Z-_]{{10,64}}$: {kid!r} "
                           "on property kid")
    cred.pem = pem
    cred.alg = alg
    cred.kid = kid or rfc7638_thumbprint(key)
    cred.spki = spki_der(key)


def _x509(cred: Credential, body: dict[str, Any]) -> None:
    if _present(body, "subject_dn"):
        raise invalid_body("subject_dn is only allowed for cert_subject_dn credentials")
    pem = _pem(body)
    material = _material(pem)
    if material.certificate is None:
        raise bad_request("x509_cert credentials need an X.509 certificate in pem",
                          "invalid_body")
    cred.pem = pem
    cred.thumbprint_sha256 = cert_thumbprint(material.certificate)
    cred.expires_at = material.certificate.not_valid_after_utc.timestamp()
    cred.spki = spki_der(material.public_key)


def _subject_dn(cred: Credential, body: dict[str, Any]) -> None:
    has_pem, has_dn = _present(body, "pem"), _present(body, "subject_dn")
    if has_pem == has_dn:  # "exactly one of pem or subject_dn"
        raise invalid_body("cert_subject_dn credentials need exactly one of pem or subject_dn")
    if has_dn:
        dn = body["subject_dn"]
        if not isinstance(dn, str) or not 1 <= len(dn) <= 256:
            raise invalid_body("subject_dn must be a string of 1 to 256 characters")
        cred.subject_dn = dn
        return
    material = _material(_pem(body))
    if material.certificate is None:
        raise bad_request("cert_subject_dn pem must be an X.509 certificate", "invalid_body")
    cred.pem = body["pem"]
    cred.subject_dn = dn_lines(material.certificate.subject)


def _refuse_duplicates(cred: Credential, pool: Iterable[Credential]) -> None:
    for other in pool:
        if cred.spki is not None and other.spki == cred.spki:
            raise bad_request(DUPLICATE_KEY)
        if cred.kid is not None and other.kid == cred.kid:  # UNCONFIRMED (kid lookups)
            raise bad_request(f"A credential with kid {cred.kid} already exists in client")


def _expiry(value: Any) -> float:
    try:
        return parse_iso(value)
    except ValueError as error:
        raise invalid_body("Object didn't pass validation for format date-time: "
                           f"{value!r} on property expires_at") from error


def new_expiry(body: Any) -> float:
    """The ``expires_at`` of a credential PATCH body: the only patchable field (§2), and it
    cannot be unset (TF: "Unable to update the credential to never expire")."""
    if not isinstance(body, dict) or not body:
        raise invalid_body("Too few properties defined (0), minimum 1")
    unknown = sorted(set(body) - {"expires_at"})
    if unknown:
        raise invalid_body(f"Additional properties not allowed: {','.join(unknown)}")
    if body["expires_at"] is None:  # text UNCONFIRMED
        raise bad_request("expires_at cannot be removed: delete and recreate the credential "
                          "to make it never expire", "invalid_body")
    return _expiry(body["expires_at"])
