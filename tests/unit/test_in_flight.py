"""What a rotation in flight explains, as specifications: given the log's history of an app with
a rotation running (its old key ``o``, its new key ``n``) and the provider's record of its
client, then the differences no rotation explains (each summed up as in ``test_drift``): those
hold the application in the daemon; the others are the rotation's own steps, ahead of their
records, and the rule that explains each is named."""

from __future__ import annotations

from datetime import datetime

import pytest

from events import catalog as ev
from orchestrator.domain.drift import compare
from orchestrator.domain.identity_provider import RemoteClient
from orchestrator.domain.in_flight import explanation, unexplained
from tests.conftest import NOW
from tests.unit.test_drift import DAY, JAR, LATER, PKJWT, T0, Given, client, remote, said

ROT = "rot_1"


class Rotating(Given):
    """``Given`` with the facts of rotation ``rot_1`` of private_key_jwt."""

    def at(self, days: int) -> datetime:
        return T0 + days * DAY

    def started(self, old: str | None = "o", new: str = "n") -> Rotating:
        self.facts.append((ev.RotationStarted(rotation_id=ROT, usage=PKJWT, reason="age",
                                              old_credential_id=old, new_credential_id=new),
                           self.at(2)))
        return self

    def generated(self, new: str = "n") -> Rotating:
        self.facts.append((ev.CredentialAdded(
            credential_id=new, usage=PKJWT, kind=ev.CredentialKind.PUBLIC_KEY, kid=f"kid-{new}",
            fingerprint=f"sha256:{new}", alg="RS256", expires_at=LATER), self.at(2)))
        return self.step("generated")

    def step(self, name: str) -> Rotating:
        self.facts.append((ev.RotationStepRecorded(rotation_id=ROT, step=name), self.at(3)))
        return self

    def registered(self, new: str = "n") -> Rotating:
        self.facts.append((ev.CredentialRegistered(credential_id=new, provider="auth0",
                                                   provider_credential_id=f"cred_{new}"),
                           self.at(3)))
        return self.step("registered")

    def activated(self, cid: str = "n") -> Rotating:
        self.facts.append((ev.CredentialActivated(credential_id=cid), self.at(3)))
        return self

    def parked_then_retried(self, new: str = "n") -> Rotating:
        self.facts += [
            (ev.RotationParked(rotation_id=ROT, step="test", error="refused", attempts=5),
             self.at(4)),
            (ev.CredentialDisabled(credential_id=new), self.at(4)),
            (ev.RotationRetried(rotation_id=ROT), self.at(5))]
        return self

    def parked(self, step: str, untested: str | None = None) -> Rotating:
        """Parked after its budget at ``step``; ``untested``: its new key, disabled by the
        parking."""
        self.facts.append((ev.RotationParked(rotation_id=ROT, step=step, error="unreachable",
                                             attempts=5), self.at(4)))
        if untested is not None:
            self.facts.append((ev.CredentialDisabled(credential_id=untested), self.at(4)))
        return self

    def completed(self) -> Rotating:
        self.facts.append((ev.RotationCompleted(rotation_id=ROT, new_credential_id="n",
                                                old_credential_id="o"), self.at(6)))
        return self


def with_old() -> Rotating:
    return Rotating().key("o")  # type: ignore[return-value]


def delivered() -> Rotating:
    """The new key uploaded, attached, tested and delivered: the overlap runs."""
    return with_old().started().generated().registered().activated().step("tested").step(
        "delivered")


OLD, NEW = remote("o", PKJWT), remote("n", PKJWT)
CASES = [
    # --- the rotation's own steps, ahead of their records: nothing holds the app ---------------
    pytest.param(
        with_old().started().generated(), client(OLD),
        [], ["not uploaded yet"],
        id="a new key generated and not yet uploaded is the rotation's own"),
    pytest.param(
        with_old().started().generated(), client(OLD, remote("n", pid="cred_lost")),
        [], [],
        id="a register whose answer was lost is no difference at all: the upload matches by kid"),
    pytest.param(
        with_old().started().generated().registered(), client(OLD, NEW),
        [], ["attached its new credential"],
        id="an activation whose answer was lost is the rotation's own"),
    pytest.param(
        with_old().started().generated().registered().activated().parked_then_retried(),
        client(OLD, NEW),
        [], ["attached its new credential"],
        id="a retried rotation's activation of its disabled, untested key is its own"),
    pytest.param(
        with_old().started().generated().registered().activated(), client(OLD, remote("n")),
        [], ["detached its untested new credential"],
        id="a failure parking the rotation detached its untested key; the record follows"),
    pytest.param(
        delivered(), client(remote("o"), NEW),
        [], ["detached the old credential"],
        id="disabling the old key after the overlap, its record lost, is the rotation's own"),
    pytest.param(
        with_old().key("v").started(), client(OLD),
        [], ["to free a slot"],
        id="deleting a key to free a slot before generating is the rotation's own"),
    pytest.param(
        with_old().key("v").started(), client(OLD, remote("v")),
        [], ["to free a slot"],
        id="detaching the key that frees a slot is the rotation's own"),
    pytest.param(
        with_old().started().generated().parked("register"), client(OLD),
        [], ["not uploaded yet (the rotation is parked"],
        id="a parked rotation's new key, never uploaded (the provider was down), is its own"),
    # --- anything else holds the app ------------------------------------------------------------
    pytest.param(
        with_old().started().generated().parked("register"), client(),
        ["removed o / cred_o private_key_jwt: log=active provider=absent"],
        ["not uploaded yet (the rotation is parked"],
        id="a parked rotation explains its never-uploaded key, not the old key removed"),
    pytest.param(
        with_old().started().generated().registered().activated().parked("test", "n"),
        client(OLD, NEW),
        ["attached n / cred_n private_key_jwt: log=disabled provider=attached"], [],
        id="a parked rotation's untested key still attached at the provider holds the app"),
    pytest.param(
        with_old().started().generated(), client(),
        ["removed o / cred_o private_key_jwt: log=active provider=absent"],
        ["not uploaded yet"],
        id="the old key deleted at the provider mid-rotation holds the app"),
    pytest.param(
        delivered(), client(OLD),
        ["removed n / cred_n private_key_jwt: log=active provider=absent"], [],
        id="the new key deleted at the provider after its upload holds the app"),
    pytest.param(
        with_old().started().generated().registered().activated(), client(remote("o"), NEW),
        ["detached o / cred_o private_key_jwt: log=active provider=not attached"], [],
        id="the old key detached before its successor was tested holds the app"),
    pytest.param(
        with_old().started().generated().registered().activated().step("tested"),
        client(remote("o"), NEW),
        ["detached o / cred_o private_key_jwt: log=active provider=not attached"], [],
        id="the old key detached before the new one was delivered holds the app"),
    pytest.param(
        with_old().started().generated().registered(), client(OLD, remote("n", JAR)),
        ["attached n / cred_n jar: log=for private_key_jwt only provider=attached"], [],
        id="the new key attached to another usage's slot holds the app"),
    pytest.param(
        with_old().started().generated().registered(),
        client(OLD, remote("n"), remote("x", kid="foreign")),
        ["added cred_x -: log=absent provider=public_key foreign, not attached"], [],
        id="a key the log does not know, added mid-rotation, holds the app"),
    pytest.param(
        with_old().started().generated().registered(),
        client(OLD, remote("n", expires=LATER + DAY)),
        [f"redated n / cred_n private_key_jwt: log={LATER:%Y-%m-%dT%H:%M:%S.%fZ} "
         f"provider={LATER + DAY:%Y-%m-%dT%H:%M:%S.%fZ}"], [],
        id="the new key re-dated at the provider holds the app"),
    pytest.param(
        with_old().started().generated(),
        client(remote("o"), method="client_secret_post"),
        ["auth_method o / cred_o -: log=private_key_jwt provider=client_secret_post"],
        ["not uploaded yet"],
        id="the client switched to another auth method mid-rotation holds the app"),
    pytest.param(
        with_old().key("v").started(), client(),
        ["removed o / cred_o private_key_jwt: log=active provider=absent"], ["to free a slot"],
        id="freeing a slot explains the one key it deletes, not the one it replaces"),
    pytest.param(
        delivered().completed(), client(remote("o")),
        ["removed n / cred_n private_key_jwt: log=active provider=absent",
         "detached o / cred_o private_key_jwt: log=active provider=not attached"], [],
        id="a completed rotation explains nothing"),
]


@pytest.mark.parametrize(("given", "provider", "held", "explained"), CASES)
def test_what_a_rotation_in_flight_explains(given: Rotating, provider: RemoteClient,
                                            held: list[str], explained: list[str]) -> None:
    state = given.state()
    found = compare(state, provider, NOW)
    left = unexplained(state, found, NOW)
    assert sorted(said(d) for d in left) == sorted(held)
    reasons = [explanation(state, d, NOW) for d in found if d not in left]
    assert len(reasons) == len(explained)
    for reason, fragment in zip(reasons, explained, strict=True):
        assert reason is not None and reason.startswith(f"rotation {ROT}: ")
        assert fragment in reason
