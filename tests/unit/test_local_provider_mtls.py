"""The local provider matches mTLS certificates the way the identity provider does.

A self-signed certificate (``x509_cert``) is matched by its key; a CA-issued one
(``cert_subject_dn``) by its subject DN, and only once its chain verifies to a CA the provider
trusts (the customer edge's check, then the DN comparison). So a new certificate from the same
CA for the same DN is accepted through the registration the old one has: nothing to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from events import catalog as ev
from events.state import AppState, fold
from orchestrator.adapters import crypto
from orchestrator.adapters.keystore import MemoryKeystore
from orchestrator.adapters.providers.local import LocalProvider
from orchestrator.domain.errors import ProviderError
from tests.conftest import NOW
from tests.helpers import PrivateKey, certificate, rsa_key

DAY = timedelta(days=1)
APP = "bank"
DN, CA_DN = "CN=bank,O=Acme Bank,C=DE", "CN=Acme Issuing CA,O=Acme,C=DE"
CA_KEY, OTHER_CA_KEY, OLD_KEY, NEW_KEY, SELF_KEY = (rsa_key() for _ in range(5))


def ca(until: datetime = NOW + 365 * DAY) -> bytes:
    return certificate(CA_KEY, CA_DN, not_before=NOW - 30 * DAY, not_after=until, ca=True)


def issued(key: PrivateKey, subject: str = DN, signer: PrivateKey = CA_KEY) -> bytes:
    return certificate(key, subject, not_before=NOW - DAY, not_after=NOW + 30 * DAY,
                       issuer_key=signer, issuer=CA_DN)


SELF_SIGNED = certificate(SELF_KEY, "CN=bank", not_before=NOW - DAY, not_after=NOW + 30 * DAY)


def registered() -> AppState:
    """The old CA-issued certificate (by DN) and a self-signed one, both active."""
    facts: list[tuple[ev.Event, datetime]] = [(ev.ApplicationRegistered(app=APP), NOW - 9 * DAY)]
    for cid, pem, kind in (("cred_old", issued(OLD_KEY), ev.CredentialKind.CERT_SUBJECT_DN),
                           ("cred_self", SELF_SIGNED, ev.CredentialKind.X509_CERT)):
        m = crypto.parse_pem(pem)
        facts += [(ev.CredentialAdded(credential_id=cid, usage="mtls", kind=kind, kid=f"kid-{cid}",
                                      fingerprint=m.fingerprint, certificate_pem=m.certificate_pem,
                                      subject_dn=m.subject_dn, expires_at=m.not_after),
                   NOW - 8 * DAY),
                  (ev.CredentialActivated(credential_id=cid), NOW - 8 * DAY)]
    return fold(APP, facts)


def provider(trusted: Sequence[bytes]) -> LocalProvider:
    state = registered()
    return LocalProvider(lambda app: state, MemoryKeystore(), trusted_cas=lambda: trusted)


@pytest.mark.parametrize(("presented", "trusted", "matched"), [
    pytest.param(issued(NEW_KEY), [ca()], "cred_old",
                 id="a new certificate of the same DN from a trusted CA: the DN registration"),
    pytest.param(SELF_SIGNED, [], "cred_self",
                 id="a registered self-signed certificate: by its key"),
])
def test_accepts(presented: bytes, trusted: list[bytes], matched: str) -> None:
    assert provider(trusted).verify_certificate(APP, presented.decode(), NOW) == matched


@pytest.mark.parametrize(("presented", "trusted"), [
    pytest.param(issued(NEW_KEY), [], id="the same DN from a CA the provider does not trust"),
    pytest.param(issued(NEW_KEY), [ca(until=NOW - DAY)], id="the same DN from an expired CA"),
    pytest.param(issued(NEW_KEY, signer=OTHER_CA_KEY), [ca()],
                 id="the same DN and issuer name, signed by another key"),
    pytest.param(issued(NEW_KEY, subject="CN=other,O=Acme Bank,C=DE"), [ca()],
                 id="another DN from the trusted CA"),
    pytest.param(certificate(rsa_key(), "CN=bank", not_before=NOW - DAY,
                             not_after=NOW + 30 * DAY), [ca()],
                 id="a self-signed certificate of a registered name but another key"),
])
def test_refuses(presented: bytes, trusted: list[bytes]) -> None:
    with pytest.raises(ProviderError):
        provider(trusted).verify_certificate(APP, presented.decode(), NOW)
