"""``secret rotate`` at a provider that keeps one client secret (Auth0): refused without
``--accept-gap`` (nothing written, nothing changed at the tenant), done with it."""

from __future__ import annotations

import pytest

from orchestrator.app.secret_rotation import rotate_secret_now
from orchestrator.domain.errors import RefusedError
from tests.support.auth0_site import Site, pkjwt_app


def test_secret_rotate_is_refused_without_accepting_the_gap_and_done_with_it(site: Site) -> None:
    app, client_id = pkjwt_app(site, "billing")
    secret_before = site.remote(client_id)["client_secret"]
    version_before = site.state(app).version
    with pytest.raises(RefusedError, match=r"keeps one client secret.*--accept-gap"):
        rotate_secret_now(site.rotator, app)
    assert site.state(app).version == version_before  # nothing recorded
    assert site.remote(client_id)["client_secret"] == secret_before  # nothing changed there

    shown = rotate_secret_now(site.rotator, app, accept_gap=True)
    assert site.remote(client_id)["client_secret"] == shown.secret
    assert shown.version == 1
