"""Requests and answers as the route handlers see them, free of ``http.server``.

``Request.params`` reads a form or a JSON body the way Auth0's authentication API does (both
are accepted at ``/oauth/token``); JSON ``null`` values count as absent (the official SDK sends
``"organization": null``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.peers.auth0.errors import ApiError

__all__ = ["LOST", "Request", "Response", "json_response"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        """The JSON body of a Management API call (400 ``invalid_body`` when it is not)."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError as error:
            raise ApiError(400, f"Invalid request payload JSON format: {error}",
                           "invalid_body") from error

    def params(self) -> dict[str, str]:
        """Form or JSON parameters of an authentication API call."""
        kind = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                data = json.loads(self.body or b"{}")
            except ValueError:
                return {}
            if not isinstance(data, dict):
                return {}
            return {str(key): value if isinstance(value, str) else json.dumps(value)
                    for key, value in data.items() if value is not None}
        parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[-1] for key, values in parsed.items()}


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()


def json_response(status: int, body: Any) -> Response:
    return Response(status, body)


class _Lost:
    """The work was done; the answer is never written (the connection is closed)."""

    def __repr__(self) -> str:
        return "LOST"


LOST = _Lost()
