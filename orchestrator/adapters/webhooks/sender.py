"""Signed webhook deliveries over httpx, as Stripe signs them.

Each POST carries the body (JSON), ``Orchestrator-Event-Id`` (the notice's id, also the body's
``id``: what a receiver de-duplicates by), ``Orchestrator-Event-Type`` and
``Orchestrator-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is
``HMAC-SHA256(secret, f"{t}.".encode() + body)``. ``t`` is the daemon's clock at the attempt,
so a receiver can refuse an old delivery replayed (compare ``t`` with its own clock, allowing a
few minutes) and the signature changes on each attempt; the body does not. Redirects are not
followed (a redirect would send the signed body elsewhere): a 3xx is a failure, as any answer
outside 2xx is.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

import httpx

from orchestrator.app.notifications import DeliveryFailed, Pending, Webhook

__all__ = ["EVENT_ID_HEADER", "EVENT_TYPE_HEADER", "SIGNATURE_HEADER", "HttpSender", "sign"]

SIGNATURE_HEADER = "Orchestrator-Signature"
EVENT_ID_HEADER = "Orchestrator-Event-Id"
EVENT_TYPE_HEADER = "Orchestrator-Event-Type"
USER_AGENT = "credential-orchestrator-webhooks/1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


class HttpSender:
    """POSTs each delivery with one httpx client (connections are kept alive)."""

    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(transport=transport, follow_redirects=False,
                                    headers={"User-Agent": USER_AGENT})

    def send(self, hook: Webhook, secret: str, row: Pending, at: datetime) -> None:
        body = row.body.encode()
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: row.notice_id,
                   EVENT_TYPE_HEADER: row.kind,
                   SIGNATURE_HEADER: sign(secret, int(at.timestamp()), body)}
        try:
            answer = self._client.post(hook.url, content=body, headers=headers,
                                       timeout=hook.timeout.total_seconds())
        except httpx.TimeoutException:
            raise DeliveryFailed(f"no answer from {hook.url} within "
                                 f"{hook.timeout.total_seconds():g}s") from None
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{hook.url}: {type(exc).__name__}: {exc}") from None
        if not answer.is_success:
            raise DeliveryFailed(f"{hook.url} answered HTTP {answer.status_code}")

    def close(self) -> None:
        self._client.close()
