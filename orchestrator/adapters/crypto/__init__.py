"""Keys, certificates, secrets, fingerprints and JWT client assertions (the crypto shell).

``cryptography`` and ``PyJWT`` do all the cryptography; these modules turn their objects into
``PublicMaterial`` facts for the pure rules, with one-line errors that never echo the input.
They read no clock: every time is a parameter. ``Cryptography`` (``kit``) is the ``Crypto`` port.

* ``material``: public keys, certificates, subject DNs, fingerprints and key ids;
* ``keys``: generating keys and certificates, a CA's issue, the stored (PKCS#8) form;
* ``client_secrets``: client secrets and credential ids;
* ``assertions``: client assertions, signed and verified.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from orchestrator.adapters.crypto.kit import Cryptography
    from orchestrator.adapters.crypto.material import (
        jwk_thumbprint,
        parse_dn,
        parse_pem,
        spki_fingerprint,
        subject_dn_material,
    )

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

# name -> the module of this package that defines it, imported when the name is first asked
# for: ``cryptography`` and PyJWT load only in a command that uses them (``app register`` and
# ``status`` never do).
_HOME = {
    "MAX_ASSERTION_BYTES": "assertions",
    "MAX_ASSERTION_LIFETIME": "assertions",
    "MAX_CLIENT_ID_LENGTH": "assertions",
    "MAX_JTI_LENGTH": "assertions",
    "AssertionInvalid": "assertions",
    "Cryptography": "kit",
    "KeySource": "keys",
    "PrimePairKeys": "keys",
    "check_secret": "client_secrets",
    "fingerprint_of_private_key": "keys",
    "generate_rsa": "keys",
    "generate_self_signed": "keys",
    "hash_secret": "client_secrets",
    "issue_certificate": "keys",
    "issued_by": "keys",
    "jwk_thumbprint": "material",
    "new_credential_id": "client_secrets",
    "new_secret": "client_secrets",
    "parse_dn": "material",
    "parse_pem": "material",
    "private_key_pem": "keys",
    "public_material_of_private_key": "keys",
    "secret_fingerprint": "client_secrets",
    "sign_client_assertion": "assertions",
    "sign_request_object": "assertions",
    "spki_fingerprint": "material",
    "subject_dn_material": "material",
    "verify_client_assertion": "assertions",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
