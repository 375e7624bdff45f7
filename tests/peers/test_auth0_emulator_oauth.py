"""The emulator's token endpoint and PAR: Private Key JWT assertions checked as
auth0-credentials.md §5 says, mTLS through the customer-edge headers, client secrets, and the
403 after authentication that lets a credential be tested without a grant."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from tests.conftest import NOW
from tests.helpers import certificate, rsa_key
from tests.peers.auth0 import Auth0Emulator
from tests.peers.kit import (
    ASSERTION_TYPE,
    attach,
    cert_header,
    create_credential,
    http_client,
    public_pem,
    token_request,
)

API = "https://api.example.com/"
CA_DN = "CN=Acme Issuing CA,O=Acme,C=DE"


@pytest.fixture
def app(emulator: Auth0Emulator) -> str:
    return emulator.seed_client({"name": "payments-api",
                                 "grants": [{"audience": API, "scope": ["read:things"]}]}).client_id


@pytest.fixture
def pkjwt(api, app, keys) -> dict[str, dict]:
    """keys[0] attached to private_key_jwt; keys[1] in the pool, detached."""
    attached = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]))
    detached = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[1]))
    assert attach(api, app, "private_key_jwt", attached["id"]).status_code == 200
    return {"attached": attached, "detached": detached}


def sign(emulator, key, client_id, **options):
    from tests.peers.kit import assertion
    options.setdefault("now", emulator.clock.now())
    audience = options.pop("audience", f"https://{emulator.domain}/")
    return assertion(key, client_id, audience, **options)


def with_assertion(emulator, token, audience=API, **extra):
    return token_request(emulator, {"grant_type": "client_credentials", "audience": audience,
                                    "client_assertion_type": ASSERTION_TYPE,
                                    "client_assertion": token, **extra})


def refused(answer, description=""):
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"
    assert description in answer.json()["error_description"]


# --- Private Key JWT -----------------------------------------------------------------------


def test_assertion_signed_by_an_attached_key_gets_a_token(emulator, app, keys, pkjwt):
    answer = with_assertion(emulator, sign(emulator, keys[0], app))
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "Bearer"
    assert answer.json()["scope"] == "read:things"


def test_without_a_grant_an_authenticated_key_gets_403_access_denied(emulator, app, keys,
                                                                     pkjwt):
    answer = with_assertion(emulator, sign(emulator, keys[0], app),
                            audience="https://no-grant.example.com/")
    assert answer.status_code == 403
    assert answer.json()["error"] == "access_denied"
    emulator.seed_client({"name": "owner", "grants": [{"audience": "https://other/"}]})
    answer = with_assertion(emulator, sign(emulator, keys[0], app),
                            audience="https://other/")
    assert answer.status_code == 403
    assert answer.json()["error"] == "access_denied"
    answer = with_assertion(emulator, sign(emulator, keys[1], app),  # detached key
                            audience="https://other/")
    refused(answer)


def test_detached_unknown_and_expired_keys_are_invalid_client(emulator, api, app, keys, pkjwt,
                                                              clock):
    refused(with_assertion(emulator, sign(emulator, keys[1], app)))
    refused(with_assertion(emulator, sign(emulator, keys[2], app)))
    refused(with_assertion(emulator, sign(emulator, keys[1], app,
                                               kid=pkjwt["detached"]["kid"])), "kid")
    cred = pkjwt["attached"]
    expiry = (NOW + timedelta(minutes=10)).isoformat()
    assert api.patch(f"/clients/{app}/credentials/{cred['id']}",
                     json={"expires_at": expiry}).status_code == 200
    assert with_assertion(emulator, sign(emulator, keys[0], app)).status_code == 200
    clock.advance(600)
    refused(with_assertion(emulator, sign(emulator, keys[0], app)), "expired")
    listed = api.get(f"/clients/{app}/credentials").json()
    assert cred["id"] in {c["id"] for c in listed}  # expired: still listed and attached
    assert api.get(f"/clients/{app}").json()["client_authentication_methods"][
        "private_key_jwt"]["credentials"] == [{"id": cred["id"]}]


def test_kid_selects_the_key_and_without_kid_each_attached_key_is_tried(emulator, api, app,
                                                                       keys, pkjwt):
    second = pkjwt["detached"]
    assert attach(api, app, "private_key_jwt", pkjwt["attached"]["id"],
                  second["id"]).status_code == 200
    for key in keys[:2]:
        assert with_assertion(emulator, sign(emulator, key, app)).status_code == 200
    assert with_assertion(emulator, sign(emulator, keys[1], app,
                                              kid=second["kid"])).status_code == 200
    refused(with_assertion(emulator, sign(emulator, keys[1], app,
                                               kid=pkjwt["attached"]["kid"])), "signature")


def test_assertion_alg_must_equal_the_credentials_alg(emulator, api, app, keys):
    cred = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]),
                             alg="PS256")
    attach(api, app, "private_key_jwt", cred["id"])
    assert with_assertion(emulator, sign(emulator, keys[0], app,
                                              alg="PS256")).status_code == 200
    refused(with_assertion(emulator, sign(emulator, keys[0], app, alg="RS256")), "alg")
    refused(with_assertion(emulator, sign(emulator, keys[0], app, alg="RS512")), "alg")


@pytest.mark.parametrize(("claims", "fragment"), [
    ({"aud": "https://{domain}"}, "trailing slash"),
    ({"aud": "https://{domain}/oauth/token"}, "aud"),
    ({"aud": "https://elsewhere.example.com/"}, "aud"),
    ({"sub": "someone-else"}, "iss and sub"),
    ({"iss": "someone-else"}, "iss and sub"),
    ({"exp": None}, "exp"),
    ({"jti": None}, "jti"),
    ({"jti": "j" * 65}, "jti"),
    ({"lifetime": 301}, "no more than 5 minutes after 'iat'"),
    ({"iat_shift": 11}, "iat"),
    ({"nbf_shift": 11}, "nbf"),
    ({"exp_shift": -1}, "expired"),
])
def test_assertion_claims_are_checked(emulator, app, keys, pkjwt, claims, fragment):
    now = emulator.clock.now()
    options: dict = {}
    for name, value in claims.items():
        if name == "aud":
            options["audience"] = value.format(domain=emulator.domain)
        elif name == "lifetime":
            options["lifetime"] = value
        elif name == "iat_shift":
            options["iat"] = int(now) + value
        elif name == "nbf_shift":
            options["nbf"] = int(now) + value
        elif name == "exp_shift":
            options["iat"] = int(now) - 60
            options["exp"] = int(now) + value
        else:
            options[name] = value
    refused(with_assertion(emulator, sign(emulator, keys[0], app, **options)), fragment)


def test_assertion_limits_at_their_edges_are_accepted(emulator, app, keys, pkjwt):
    now = int(emulator.clock.now())
    for options in ({"lifetime": 300}, {"iat": now + 10, "exp": now + 70},
                    {"nbf": now + 10}, {"jti": "j" * 64}, {"iat": None, "exp": now + 300}):
        answer = with_assertion(emulator, sign(emulator, keys[0], app, **options))
        assert answer.status_code == 200, (options, answer.text)


def test_assertion_larger_than_2048_bytes_is_refused(emulator, app, keys, pkjwt):
    token = sign(emulator, keys[0], app, padding="p" * 1400)
    assert len(token) > 2048
    refused(with_assertion(emulator, token), "2048")


def test_replayed_jti_is_refused_unless_switched_off(emulator, app, keys, pkjwt):
    token = sign(emulator, keys[0], app, jti="once")
    assert with_assertion(emulator, token).status_code == 200
    refused(with_assertion(emulator, token), "already been used")
    emulator.configure(jti_replay_rejected=False)
    assert with_assertion(emulator, token).status_code == 200


def test_client_id_param_must_match_the_assertion(emulator, app, keys, pkjwt):
    token = sign(emulator, keys[0], app)
    refused(with_assertion(emulator, token, client_id="other"), "client_id")
    assert with_assertion(emulator, sign(emulator, keys[0], app),
                          client_id=app).status_code == 200


def test_token_endpoint_aud_is_accepted_behind_the_switch(emulator, app, keys, pkjwt):
    emulator.configure(accept_token_endpoint_aud=True)
    token = sign(emulator, keys[0], app, audience=f"https://{emulator.domain}/oauth/token")
    assert with_assertion(emulator, token).status_code == 200


def test_custom_domain_is_an_accepted_audience(clock, keys):
    with Auth0Emulator({"domain": "tenant.eu.auth0.com", "custom_domains": ["login.acme.test"],
                        "management_rate": None}, clock=clock) as emu:
        app = emu.seed_client({"name": "a", "grants": [{"audience": API}]}).client_id
        with http_client(base_url=emu.api_url, headers={
                "authorization": f"Bearer {emu.management_token()}"}) as api:
            assert emu.management_audience == "https://tenant.eu.auth0.com/api/v2/"
            cred = create_credential(api, app, credential_type="public_key",
                                     pem=public_pem(keys[0]))
            attach(api, app, "private_key_jwt", cred["id"])
        for aud in ("https://tenant.eu.auth0.com/", "https://login.acme.test/"):
            token = sign(emu, keys[0], app, audience=aud)
            assert with_assertion(emu, token).status_code == 200


def test_private_key_jwt_client_refuses_its_old_secret(emulator, app, keys, pkjwt):
    secret = emulator.tenant.client(app).client_secret
    refused(token_request(emulator, {"grant_type": "client_credentials", "client_id": app,
                                     "client_secret": secret, "audience": API}))


def test_assertion_and_secret_together_are_invalid_request(emulator, app, keys, pkjwt):
    answer = with_assertion(emulator, sign(emulator, keys[0], app), client_secret="s")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


# --- client secrets ------------------------------------------------------------------------


def test_client_secret_basic_and_post(emulator, app):
    secret = emulator.tenant.client(app).client_secret
    with http_client() as http:
        basic = http.post(emulator.token_url, auth=(app, secret),
                          data={"grant_type": "client_credentials", "audience": API})
        assert basic.status_code == 200
        wrong = http.post(emulator.token_url, auth=(app, "wrong"),
                          data={"grant_type": "client_credentials", "audience": API})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    post = token_request(emulator, {"grant_type": "client_credentials", "client_id": app,
                                    "client_secret": secret, "audience": API})
    assert post.status_code == 200


def test_wrong_secret_can_answer_access_denied_unauthorized(emulator, app):
    emulator.configure(wrong_secret_error="access_denied")
    answer = token_request(emulator, {"grant_type": "client_credentials", "client_id": app,
                                      "client_secret": "wrong", "audience": API})
    assert answer.status_code == 401
    assert answer.json() == {"error": "access_denied", "error_description": "Unauthorized"}


def test_token_endpoint_request_errors(emulator, app):
    secret = emulator.tenant.client(app).client_secret
    base = {"client_id": app, "client_secret": secret}
    assert token_request(emulator, base).json()["error"] == "invalid_request"
    answer = token_request(emulator, {**base, "grant_type": "password"})
    assert answer.json()["error"] == "unsupported_grant_type"
    answer = token_request(emulator, {**base, "grant_type": "client_credentials"})
    assert (answer.status_code, answer.json()["error"]) == (403, "access_denied")
    answer = token_request(emulator, {**base, "grant_type": "client_credentials",
                                      "audience": API, "scope": "write:things"})
    assert (answer.status_code, answer.json()["error"]) == (403, "access_denied")
    answer = token_request(emulator, {"grant_type": "client_credentials", "client_id": "nope",
                                      "client_secret": "x", "audience": API})
    refused(answer, "Unknown client")


# --- mTLS through the customer edge ---------------------------------------------------------


def cert(key, dn, days=30, issuer_key=None, issuer=None):
    return certificate(key, dn, not_before=NOW - timedelta(days=1),
                       not_after=NOW + timedelta(days=days), issuer_key=issuer_key,
                       issuer=issuer).decode()


def with_certificate(emulator, client_id, pem, verified="FAILED", audience=API, **headers):
    return token_request(emulator, {"grant_type": "client_credentials", "client_id": client_id,
                                    "audience": audience},
                         headers={"client-certificate": cert_header(pem),
                                  "client-certificate-ca-verified": verified, **headers})


def test_self_signed_mtls_matches_the_attached_thumbprint(emulator, api, app, keys, clock):
    mine = cert(keys[0], "CN=payments-api", days=2)
    other = cert(keys[1], "CN=payments-api")
    cred = create_credential(api, app, credential_type="x509_cert", pem=mine)
    refused(with_certificate(emulator, app, mine), "not enabled")  # created, not attached
    assert attach(api, app, "self_signed_tls_client_auth", cred["id"]).status_code == 200
    assert with_certificate(emulator, app, mine).status_code == 200
    assert with_certificate(emulator, app, mine,
                            audience="https://no-grant/").status_code == 403
    refused(with_certificate(emulator, app, other), "matches no attached")
    secret = emulator.tenant.client(app).client_secret
    refused(token_request(emulator, {"grant_type": "client_credentials", "client_id": app,
                                     "client_secret": secret, "audience": API}))
    clock.advance(timedelta(days=2, seconds=1).total_seconds())
    refused(with_certificate(emulator, app, mine), "expired")


def test_ca_issued_mtls_matches_the_subject_dn_when_the_edge_verified_it(emulator, api, app):
    ca_key, client_key = rsa_key(), rsa_key()
    issued = cert(client_key, "CN=payments-api,O=Acme,C=DE", issuer_key=ca_key, issuer=CA_DN)
    renewed = cert(rsa_key(), "CN=payments-api,O=Acme,C=DE", issuer_key=ca_key, issuer=CA_DN)
    stranger = cert(client_key, "CN=someone,O=Acme,C=DE", issuer_key=ca_key, issuer=CA_DN)
    cred = create_credential(api, app, credential_type="cert_subject_dn",
                             subject_dn="C=DE\nO=Acme\nCN=payments-api")
    assert attach(api, app, "tls_client_auth", cred["id"]).status_code == 200
    assert with_certificate(emulator, app, issued, "SUCCESS").status_code == 200
    assert with_certificate(emulator, app, renewed, "SUCCESS").status_code == 200  # same DN
    refused(with_certificate(emulator, app, issued, "FAILED"), "trusted CA")
    refused(with_certificate(emulator, app, stranger, "SUCCESS"), "subject DN")


def test_cname_api_key_guards_the_certificate_headers(emulator, api, app, keys):
    mine = cert(keys[0], "CN=payments-api")
    cred = create_credential(api, app, credential_type="x509_cert", pem=mine)
    attach(api, app, "self_signed_tls_client_auth", cred["id"])
    emulator.configure(cname_api_key="edge-key")
    refused(with_certificate(emulator, app, mine))
    answer = with_certificate(emulator, app, mine, **{"cname-api-key": "edge-key"})
    assert answer.status_code == 200


# --- PAR with signed request objects (JAR) ----------------------------------------------------


def request_object(emulator, key, app_id, **claims):
    now = int(emulator.clock.now())
    payload = {"iss": app_id, "aud": f"https://{emulator.domain}/", "client_id": app_id,
               "response_type": "code", "redirect_uri": "https://app.example.com/cb",
               "scope": "openid", "iat": now, "nbf": now, "exp": now + 60, **claims}
    return jwt.encode(payload, key, algorithm="RS256")


def par(emulator, client_id, secret, **params):
    with http_client() as http:
        return http.post(f"{emulator.base_url}/oauth/par",
                         data={"client_id": client_id, "client_secret": secret, **params})


def test_par_accepts_a_request_object_signed_by_a_jar_key(emulator, api, app, keys):
    jar = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[2]))
    assert attach(api, app, "signed_request_object", jar["id"]).status_code == 200
    secret = emulator.tenant.client(app).client_secret
    answer = par(emulator, app, secret, request=request_object(emulator, keys[2], app))
    assert answer.status_code == 201, answer.text
    assert answer.json()["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert answer.json()["expires_in"] == 30
    for key, claims in ((keys[3], {}), (keys[2], {"client_id": "other"}),
                        (keys[2], {"aud": "https://elsewhere/"})):
        answer = par(emulator, app, secret, request=request_object(emulator, key, app, **claims))
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request_object"
    bad_auth = par(emulator, app, "wrong", request=request_object(emulator, keys[2], app))
    assert (bad_auth.status_code, bad_auth.json()["error"]) == (401, "invalid_client")


def test_par_refuses_a_private_key_jwt_key_that_is_not_in_the_jar_slot(emulator, api, app,
                                                                      keys, pkjwt):
    jar = create_credential(api, app, credential_type="public_key", pem=public_pem(keys[2]))
    attach(api, app, "signed_request_object", jar["id"])
    answer = with_par_assertion(emulator, app, keys[0],
                                request=request_object(emulator, keys[0], app))
    assert answer.json()["error"] == "invalid_request_object"
    answer = with_par_assertion(emulator, app, keys[0],
                                request=request_object(emulator, keys[2], app))
    assert answer.status_code == 201, answer.text


def with_par_assertion(emulator, client_id, key, **params):
    with http_client() as http:
        return http.post(f"{emulator.base_url}/oauth/par", data={
            "client_id": client_id, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": sign(emulator, key, client_id), **params})


def test_par_without_request_object_when_jar_is_required(emulator, api, app, keys):
    secret = emulator.tenant.client(app).client_secret
    assert par(emulator, app, secret, response_type="code",
               redirect_uri="https://app/cb").status_code == 201
    api.patch(f"/clients/{app}", json={"signed_request_object": {"required": True}})
    answer = par(emulator, app, secret, response_type="code", redirect_uri="https://app/cb")
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")
