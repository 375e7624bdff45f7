"""TEST-ONLY webhook receiver: a real ``http.server`` on 127.0.0.1 in a thread, and the signature
check a receiver makes, written here from the README's description (hmac and hashlib only).

``Receiver`` records every request it is sent (headers and body) and answers 204. ``down()``
closes its socket (nothing listens: a connection is refused), ``up()`` listens again on the
same port. ``during`` (set by a test) runs inside the request's handling, before the answer: a
test SIGKILLs the daemon there, mid-delivery, after the receiver got the body and before the
daemon got its 2xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Delivery", "Receiver", "verify"]


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def event_id(self) -> str:
        return self.headers["orchestrator-event-id"]


def verify(secret: str, headers: dict[str, str], body: bytes) -> int:
    """The signature check of the README: ``t=<ts>,v1=<hex>`` with v1 = HMAC-SHA256(secret,
    f"{t}." + body). Returns ``t``; AssertionError when it does not hold."""
    parts = dict(item.split("=", 1) for item in headers["orchestrator-signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"]), "the signature does not hold"
    return int(parts["t"])


class Receiver:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.during: Callable[[Delivery], None] = lambda _delivery: None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                delivery = Delivery({k.lower(): v for k, v in self.headers.items()},
                                    self.rfile.read(length))
                with receiver._lock:
                    receiver.deliveries.append(delivery)
                receiver.during(delivery)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def close(self) -> None:
        self.down()
