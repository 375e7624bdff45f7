"""A hostile identity provider for red-team tests: a local HTTP server (loopback, plain http,
which IdentityProvider resources allow only there) whose every answer the test chooses.

``HostileServer(routes)``: ``routes`` maps ``"METHOD /path"`` (no query) to an ``Answer``; any
other request gets 404 ``{}``. An ``Answer`` is a status and a body, or ``stream`` bytes
repeated until ``length`` bytes are sent (a huge answer the client should stop reading);
``sent`` counts the body bytes written before the client hung up. ``issuer`` is the base URL
and ``discovery()`` an OpenID discovery document naming its endpoints here.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Answer", "HostileServer", "nested_json"]


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    stream: bytes | None = None  # repeated up to ``length`` bytes
    length: int = 0
    content_type: str = "application/json"

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Answer:
        return cls(status, json.dumps(value).encode())


def nested_json(depth: int = 100_000) -> bytes:
    """A valid JSON text nested deeper than any parser's recursion limit."""
    return b"[" * depth + b"]" * depth


class HostileServer:
    def __init__(self, routes: dict[str, Answer] | None = None) -> None:
        self.routes: dict[str, Answer] = dict(routes or {})
        self.sent = 0
        self.requests: list[str] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.hostile = self  # type: ignore[attr-defined]
        self._server = server
        self.issuer = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "token_endpoint": f"{self.issuer}/token",
                "registration_endpoint": f"{self.issuer}/reg"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        hostile: HostileServer = self.server.hostile  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        key = f"{self.command} {self.path.split('?', 1)[0]}"
        hostile.requests.append(key)
        answer = hostile.routes.get(key, Answer(404, b"{}"))
        self.send_response(answer.status)
        self.send_header("content-type", answer.content_type)
        if answer.stream is None:
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            return
        self.send_header("content-length", str(answer.length))
        self.end_headers()
        try:
            while hostile.sent < answer.length:
                self.wfile.write(answer.stream)
                hostile.sent += len(answer.stream)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer
