"""The daemon's HTTP endpoints (``daemon --listen``): Prometheus metrics and health.

``GET /metrics``  the registry in Prometheus' text format (``prometheus_client``'s WSGI app);
``GET /healthz``  200 while the process serves (it is alive);
``GET /readyz``   200 when ``ready()`` says so, else 503; a JSON body either way, naming the role
                  (``leader``, ``standby`` or ``starting``) and each check.

A small threaded WSGI server (the standard library's) in a background thread: a slow scrape
never delays a tick, and a tick never delays a scrape. Requests are not logged.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

__all__ = ["HealthServer"]

Ready = Callable[[], tuple[bool, dict[str, Any]]]  # (ready, what the body says)
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class HealthServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, ready: Ready) -> None:
        self.host, self.port = host, port
        self._metrics = make_wsgi_app(registry)
        self._ready = ready
        self._server: _Server | None = None

    def start(self) -> None:
        """Listen and serve in a background thread; OSError when the address cannot be had."""
        kind = _Server6 if ":" in self.host else _Server
        self._server = make_server(self.host, self.port, self._app, server_class=kind,
                                   handler_class=_Quiet)
        self.port = self._server.server_address[1]  # port 0: the one the system chose
        threading.Thread(target=self._server.serve_forever, name="health-server",
                         daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _reply(start_response, "200 OK", {"status": "alive"})
        if path == "/readyz":
            try:
                ready, body = self._ready()
            except Exception as exc:  # a check that breaks says so; it never kills the thread
                ready, body = False, {"error": str(exc) or type(exc).__name__}
            body = {"status": "ready" if ready else "not ready", **body}
            return _reply(start_response, "200 OK" if ready else "503 Service Unavailable",
                          body)
        return _reply(start_response, "404 Not Found",
                      {"error": f"no such endpoint {path!r}: /metrics, /healthz, /readyz"})


def _reply(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, default=str).encode() + b"\n"
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]
