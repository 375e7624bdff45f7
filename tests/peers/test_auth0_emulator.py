"""The Auth0 emulator's Management API rules, each refused and accepted with Auth0's status
and message (auth0-credentials.md §9 checklist; UNCONFIRMED texts pinned only by fragment)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import NOW
from tests.helpers import (
    certificate,
    ec_key,
    pkcs1_pem,
    rfc7638_thumbprint,
    rsa_public_pem_of_size,
    spki_pem,
)
from tests.peers.auth0 import ALL_SCOPES, Auth0Emulator, Clock
from tests.peers.kit import (
    api_session,
    attach,
    create_credential,
    http_client,
    management_grant,
    public_pem,
    token_request,
)

API = "https://api.example.com/"


@pytest.fixture
def app(emulator: Auth0Emulator) -> str:
    client = emulator.seed_client({"name": "payments-api",
                                   "grants": [{"audience": API, "scope": ["read:things"]}]})
    return client.client_id


def refused(answer: httpx.Response, status: int, fragment: str) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["statusCode"] == status
    assert fragment in body["message"], body["message"]
    return dict(body)


def cert_pem(key, dn="CN=payments-api,O=Acme,C=DE", days=30) -> str:
    return certificate(key, dn, not_before=NOW - timedelta(days=1),
                       not_after=NOW + timedelta(days=days)).decode()


# --- the Management API token --------------------------------------------------------------


def test_management_token_comes_from_the_client_credentials_grant(emulator):
    answer = token_request(emulator, management_grant(
        emulator, f"https://{emulator.domain}/api/v2/"))
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    assert set(body["scope"].split()) == set(ALL_SCOPES)


def test_management_token_json_body_is_accepted_too(emulator):
    answer = http_client().post(emulator.token_url,
                                json={**management_grant(emulator), "organization": None})
    assert answer.status_code == 200, answer.text


def test_management_audience_needs_its_trailing_slash(emulator):
    answer = token_request(emulator, management_grant(
        emulator, f"https://{emulator.domain}/api/v2"))
    assert answer.status_code == 403
    assert answer.json()["error"] == "access_denied"


def test_management_token_expires_on_the_emulator_clock(clock):
    with Auth0Emulator({"management_token_expires_in": 600}, clock=clock) as emu, \
            api_session(emu) as api:
        assert api.get("/clients").status_code == 200
        clock.advance(599)
        assert api.get("/clients").status_code == 200
        clock.advance(1)
        refused(api.get("/clients"), 401, "Expired token")


def test_missing_or_forged_token_is_401(emulator):
    with http_client(base_url=emulator.api_url) as http:
        refused(http.get("/clients"), 401, "Missing authentication")
        refused(http.get("/clients", headers={"authorization": "Bearer x.y.z"}), 401,
                "Invalid token")


def test_each_route_checks_the_scope_the_reference_names(emulator, app, keys):
    with api_session(emulator, ["read:clients"]) as api:
        assert api.get(f"/clients/{app}").status_code == 200
        body = refused(api.get(f"/clients/{app}/credentials"), 403, "read:client_credentials")
        assert body["errorCode"] == "insufficient_scope"
        refused(api.post(f"/clients/{app}/credentials",
                         json={"credential_type": "public_key", "pem": public_pem(keys[0])}),
                403, "create:client_credentials")
        refused(api.post(f"/clients/{app}/rotate-secret"), 403, "update:client_keys")
    with api_session(emulator, ["update:clients"]) as api:
        refused(api.patch(f"/clients/{app}", json={"client_secret": "x" * 48}), 403,
                "update:client_keys")
        refused(api.patch(f"/clients/{app}", json={"client_authentication_methods": None}),
                403, "update:client_credentials")
        assert api.patch(f"/clients/{app}", json={"description": "d"}).status_code == 200


def test_client_secret_is_visible_only_with_read_client_keys(emulator, app):
    with api_session(emulator, ["read:clients"]) as api:
        assert "client_secret" not in api.get(f"/clients/{app}").json()
    with api_session(emulator, ["read:client_keys"]) as api:
        assert api.get(f"/clients/{app}").json()["client_secret"]


# --- clients: pagination -------------------------------------------------------------------


def test_clients_are_paginated_with_or_without_totals(emulator, api):
    for number in range(6):
        emulator.seed_client({"name": f"app-{number}"})  # 7 clients with the management app
    page = api.get("/clients", params={"per_page": 3, "page": 2, "include_totals": "true"})
    assert page.json()["start"] == 6
    assert page.json()["limit"] == 3
    assert page.json()["total"] == 7
    assert [c["name"] for c in page.json()["clients"]] == ["app-5"]
    plain = api.get("/clients", params={"per_page": 3, "page": 1})
    assert [c["name"] for c in plain.json()] == ["app-2", "app-3", "app-4"]
    everything = api.get("/clients").json()
    assert len(everything) == 7  # default per_page 50, a bare array
    refused(api.get("/clients", params={"per_page": 101}), 400, "maximum of 100")


def test_clients_fields_are_included_or_excluded(api, app):
    only = api.get(f"/clients/{app}", params={"fields": "client_id,name"}).json()
    assert set(only) == {"client_id", "name"}
    without = api.get("/clients", params={"fields": "name", "include_fields": "false"}).json()
    assert all("name" not in c and "client_id" in c for c in without)


def test_unknown_client_is_404(api):
    body = refused(api.get("/clients/nope"), 404, "The client does not exist")
    assert body["error"] == "Not Found"


# --- credentials: create (checklist 2, 3, 4, 5) ---------------------------------------------


def test_created_public_key_is_returned_without_pem_and_not_attached(api, app, keys):
    cred = create_credential(api, app, credential_type="public_key", name="k1",
                             pem=public_pem(keys[0]))
    assert re.fullmatch(r"cred_[1-9A-HJ-NP-Za-km-z]{22}", cred["id"])
    assert cred["kid"] == rfc7638_thumbprint(keys[0])
    assert cred["alg"] == "RS256"
    assert cred["expires_at"] is None
    assert "pem" not in cred
    listed = api.get(f"/clients/{app}/credentials", params={"include_totals": "true",
                                                            "per_page": 50}).json()
    assert listed == [cred]  # a bare array even with include_totals
    assert api.get(f"/clients/{app}/credentials/{cred['id']}").json() == cred
    assert "client_authentication_methods" not in api.get(f"/clients/{app}").json()


def test_pkcs1_public_key_is_accepted_with_the_same_thumbprint(api, app, keys):
    cred = create_credential(api, app, credential_type="public_key",
                             pem=pkcs1_pem(keys[1]).decode())
    assert cred["kid"] == rfc7638_thumbprint(keys[1])


@pytest.mark.parametrize("alg", ["RS512", "ES256", "HS256", "none"])
def test_algorithms_outside_rs256_rs384_ps256_are_refused(api, app, keys, alg):
    refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "public_key", "pem": public_pem(keys[0]), "alg": alg}), 400, "alg")


@pytest.mark.parametrize("alg", ["RS256", "RS384", "PS256"])
def test_the_three_algorithms_are_accepted(api, app, keys, alg):
    cred = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]),
                             alg=alg)
    assert cred["alg"] == alg


@pytest.mark.parametrize(("bits", "status"), [(1024, 400), (2047, 400), (2048, 201),
                                              (4096, 201), (4097, 400), (8192, 400)])
def test_rsa_keys_from_2048_to_4096_bits(api, app, bits, status):
    answer = api.post(f"/clients/{app}/credentials", json={
        "credential_type": "public_key", "pem": rsa_public_pem_of_size(bits).decode()})
    assert answer.status_code == status, answer.text


def test_ec_keys_are_refused(api, app):
    refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "public_key", "pem": spki_pem(ec_key()).decode()}), 400, "RSA")


@pytest.mark.parametrize("kid", ["short", "has space in it", "a" * 65, "dots.are.not.ok"])
def test_kid_must_match_the_pattern(api, app, keys, kid):
    refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "public_key", "pem": public_pem(keys[0]), "kid": kid}), 400, "kid")


def test_a_valid_kid_is_kept(api, app, keys):
    cred = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]),
                             kid="payments-2026_11")
    assert cred["kid"] == "payments-2026_11"


def test_parse_expiry_from_cert_takes_the_certificate_not_after(api, app, keys):
    pem = cert_pem(keys[0], days=40)
    cred = create_credential(api, app, credential_type="public_key", pem=pem,
                             parse_expiry_from_cert=True)
    assert cred["expires_at"] == (NOW + timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "public_key", "pem": public_pem(keys[1]),
        "parse_expiry_from_cert": True}), 400, "certificate")
    refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "public_key", "pem": cert_pem(keys[1]),
        "parse_expiry_from_cert": True, "expires_at": "2027-01-01T00:00:00.000Z"}), 400,
        "mutually exclusive")


def test_duplicate_public_key_on_the_same_client_is_refused(api, app, keys, emulator):
    create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]))
    body = refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "public_key", "pem": pkcs1_pem(keys[0]).decode(), "alg": "PS256"}),
        400, "credentials contains public keys that already exist in client")
    assert body["message"] == "credentials contains public keys that already exist in client"
    other = emulator.seed_client({"name": "other"}).client_id
    create_credential(api, other, credential_type="public_key", pem=public_pem(keys[0]))


def test_pool_cap_is_checked_at_creation(api, app, keys):
    pems = [public_pem(k) for k in keys] + [rsa_public_pem_of_size(3072).decode()]
    for pem in pems[:4]:
        create_credential(api, app, credential_type="public_key", pem=pem)
    body = refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "public_key", "pem": pems[4]}), 400, "")
    assert body["message"] == "A client can have a maximum of 4 credentials."


def test_pool_cap_is_configurable(clock, keys):
    with Auth0Emulator({"pool_cap": 2}, clock=clock) as emu, api_session(emu) as api:
        app = emu.seed_client({"name": "a"}).client_id
        for key in keys[:2]:
            create_credential(api, app, credential_type="public_key", pem=public_pem(key))
        refused(api.post(f"/clients/{app}/credentials", json={
            "credential_type": "public_key", "pem": public_pem(keys[2])}), 400,
            "A client can have a maximum of 2 credentials.")


@pytest.mark.parametrize(("body", "fragment"), [
    ({"credential_type": "public_key"}, "pem"),
    ({"credential_type": "secret", "pem": "x"}, "credential_type"),
    ({"credential_type": "public_key", "pem": "garbage"}, "Invalid"),
    ({"credential_type": "public_key", "pem": "P", "colour": "red"}, "Additional properties"),
    ({"credential_type": "public_key", "pem": "P", "name": "n" * 129}, "128"),
    ({"credential_type": "public_key", "pem": "P", "expires_at": "tomorrow"}, "expires_at"),
])
def test_malformed_create_bodies_are_400(api, app, keys, body, fragment):
    body = {k: public_pem(keys[0]) if v == "P" else v for k, v in body.items()}
    refused(api.post(f"/clients/{app}/credentials", json=body), 400, fragment)


def test_x509_cert_carries_its_thumbprint_and_expiry(api, app, keys):
    pem = cert_pem(keys[0], days=90)
    cred = create_credential(api, app, credential_type="x509_cert", name="mtls", pem=pem)
    der = certificate_der(pem)
    import base64
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert cred["thumbprint_sha256"] == expected
    assert cred["expires_at"] == (NOW + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert "pem" not in cred and "kid" not in cred
    refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "x509_cert", "pem": public_pem(keys[1])}), 400, "certificate")
    refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "x509_cert", "pem": cert_pem(keys[2]), "alg": "RS256"}), 400,
        "only allowed for public_key")


def certificate_der(pem: str) -> bytes:
    from cryptography import x509
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(
        serialization.Encoding.DER)


def test_cert_subject_dn_takes_exactly_one_of_pem_or_subject_dn(api, app, keys):
    from_pem = create_credential(api, app, credential_type="cert_subject_dn",
                                 pem=cert_pem(keys[0], "CN=payments-api,O=Acme,C=DE"))
    assert from_pem["subject_dn"] == "C=DE\nO=Acme\nCN=payments-api"
    assert "kid" not in from_pem and "thumbprint_sha256" not in from_pem
    given = create_credential(api, app, credential_type="cert_subject_dn",
                              subject_dn="C=DE\nO=Acme\nCN=other")
    assert given["subject_dn"] == "C=DE\nO=Acme\nCN=other"
    refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "cert_subject_dn", "subject_dn": "CN=x", "pem": cert_pem(keys[1])}),
        400, "exactly one")
    refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "cert_subject_dn"}), 400, "exactly one")
    refused(api.post(f"/clients/{app}/credentials", json={
        "credential_type": "cert_subject_dn", "subject_dn": "x" * 257}), 400, "256")


# --- credentials: PATCH and DELETE (checklist 5, 6) -------------------------------------------


def test_only_expires_at_can_be_patched_and_not_removed(api, app, keys, clock):
    cred = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]))
    clock.advance(5)
    patched = api.patch(f"/clients/{app}/credentials/{cred['id']}",
                        json={"expires_at": "2027-03-01T00:00:00.000Z"})
    assert patched.status_code == 200
    assert patched.json()["expires_at"] == "2027-03-01T00:00:00.000Z"
    assert patched.json()["updated_at"] != cred["updated_at"]
    assert patched.json()["created_at"] == cred["created_at"]
    refused(api.patch(f"/clients/{app}/credentials/{cred['id']}", json={"name": "new"}), 400,
            "Additional properties")
    refused(api.patch(f"/clients/{app}/credentials/{cred['id']}", json={}), 400, "minimum 1")
    refused(api.patch(f"/clients/{app}/credentials/{cred['id']}", json={"expires_at": None}),
            400, "expires_at")
    refused(api.patch(f"/clients/{app}/credentials/cred_missing", json={
        "expires_at": "2027-03-01T00:00:00.000Z"}), 404, "credential does not exist")


def test_attached_credential_cannot_be_deleted(api, app, keys):
    cred = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]))
    assert attach(api, app, "private_key_jwt", cred["id"]).status_code == 200
    body = refused(api.delete(f"/clients/{app}/credentials/{cred['id']}"), 400,
                   "still associated with a client")
    assert "errorCode" not in body
    detached = api.patch(f"/clients/{app}", json={
        "client_authentication_methods": {"private_key_jwt": {"credentials": []}}})
    assert detached.status_code == 200
    deleted = api.delete(f"/clients/{app}/credentials/{cred['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    refused(api.get(f"/clients/{app}/credentials/{cred['id']}"), 404, "does not exist")
    refused(api.delete(f"/clients/{app}/credentials/{cred['id']}"), 404, "does not exist")


def test_credential_in_the_jar_slot_cannot_be_deleted_either(api, app, keys):
    cred = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]))
    assert attach(api, app, "signed_request_object", cred["id"]).status_code == 200
    refused(api.delete(f"/clients/{app}/credentials/{cred['id']}"), 400,
            "still associated with a client")


# --- client PATCH: slots (checklist 1, 4, 6) -------------------------------------------------


def test_attaching_private_key_jwt_needs_the_secret_method_nulled(api, app, keys):
    cred = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]))
    refs = {"private_key_jwt": {"credentials": [{"id": cred["id"]}]}}
    refused(api.patch(f"/clients/{app}", json={"client_authentication_methods": refs}), 400,
            "mutually exclusive")
    refused(api.patch(f"/clients/{app}", json={"client_authentication_methods": refs,
                                               "token_endpoint_auth_method": "client_secret_post"}),
            400, "mutually exclusive")
    attached = attach(api, app, "private_key_jwt", cred["id"])
    assert attached.status_code == 200
    body = api.get(f"/clients/{app}").json()
    assert body["client_authentication_methods"] == refs
    assert "token_endpoint_auth_method" not in body
    assert "client_secret" not in body  # hidden once Private Key JWT is configured
    back = api.patch(f"/clients/{app}", json={"token_endpoint_auth_method": "client_secret_post",
                                              "client_authentication_methods": None})
    assert back.status_code == 200
    assert back.json()["client_secret"]


def test_slot_holds_at_most_two(api, app, keys):
    ids = [create_credential(api, app, credential_type="public_key", pem=public_pem(k))["id"]
           for k in keys[:3]]
    body = refused(attach(api, app, "private_key_jwt", *ids), 400, "")
    assert body["message"] == "Array is too long (3), maximum 2"
    refused(attach(api, app, "signed_request_object", *ids), 400,
            "Array is too long (3), maximum 2")
    assert attach(api, app, "private_key_jwt", *ids[:2]).status_code == 200


def test_slot_refuses_unknown_ids_inline_credentials_and_wrong_types(api, app, keys):
    key_cred = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]))
    x509 = create_credential(api, app, credential_type="x509_cert", pem=cert_pem(keys[1]))
    refused(attach(api, app, "private_key_jwt", "cred_doesnotexist0000000000"), 400,
            "One or more of the credentials")
    refused(api.patch(f"/clients/{app}", json={
        "token_endpoint_auth_method": None,
        "client_authentication_methods": {"private_key_jwt": {"credentials": [
            {"credential_type": "public_key", "pem": public_pem(keys[2])}]}}}), 400,
        "only credential ids")
    refused(attach(api, app, "private_key_jwt", x509["id"]), 400, "public_key")
    refused(attach(api, app, "self_signed_tls_client_auth", key_cred["id"]), 400, "x509_cert")
    refused(attach(api, app, "tls_client_auth", x509["id"]), 400, "cert_subject_dn")
    assert attach(api, app, "self_signed_tls_client_auth", x509["id"]).status_code == 200
    refused(api.patch(f"/clients/{app}", json={"client_authentication_methods": {
        "private_key_jwt": {"credentials": [{"id": key_cred["id"]}]},
        "self_signed_tls_client_auth": {"credentials": [{"id": x509["id"]}]}}}), 400,
        "not several")


def test_refused_patch_changes_nothing(api, app, keys):
    before = api.get(f"/clients/{app}").json()
    refused(api.patch(f"/clients/{app}", json={
        "name": "renamed", "token_endpoint_auth_method": None,
        "client_authentication_methods": {"private_key_jwt": {"credentials": [
            {"id": "cred_nope"}]}}}), 400, "do not exist")
    assert api.get(f"/clients/{app}").json() == before


def test_jar_patch_keeps_required_when_only_credentials_change(api, app, keys):
    cred = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]))
    assert api.patch(f"/clients/{app}", json={
        "signed_request_object": {"required": True}}).status_code == 200
    assert attach(api, app, "signed_request_object", cred["id"]).status_code == 200
    jar = api.get(f"/clients/{app}").json()["signed_request_object"]
    assert jar == {"required": True, "credentials": [{"id": cred["id"]}]}


def test_unknown_client_fields_are_refused(api, app):
    refused(api.patch(f"/clients/{app}", json={"colour": "red"}), 400, "Additional properties")


# --- POST /clients with inline credentials ---------------------------------------------------


def test_inline_credentials_on_create_are_attached_at_once(api, keys):
    answer = api.post("/clients", json={
        "name": "batch", "app_type": "non_interactive",
        "jwt_configuration": {"alg": "RS256"},
        "client_authentication_methods": {"private_key_jwt": {"credentials": [
            {"credential_type": "public_key", "name": "a", "pem": public_pem(keys[0])},
            {"credential_type": "public_key", "name": "b", "pem": public_pem(keys[1]),
             "alg": "PS256"}]}},
        "signed_request_object": {"required": True, "credentials": [
            {"credential_type": "public_key", "name": "jar", "pem": public_pem(keys[2])}]}})
    assert answer.status_code == 201, answer.text
    client = answer.json()
    pool = api.get(f"/clients/{client['client_id']}/credentials").json()
    assert [c["name"] for c in pool] == ["a", "b", "jar"]
    assert client["client_authentication_methods"]["private_key_jwt"]["credentials"] == [
        {"id": pool[0]["id"]}, {"id": pool[1]["id"]}]
    assert client["signed_request_object"] == {"required": True,
                                               "credentials": [{"id": pool[2]["id"]}]}
    assert "token_endpoint_auth_method" not in client


def test_create_with_inline_credentials_applies_the_rules(api, keys):
    def create(*creds, **extra):
        return api.post("/clients", json={"name": "c", **extra,
                                          "client_authentication_methods": {"private_key_jwt": {
                                              "credentials": list(creds)}}})
    one = {"credential_type": "public_key", "pem": public_pem(keys[0])}
    refused(create(one, dict(one)), 400, "already exist in client")
    refused(create(one, {"credential_type": "public_key", "pem": public_pem(keys[1])},
                   {"credential_type": "public_key", "pem": public_pem(keys[2])}), 400,
            "Array is too long (3), maximum 2")
    refused(create({"id": "cred_x"}), 400, "whole credentials")
    refused(create(one, token_endpoint_auth_method="client_secret_post"), 400,
            "mutually exclusive")
    with api_session_from(api, ["create:clients"]) as narrow:
        refused(narrow.post("/clients", json={"name": "c", "client_authentication_methods": {
            "private_key_jwt": {"credentials": [one]}}}), 403, "create:client_credentials")


def api_session_from(api: httpx.Client, scopes: list[str]) -> httpx.Client:
    with http_client() as http:
        token = http.post(str(api.base_url).removesuffix("/api/v2/") + "/__emulator/token",
                          json={"scopes": scopes}).json()["access_token"]
    return http_client(base_url=api.base_url, headers={"authorization": f"Bearer {token}"})


# --- client secret (checklist 9) -------------------------------------------------------------


def secret_token(emulator, client_id, secret, audience=API):
    return token_request(emulator, {"grant_type": "client_credentials", "client_id": client_id,
                                    "client_secret": secret, "audience": audience})


def test_rotate_secret_replaces_it_at_once(emulator, api, app):
    old = emulator.tenant.client(app).client_secret
    assert secret_token(emulator, app, old).status_code == 200
    rotated = api.post(f"/clients/{app}/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.json()["client_secret"]
    assert new != old
    assert secret_token(emulator, app, old).json()["error"] == "invalid_client"
    assert secret_token(emulator, app, new).status_code == 200


def test_rotate_secret_is_refused_for_private_key_jwt_clients(emulator, api, app, keys):
    cred = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]))
    attach(api, app, "private_key_jwt", cred["id"])
    refused(api.post(f"/clients/{app}/rotate-secret"), 400, "Private Key JWT")


def test_custom_secret_by_patch(emulator, api, app):
    assert api.patch(f"/clients/{app}", json={"client_secret": "n" * 64}).status_code == 200
    assert secret_token(emulator, app, "n" * 64).status_code == 200


def test_new_secret_propagation_delay_when_configured(clock):
    with Auth0Emulator({"secret_propagation_seconds": 30, "management_rate": None},
                       clock=clock) as emu, api_session(emu) as api:
        app = emu.seed_client({"name": "a", "grants": [{"audience": API}]}).client_id
        old = emu.tenant.client(app).client_secret
        new = api.post(f"/clients/{app}/rotate-secret").json()["client_secret"]
        assert secret_token(emu, app, new).status_code == 401
        assert secret_token(emu, app, old).status_code == 200
        clock.advance(30)
        assert secret_token(emu, app, new).status_code == 200
        assert secret_token(emu, app, old).status_code == 401


# --- client grants ---------------------------------------------------------------------------


def test_client_grants_can_be_listed_and_created(api, app):
    made = api.post("/client-grants", json={"client_id": app, "audience": "https://b/",
                                             "scope": ["x"]})
    assert made.status_code == 201
    assert made.json()["id"].startswith("cgr_")
    listed = api.get("/client-grants", params={"client_id": app}).json()
    assert {g["audience"] for g in listed} == {API, "https://b/"}
    refused(api.post("/client-grants", json={"client_id": app, "audience": "https://b/"}), 409,
            "already exists")
    refused(api.post("/client-grants", json={"client_id": "nope", "audience": "https://c/"}),
            404, "client does not exist")
    paged = api.get("/client-grants", params={"include_totals": "true", "per_page": 1}).json()
    assert paged["total"] == 3 and len(paged["client_grants"]) == 1


def test_clock_is_frozen_for_these_tests(clock):
    assert isinstance(clock, Clock) and clock.frozen


# --- the tenant down -------------------------------------------------------------------------


def test_a_halted_tenant_refuses_connections_and_comes_back_as_it_was(emulator, api, app):
    """``halt``: nothing listens on the port and a kept-alive connection is cut; ``resume``:
    the same address answers again, with the same clients."""
    assert api.get(f"/clients/{app}").status_code == 200  # a connection kept alive
    emulator.halt()
    for _ in range(2):  # the kept one is cut, a new one is refused
        with pytest.raises(httpx.TransportError):
            api.get(f"/clients/{app}")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{emulator.base_url}/__emulator/health")
    emulator.resume()
    assert api.get(f"/clients/{app}").json()["name"] == "payments-api"
