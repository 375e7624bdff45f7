"""The manual credential commands on an application bound to node oidc-provider (RFC 7591/7592,
``app.manual_credentials``): after each one the client's registration record, read with a plain
RFC 7592 GET (never through our adapter), holds exactly the keys the log has active, the token
endpoint agrees, and the drift check finds nothing. Such a provider keeps no credential that is
not attached and no expiry, so ``add`` and ``set-expiry`` record only, and say so. A slot full
of keys registered outside and a provider that does not answer are refused with nothing changed
on either side."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from jwt.algorithms import RSAAlgorithm

from orchestrator.adapters.keystore import MemoryKeystore
from orchestrator.adapters.providers.oidc import OidcProvider
from orchestrator.adapters.providers.router import ProviderRouter
from orchestrator.app.drift import DriftChecker
from orchestrator.app.manual_credentials import ManualCredentials
from orchestrator.app.service import CredentialSource
from orchestrator.domain.errors import RefusedError
from orchestrator.domain.identity_provider import ProviderUnavailable
from tests.helpers import rsa_key
from tests.integration.test_oidc_adapter import (
    APP,
    IDP,
    World,
    accepted,
    adopted,
    created,
    http,
    key_source,
    kids,
    meta,
    refused,
    token_request,
    world,
)
from tests.peers.oidc import OidcPeer

__all__ = ["http", "key_source", "meta", "world"]  # the fixtures, shared with the adapter's tests

PKJWT, JAR = "private_key_jwt", "jar"
DAY = timedelta(days=1)


def manual(world: World) -> ManualCredentials:
    return ManualCredentials(world.core.service, world.core.provider)


def generated() -> CredentialSource:
    return CredentialSource(generate=True, key_size=2048)


def record(world: World, http: httpx.Client) -> dict[str, Any]:
    """The client's registration as the provider answers a plain RFC 7592 read (a read does
    not rotate the registration access token)."""
    raw = world.keystore.get(f"idp/{IDP}/{world.client_id()}/registration-token")
    assert raw is not None
    kept = json.loads(raw)
    answer = http.get(kept["uri"], headers={"Authorization": f"Bearer {kept['token']}"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def drift(world: World) -> list[str]:
    checker = DriftChecker(world.core.service, world.core.provider, world.core.service.crypto,
                           lambda: [world.state()], lambda: world.now)
    found = checker.check(world.state())
    assert found.error is None, found.error
    return [d.text for d in found.differences]


def test_each_command_leaves_the_record_holding_what_the_log_has_active(
        world: World, http: httpx.Client, meta: dict[str, Any]) -> None:
    created(world)
    cmd = manual(world)
    client_id = world.client_id()

    added = cmd.add(APP, PKJWT, generated())
    a = added.credential
    assert added.note == (f"not sent to identity provider {IDP!r} yet: it holds only active "
                          "credentials (credential activate sends it)")
    assert kids(record(world, http)) == [] and drift(world) == []

    cmd.activate(APP, a.id)
    assert kids(record(world, http)) == [a.kid]
    assert world.state().credentials[a.id].provider_id == a.kid  # the provider's id: the kid
    assert accepted(token_request(http, meta, client_id, a, world.private(a)))
    assert drift(world) == []
    token = world.token()
    assert cmd.activate(APP, a.id).note == (
        f"active already: nothing sent to identity provider {IDP!r}")
    assert world.token() == token  # no update was sent (each one rotates the token)
    assert kids(record(world, http)) == [a.kid]

    b = cmd.add(APP, PKJWT, generated(), activate=True).credential
    assert kids(record(world, http)) == [a.kid, b.kid] and drift(world) == []

    before = record(world, http)
    done = cmd.set_expiry(APP, b.id, world.now + 30 * DAY)
    assert done.note == (f"recorded in the log only: identity provider {IDP!r} keeps no expiry "
                         "for it, so it accepts it there until it is disabled or deleted")
    assert done.credential.expires_at == world.now + 30 * DAY
    assert record(world, http) == before and drift(world) == []

    cmd.disable(APP, a.id)
    assert kids(record(world, http)) == [b.kid]
    assert refused(token_request(http, meta, client_id, a, world.private(a)))
    assert accepted(token_request(http, meta, client_id, b, world.private(b)))
    assert drift(world) == []

    cmd.delete(APP, a.id)
    assert kids(record(world, http)) == [b.kid] and world.keystore.get(a.id) is None
    assert drift(world) == []

    b_key = world.private(b)
    cmd.delete(APP, b.id, force=True)
    assert kids(record(world, http)) == [] and drift(world) == []
    assert refused(token_request(http, meta, client_id, b, b_key))


def _jwk(number: int) -> dict[str, Any]:
    public = rsa_key().public_key()
    return {**RSAAlgorithm.to_jwk(public, as_dict=True), "kid": f"theirs-{number:04d}",
            "use": "sig", "alg": "RS256"}


def test_a_slot_full_of_keys_registered_outside_is_refused_and_nothing_changes(
        world: World, http: httpx.Client, meta: dict[str, Any]) -> None:
    adopted(world, http, meta, {
        "client_name": "payments", "grant_types": ["client_credentials"], "response_types": [],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [_jwk(1), _jwk(2)]}})
    cmd = manual(world)
    a = cmd.add(APP, PKJWT, generated()).credential
    version, before = world.state().version, record(world, http)
    with pytest.raises(RefusedError) as full:
        cmd.activate(APP, a.id)
    assert str(full.value) == (
        f"the private_key_jwt slot of client {world.client_id()!r} at identity provider "
        f"{IDP!r} is full: it holds 2 of 2 (theirs-0001, not in the log; theirs-0002, not in "
        f"the log); take the ones the log does not have active there out of it (orchestrator "
        f"drift --app {APP} --repair)")
    with pytest.raises(RefusedError, match=r"slot .* is full"):
        cmd.add(APP, PKJWT, generated(), activate=True)
    assert world.state().version == version and record(world, http) == before


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_provider_that_does_not_answer_refuses_each_command_and_nothing_is_recorded(
        world: World, http: httpx.Client, oidc_provider: OidcPeer) -> None:
    """Every command that has something to send fails in one line with nothing recorded; the
    two that send nothing to such a provider (add without --activate, set-expiry) record."""
    created(world)
    cmd = manual(world)
    a = cmd.add(APP, PKJWT, generated(), activate=True).credential
    b = cmd.add(APP, PKJWT, generated()).credential
    issuer = f"https://127.0.0.1:{_closed_port()}"
    keystore = MemoryKeystore()  # the client's token, kept for a provider at that address
    keystore.put(f"idp/{IDP}/{world.client_id()}/registration-token", json.dumps(
        {"token": world.token(), "uri": f"{issuer}/reg/{world.client_id()}"}).encode())
    gone = OidcProvider(IDP, issuer=issuer, state_of=world.core.service.load, keystore=keystore,
                        ca_file=oidc_provider.ca_file)
    down = ManualCredentials(world.core.service, ProviderRouter(
        world.core.service.load, world.core.provider.local, lambda: {IDP: gone}))
    version, before, items = world.state().version, record(world, http), world.keystore.ids()
    commands: list[Callable[[], object]] = [
        lambda: down.activate(APP, b.id), lambda: down.disable(APP, a.id, force=True),
        lambda: down.delete(APP, a.id, force=True),
        lambda: down.add(APP, JAR, generated(), activate=True)]
    for command in commands:
        with pytest.raises(ProviderUnavailable, match="ConnectError"):
            command()
        assert world.state().version == version and record(world, http) == before
        assert world.keystore.ids() == items  # a key generated for add is not kept
    down.set_expiry(APP, b.id, world.now + 30 * DAY)
    assert record(world, http) == before and drift(world) == []
    gone.close()
