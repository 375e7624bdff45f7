"""The Management API v2 routes (auth0-credentials.md §2), each with the scopes it needs.

A route needs any one of its listed scopes (403 ``insufficient_scope`` otherwise); a client
PATCH also needs ``update:client_credentials`` to touch ``client_authentication_methods`` or
``signed_request_object`` (the latter UNCONFIRMED), and ``update:client_keys`` to set
``client_secret``; a client POST with inline credentials needs ``create:client_credentials``.

Reads hide what the token may not see (the SDK's documentation of ``GET /clients``):
``client_secret`` needs ``read:client_keys``; ``client_authentication_methods`` needs
``read:client_keys`` or ``read:client_credentials``. Writes answer the whole client.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.peers.auth0.errors import ApiError
from tests.peers.auth0.model import Client
from tests.peers.auth0.rules import Tenant
from tests.peers.auth0.wire import Request, Response

__all__ = ["ROUTES", "Route", "required_scopes"]

Handler = Callable[[Tenant, Request, set[str], dict[str, str]], Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/api/v2/clients/{id}": the counters' key
    scopes: tuple[str, ...]
    handler: Handler

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template) + "$")


def required_scopes(route: Route, granted: set[str]) -> None:
    if route.scopes and not granted & set(route.scopes):
        raise _insufficient(route.scopes)


def _insufficient(scopes: tuple[str, ...]) -> ApiError:
    return ApiError(403, f"Insufficient scope, expected any of: {','.join(scopes)}",
                    "insufficient_scope")


def _need(granted: set[str], *scopes: str) -> None:
    if not granted & set(scopes):
        raise _insufficient(scopes)


def _bool_arg(request: Request, name: str, default: bool) -> bool:
    value = request.arg(name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ApiError(400, f"Query validation error: 'Expected type boolean but found type "
                        f"string' on property {name}", "invalid_query_string")


def _int_arg(request: Request, name: str, default: int, maximum: int | None = None) -> int:
    value = request.arg(name)
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise ApiError(400, f"Query validation error: 'Expected type integer but found type "
                            f"string' on property {name}", "invalid_query_string")
    number = int(value)
    if maximum is not None and number > maximum:
        raise ApiError(400, f"Query validation error: 'Number is greater than the maximum of "
                            f"{maximum}' on property {name}", "invalid_query_string")
    return number


def _page(request: Request, items: list[Any], key: str,
          render: Callable[[Any], dict[str, Any]]) -> Any:
    """One page of ``items`` (only that page rendered: 5,000 clients stay cheap to page)."""
    page = _int_arg(request, "page", 0)
    per_page = _int_arg(request, "per_page", 50, maximum=100)
    start = page * per_page
    chunk = [render(item) for item in items[start:start + per_page]]
    if _bool_arg(request, "include_totals", False):
        return {key: chunk, "start": start, "limit": per_page, "total": len(items)}
    return chunk


def _fields(request: Request, view: dict[str, Any]) -> dict[str, Any]:
    fields = request.arg("fields")
    if not fields:
        return view
    names = {name.strip() for name in fields.split(",") if name.strip()}
    if _bool_arg(request, "include_fields", True):
        return {key: value for key, value in view.items() if key in names}
    return {key: value for key, value in view.items() if key not in names}


def _read_view(client: Client, granted: set[str]) -> dict[str, Any]:
    return client.view(secrets_visible="read:client_keys" in granted,
                       methods_visible=bool(granted & {"read:client_keys",
                                                       "read:client_credentials"}))


def _write_view(client: Client) -> dict[str, Any]:
    return client.view(secrets_visible=True, methods_visible=True)


# --- clients -----------------------------------------------------------------------------------

def list_clients(tenant: Tenant, request: Request, granted: set[str],
                 _: dict[str, str]) -> Response:
    return Response(200, _page(request, tenant.list_clients(), "clients",
                               lambda client: _fields(request, _read_view(client, granted))))


def get_client(tenant: Tenant, request: Request, granted: set[str],
               path: dict[str, str]) -> Response:
    client = tenant.client(path["id"])
    return Response(200, _fields(request, _read_view(client, granted)))


def create_client(tenant: Tenant, request: Request, granted: set[str],
                  _: dict[str, str]) -> Response:
    body = request.json()
    if isinstance(body, dict) and (body.get("client_authentication_methods")
                                   or (body.get("signed_request_object") or {}).get(
                                       "credentials")):
        _need(granted, "create:client_credentials")
    return Response(201, _write_view(tenant.create_client(body)))


def update_client(tenant: Tenant, request: Request, granted: set[str],
                  path: dict[str, str]) -> Response:
    body = request.json()
    if isinstance(body, dict):
        if "client_authentication_methods" in body or "signed_request_object" in body:
            _need(granted, "update:client_credentials")
        if "client_secret" in body:
            _need(granted, "update:client_keys")
    return Response(200, _write_view(tenant.update_client(path["id"], body)))


def delete_client(tenant: Tenant, request: Request, granted: set[str],
                  path: dict[str, str]) -> Response:
    tenant.delete_client(path["id"])
    return Response(204)


def rotate_secret(tenant: Tenant, request: Request, granted: set[str],
                  path: dict[str, str]) -> Response:
    return Response(200, _write_view(tenant.rotate_secret(path["id"])))


# --- credentials -------------------------------------------------------------------------------

def list_credentials(tenant: Tenant, request: Request, granted: set[str],
                     path: dict[str, str]) -> Response:
    # a bare array even when include_totals/per_page are sent (GO-REC TestClient_ListCredentials)
    return Response(200, [cred.view() for cred in tenant.credentials(path["id"])])


def create_credential(tenant: Tenant, request: Request, granted: set[str],
                      path: dict[str, str]) -> Response:
    return Response(201, tenant.create_credential(path["id"], request.json()).view())


def get_credential(tenant: Tenant, request: Request, granted: set[str],
                   path: dict[str, str]) -> Response:
    return Response(200, tenant.credential(path["id"], path["credential_id"]).view())


def update_credential(tenant: Tenant, request: Request, granted: set[str],
                      path: dict[str, str]) -> Response:
    cred = tenant.update_credential(path["id"], path["credential_id"], request.json())
    return Response(200, cred.view())


def delete_credential(tenant: Tenant, request: Request, granted: set[str],
                      path: dict[str, str]) -> Response:
    tenant.delete_credential(path["id"], path["credential_id"])
    return Response(204)


# --- client grants -----------------------------------------------------------------------------

def list_grants(tenant: Tenant, request: Request, granted: set[str],
                _: dict[str, str]) -> Response:
    grants = tenant.list_grants(request.arg("client_id"), request.arg("audience"))
    return Response(200, _page(request, grants, "client_grants", lambda grant: grant.view()))


def create_grant(tenant: Tenant, request: Request, granted: set[str],
                 _: dict[str, str]) -> Response:
    return Response(201, tenant.create_grant(request.json()).view())


def delete_grant(tenant: Tenant, request: Request, granted: set[str],
                 path: dict[str, str]) -> Response:
    tenant.delete_grant(path["id"])
    return Response(204)


_READ = ("read:clients", "read:client_keys")
ROUTES = (
    Route("GET", "/api/v2/clients", _READ, list_clients),
    Route("POST", "/api/v2/clients", ("create:clients",), create_client),
    Route("GET", "/api/v2/clients/{id}", _READ, get_client),
    Route("PATCH", "/api/v2/clients/{id}", ("update:clients", "update:client_keys"),
          update_client),
    Route("DELETE", "/api/v2/clients/{id}", ("delete:clients",), delete_client),
    Route("POST", "/api/v2/clients/{id}/rotate-secret", ("update:client_keys",), rotate_secret),
    Route("GET", "/api/v2/clients/{id}/credentials", ("read:client_credentials",),
          list_credentials),
    Route("POST", "/api/v2/clients/{id}/credentials", ("create:client_credentials",),
          create_credential),
    Route("GET", "/api/v2/clients/{id}/credentials/{credential_id}",
          ("read:client_credentials",), get_credential),
    Route("PATCH", "/api/v2/clients/{id}/credentials/{credential_id}",
          ("update:client_credentials",), update_credential),
    Route("DELETE", "/api/v2/clients/{id}/credentials/{credential_id}",
          ("delete:client_credentials",), delete_credential),
    Route("GET", "/api/v2/client-grants", ("read:client_grants",), list_grants),
    Route("POST", "/api/v2/client-grants", ("create:client_grants",), create_grant),
    Route("DELETE", "/api/v2/client-grants/{id}", ("delete:client_grants",), delete_grant),
)
