"""Drift, as specifications: given the log's history of an app and the provider's record of its
client, then the differences ``compare`` finds, each summed up as ``"<kind> <subject> <usage>:
log=<what the log says> provider=<what the provider says>"``."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from events import catalog as ev
from events.kinds import CredentialKind
from events.state import AppState, fold
from orchestrator.domain.drift import (
    Difference,
    DriftKind,
    certificate_thumbprint,
    compare,
    same_dn,
    same_expiry,
)
from orchestrator.domain.identity_provider import RemoteClient, RemoteCredential
from tests.conftest import NOW
from tests.helpers import certificate, rsa_key

PKJWT, JAR, MTLS = "private_key_jwt", "jar", "mtls"
DAY = timedelta(days=1)
T0 = NOW - 30 * DAY
LATER = NOW + 60 * DAY
CERT_KEY = rsa_key()
CERT = certificate(CERT_KEY, "CN=pay", not_before=T0, not_after=NOW + 300 * DAY).decode()


class Given:
    """The log's facts about app ``pay``, bound to provider ``auth0``."""

    def __init__(self) -> None:
        self.facts: list[tuple[ev.Event, datetime]] = [(ev.ApplicationRegistered(
            app="pay", provider="auth0", client_id="CLIENT"), T0)]

    def key(self, cid: str, *, usage: str = PKJWT, active: bool = True,
            pid: str | None = "auto", expires: datetime | None = LATER,
            kind: CredentialKind = CredentialKind.PUBLIC_KEY, dn: str | None = None,
            cert: str | None = None) -> Given:
        self.facts.append((ev.CredentialAdded(
            credential_id=cid, usage=usage, kind=kind, kid=f"kid-{cid}",
            fingerprint=f"sha256:{cid}", alg="RS256" if kind is CredentialKind.PUBLIC_KEY else None,
            expires_at=expires, subject_dn=dn, certificate_pem=cert), T0))
        if pid is not None:
            self.facts.append((ev.CredentialRegistered(
                credential_id=cid, provider="auth0",
                provider_credential_id=f"cred_{cid}" if pid == "auto" else pid), T0))
        if active:
            self.facts.append((ev.CredentialActivated(credential_id=cid), T0))
        return self

    def disabled(self, cid: str) -> Given:
        self.facts.append((ev.CredentialDisabled(credential_id=cid), T0 + DAY))
        return self

    def expired(self, cid: str, at: datetime) -> Given:
        self.facts.append((ev.CredentialExpired(credential_id=cid, expired_at=at), at))
        return self

    def deleted(self, cid: str) -> Given:
        self.facts.append((ev.CredentialDeleted(credential_id=cid), T0 + DAY))
        return self

    def state(self) -> AppState:
        return fold("pay", self.facts)


def remote(cid: str, *attached: str, kid: str | None = "same", expires: datetime | None = LATER,
           kind: CredentialKind = CredentialKind.PUBLIC_KEY, pid: str | None = None,
           **extra: object) -> RemoteCredential:
    """The provider's record of our ``cid`` (its id ``cred_<cid>``, our kid unless given)."""
    return RemoteCredential(provider_id=pid or f"cred_{cid}", kind=kind, attached=attached,
                            kid=f"kid-{cid}" if kid == "same" else kid, alg="RS256",
                            expires_at=expires, **extra)  # type: ignore[arg-type]


def client(*records: RemoteCredential, method: str | None = "private_key_jwt") -> RemoteClient:
    return RemoteClient(client_id="CLIENT", name="Payments", auth_method=method,
                        credentials=records)


def said(diff: Difference) -> str:
    return (f"{diff.kind} {diff.subject} {diff.usage or '-'}: log={diff.log} "
            f"provider={diff.provider}")


CASES = [
    pytest.param(
        Given().key("a"), client(remote("a", PKJWT)), [],
        id="nothing differs when the provider holds what the log says"),
    pytest.param(
        Given().key("a").key("b", active=False), client(remote("a", PKJWT), remote("b")), [],
        id="an added credential is expected registered and not attached"),
    pytest.param(
        Given().key("a"), client(remote("a", PKJWT), remote("x", PKJWT, kid="foreign")),
        ["added cred_x -: log=absent provider=public_key foreign, private_key_jwt"],
        id="a credential created at the provider is added outside the orchestrator"),
    pytest.param(
        Given().key("a").key("b", active=False), client(remote("a", PKJWT)),
        ["removed b / cred_b private_key_jwt: log=added provider=absent"],
        id="a credential deleted at the provider is removed outside"),
    pytest.param(
        Given().key("a").key("m", pid=None), client(remote("a", PKJWT)),
        ["removed m private_key_jwt: log=active provider=absent"],
        id="a credential added to the log by hand and never uploaded is missing at the provider"),
    pytest.param(
        Given().key("a").key("b").disabled("b"), client(remote("a", PKJWT), remote("b", PKJWT)),
        ["attached b / cred_b private_key_jwt: log=disabled provider=attached"],
        id="a disabled credential put back in the slot is attached outside"),
    pytest.param(
        Given().key("a").key("b"), client(remote("a", PKJWT), remote("b")),
        ["detached b / cred_b private_key_jwt: log=active provider=not attached"],
        id="an active credential taken out of the slot is detached outside"),
    pytest.param(
        Given().key("a"), client(remote("a", PKJWT, JAR)),
        ["attached a / cred_a jar: log=for private_key_jwt only provider=attached"],
        id="a key attached to a slot of another usage as well is attached outside"),
    pytest.param(
        Given().key("a"), client(remote("a", PKJWT, expires=LATER + DAY)),
        [f"redated a / cred_a private_key_jwt: log={LATER:%Y-%m-%dT%H:%M:%S}.000000Z "
         f"provider={LATER + DAY:%Y-%m-%dT%H:%M:%S}.000000Z"],
        id="another expiry at the provider is re-dated outside"),
    pytest.param(
        Given().key("a"), client(remote("a", PKJWT, expires=None)),
        [f"redated a / cred_a private_key_jwt: log={LATER:%Y-%m-%dT%H:%M:%S}.000000Z "
         "provider=never"],
        id="an expiry removed at the provider is re-dated outside"),
    pytest.param(
        Given().key("a"), client(remote("a", PKJWT, expires=LATER + timedelta(milliseconds=400))),
        [], id="an expiry kept to the millisecond is the same expiry"),
    pytest.param(
        Given().key("a", expires=None),
        client(remote("a", PKJWT, expires=datetime.fromisoformat("9999-12-31T23:59:59+00:00"))),
        [], id="the provider's end of time is no expiry"),
    pytest.param(
        Given().key("a").key("b"), client(remote("a"), remote("b"), method="client_secret_post"),
        ["auth_method a, b -: log=private_key_jwt provider=client_secret_post"],
        id="a client switched to a client secret changed its auth method (its keys' detachments "
           "are that one difference)"),
    pytest.param(
        Given().key("a").key("b", pid="cred_b2"), client(remote("a", PKJWT),
                                                         remote("b", PKJWT, pid="cred_b2")),
        [], id="the provider's recorded id finds the credential first"),
    pytest.param(
        Given().key("a").key("b", pid=None), client(remote("a", PKJWT), remote("b", PKJWT)),
        [], id="a credential whose provider id was never recorded is found by its key id"),
    pytest.param(
        Given().key("a").key("b", pid="cred_gone"), client(remote("a", PKJWT), remote("b", PKJWT)),
        ["reregistered b / cred_b private_key_jwt: log=cred_gone provider=cred_b"],
        id="a key the provider holds under another id than the recorded one was uploaded "
           "again outside"),
    pytest.param(
        Given().key("a", expires=NOW - DAY).expired("a", NOW - DAY).key("b"),
        client(remote("b", PKJWT)), [],
        id="an expired credential gone from the provider is no difference"),
    pytest.param(
        Given().key("a", expires=NOW - DAY).key("b"),
        client(remote("a", expires=NOW - DAY), remote("b", PKJWT)), [],
        id="an expired credential taken out of its slot is no difference"),
    pytest.param(
        Given().key("a").key("b").deleted("b"), client(remote("a", PKJWT)), [],
        id="a deleted credential is expected gone"),
    pytest.param(
        Given().key("c", usage=MTLS, kind=CredentialKind.X509_CERT, pid=None, cert=CERT,
                    expires=NOW + 300 * DAY),
        client(remote("c", "mtls", kid=None, kind=CredentialKind.X509_CERT, pid="cred_z",
                      thumbprint=certificate_thumbprint(CERT), expires=None),
               method="self_signed_tls_client_auth"), [],
        id="a self-signed certificate is found by its thumbprint, and its dates are the "
           "certificate's"),
    pytest.param(
        Given().key("d", usage=MTLS, kind=CredentialKind.CERT_SUBJECT_DN, pid=None,
                    dn="CN=pay,O=Example,C=DE", expires=NOW + 300 * DAY),
        client(remote("d", "mtls", kid=None, kind=CredentialKind.CERT_SUBJECT_DN, pid="cred_dn",
                      subject_dn="C=DE\nO=Example\nCN=pay", expires=None),
               method="tls_client_auth"), [],
        id="a subject DN registration is found by its DN in the provider's one-a-line form"),
    pytest.param(
        Given().key("d", usage=MTLS, kind=CredentialKind.CERT_SUBJECT_DN, pid="cred_dn",
                    dn="CN=pay", expires=NOW + DAY).disabled("d")
               .key("e", usage=MTLS, kind=CredentialKind.CERT_SUBJECT_DN, pid="cred_dn",
                    dn="CN=pay", expires=NOW + 300 * DAY),
        client(remote("d", "mtls", kid=None, kind=CredentialKind.CERT_SUBJECT_DN, pid="cred_dn",
                      subject_dn="CN=pay"), method="tls_client_auth"), [],
        id="a certificate and its successor share one DN registration, attached while either "
           "is active"),
    pytest.param(
        Given().key("a"), client(remote("a", PKJWT), method=None), [],
        id="a provider that does not say how the client authenticates is not judged on it"),
]


@pytest.mark.parametrize(("given", "provider", "then"), CASES)
def test_compare(given: Given, provider: RemoteClient, then: list[str]) -> None:
    assert [said(d) for d in compare(given.state(), provider, NOW)] == then


def test_dates_are_not_compared_where_the_provider_keeps_none() -> None:
    state = Given().key("a").state()
    assert compare(state, client(remote("a", PKJWT, expires=None)), NOW, dates=False) == ()


def test_a_shared_key_set_holds_each_key_for_every_signing_usage() -> None:
    state = Given().key("a").key("j", usage=JAR).key("d", active=False).state()
    provider = client(remote("a", PKJWT, JAR), remote("j", PKJWT, JAR), remote("d", PKJWT, JAR))
    found = compare(state, provider, NOW, shared_key_set=True)
    assert [said(d) for d in found] == [
        "attached d / cred_d private_key_jwt: log=added provider=attached"]


def test_where_the_provider_keeps_only_attached_credentials_a_retired_one_is_absent() -> None:
    state = Given().key("a").key("b").disabled("b").key("n", active=False).key("c").state()
    provider = client(remote("a", PKJWT))  # RFC 7592: the record holds what authenticates
    found = compare(state, provider, NOW, keeps_detached=False)
    assert [said(d) for d in found] == ["removed c / cred_c private_key_jwt: log=active "
                                        "provider=absent"]
    assert {said(d) for d in compare(state, provider, NOW)} >= {  # a pool keeps them
        "removed b / cred_b private_key_jwt: log=disabled provider=absent",
        "removed n / cred_n private_key_jwt: log=added provider=absent"}


def test_every_difference_says_in_one_line_what_the_log_and_the_provider_say() -> None:
    state = Given().key("a").key("b").disabled("b").key("c", usage=JAR).state()
    found = compare(state, client(remote("a", PKJWT, expires=NOW + DAY), remote("b", PKJWT),
                                  remote("x", JAR, kid="other-kid-1")), NOW)
    assert {d.kind for d in found} == {DriftKind.REDATED, DriftKind.ATTACHED,
                                       DriftKind.REMOVED, DriftKind.ADDED}
    texts = [d.text for d in found]
    assert all("\n" not in t for t in texts)
    assert ("credential c / cred_c (jar, active in the log) is not at the provider"
            in texts)
    assert ("credential cred_x is at the provider (public_key other-kid-1, jar) and not in "
            "the log" in texts)


@pytest.mark.parametrize(("one", "other", "same"), [
    ("CN=pay,O=Example,C=DE", "C=DE\nO=Example\nCN=pay", True),
    ("CN=pay, O=Example", "O=Example,CN=pay", True),
    ("CN=pay,O=Example", "CN=pay,O=Other", False),
    ("CN=a\\,b,O=x", "CN=a\\,b,O=x", True),
])
def test_subject_dns_compare_by_their_attributes(one: str, other: str, same: bool) -> None:
    assert same_dn(one, other) is same


def test_expiries_compare_to_the_second_and_never_is_the_end_of_time() -> None:
    assert same_expiry(NOW, NOW + timedelta(milliseconds=999))
    assert not same_expiry(NOW, NOW + timedelta(seconds=1))
    assert same_expiry(None, datetime.fromisoformat("9999-12-31T23:59:59.000+00:00"))
    assert not same_expiry(None, NOW)
