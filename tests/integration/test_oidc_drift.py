"""Drift at an OpenID provider (node oidc-provider, RFC 7591/7592): its one ``jwks`` serves
every signing usage and keeps no dates, so a rotated client compares clean; a key taken out of
the registration record behind the orchestrator's back is found, and put back by a repair."""

from __future__ import annotations

from typing import Any

from orchestrator.app.drift import DriftChecker
from orchestrator.domain.drift import DriftKind
from tests.integration.test_oidc_adapter import APP, World, _generated, created, kids, world

__all__ = ["world"]  # the fixture, shared with the adapter's own tests

PKJWT, JAR = "private_key_jwt", "jar"


def checker(world: World) -> DriftChecker:
    core = world.core
    return DriftChecker(core.service, core.provider, core.service.crypto,
                        lambda: [world.state()], lambda: world.now)


def test_keys_for_both_signing_usages_compare_clean_and_a_key_removed_outside_is_put_back(
        world: World) -> None:
    created(world)
    signing = world.core.service.add_credential(APP, PKJWT, _generated(), alg="RS256")
    request = world.core.service.add_credential(APP, JAR, _generated(), alg="PS256")
    for cred in (signing, request):
        world.idp.activate(APP, cred.id)
        world.core.service.activate(APP, cred.id)
    drift = checker(world)
    assert drift.check(world.state()).differences == ()

    def without_jar_key(record: dict[str, Any]) -> dict[str, Any]:
        keys = [k for k in record["jwks"]["keys"] if k["kid"] != request.kid]
        return {**record, "jwks": {"keys": keys}}

    world.idp.registrations.update(world.client_id(), without_jar_key)
    found = drift.check(world.state())
    assert [(d.kind, d.credential_id) for d in found.differences] == [
        (DriftKind.REMOVED, request.id)]
    fixes = drift.repair(found)
    assert [f.done for f in fixes] == [True], fixes
    assert sorted(kids(world.record())) == sorted([signing.kid, request.kid])
    assert drift.check(world.state()).differences == ()
