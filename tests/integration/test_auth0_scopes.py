"""The Management API scopes the README tells an operator to grant are enough, and each one is
needed: with exactly those, a key rotation, a client secret rotation and a listing of the
tenant's clients work; without any one of them, something the orchestrator does is refused.
``secretRotation: rotate-secret`` needs ``read:client_keys`` beside them (the README's optional
row): without it the rotation is refused in one line naming it, before anything changes."""

from __future__ import annotations

import pytest

from orchestrator.app.secret_rotation import rotate_secret_now
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.identity_provider import SecretRotation
from orchestrator.domain.rotation import Params
from tests.peers.auth0 import Auth0Emulator
from tests.support.auth0_site import Site, emulator, pkjwt_app

# the README's list (README.md, "Identity providers")
SCOPES = ("read:clients", "update:clients", "update:client_keys", "read:client_credentials",
          "create:client_credentials", "update:client_credentials", "delete:client_credentials")
PKJWT = Params(usage="private_key_jwt", algorithm="RS256")


def everything(site: Site) -> None:
    app, _ = pkjwt_app(site, "payments")
    for _ in range(3):  # the third frees a slot: a delete
        rid = site.rotate(app, PKJWT)
        assert site.state(app).rotations[rid].status.value == "completed", (
            site.state(app).rotations[rid].last_error)
    billing, _ = pkjwt_app(site, "billing")  # a client that stays on its client secret
    rotate_secret_now(site.rotator, billing, accept_gap=True)
    assert {"billing", "payments"} <= {c.name for c in site.provider.clients()}


def test_the_readme_scopes_are_enough(key_source: object) -> None:
    with emulator(management={"scopes": list(SCOPES)}) as emu:
        everything(Site(emu, key_source))  # type: ignore[arg-type]


# update:clients is the API reference's scope for PATCH /clients/{id}; the emulator (like the
# SDK's notes) also lets update:client_credentials / update:client_keys through for the parts
# they govern, so without update:clients nothing the orchestrator does is refused there
@pytest.mark.parametrize("missing", [s for s in SCOPES if s != "update:clients"])
def test_each_readme_scope_is_needed(key_source: object, missing: str) -> None:
    with emulator(management={"scopes": [s for s in SCOPES if s != missing]}) as emu:
        assert isinstance(emu, Auth0Emulator)
        with pytest.raises((OrchestratorError, AssertionError)) as refused:
            everything(Site(emu, key_source))  # type: ignore[arg-type]
        assert "scope" in str(refused.value).lower(), refused.value


def test_rotate_secret_needs_read_client_keys_and_says_so_before_anything_changes(
        key_source: object) -> None:
    rotate = "POST /api/v2/clients/{id}/rotate-secret"
    for scopes in (SCOPES, (*SCOPES, "read:client_keys")):
        with emulator(management={"scopes": list(scopes)}) as emu:
            site = Site(emu, key_source,  # type: ignore[arg-type]
                        secret_rotation=SecretRotation.ROTATE_SECRET)
            billing, client_id = pkjwt_app(site, "billing")
            before = site.remote(client_id)["client_secret"]
            if "read:client_keys" in scopes:
                shown = rotate_secret_now(site.rotator, billing, accept_gap=True)
                assert shown.secret == site.remote(client_id)["client_secret"] != before
                assert site.count(rotate, 200) == 1
                continue
            with pytest.raises(OrchestratorError) as refused:
                rotate_secret_now(site.rotator, billing, accept_gap=True)
            assert "grant application emulator-management-app the read:client_keys scope" in (
                str(refused.value))
            assert "\n" not in str(refused.value)
            assert (site.count(rotate), site.remote(client_id)["client_secret"]) == (0, before)
