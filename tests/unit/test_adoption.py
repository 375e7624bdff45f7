"""Adoption, as specifications: the names import gives clients, the events recording a
provider's client, and what ``drift --adopt`` records for each kind of difference."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from events import catalog as ev
from events.kinds import CredentialKind
from events.state import AppState, Status, fold
from orchestrator.domain.adoption import (
    app_name,
    decide_adoption,
    decide_import,
    marked_fingerprint,
    sanitise_name,
)
from orchestrator.domain.drift import DriftKind, compare
from orchestrator.domain.errors import ConflictError
from orchestrator.domain.identity_provider import RemoteClient, RemoteCredential
from orchestrator.domain.material import MaterialKind, PublicMaterial
from orchestrator.domain.rules import APP_PATTERN
from orchestrator.domain.timemath import END_OF_TIME
from tests.conftest import NOW

DAY = timedelta(days=1)
LATER = NOW + 90 * DAY
PKJWT, JAR = "private_key_jwt", "jar"


@pytest.mark.parametrize(("client_name", "expected"), [
    ("payments-api", "payments-api"),
    ("Payments API (prod)", "Payments-API-prod"),
    ("  Zahlungsdienst Übersicht ", "Zahlungsdienst-Ubersicht"),
    ("__hidden", "hidden"),
    ("☃☃☃", "client"),
    ("x" * 80, "x" * 64),
    ("a" * 63 + " b", "a" * 63),
])
def test_a_client_name_is_made_into_an_application_name(client_name: str, expected: str) -> None:
    assert sanitise_name(client_name) == expected
    assert APP_PATTERN.fullmatch(expected)


def test_name_clashes_are_resolved_predictably() -> None:
    taken: set[str] = {"web"}
    first = app_name("web", "AbCdEfGh12345678", taken.__contains__)
    assert first == "web-AbCdEfGh"
    taken.add(first)
    assert app_name("Web", "AbCdEfGh12345678", taken.__contains__) == "Web"
    assert app_name("web", "AbCdEfGh12345678", taken.__contains__) == "web-AbCdEfGh12345678"
    taken.add("web-AbCdEfGh12345678")
    assert app_name("web", "AbCdEfGh12345678", taken.__contains__) == "web-AbCdEfGh12345678-2"
    long = app_name("y" * 64, "Q" * 32, {"y" * 64}.__contains__)
    assert long == "y" * 55 + "-QQQQQQQQ" and len(long) == 64


def remote_key(pid: str, *attached: str, kid: str | None = None,
               expires: datetime | None = LATER) -> RemoteCredential:
    return RemoteCredential(provider_id=pid, kind=CredentialKind.PUBLIC_KEY, attached=attached,
                            kid=kid or f"kid-of-{pid}", alg="PS256", expires_at=expires)


def material_for(provider: str, record: RemoteCredential) -> PublicMaterial:
    return PublicMaterial(kind=MaterialKind.PUBLIC_KEY,
                          fingerprint=marked_fingerprint(provider, record))


def importing(client: RemoteClient, state: AppState | None = None,
              app: str = "pay") -> tuple[list[ev.Event], list[str]]:
    ids = {r.provider_id: f"c-{r.provider_id}" for r in client.credentials}
    materials = {r.provider_id: material_for("auth0", r) for r in client.credentials}
    events, refused = decide_import(state or AppState(app=app), app, "auth0", client, ids,
                                    materials, NOW)
    return events, [f"{r.provider_id}: {r.reason}" for r in refused]


def test_an_imported_client_is_bound_and_its_credentials_recorded_as_they_are() -> None:
    client = RemoteClient("CID", "Payments", "private_key_jwt", (
        remote_key("cred_1", PKJWT), remote_key("cred_2", expires=None),
        remote_key("cred_3", JAR)))
    events, refused = importing(client)
    assert refused == []
    assert [type(e).__name__ for e in events] == [
        "ApplicationRegistered",
        "CredentialAdded", "CredentialRegistered", "CredentialActivated",
        "CredentialAdded", "CredentialRegistered", "CredentialActivated",
        "CredentialAdded", "CredentialRegistered"]
    state = fold("pay", [(e, NOW) for e in events])
    assert (state.provider, state.client_id) == ("auth0", "CID")
    one, two = state.credentials["c-cred_1"], state.credentials["c-cred_2"]
    assert (one.usage, one.status, one.provider_id, one.kid, one.alg, one.expires_at) == (
        PKJWT, Status.ACTIVE, "cred_1", "kid-of-cred_1", "PS256", LATER)
    assert one.fingerprint == "provider:auth0:kid:kid-of-cred_1"
    assert (two.usage, two.status, two.expires_at) == (PKJWT, Status.ADDED, None)
    assert state.credentials["c-cred_3"].usage == JAR
    # and the log now says what the provider has
    assert compare(state, client, NOW) == ()


def test_a_third_key_of_a_usage_is_not_recorded_and_the_attached_ones_are_kept() -> None:
    client = RemoteClient("CID", "Payments", "private_key_jwt", (
        remote_key("cred_a"), remote_key("cred_b", PKJWT), remote_key("cred_c", PKJWT)))
    events, refused = importing(client)
    state = fold("pay", [(e, NOW) for e in events])
    assert sorted(c.provider_id or "" for c in state.credentials.values()) == ["cred_b", "cred_c"]
    assert refused == ["cred_a: the application has 2 private_key_jwt credentials already "
                       "(c-cred_b, c-cred_c); at most 2 are allowed"]
    assert [d.kind for d in compare(state, client, NOW)] == [DriftKind.ADDED]


def test_import_refuses_a_name_that_is_registered() -> None:
    taken = fold("pay", [(ev.ApplicationRegistered(app="pay"), NOW)])
    with pytest.raises(ConflictError, match="already registered"):
        importing(RemoteClient("CID", "pay"), taken)


# --- drift --adopt: given the log and the provider, then after adoption they agree -------------


def history(*facts: ev.Event) -> list[tuple[ev.Event, datetime]]:
    return [(ev.ApplicationRegistered(app="pay", provider="auth0", client_id="CID"), NOW - DAY),
            *[(f, NOW - DAY) for f in facts]]


def logged(*facts: ev.Event) -> AppState:
    return fold("pay", history(*facts))


def key(cid: str, usage: str = PKJWT, active: bool = True) -> list[ev.Event]:
    out: list[ev.Event] = [
        ev.CredentialAdded(credential_id=cid, usage=usage, kind=CredentialKind.PUBLIC_KEY,
                           kid=f"kid-{cid}", fingerprint=f"sha256:{cid}", alg="RS256",
                           expires_at=LATER),
        ev.CredentialRegistered(credential_id=cid, provider="auth0",
                                provider_credential_id=f"cred_{cid}")]
    return out + ([ev.CredentialActivated(credential_id=cid)] if active else [])


def theirs(cid: str, *attached: str, **changes: object) -> RemoteCredential:
    values: dict[str, object] = {"kid": f"kid-{cid}", "expires_at": LATER, **changes}
    return RemoteCredential(f"cred_{cid}", CredentialKind.PUBLIC_KEY, attached,
                            **values)  # type: ignore[arg-type]


ADOPT = [
    pytest.param(key("a"), (theirs("a", PKJWT), theirs("x", PKJWT, kid="foreign-kid")),
                 ["CredentialAdded", "CredentialRegistered", "CredentialActivated"],
                 id="added: recorded, registered and active as at the provider"),
    pytest.param([*key("a"), *key("b")], (theirs("a", PKJWT),),
                 ["CredentialDeleted"], id="removed: deleted"),
    pytest.param([*key("a"), *key("b", active=False)], (theirs("a", PKJWT),
                                                             theirs("b", PKJWT)),
                 ["CredentialActivated"], id="attached: activated"),
    pytest.param([*key("a"), *key("b")], (theirs("a", PKJWT), theirs("b")),
                 ["CredentialDisabled"], id="detached: disabled"),
    pytest.param([*key("a")], (theirs("a", PKJWT, expires_at=LATER + DAY),),
                 ["CredentialExpiryChanged"], id="redated: the provider's expiry"),
    pytest.param([*key("a")], (theirs("a", PKJWT, expires_at=None),),
                 ["CredentialExpiryChanged"], id="redated to never: the end of time"),
    pytest.param([*key("a")], (RemoteCredential("cred_new", CredentialKind.PUBLIC_KEY,
                                                      (PKJWT,), kid="kid-a", expires_at=LATER),),
                 ["CredentialRegistered"], id="reregistered: the provider's id"),
    pytest.param([*key("a"), *key("b")], (theirs("a"), theirs("b")),
                 ["CredentialDisabled", "CredentialDisabled"],
                 id="auth method: the keys it no longer accepts disabled"),
]


@pytest.mark.parametrize(("facts", "records", "then"), ADOPT)
def test_adopting_makes_the_log_say_what_the_provider_has(
        facts: list[ev.Event], records: tuple[RemoteCredential, ...], then: list[str]) -> None:
    method = "client_secret_post" if all(not r.attached for r in records) else "private_key_jwt"
    client = RemoteClient("CID", "pay", method, records)
    state = logged(*facts)
    found = compare(state, client, NOW)
    assert found
    ids = {r.provider_id: f"c-{r.provider_id}" for r in records}
    materials = {r.provider_id: material_for("auth0", r) for r in records}
    events, refused = decide_adoption(state, found, "auth0", ids, materials, NOW)
    assert refused == []
    assert [type(e).__name__ for e in events] == then
    after = fold("pay", [*history(*facts), *[(e, NOW) for e in events]])
    assert compare(after, client, NOW) == ()


def test_an_expiry_removed_at_the_provider_is_recorded_as_the_end_of_time() -> None:
    state = logged(*key("a"))
    client = RemoteClient("CID", "pay", "private_key_jwt", (theirs("a", PKJWT, expires_at=None),))
    events, _ = decide_adoption(state, compare(state, client, NOW), "auth0", {}, {}, NOW)
    assert events == [ev.CredentialExpiryChanged(credential_id="a", expires_at=END_OF_TIME,
                                                 previous_expires_at=LATER)]


def test_a_key_attached_to_a_second_usage_cannot_be_adopted() -> None:
    state = logged(*key("a"))
    client = RemoteClient("CID", "pay", "private_key_jwt", (theirs("a", PKJWT, JAR),))
    events, refused = decide_adoption(state, compare(state, client, NOW), "auth0", {}, {}, NOW)
    assert events == []
    assert [(r.kind, r.reason) for r in refused] == [(
        DriftKind.ATTACHED, "the log holds a credential for one usage; it cannot be jar as "
        "well: repair it instead")]
