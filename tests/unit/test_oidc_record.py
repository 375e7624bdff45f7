"""What a client's RFC 7591 record holds for each credential: attach and detach, given a record,
then the record (or None: nothing to send). No network."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events.kinds import CredentialKind, Usage
from events.state import Credential, Status
from orchestrator.adapters import crypto
from orchestrator.adapters.crypto import PrimePairKeys
from orchestrator.adapters.providers.oidc.record import attach, detach, jwk_of, remote_client
from orchestrator.domain.errors import ProviderError

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
KEYS = PrimePairKeys()


def key(usage: Usage, alg: str, kid: str, status: Status = Status.ACTIVE) -> Credential:
    material = crypto.generate_rsa(2048, KEYS).material
    return Credential(id=f"cred_{kid}", usage=usage, kind=CredentialKind.PUBLIC_KEY,
                      kid=kid, fingerprint=material.fingerprint, status=status, added_at=NOW,
                      updated_at=NOW, alg=alg, public_pem=material.public_pem)


def certificate(kid: str) -> Credential:
    made = crypto.generate_self_signed(2048, "app", NOW, NOW + timedelta(days=1), KEYS)
    return Credential(id=f"cred_{kid}", usage=Usage.MTLS, kind=CredentialKind.X509_CERT, kid=kid,
                      fingerprint=made.material.fingerprint, status=Status.ACTIVE, added_at=NOW,
                      updated_at=NOW, certificate_pem=made.material.certificate_pem)


def dn(subject: str, kid: str, status: Status = Status.ACTIVE) -> Credential:
    return Credential(id=f"cred_{kid}", usage=Usage.MTLS, kind=CredentialKind.CERT_SUBJECT_DN,
                      kid=kid, fingerprint=f"dn-{kid}", status=status, added_at=NOW,
                      updated_at=NOW, subject_dn=subject)


def log(*creds: Credential) -> dict[str, Credential]:
    return {c.id: c for c in creds}


BASE: dict[str, Any] = {"client_id": "c1", "client_name": "app", "grant_types": ["client_credentials"],
                        "token_endpoint_auth_method": "client_secret_basic", "client_secret": "s"}


def test_attaching_a_key_adds_its_jwk_and_sets_the_method_and_algorithm() -> None:
    new = key(Usage.PRIVATE_KEY_JWT, "PS256", "k-new-000001")
    record = attach(BASE, new, log(new), NOW)
    assert record is not None
    assert record["jwks"]["keys"] == [jwk_of(new)]
    assert record["jwks"]["keys"][0]["alg"] == "PS256" and record["jwks"]["keys"][0]["kid"] == new.kid
    assert record["token_endpoint_auth_method"] == "private_key_jwt"
    assert record["token_endpoint_auth_signing_alg"] == "PS256"
    assert {k: record[k] for k in BASE if k != "token_endpoint_auth_method"} == {
        k: v for k, v in BASE.items() if k != "token_endpoint_auth_method"}  # the rest kept
    assert attach(record, new, log(new), NOW) is None  # already there: nothing to send


def test_two_algorithms_overlap_without_a_pinned_algorithm_and_it_comes_back_after() -> None:
    old, new = key(Usage.PRIVATE_KEY_JWT, "RS256", "k-old-000001"), key(
        Usage.PRIVATE_KEY_JWT, "PS256", "k-new-000001")
    one = attach(BASE, old, log(old, new), NOW)
    assert one is not None and one["token_endpoint_auth_signing_alg"] == "RS256"
    both = attach(one, new, log(old, new), NOW)
    assert both is not None and "token_endpoint_auth_signing_alg" not in both
    after = detach(both, old, log(old, new))
    assert after is not None and after["token_endpoint_auth_signing_alg"] == "PS256"
    assert detach(after, old, log(old, new)) is None  # absent: nothing to send


def test_a_jar_key_sets_the_request_object_algorithm_and_keeps_the_auth_method() -> None:
    auth, jar = key(Usage.PRIVATE_KEY_JWT, "RS256", "k-auth-00001"), key(
        Usage.JAR, "PS256", "k-jar-000001")
    record = attach(attach(BASE, auth, log(auth, jar), NOW) or {}, jar, log(auth, jar), NOW)
    assert record is not None
    assert record["request_object_signing_alg"] == "PS256"
    assert record["token_endpoint_auth_signing_alg"] == "RS256"
    assert record["token_endpoint_auth_method"] == "private_key_jwt"


def test_a_key_id_held_by_another_key_is_refused() -> None:
    mine, other = key(Usage.PRIVATE_KEY_JWT, "RS256", "k-same-00001"), key(
        Usage.PRIVATE_KEY_JWT, "RS256", "k-same-00001")
    record = attach(BASE, other, log(other), NOW)
    with pytest.raises(ProviderError, match="another key with the key id"):
        attach(record or {}, mine, log(mine), NOW)


def test_a_self_signed_certificate_goes_in_x5c_and_another_method_in_use_is_refused() -> None:
    pkjwt, cert = key(Usage.PRIVATE_KEY_JWT, "RS256", "k-auth-00001"), certificate("c-cert-00001")
    with_key = attach(BASE, pkjwt, log(pkjwt, cert), NOW)
    with pytest.raises(ProviderError, match="authenticates with private_key_jwt"):
        attach(with_key or {}, cert, log(pkjwt, cert), NOW)
    record = attach(BASE, cert, log(cert), NOW)  # from a client secret: switches
    assert record is not None and record["token_endpoint_auth_method"] == "self_signed_tls_client_auth"
    assert record["jwks"]["keys"][0]["x5c"] and "alg" not in record["jwks"]["keys"][0]


def test_one_subject_dn_per_client() -> None:
    first, successor = dn("CN=app,O=Acme", "d1-00000001"), dn("CN=app, O=Acme", "d2-00000001")
    other = dn("CN=other,O=Acme", "d3-00000001")
    record = attach(BASE, first, log(first), NOW)
    assert record is not None and record["token_endpoint_auth_method"] == "tls_client_auth"
    assert attach(record, successor, log(first, successor), NOW) is None  # the same DN
    with pytest.raises(ProviderError, match="RFC 8705 allows one per client"):
        attach(record, other, log(first, other), NOW)
    expired = replace(first, expires_at=NOW - timedelta(seconds=1))
    replaced = attach(record, other, log(expired, other), NOW)  # nobody uses the old DN
    assert replaced is not None and replaced["tls_client_auth_subject_dn"] == "CN=other,O=Acme"
    gone = detach(record, first, log(first))
    assert gone is not None and "tls_client_auth_subject_dn" not in gone
    assert gone["token_endpoint_auth_method"] == "self_signed_tls_client_auth"
    assert gone["jwks"] == {"keys": []}  # a valid record that authenticates nothing


def test_the_remote_view_of_a_record() -> None:
    pkjwt, jar, cert = (key(Usage.PRIVATE_KEY_JWT, "RS256", "k-auth-00001"),
                        key(Usage.JAR, "PS256", "k-jar-000001"), certificate("c-cert-00001"))
    record = attach(attach(BASE, pkjwt, log(pkjwt, jar), NOW) or {}, jar, log(pkjwt, jar), NOW)
    remote = remote_client({**(record or {}), "client_secret": None})
    assert remote.auth_method == "private_key_jwt" and not remote.has_secret
    assert [(c.kid, c.fingerprint, c.alg, c.attached) for c in remote.credentials] == [
        (pkjwt.kid, pkjwt.fingerprint, "RS256", ("private_key_jwt", "jar")),
        (jar.kid, jar.fingerprint, "PS256", ("private_key_jwt", "jar"))]
    mtls = remote_client(attach(BASE, cert, log(cert), NOW) or {})
    [held] = mtls.credentials
    assert held.kind is CredentialKind.X509_CERT and held.attached == ("mtls",)
    assert held.certificate_pem == cert.certificate_pem and held.fingerprint == cert.fingerprint
