"""The HTTP session to one Auth0 tenant: single requests, paced, with every failure mapped.

* ``management(method, path, ...)``: one Management API v2 request with a bearer token. The
  token comes from the client credentials grant (``audience=https://{domain}/api/v2/``), is
  cached (per process, tenant and application) until shortly before it expires, and is fetched
  again once when the API answers 401.
* ``authentication(path, data, headers)``: one request to ``/oauth/token`` or ``/oauth/par``.

Every request first takes a token from the tenant's pacer (``pacer.tenant_pacer``) and feeds
the answer's ``x-ratelimit-*`` headers back to it. A 429 holds the pacer (``Retry-After`` when
present, else ``x-ratelimit-reset``) and raises ``Transient``, as do 408, 409, 5xx, any httpx
error (connection, timeout, TLS, protocol: a lost answer), a malformed JSON answer (or one nested
beyond the parser) and an answer larger than ``MAX_ANSWER`` (never read further): nothing from
httpx leaves this module. Other answers are returned as ``Reply`` for the caller to judge.
No request body, header or token is ever put in a message or a log line.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import json
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from orchestrator.adapters.providers.auth0.pacer import Pacer
from orchestrator.adapters.providers.auth0.retries import Transient
from orchestrator.adapters.providers.bounded import read_bounded
from orchestrator.domain.errors import ProviderError

__all__ = ["Auth0Http", "Reply"]

log = structlog.get_logger("orchestrator.auth0")

TOKEN_MARGIN = 60.0  # seconds before expiry when a cached Management API token is replaced
DEFAULT_HOLD = 1.0  # a 429 naming no time
TIMEOUT = httpx.Timeout(20.0, connect=5.0)
MAX_ANSWER = 16 * 2**20  # bytes: a page of 100 clients is far smaller; a bigger answer is unread


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def message(self) -> str:
        """Auth0's own words: the Management API's ``message``, or the authentication API's
        ``error_description`` (at most 300 characters)."""
        body = self.body if isinstance(self.body, dict) else {}
        text = body.get("message") or body.get("error_description") or body.get("error") or ""
        return str(text)[:300]

    @property
    def error(self) -> str | None:
        """The error code: the Management API's ``errorCode`` (often absent), or the
        authentication API's ``error`` (``invalid_client``, ``access_denied``, ...)."""
        body = self.body if isinstance(self.body, dict) else {}
        code = body.get("errorCode") if "statusCode" in body else body.get("error")
        return str(code) if code else None


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float


_TOKENS: dict[tuple[str, str, str, Callable[[], float]], _Token] = {}
_TOKENS_LOCK = threading.Lock()


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()  # one per process: httpx would build one per client


class Auth0Http:
    def __init__(self, *, domain: str, base_url: str, client_id: str, client_secret: str,
                 management_pacer: Pacer, authentication_pacer: Pacer,
                 transport: httpx.BaseTransport | None, wall_clock: Callable[[], float]) -> None:
        self.domain = domain
        self.base_url = base_url.rstrip("/")
        self.management_audience = f"https://{domain}/api/v2/"
        self._client_id = client_id
        self._client_secret = client_secret
        self._pacers = {"management": management_pacer, "authentication": authentication_pacer}
        self._clock = wall_clock
        secret_digest = hashlib.sha256(client_secret.encode()).hexdigest()
        self._token_key = (self.base_url, client_id, secret_digest, wall_clock)
        self._token_lock = threading.Lock()
        self._http = httpx.Client(base_url=self.base_url, transport=transport, timeout=TIMEOUT,
                                  verify=_tls(), follow_redirects=False,
                                  headers={"user-agent": "orchestrator-auth0"})

    def close(self) -> None:
        self._http.close()

    # --- the two APIs ------------------------------------------------------------------------

    def management(self, method: str, path: str, *, json_body: Any = None,
                   params: Mapping[str, str | int] | None = None) -> Reply:
        """One Management API request (``path`` below ``/api/v2``)."""
        token = self._token()
        reply = self._send("management", method, f"/api/v2{path}", json_body=json_body,
                           params=params, headers={"authorization": f"Bearer {token}"})
        if reply.status == 401:
            self._forget(token)
            reply = self._send("management", method, f"/api/v2{path}", json_body=json_body,
                               params=params, headers={"authorization": f"Bearer {self._token()}"})
            if reply.status == 401:
                raise ProviderError(f"Auth0 {self.domain}: the Management API refused the token of "
                                    f"application {self._client_id} ({reply.message})")
        if reply.status == 403:
            raise ProviderError(f"Auth0 {self.domain}: {method} /api/v2{path} forbidden "
                                f"({reply.message}): grant application {self._client_id} that "
                                "scope on the Management API")
        return reply

    def authentication(self, path: str, data: Mapping[str, str],
                       headers: Mapping[str, str] | None = None) -> Reply:
        """One authentication API request (``/oauth/token``, ``/oauth/par``), form-encoded."""
        return self._send("authentication", "POST", path, data=data, headers=headers)

    # --- the Management API token --------------------------------------------------------------

    def _token(self) -> str:
        with self._token_lock:
            with _TOKENS_LOCK:
                cached = _TOKENS.get(self._token_key)
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.value
            fetched = self._fetch_token()
            with _TOKENS_LOCK:
                _TOKENS[self._token_key] = fetched
            return fetched.value

    def _forget(self, token: str) -> None:
        with _TOKENS_LOCK:
            cached = _TOKENS.get(self._token_key)
            if cached is not None and cached.value == token:
                del _TOKENS[self._token_key]

    def _fetch_token(self) -> _Token:
        reply = self.authentication("/oauth/token", {
            "grant_type": "client_credentials", "client_id": self._client_id,
            "client_secret": self._client_secret, "audience": self.management_audience})
        if reply.status != 200:
            raise ProviderError(
                f"Auth0 {self.domain}: the Management API token was refused to application "
                f"{self._client_id} ({reply.status} {reply.error or ''} {reply.message}): check "
                f"clientSecret and the application's grant on {self.management_audience}")
        body = reply.body if isinstance(reply.body, dict) else {}
        value, expires_in = body.get("access_token"), body.get("expires_in", 86400)
        if not isinstance(value, str) or not isinstance(expires_in, int | float):
            raise Transient("POST /oauth/token: malformed token answer")
        now = self._clock()
        margin = min(TOKEN_MARGIN, float(expires_in) / 10)
        log.info("auth0_token_fetched", domain=self.domain, client_id=self._client_id,
                 expires_in=expires_in)
        return _Token(value, now + float(expires_in) - margin)

    # --- one request ---------------------------------------------------------------------------

    def _send(self, api: str, method: str, path: str, *, json_body: Any = None,
              data: Mapping[str, str] | None = None,
              params: Mapping[str, str | int] | None = None,
              headers: Mapping[str, str] | None = None) -> Reply:
        pacer = self._pacers[api]
        pacer.acquire()
        where = f"{method} {path}"
        try:
            with self._http.stream(method, path, json=json_body, data=data, params=params,
                                   headers=headers) as response:
                content = read_bounded(response, MAX_ANSWER)
        except (httpx.LocalProtocolError, UnicodeError):  # its text would quote the header
            raise ProviderError(f"Auth0 {self.domain}: {where}: the request cannot be sent: a "
                                "header holds a character HTTP does not allow (the Management "
                                "API token the tenant issued?)") from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ssl.SSLError,
                OSError) as exc:
            raise Transient(f"{where}: {_transport_failure(exc)}") from None
        pacer.observe(response.headers)
        status = response.status_code
        if status == 429:
            wait = _retry_after(response.headers, self._clock())
            pacer.hold(wait if wait is not None else DEFAULT_HOLD)
            log.info("auth0_rate_limited", domain=self.domain, call=where, wait=wait)
            raise Transient(f"{where}: 429 rate limited", wait=wait or DEFAULT_HOLD)
        if content is None:
            raise Transient(f"{where}: {status} with an answer larger than "
                            f"{MAX_ANSWER // 2**20} MiB")
        body = _json(content)
        reply = Reply(status, body, response.headers)
        if status in (408, 409) or status >= 500:
            raise Transient(f"{where}: {status} {reply.message}".rstrip())
        if body is _MALFORMED:
            raise Transient(f"{where}: {status} with a malformed JSON answer")
        if 300 <= status < 400:
            raise ProviderError(f"Auth0 {self.domain}: {where} answered {status} (a redirect): "
                                "check baseUrl")
        return reply


_MALFORMED = object()


def _json(content: bytes) -> Any:
    if not content.strip():
        return None
    try:
        return json.loads(content)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return _MALFORMED


def _transport_failure(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection closed without an answer (the request may have taken effect)"
    if isinstance(exc, ssl.SSLError) or "[SSL" in str(exc):
        return "TLS failure"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    return type(exc).__name__


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait: ``Retry-After`` (seconds or an HTTP date) when present, else until
    ``x-ratelimit-reset`` (epoch seconds)."""
    text = headers.get("retry-after")
    if text:
        try:
            return max(float(text), 0.0)
        except ValueError:
            try:
                return max(email.utils.parsedate_to_datetime(text).timestamp() - now, 0.0)
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            return max(float(reset) - now, 0.0)
        except ValueError:
            return None
    return None
