"""``secret rotate`` at a provider that keeps one client secret (Auth0): refused without
``--accept-gap`` (nothing written, nothing changed at the tenant), done with it; refused
whatever the gap for a client that authenticates with keys (it takes no secret)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.app.secret_rotation import rotate_secret_now
from orchestrator.domain.errors import NotFoundError, RefusedError
from orchestrator.domain.rotation import Params
from orchestrator.policies.files import load_policy_file
from orchestrator.policies.source import to_plan_policy
from tests.helpers import policy_yaml
from tests.support.auth0_site import Site, pkjwt_app

PKJWT = "private_key_jwt"
HOUR = timedelta(hours=1)


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


def test_a_client_that_authenticates_with_keys_is_refused_a_secret_rotation(
        site: Site) -> None:
    """Auth0 refuses rotate-secret on a Private Key JWT client, and a secret set on one is
    never used: secret rotate is refused before anything is written, on the log's own keys
    (no request), or on the client's method as the tenant reports it (one read of it)."""
    app, client_id = pkjwt_app(site, "billing")
    site.rotate(app, Params(usage=PKJWT, overlap=HOUR))  # the client now authenticates by key
    secret_before = site.remote(client_id)["client_secret"]
    version_before, items_before = site.state(app).version, site.keystore.ids()
    reads = site.count("GET /api/v2/clients/{id}")
    with pytest.raises(RefusedError, match=r"authenticates with private_key_jwt \(the log holds "
                                           r"its usable keys\): it takes no client secret"):
        rotate_secret_now(site.rotator, app, accept_gap=True)
    assert site.count("GET /api/v2/clients/{id}") == reads  # the log said it: no request
    assert (site.state(app).version, site.keystore.ids()) == (version_before, items_before)
    assert site.remote(client_id)["client_secret"] == secret_before

    behind = site.emu.seed_client({  # switched to keys at the tenant, behind the log's back
        "name": "ledger", "token_endpoint_auth_method": None,
        "client_authentication_methods": {PKJWT: {"credentials": [{
            "credential_type": "public_key", "pem": site.crypto.generate_rsa(
                2048).material.public_pem}]}}}).client_id
    ledger = site.app("ledger", behind)
    version_before = site.state(ledger).version
    with pytest.raises(RefusedError, match=r"authenticates with private_key_jwt \(so the "
                                           r"identity provider says\)"):
        rotate_secret_now(site.rotator, ledger, accept_gap=True)
    assert site.count("GET /api/v2/clients/{id}") == reads + 1
    assert site.state(ledger).version == version_before

    gone = site.app("gone", site.client("gone"))
    site.emu.tenant.delete_client(site.state(gone).provider_client_id)
    with pytest.raises(NotFoundError, match="has no client"):
        rotate_secret_now(site.rotator, gone, accept_gap=True)
    assert site.state(gone).rotations == {}


def test_the_tick_starts_no_secret_rotation_of_a_client_that_authenticates_with_keys(
        site: Site, tmp_path: Path) -> None:
    """The daemon's side: a client_secret policy (accepting the gap) selects two apps; the one
    whose client authenticates with the log's keys gets no rotation (one error line, nothing
    generated, nothing set at the tenant), the plain client-secret one is rotated."""
    path = tmp_path / "secrets.yaml"
    path.write_text(policy_yaml("secrets", '["svc-*"]', "{usage: client_secret}",
                                "{every: 30d, beforeExpiry: 7d, overlap: 1h, "
                                "acceptSecretGap: true}", lifetime=None))
    policy = to_plan_policy(load_policy_file(path))
    keyed, keyed_client = pkjwt_app(site, "svc-keyed")
    site.rotate(keyed, Params(usage=PKJWT, overlap=HOUR))
    plain, _ = pkjwt_app(site, "svc-plain")
    secret_before = site.remote(keyed_client)["client_secret"]
    items_before = set(site.keystore.ids())
    site.core.ticker.policies = lambda: (policy,)
    with capture_logs() as logs:
        report = site.core.ticker.tick()
    [line] = [e for e in logs if e["event"] == "rotation_not_started"]
    assert (line["log_level"], line["app"], line["usage"]) == ("error", keyed, "client_secret")
    assert "authenticates with private_key_jwt" in line["error"]
    assert "client_secret policy's selector" in line["fix"]
    assert report.refused == 1
    assert [r.usage for r in site.state(keyed).rotations.values()] == [PKJWT]
    assert site.remote(keyed_client)["client_secret"] == secret_before
    assert site.state(plain).secret is not None  # rotated
    assert not any(i.startswith(f"secret/{keyed}/") for i in set(site.keystore.ids())
                   - items_before)
