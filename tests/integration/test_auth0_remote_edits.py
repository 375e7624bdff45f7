"""The Auth0 adapter's edits by Auth0's own credential ids (``RemoteEdits``, what ``drift
--repair`` uses for records the log does not know), checked at the emulator."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.app.ports import Inventory, Provider, RemoteEdits
from orchestrator.domain.errors import ProviderError
from tests.conftest import NOW
from tests.support.auth0_site import Site, pkjwt_app, registered

PKJWT, JAR = "private_key_jwt", "signed_request_object"


def test_the_auth0_adapter_is_a_provider_an_inventory_and_can_edit_by_its_own_ids(
        site: Site) -> None:
    assert isinstance(site.provider, Provider)
    assert isinstance(site.provider, Inventory)
    assert isinstance(site.provider, RemoteEdits)


def test_detach_remote_empties_only_the_slot_of_the_usage_named(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = registered(site, app)
    site.provider.activate(app, cred.id)
    pid = cred.provider_id
    assert pid is not None
    site.emu.tenant.update_client(client_id, {JAR: {"credentials": [{"id": pid}]}})
    site.provider.detach_remote(client_id, pid, "jar")
    assert site.attached(client_id, JAR) == []
    assert site.attached(client_id, PKJWT) == [pid]
    site.provider.detach_remote(client_id, pid, "jar")  # a repeat changes nothing
    assert site.attached(client_id, PKJWT) == [pid]


def test_delete_remote_detaches_then_deletes_and_a_repeat_is_fine(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    kept, foreign = registered(site, app), registered(site, app)
    site.provider.activate(app, kept.id)
    site.provider.activate(app, foreign.id)
    assert foreign.provider_id is not None
    site.provider.delete_remote(client_id, foreign.provider_id)
    assert [c["id"] for c in site.pool(client_id)] == [kept.provider_id]
    assert site.attached(client_id, PKJWT) == [kept.provider_id]
    site.provider.delete_remote(client_id, foreign.provider_id)  # gone already: fine


def test_set_remote_expiry_dates_the_credential_and_cannot_remove_an_expiry(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = registered(site, app)
    assert cred.provider_id is not None
    when = NOW + timedelta(days=30, milliseconds=250)
    site.provider.set_remote_expiry(client_id, cred.provider_id, when)
    (held,) = site.pool(client_id)
    assert held["expires_at"] == when.strftime("%Y-%m-%dT%H:%M:%S.250Z")
    with pytest.raises(ProviderError, match="a credential's expiry cannot be removed"):
        site.provider.set_remote_expiry(client_id, cred.provider_id, None)
