"""Room at a provider, as specifications: given the log's credentials of app ``pay``, the
provider's capabilities and (when it lists its clients) its record of the client, then whether
a manual command may attach (``slot_refusal``) or upload (``pool_refusal``) a credential, and
the one line that refuses it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from events.kinds import CredentialKind
from events.state import AppState, Credential
from orchestrator.domain.identity_provider import Capabilities, RemoteClient
from orchestrator.domain.room import pool_refusal, slot_refusal, usage_refusal
from tests.unit.test_drift import CERT, JAR, MTLS, PKJWT, Given, client, remote

AUTH0 = Capabilities(per_slot=2, per_client=4)
ONE_A_SLOT = Capabilities(per_slot=1)
KEY_SET = Capabilities(per_slot=2, shared_key_set=True, keeps_detached=False, expiry=False)
DN = "CN=pay,O=Acme"


def new(given: Given, cid: str) -> tuple[AppState, Credential]:
    state = given.state()
    return state, state.credentials[cid]


SLOT_CASES = [
    pytest.param(Given().key("a").key("n", active=False, pid=None), AUTH0, None, None,
                 id="room: one active credential in a slot of two, read from the log"),
    pytest.param(Given().key("a").key("n", active=False, pid=None), ONE_A_SLOT, None,
                 "the private_key_jwt slot of client 'CLIENT' at identity provider 'idp' is "
                 "full: it holds 1 of 1 (a); disable one first (orchestrator credential "
                 "disable pay ID)",
                 id="full by the log: names the active credential to disable"),
    pytest.param(Given().key("a").key("n", active=False, pid=None), AUTH0,
                 client(remote("a", PKJWT), remote("x", PKJWT, kid="foreign")),
                 "the private_key_jwt slot of client 'CLIENT' at identity provider 'idp' is "
                 "full: it holds 2 of 2 (a; cred_x, not in the log); disable one first "
                 "(orchestrator credential disable pay ID), or take the ones the log does not "
                 "have active there out of it (orchestrator drift --app pay --repair)",
                 id="full at the provider with a credential made outside: both are named"),
    pytest.param(Given().key("a").key("b").disabled("b").key("n", active=False, pid=None)
                 .deleted("a"), AUTH0,
                 client(remote("a", PKJWT), remote("b", PKJWT)),
                 "the private_key_jwt slot of client 'CLIENT' at identity provider 'idp' is "
                 "full: it holds 2 of 2 (cred_a, not in the log; b); take the ones the log does "
                 "not have active there out of it (orchestrator drift --app pay --repair)",
                 id="a disabled credential still attached at the provider is repaired, not "
                    "disabled"),
    pytest.param(Given().key("a").key("n", active=False),
                 AUTH0, client(remote("a", PKJWT), remote("n", PKJWT),
                               remote("x", PKJWT, kid="foreign")), None,
                 id="no room is needed for a credential attached there already"),
    pytest.param(Given().key("a", usage=JAR).key("n", active=False, pid=None), KEY_SET,
                 client(remote("a", PKJWT, JAR), remote("x", PKJWT, JAR, kid="foreign")), None,
                 id="one key set: a key the log holds for another usage fills that usage's slot"),
    pytest.param(Given().key("a", usage=JAR).key("n", active=False, pid=None),
                 AUTH0, client(remote("a", PKJWT, JAR), remote("x", PKJWT, kid="foreign")),
                 "the private_key_jwt slot of client 'CLIENT' at identity provider 'idp' is "
                 "full: it holds 2 of 2 (a; cred_x, not in the log); take the ones the log does "
                 "not have active there out of it (orchestrator drift --app pay --repair)",
                 id="separate slots: a JAR key put in the private_key_jwt slot counts there"),
    pytest.param(Given().key("c1", usage=MTLS, kind=CredentialKind.CERT_SUBJECT_DN, dn=DN)
                 .key("n", usage=MTLS, kind=CredentialKind.CERT_SUBJECT_DN, dn=DN, active=False,
                      pid=None), ONE_A_SLOT, None, None,
                 id="a subject DN registration the credential shares takes no room of its own"),
]


@pytest.mark.parametrize(("given", "caps", "held", "refused"), SLOT_CASES)
def test_slot(given: Given, caps: Capabilities, held: RemoteClient | None,
              refused: str | None) -> None:
    state, cred = new(given, "n")
    assert slot_refusal(state, cred, caps, "idp", held) == refused


POOL_CASES = [
    pytest.param(Given().key("a").key("b"), client(remote("a", PKJWT), remote("b", PKJWT)), None,
                 id="room: two records of four"),
    pytest.param(Given().key("a").key("b").key("j", usage=JAR),
                 client(remote("a", PKJWT), remote("b", PKJWT), remote("j", JAR),
                        remote("x", kid="foreign")),
                 "client 'CLIENT' at identity provider 'idp' holds 4 credentials, its limit of 4 "
                 "(a; b; j; cred_x, not in the log); delete one first (orchestrator credential "
                 "delete pay ID), or delete the ones the log does not know (orchestrator drift "
                 "--app pay --repair)",
                 id="full: each record named, ours to delete, the others to repair"),
    pytest.param(Given().key("a").key("b").key("j", usage=JAR),
                 client(remote("a", PKJWT), remote("b", PKJWT), remote("j", JAR),
                        remote("n", kid="same")), None,
                 id="no room is needed for a credential the client holds already"),
]


@pytest.mark.parametrize(("given", "held", "refused"), POOL_CASES)
def test_pool(given: Given, held: RemoteClient, refused: str | None) -> None:
    state = given.key("n", usage=JAR, active=False, pid=None).state()
    assert pool_refusal(state, state.credentials["n"], AUTH0, "idp", held) == refused


def test_a_provider_without_a_pool_limit_or_a_listing_never_refuses_an_upload() -> None:
    state, cred = new(Given().key("n", active=False, pid=None), "n")
    full = client(*(remote(f"x{i}", kid=f"foreign{i}") for i in range(9)))
    assert pool_refusal(state, cred, replace(AUTH0, per_client=None), "idp", full) is None
    assert pool_refusal(state, cred, AUTH0, "idp", None) is None


def test_a_usage_the_provider_does_not_take_is_refused_naming_the_ones_it_does() -> None:
    caps = Capabilities(usages=frozenset({PKJWT, JAR}))
    assert usage_refusal(PKJWT, caps, "idp") is None
    assert usage_refusal(MTLS, caps, "idp") == (
        "identity provider 'idp' holds no mtls credentials (only jar, private_key_jwt): bind the "
        "application to a provider that does, or use one of those")


def test_a_certificate_record_is_ours_by_its_thumbprint() -> None:
    """The record of a self-signed certificate names our credential, not "not in the log"."""
    from orchestrator.domain.drift import certificate_thumbprint

    given = Given().key("c", usage=MTLS, kind=CredentialKind.X509_CERT, cert=CERT, pid=None)
    state, cred = new(given.key("n", usage=MTLS, kind=CredentialKind.X509_CERT, active=False,
                                pid=None), "n")
    held = client(remote("c", MTLS, kid=None, kind=CredentialKind.X509_CERT, pid="cred_9",
                         thumbprint=certificate_thumbprint(CERT)),
                  remote("x", MTLS, kid="foreign"))
    refused = slot_refusal(state, cred, AUTH0, "idp", held)
    assert refused is not None and "(c; cred_x, not in the log)" in refused
