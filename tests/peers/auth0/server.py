"""The HTTP layer: a ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive) that routes each request
through rate limiting, faults, authentication and the tenant's rules, and ``Auth0Emulator``,
the object tests hold.

Per request, in this order: route (unknown: 404); ``/__emulator/*`` control routes bypass
everything; the bucket of the route's kind (Management API, or ``/oauth/*`` when
``oauth_rate`` is set) answers 429 when empty; faults (latency, then 5xx/409 before the work);
the work; a lost answer closes the connection unwritten. Every answer is counted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.peers.auth0 import control, management, oauth
from tests.peers.auth0.clock import Clock
from tests.peers.auth0.config import EmulatorConfig
from tests.peers.auth0.counters import Counters
from tests.peers.auth0.errors import ApiError
from tests.peers.auth0.faults import Faults
from tests.peers.auth0.model import Client, Grant
from tests.peers.auth0.ratelimit import TOO_MANY_REQUESTS, TokenBucket
from tests.peers.auth0.rules import Tenant
from tests.peers.auth0.tokens import TokenIssuer
from tests.peers.auth0.wire import LOST, Request, Response

__all__ = ["Auth0Emulator"]

MAX_BODY = 1 << 20
_MGMT = [(route, route.pattern) for route in management.ROUTES]


class Auth0Emulator:
    """An Auth0 tenant on a local port. ``with Auth0Emulator(config, clock=Clock(NOW)) as
    emu:`` then ``emu.base_url`` (``http://127.0.0.1:PORT``; Management API at ``/api/v2``)."""

    def __init__(self, config: EmulatorConfig | dict[str, Any] | None = None, *,
                 clock: Clock | None = None, host: str = "127.0.0.1", port: int = 0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = (config if isinstance(config, EmulatorConfig)
                       else EmulatorConfig.from_dict(config))
        self.clock = clock or Clock()
        self.counters = Counters()
        self.faults = Faults(self.config.faults, sleep)
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._buckets: dict[str, TokenBucket | None] = {}
        self._connections: set[socket.socket] = set()  # open client connections (``halt``)
        self._connections_lock = threading.Lock()
        self._placeholder: socket.socket | None = None  # holds the port while halted
        self.tenant: Tenant
        self.issuer: TokenIssuer

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> Auth0Emulator:
        self._listen(self._port)
        assert self._server is not None
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        self._port = port
        self.base_url = f"http://{host}:{port}"
        self.domain = self.config.domain or f"{host}:{port}"
        self.issuer = TokenIssuer(self.domain, self.clock)
        self.tenant = Tenant(self.config, self.clock, self.domain)
        self._reset_buckets()
        self._seed()
        return self

    def _listen(self, port: int) -> None:
        server = ThreadingHTTPServer((self._host, port), _Handler)
        server.daemon_threads = True
        server.emulator = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="auth0-emulator",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    def halt(self) -> None:
        """The tenant down: nothing listens on its port (a connection is refused) and every
        open connection is cut. The port stays bound (not listening), so no other process takes
        it, and the tenant's state is kept for ``resume``."""
        assert self._server is not None, "not running"
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        placeholder = socket.socket()
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        placeholder.bind((self._host, self._port))
        self._placeholder = placeholder
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):  # closed meanwhile
                    connection.shutdown(socket.SHUT_RDWR)

    def resume(self) -> None:
        """Back up after ``halt``: listening on the same port, with the state it had."""
        assert self._placeholder is not None, "not halted"
        self._placeholder.close()
        self._placeholder = None
        self._listen(self._port)

    def _opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def _closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def __enter__(self) -> Auth0Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def management_audience(self) -> str:
        return self.tenant.management_audience

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v2"

    # --- control surface ---------------------------------------------------------------------

    def seed_client(self, spec: dict[str, Any]) -> Client:
        """A client from a spec: ``client_id``/``client_secret`` may be given, ``grants`` is a
        list of ``{audience, scope}``; the rest is a ``POST /clients`` body (inline credentials
        allowed)."""
        spec = dict(spec)
        grants = spec.pop("grants", [])
        client = self.tenant.create_client(spec, client_id=spec.pop("client_id", None),
                                           client_secret=spec.pop("client_secret", None))
        for grant in grants:
            self.seed_grant(client.client_id, grant["audience"], grant.get("scope", []))
        return client

    def seed_grant(self, client_id: str, audience: str, scope: list[str]) -> Grant:
        return self.tenant.create_grant({"client_id": client_id, "audience": audience,
                                         "scope": list(scope)})

    def snapshot(self) -> dict[str, Any]:
        return self.tenant.snapshot()

    def configure(self, **changes: Any) -> None:
        """Run-time switches (see ``EmulatorConfig.update``); a changed rate limit starts with
        a full bucket, changed fault rates re-seed the fault RNG."""
        before = self.config.to_dict()
        self.config.update(changes)
        after = self.config.to_dict()
        if before["faults"] != after["faults"]:
            self.faults.set_rates(self.config.faults)
        if any(before[key] != after[key] for key in ("management_rate", "oauth_rate")):
            self._reset_buckets()

    def management_token(self, scopes: list[str] | None = None) -> str:
        """A Management API token minted directly (no request counted)."""
        granted = self.config.management.scopes if scopes is None else scopes
        issued = self.issuer.issue(self.config.management.client_id, self.management_audience,
                                   list(granted), self.config.management_token_expires_in)
        return str(issued["access_token"])

    def reset_tenant(self) -> None:
        """Back to the seeded tenant of the configuration (clients and grants made anew)."""
        self.tenant = Tenant(self.config, self.clock, self.domain)
        self._seed()

    def _seed(self) -> None:
        app = self.config.management
        self.seed_client({"client_id": app.client_id, "client_secret": app.client_secret,
                          "name": app.name, "grants": [{"audience": self.management_audience,
                                                        "scope": app.scopes}]})
        for spec in self.config.clients:
            self.seed_client(spec)
        for grant in self.config.grants:
            self.seed_grant(grant["client_id"], grant["audience"], grant.get("scope", []))
        generate = self.config.generate_clients
        if generate:
            control.generate_clients(self, int(generate.get("count", 0)),
                                     str(generate.get("name_prefix", "app-")))

    def _reset_buckets(self) -> None:
        self._buckets = {
            kind: TokenBucket(limit, self.clock) if limit is not None else None
            for kind, limit in (("mgmt", self.config.management_rate),
                                ("oauth", self.config.oauth_rate))}

    # --- dispatch ----------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response | object:
        if request.path.startswith("/__emulator/"):
            return control.handle(self, request)
        if request.path == "/.well-known/jwks.json" and request.method == "GET":
            return Response(200, self.issuer.jwks())
        if request.method == "POST" and request.path in ("/oauth/token", "/oauth/par"):
            return self._guarded("oauth", request.path, request, self._oauth)
        for route, pattern in _MGMT:
            match = pattern.match(request.path)
            if match and route.method == request.method:
                def work(req: Request, route: Any = route, path: Any = match) -> Response:
                    return self._management(route, path.groupdict(), req)
                return self._guarded("mgmt", route.template, request, work)
        self.counters.answered(f"{request.method} (unknown)", 404)
        return Response(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})

    def _guarded(self, kind: str, template: str, request: Request,
                 work: Callable[[Request], Response]) -> Response | object:
        route = f"{request.method} {template}"
        bucket = self._buckets.get(kind)
        headers: dict[str, str] = {}
        if bucket is not None:
            decision = bucket.take()
            headers = decision.headers(self.config.retry_after)
            if not decision.allowed:
                self.counters.answered(route, 429)
                return Response(429, dict(TOO_MANY_REQUESTS), headers)
        under_load = bucket is not None and bucket.fill_ratio() < 0.5
        fault = self.faults.decide(request.method, template, oauth=kind == "oauth",
                                   under_load=under_load)
        for fault_kind in fault.kinds:
            self.counters.fault(fault_kind)
        if fault.latency:
            self.faults.sleep(fault.latency)
        if fault.status == 429:
            self.counters.answered(route, 429)
            if self.config.retry_after:
                headers["retry-after"] = str(fault.retry_after)
            return Response(429, dict(TOO_MANY_REQUESTS), headers)
        if fault.status is not None:
            self.counters.answered(route, fault.status)
            return Response(fault.status, _fault_body(fault.status), headers)
        response = work(request)
        response.headers.update(headers)
        if fault.lost:
            self.counters.answered(route, "lost")
            return LOST
        self.counters.answered(route, response.status)
        return response

    def _oauth(self, request: Request) -> Response:
        if request.path == "/oauth/token":
            return oauth.token(self.tenant, self.issuer, request)
        return oauth.par(self.tenant, request)

    def _management(self, route: management.Route, path: dict[str, str],
                    request: Request) -> Response:
        try:
            claims = self.issuer.verify(request.headers.get("authorization"),
                                        self.management_audience)
            granted = set(str(claims.get("scope", "")).split())
            management.required_scopes(route, granted)
            return route.handler(self.tenant, request, granted, path)
        except ApiError as error:
            return Response(error.status, error.body())


def _fault_body(status: int) -> dict[str, Any]:
    if status == 409:
        return {"statusCode": 409, "error": "Conflict",
                "message": "The request could not be completed due to a conflict; retry it",
                "errorCode": "conflict"}
    return ApiError(status, "Injected fault: the server could not answer").body()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls
    server_version = "auth0-emulator"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.emulator._opened(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.emulator._closed(self.connection)  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):  # the connection was cut (``halt``)
            super().finish()

    def _serve(self) -> None:
        emulator: Auth0Emulator = self.server.emulator  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self._write(Response(413, ApiError(413, "Payload too large").body()))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(method=self.command, path=parts.path,
                          query=parse_qs(parts.query, keep_blank_values=True),
                          headers={k.lower(): v for k, v in self.headers.items()}, body=body)
        try:
            outcome = emulator.dispatch(request)
        except Exception as error:  # a bug in the emulator: say so, never hang the client
            outcome = Response(500, {"statusCode": 500, "error": "Internal Server Error",
                                     "message": f"emulator bug: {error!r}"})
        if outcome is LOST:
            self.close_connection = True
            return
        assert isinstance(outcome, Response)
        self._write(outcome)

    def _write(self, response: Response) -> None:
        payload = response.encoded()
        self.send_response(response.status)
        if response.body is not None:
            self.send_header("content-type", "application/json; charset=utf-8")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve
