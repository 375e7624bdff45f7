"""The control surface for tests and the bench, over HTTP under ``/__emulator/`` (never rate
limited, faulted or counted). The same operations exist as ``Auth0Emulator`` methods.

| Method and path | Body | Answer |
|---|---|---|
| GET  /__emulator/health | | base_url, domain, management audience and client id |
| GET  /__emulator/state | | the whole tenant (clients with secrets and pools, grants) |
| POST /__emulator/clients | a client spec, ``{"clients": [...]}`` or ``{"generate": {"count", "name_prefix"}}`` | 201 the created clients (or their count) |
| POST /__emulator/grants | ``{client_id, audience, scope}`` | 201 the grant |
| GET  /__emulator/counters | | answers by route and status, 429s, faults |
| POST /__emulator/counters/reset | | 204 |
| GET  /__emulator/faults | | rates and pending script |
| POST /__emulator/faults | ``{"rates": {...}, "script": [{fault, method?, route?, count?, seconds?}], "clear_script": bool}`` | the new state |
| GET/POST /__emulator/clock | ``{"advance": s}`` or ``{"set": epoch}`` | ``{now, frozen}`` |
| GET/POST /__emulator/config | run-time switches (``EmulatorConfig`` keys) | the config |
| POST /__emulator/reset | | 204: tenant re-seeded from the config, counters zeroed |
| POST /__emulator/token | ``{"scopes": [...]}`` (optional) | a Management API token |
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from tests.peers.auth0.errors import ApiError
from tests.peers.auth0.wire import Request, Response

if TYPE_CHECKING:
    from tests.peers.auth0.server import Auth0Emulator

__all__ = ["generate_clients", "handle"]


def generate_clients(emu: Auth0Emulator, count: int, prefix: str) -> int:
    """``count`` plain client-secret clients named ``{prefix}00001``... (for import benches)."""
    width = max(5, len(str(count)))
    for number in range(1, count + 1):
        emu.tenant.create_client({"name": f"{prefix}{number:0{width}d}"})
    return count


def handle(emu: Auth0Emulator, request: Request) -> Response:
    try:
        return _handle(emu, request)
    except (ApiError, ValueError, KeyError, TypeError) as error:
        if isinstance(error, ApiError):
            return Response(error.status, error.body())
        return Response(400, {"statusCode": 400, "error": "Bad Request",
                              "message": f"emulator control: {error}"})


def _handle(emu: Auth0Emulator, request: Request) -> Response:
    name = request.path.removeprefix("/__emulator/").strip("/")
    method = request.method
    body = request.json() if method == "POST" else {}
    if name == "health" and method == "GET":
        return Response(200, {"ok": True, "base_url": emu.base_url, "domain": emu.domain,
                              "management_audience": emu.management_audience,
                              "management_client_id": emu.config.management.client_id})
    if name == "state" and method == "GET":
        return Response(200, emu.snapshot())
    if name == "clients" and method == "POST":
        if "generate" in body:
            spec = body["generate"]
            count = generate_clients(emu, int(spec["count"]), str(spec.get("name_prefix",
                                                                              "app-")))
            return Response(201, {"created": count})
        specs = body.get("clients", [body])
        return Response(201, {"clients": [emu.seed_client(s).snapshot() for s in specs]})
    if name == "grants" and method == "POST":
        grant = emu.seed_grant(body["client_id"], body["audience"], body.get("scope", []))
        return Response(201, grant.view())
    if name == "counters" and method == "GET":
        return Response(200, emu.counters.snapshot())
    if name == "counters/reset" and method == "POST":
        emu.counters.reset()
        return Response(204)
    if name == "faults":
        if method == "POST":
            _set_faults(emu, body)
        return Response(200, {"rates": dataclasses.asdict(emu.faults.rates),
                              "script": emu.faults.scripted()})
    if name == "clock":
        if method == "POST":
            if "advance" in body:
                emu.clock.advance(float(body["advance"]))
            if "set" in body:
                emu.clock.set(float(body["set"]))
        return Response(200, {"now": emu.clock.now(), "frozen": emu.clock.frozen})
    if name == "config":
        if method == "POST":
            emu.configure(**body)
        return Response(200, emu.config.to_dict())
    if name == "reset" and method == "POST":
        emu.reset_tenant()
        emu.counters.reset()
        return Response(204)
    if name == "token" and method == "POST":
        return Response(200, {"access_token": emu.management_token(body.get("scopes"))})
    return Response(404, {"statusCode": 404, "error": "Not Found",
                          "message": f"no control route {method} /__emulator/{name}"})


def _set_faults(emu: Auth0Emulator, body: dict[str, Any]) -> None:
    if body.get("clear_script"):
        emu.faults.clear_script()
    if "rates" in body:
        emu.configure(faults=dict(body["rates"]))  # merged into the running rates
    for item in body.get("script", []):
        emu.faults.script(str(item["fault"]), method=item.get("method"),
                          route=item.get("route"), count=int(item.get("count", 1)),
                          seconds=float(item.get("seconds", 0.0)))
