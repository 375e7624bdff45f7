"""The two error shapes Auth0 answers with.

- ``ApiError``: the Management API envelope ``{"statusCode", "error", "message", "errorCode"?}``
  (auth0-credentials.md §2). Rule errors (limits, duplicates) often carry no ``errorCode``
  (identity-providers.md §1), so it is left out unless given.
- ``OAuthError``: the authentication API's ``{"error", "error_description"}`` (RFC 6749 §5.2):
  401 ``invalid_client`` when client authentication fails, 403 ``access_denied`` after it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

__all__ = ["ApiError", "OAuthError", "bad_request", "not_found"]


class ApiError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "statusCode": self.status,
            "error": HTTPStatus(self.status).phrase,
            "message": self.message,
        }
        if self.error_code is not None:
            body["errorCode"] = self.error_code
        return body


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def bad_request(message: str, error_code: str | None = None) -> ApiError:
    return ApiError(400, message, error_code)


def not_found(message: str, error_code: str | None = None) -> ApiError:
    return ApiError(404, message, error_code)
