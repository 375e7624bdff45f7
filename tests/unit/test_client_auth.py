"""Whether a client-secret rotation may start, by what authenticates the client (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from events import catalog as ev
from events.state import fold
from orchestrator.domain.client_auth import secret_refused
from orchestrator.domain.identity_provider import Capabilities
from tests.conftest import NOW

ONE_METHOD = Capabilities(secret_overlap=False, secret_beside_keys=False)
DAY = timedelta(days=1)


def key(cid: str, usage: str, *, active: bool = True,
        expires: datetime | None = None) -> list[tuple[ev.Event, datetime]]:
    kind = ev.CredentialKind.X509_CERT if usage == "mtls" else ev.CredentialKind.PUBLIC_KEY
    facts: list[tuple[ev.Event, datetime]] = [(ev.CredentialAdded(
        credential_id=cid, usage=usage, kind=kind, kid=f"kid-{cid}", alg="RS256",
        key_size=2048, fingerprint=f"sha256:{cid}", expires_at=expires), NOW - DAY)]
    return facts + ([(ev.CredentialActivated(credential_id=cid), NOW - DAY)] if active else [])


@pytest.mark.parametrize(("facts", "remote", "refused"), [
    pytest.param([], None, None, id="a client the log and the provider know no keys of"),
    pytest.param(key("k1", "private_key_jwt"), None, "private_key_jwt (the log holds",
                 id="a usable private_key_jwt key in the log refuses it"),
    pytest.param(key("c1", "mtls"), None, "self_signed_tls_client_auth (the log holds",
                 id="a usable mTLS certificate in the log refuses it"),
    pytest.param(key("j1", "jar"), None, None,
                 id="a JAR key signs requests only: the client may still use a secret"),
    pytest.param(key("k1", "private_key_jwt", active=False), None, None,
                 id="a key added but not active does not authenticate"),
    pytest.param(key("k1", "private_key_jwt", expires=NOW - timedelta(seconds=1)), None, None,
                 id="a key past its expiry does not authenticate"),
    pytest.param([], "private_key_jwt", "private_key_jwt (so the identity provider says)",
                 id="the provider's word when the log holds no key"),
    pytest.param([], "client_secret_post", None,
                 id="a client the provider says uses a secret"),
])
def test_a_secret_rotation_is_refused_for_a_client_that_authenticates_with_keys(
        facts: list[tuple[ev.Event, datetime]], remote: str | None,
        refused: str | None) -> None:
    state = fold("pay", [(ev.ApplicationRegistered(app="pay", provider="tenant",
                                                   client_id="c-1"), NOW - 2 * DAY), *facts])
    why = secret_refused(state, ONE_METHOD, NOW, remote)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why and "application 'pay': its client 'c-1'" in why
    assert secret_refused(state, Capabilities(), NOW, "private_key_jwt") is None
