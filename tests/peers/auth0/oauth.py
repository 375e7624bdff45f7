"""The authentication API: ``POST /oauth/token`` (client credentials) and ``POST /oauth/par``.

After the client authenticates (``clientauth``), a request for an ``audience`` the client has
no client grant for answers 403 ``access_denied``: a credential can be tested without a grant
(identity-providers.md §1). Descriptions of the 403s are Auth0's as commonly seen; they are not
in the reference, so tests go by status and ``error``.

PAR (JAR): a ``request`` object must be signed by a credential ATTACHED to
``signed_request_object`` (unexpired, ``alg`` equal to the credential's, by ``kid`` or each in
turn); its ``client_id`` claim must be the authenticated client; ``iss``, ``aud``, ``exp`` and
``nbf`` are checked when present (RFC 9101; Auth0's exact request-object rules are UNCONFIRMED).
Failures answer 400 ``invalid_request_object``; success 201 ``{request_uri, expires_in}``.
"""

from __future__ import annotations

import secrets
from typing import Any

import jwt

from tests.peers.auth0.clientauth import SKEW, Presented, authenticate, verify_signed
from tests.peers.auth0.credentials import ALGORITHMS
from tests.peers.auth0.errors import OAuthError
from tests.peers.auth0.model import Client
from tests.peers.auth0.rules import Tenant
from tests.peers.auth0.tokens import TokenIssuer
from tests.peers.auth0.wire import Request, Response

__all__ = ["par", "token"]

_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def _error(error: OAuthError) -> Response:
    return Response(error.status, error.body(), dict(_NO_STORE))


def token(tenant: Tenant, issuer: TokenIssuer, request: Request) -> Response:
    try:
        return Response(200, _token(tenant, issuer, request), dict(_NO_STORE))
    except OAuthError as error:
        return _error(error)


def _token(tenant: Tenant, issuer: TokenIssuer, request: Request) -> dict[str, Any]:
    params = request.params()
    grant_type = params.get("grant_type")
    if not grant_type:
        raise OAuthError(400, "invalid_request", "Missing required parameter: grant_type")
    if grant_type != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}")
    with tenant.lock:
        client = _authenticate(tenant, request, params)
        if "client_credentials" not in client.grant_types:
            raise OAuthError(403, "unauthorized_client",
                             "Grant type 'client_credentials' not allowed for the client.")
        audience = params.get("audience")
        if not audience:
            raise OAuthError(403, "access_denied", "No audience parameter was provided, and no "
                                                   "default audience has been configured")
        if audience not in tenant.audiences():
            raise OAuthError(403, "access_denied", f"Service not found: {audience}")
        grant = tenant.grant_for(client.client_id, audience)
        if grant is None:
            raise OAuthError(403, "access_denied",
                             f'Client is not authorized to access "{audience}". You need to '
                             'create a "client-grant" associated to this API.')
        scopes = list(grant.scope)
        if params.get("scope"):
            asked = params["scope"].split()
            missing = [scope for scope in asked if scope not in grant.scope]
            if missing:
                raise OAuthError(403, "access_denied",
                                 f"Client has not been granted scopes: {', '.join(missing)}")
            scopes = asked
        expires_in = (tenant.config.management_token_expires_in
                      if audience == tenant.management_audience
                      else tenant.config.token_expires_in)
    return issuer.issue(client.client_id, audience, scopes, expires_in)


def _authenticate(tenant: Tenant, request: Request, params: dict[str, str]) -> Client:
    presented = Presented.read(params, request.headers, tenant.config.cname_api_key)
    return authenticate(tenant, presented)


def par(tenant: Tenant, request: Request) -> Response:
    params = request.params()
    try:
        with tenant.lock:
            client = _authenticate(tenant, request, params)
            jar = client.signed_request_object or {}
            request_object = params.get("request")
            if request_object:
                _check_request_object(tenant, client, request_object)
            elif jar.get("required"):
                raise OAuthError(400, "invalid_request",
                                 "A signed request object (JAR) is required for this client")
            elif not params.get("response_type"):
                raise OAuthError(400, "invalid_request",
                                 "Missing required parameter: response_type")
    except OAuthError as error:
        return _error(error)
    uri = "urn:ietf:params:oauth:request_uri:" + secrets.token_urlsafe(24)
    return Response(201, {"request_uri": uri, "expires_in": tenant.config.par_expires_in},
                    dict(_NO_STORE))


def _invalid(description: str) -> OAuthError:
    return OAuthError(400, "invalid_request_object", description)


def _check_request_object(tenant: Tenant, client: Client, request_object: str) -> None:
    try:
        header = jwt.get_unverified_header(request_object)
        claims = jwt.decode(request_object, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise _invalid(f"request is not a valid JWT: {error}") from error
    if header.get("alg") not in ALGORITHMS:
        raise _invalid(f"Unsupported request object alg: {header.get('alg')!r}")
    attached = [client.credentials[cid] for cid in client.slot_ids("signed_request_object")]
    if not attached:
        raise _invalid("No credential is attached to this client's signed_request_object")
    now = tenant.clock.now()
    verify_signed(request_object, header, attached, now, "request object", _invalid)
    if claims.get("client_id") != client.client_id:
        raise _invalid("request object client_id must be the authenticated client")
    if "iss" in claims and claims["iss"] != client.client_id:
        raise _invalid("request object iss must be the client_id")
    if "aud" in claims:
        audiences = {f"https://{d}/" for d in [tenant.domain, *tenant.config.custom_domains]}
        offered = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if not audiences & set(offered):
            raise _invalid(f"request object aud must be https://{tenant.domain}/")
    if isinstance(claims.get("exp"), int | float) and now >= claims["exp"]:
        raise _invalid("request object has expired")
    if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now + SKEW:
        raise _invalid("request object is not valid yet (nbf)")
