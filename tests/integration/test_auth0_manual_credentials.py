"""The manual credential commands on an application bound to Auth0 (``app.manual_credentials``):
after each one the tenant holds what it says, read from the emulator's own state (never through
our adapter), and the drift check finds nothing. A full slot, a full pool and a tenant that does
not answer are refused with nothing changed on either side; a repeat attaches nothing twice;
an upload whose append is refused is taken back; a failed append after the tenant changed is
drift that the check reports."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from events import catalog as ev
from events.store import ReadFilter
from orchestrator.app.drift import DriftChecker
from orchestrator.app.manual_credentials import ManualCredentials
from orchestrator.app.service import CredentialSource
from orchestrator.domain.errors import ConflictError, OrchestratorError, RefusedError
from orchestrator.domain.identity_provider import ProviderUnavailable
from tests.conftest import NOW
from tests.helpers import spki_pem
from tests.support.auth0_site import NAME, Site, pkjwt_app

PKJWT, JAR, MTLS = "private_key_jwt", "jar", "mtls"
JAR_SLOT = "signed_request_object"
PATCH_CLIENT = "PATCH /api/v2/clients/{id}"


def manual(site: Site) -> ManualCredentials:
    return ManualCredentials(site.service, site.core.provider)


def generated() -> CredentialSource:
    return CredentialSource(generate=True)


def drift(site: Site, app: str) -> list[str]:
    """What the drift check finds for ``app`` (it must have compared)."""
    checker = DriftChecker(site.service, site.core.provider, site.crypto,
                           lambda: [site.state(app)], site.now)
    found = checker.check(site.state(app))
    assert found.error is None, found.error
    return [d.text for d in found.differences]


def types(site: Site, app: str) -> list[str]:
    return [r.type for r in site.service.store.read(ReadFilter(stream_id=f"app:{app}"))]


def pool_ids(site: Site, client_id: str) -> set[str]:
    return {c["id"] for c in site.pool(client_id)}


def foreign_key(site: Site, client_id: str) -> str:
    """A key created at the tenant by its owners (the log does not know it); its id."""
    pem = site.crypto.generate_rsa(2048).material.public_pem
    assert pem is not None
    return site.emu.tenant.create_credential(client_id, {
        "credential_type": "public_key", "pem": pem, "alg": "RS256", "name": "theirs"}).id


def attach(site: Site, client_id: str, *ids: str) -> None:
    site.emu.tenant.update_client(client_id, {
        "token_endpoint_auth_method": None,
        "client_authentication_methods": {PKJWT: {"credentials": [{"id": i} for i in ids]}}})


def test_each_command_does_at_the_tenant_what_it_says_and_drift_stays_clean(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cmd = manual(site)

    added = cmd.add(app, PKJWT, generated())
    a = added.credential
    assert a.provider_id is not None and added.note == (
        f"registered at identity provider {NAME!r} as {a.provider_id}")
    assert pool_ids(site, client_id) == {a.provider_id}
    assert site.attached(client_id, PKJWT) == []
    assert types(site, app)[-2:] == ["credential.added", "credential.registered"]
    assert drift(site, app) == []

    assert cmd.activate(app, a.id).credential.status.value == "active"
    assert site.attached(client_id, PKJWT) == [a.provider_id]
    assert drift(site, app) == []
    patches = site.count(PATCH_CLIENT)
    again = cmd.activate(app, a.id)
    assert again.note == f"active already: nothing sent to identity provider {NAME!r}"
    assert site.count(PATCH_CLIENT) == patches
    assert site.attached(client_id, PKJWT) == [a.provider_id]
    assert types(site, app).count("credential.activated") == 1

    b = cmd.add(app, PKJWT, generated(), activate=True).credential
    assert b.status.value == "active" and b.provider_id is not None
    assert site.attached(client_id, PKJWT) == [a.provider_id, b.provider_id]
    assert drift(site, app) == []

    when = NOW + timedelta(days=40)
    cmd.set_expiry(app, a.id, when)
    (held,) = [c for c in site.pool(client_id) if c["id"] == a.provider_id]
    assert held["expires_at"] == when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert drift(site, app) == []

    cmd.disable(app, a.id)
    assert site.attached(client_id, PKJWT) == [b.provider_id]
    assert pool_ids(site, client_id) == {a.provider_id, b.provider_id}
    assert drift(site, app) == []

    assert site.keystore.get(a.id) is not None
    cmd.delete(app, a.id)
    assert pool_ids(site, client_id) == {b.provider_id}
    assert site.keystore.get(a.id) is None
    assert drift(site, app) == []

    with pytest.raises(RefusedError, match="last active private_key_jwt credential"):
        cmd.disable(app, b.id)
    assert site.attached(client_id, PKJWT) == [b.provider_id]


def test_what_reaches_the_tenant_is_public_only(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cred = manual(site).add(app, PKJWT, generated(), activate=True).credential
    tenant = json.dumps(site.remote(client_id))
    assert "PRIVATE KEY" not in tenant
    assert cred.public_pem is not None and cred.public_pem.strip() in tenant.replace("\\n", "\n")


def test_activate_uploads_a_credential_the_log_holds_no_provider_id_for(site: Site) -> None:
    """A credential recorded before its application was bound to the provider's rules (added
    to the log only) is registered first, then attached."""
    app, client_id = pkjwt_app(site)
    cred = site.service.add_credential(app, PKJWT, generated())
    assert site.pool(client_id) == [] and drift(site, app) != []
    manual(site).activate(app, cred.id)
    (held,) = site.pool(client_id)
    assert site.credential(app, cred.id).provider_id == held["id"]
    assert site.attached(client_id, PKJWT) == [held["id"]]
    assert drift(site, app) == []


def test_a_full_slot_is_refused_naming_what_to_disable_and_nothing_changes(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cmd = manual(site)
    a = cmd.add(app, PKJWT, generated(), activate=True).credential
    theirs = foreign_key(site, client_id)
    attach(site, client_id, str(a.provider_id), theirs)  # the tenant's owners filled the slot
    b = cmd.add(app, PKJWT, generated()).credential
    version, patches = site.state(app).version, site.count(PATCH_CLIENT)
    before = site.remote(client_id)

    with pytest.raises(RefusedError) as refused:
        cmd.activate(app, b.id)
    assert str(refused.value) == (
        f"the private_key_jwt slot of client {client_id!r} at identity provider {NAME!r} is "
        f"full: it holds 2 of 2 ({a.id}; {theirs}, not in the log); disable one first "
        f"(orchestrator credential disable {app} ID), or take the ones the log does not have "
        f"active there out of it (orchestrator drift --app {app} --repair)")
    assert site.state(app).version == version and site.count(PATCH_CLIENT) == patches
    assert site.remote(client_id) == before

    cmd.delete(app, b.id)
    before = _snapshot(site, app, client_id)
    with pytest.raises(RefusedError, match=r"slot .* is full"):  # add --activate: nothing added
        cmd.add(app, PKJWT, generated(), activate=True)
    assert _snapshot(site, app, client_id) == before
    (difference,) = drift(site, app)  # what the owners did, and nothing of ours
    assert difference.startswith(f"credential {theirs} is at the provider")


def test_a_full_pool_is_refused_before_the_upload_and_no_key_is_kept(site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cmd = manual(site)
    for usage in (PKJWT, PKJWT, JAR, JAR):
        cmd.add(app, usage, generated())
    version, items = site.state(app).version, site.keystore.ids()
    before = site.remote(client_id)
    with pytest.raises(RefusedError, match=(
            rf"client {client_id!r} at identity provider {NAME!r} holds 4 credentials, its "
            r"limit of 4 \(.*\); delete one first \(orchestrator credential delete payments "
            r"ID\)$")):
        cmd.add(app, MTLS, generated())
    assert site.state(app).version == version and site.keystore.ids() == items
    assert site.remote(client_id) == before
    assert drift(site, app) == []


def _snapshot(site: Site, app: str, client_id: str) -> tuple[int, Any, list[str]]:
    return site.state(app).version, site.remote(client_id), site.keystore.ids()


def test_a_tenant_that_does_not_answer_refuses_each_command_and_nothing_is_recorded(
        site: Site) -> None:
    app, client_id = pkjwt_app(site)
    cmd = manual(site)
    a = cmd.add(app, PKJWT, generated(), activate=True).credential
    b = cmd.add(app, PKJWT, generated()).credential
    before = _snapshot(site, app, client_id)
    site.emu.faults.script("503", route="/api/v2/clients/{id}", count=1000)
    site.emu.faults.script("503", route="/api/v2/clients/{id}/credentials", count=1000)
    site.emu.faults.script("503", route="/api/v2/clients/{id}/credentials/{credential_id}", count=1000)
    commands = [lambda: cmd.add(app, JAR, generated()), lambda: cmd.activate(app, b.id),
                lambda: cmd.disable(app, a.id, force=True), lambda: cmd.delete(app, b.id),
                lambda: cmd.set_expiry(app, b.id, NOW + timedelta(days=9))]
    for command in commands:
        with pytest.raises(ProviderUnavailable, match="503"):
            command()
        assert _snapshot(site, app, client_id) == before
    site.emu.faults.clear_script()
    assert drift(site, app) == []


def test_an_upload_whose_append_is_refused_is_taken_back(site: Site) -> None:
    """The key belongs to another application: the store refuses the append after the upload,
    and the upload is deleted again, so the tenant holds nothing the log does not."""
    from tests.helpers import rsa_key

    pem = spki_pem(rsa_key())
    site.service.register_app("other", {})
    site.service.add_credential("other", PKJWT, CredentialSource(pem=pem))
    app, client_id = pkjwt_app(site)
    version = site.state(app).version
    with pytest.raises(ConflictError, match="already registered to application 'other'"):
        manual(site).add(app, PKJWT, CredentialSource(pem=pem))
    assert site.pool(client_id) == [] and site.state(app).version == version
    assert site.count("POST /api/v2/clients/{id}/credentials") == 1  # it was uploaded
    assert drift(site, app) == []


def test_a_failed_append_after_the_tenant_changed_is_drift_the_check_reports(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    app, client_id = pkjwt_app(site)
    cmd = manual(site)
    a = cmd.add(app, PKJWT, generated()).credential
    store = site.service.store
    append = store.append
    failures = [RuntimeError("database is gone")]

    def failing(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return append(*args, **kwargs)

    monkeypatch.setattr(store, "append", failing)
    with pytest.raises(OrchestratorError) as failed:
        cmd.activate(app, a.id)
    assert str(failed.value) == (
        f"attached at identity provider {NAME!r}, but recording it failed (database is gone): "
        f"the log and the provider now differ; orchestrator drift --app {app} shows how")
    assert site.attached(client_id, PKJWT) == [a.provider_id]
    assert drift(site, app) == [f"credential {a.id} / {a.provider_id} is attached to "
                                "private_key_jwt at the provider; the log has it added"]
    patches = site.count(PATCH_CLIENT)
    cmd.activate(app, a.id)  # the repeat records it, and attaches nothing again
    assert site.count(PATCH_CLIENT) == patches
    assert drift(site, app) == []
    assert [e for e in types(site, app) if e.startswith("credential.")] == [
        "credential.added", "credential.registered", "credential.activated"]


def test_a_subject_dn_two_certificates_share_stays_attached_while_one_is_active(
        site: Site, ca: tuple[bytes, bytes]) -> None:
    """A CA-issued certificate and its successor are one registration at the tenant: disabling
    the old one leaves it attached for the new one; deleting it leaves it there."""
    app, client_id = pkjwt_app(site)
    cmd = manual(site)
    dn = "CN=payments,O=Acme"
    issued = [site.crypto.issue_certificate(ca[0], ca[1], dn, 2048, NOW - timedelta(days=1),
                                            NOW + timedelta(days=90 + n)) for n in range(2)]
    old, new = (cmd.add(app, MTLS, CredentialSource(pem=(g.material.certificate_pem or "")
                                                    .encode()), activate=True).credential
                for g in issued)
    assert old.kind is ev.CredentialKind.CERT_SUBJECT_DN
    assert old.provider_id == new.provider_id and len(site.pool(client_id)) == 1
    assert site.attached(client_id, "tls_client_auth") == [old.provider_id]
    assert drift(site, app) == []

    done = cmd.disable(app, old.id)
    assert done.note == (f"its registration (subject DN) stays attached at identity provider "
                         f"{NAME!r} for {new.id}, which is active")
    assert site.attached(client_id, "tls_client_auth") == [old.provider_id]
    cmd.delete(app, old.id)
    assert pool_ids(site, client_id) == {new.provider_id}
    assert drift(site, app) == []
