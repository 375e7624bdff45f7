"""HTTPS to one OpenID provider: every transport failure becomes ``ProviderUnavailable``.

A connection refused or reset, a timeout, a TLS failure, a 5xx, a 429 and an answer that is not
the JSON object it should be (or is nested beyond the parser, or is larger than ``MAX_ANSWER``,
which is never read further) are all ``ProviderUnavailable`` (the call may or may not have taken
effect; the rotation retries it with backoff). Nothing from httpx escapes. A request that cannot
be sent because a header value is not HTTP (a token with a space, a line break or a non-ASCII
character) is a ``ProviderError`` that never quotes the header: httpx's own text would.

The server's certificate is verified against ``ca_file`` when given, else the system's trust
store. A client certificate for mTLS is given to a TLS context of its own: Python's ``ssl``
loads a certificate and key only from files, so they are written to a private temporary folder
(0700, files 0600), loaded, and deleted before any request is made.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from orchestrator.adapters.providers.bounded import read_bounded
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import ProviderUnavailable

__all__ = ["TIMEOUT", "Http", "error_of", "json_object"]

TIMEOUT = 30.0  # seconds: connect, read and write alike (a safety net, not a schedule)
MAX_ANSWER = 4 * 2**20  # bytes: a discovery document or client record is far smaller; never read
UNSENDABLE = ("the request cannot be sent: a token in its Authorization header holds a "
              "character HTTP does not allow (a space, a line break or a non-ASCII character); "
              "check the token's file or variable")


class Http:
    """One keep-alive client (made on first use) and short-lived ones for client certificates.
    ``transport`` replaces the network (tests); it then carries mTLS requests too."""

    def __init__(self, provider: str, *, ca_file: Path | None = None,
                 transport: httpx.BaseTransport | None = None, timeout: float = TIMEOUT) -> None:
        self.provider = provider
        self._ca_file = ca_file
        self._transport = transport
        self._timeout = timeout
        self._client: httpx.Client | None = None

    def request(self, method: str, url: str, *, what: str, client: httpx.Client | None = None,
                **options: Any) -> httpx.Response:
        """The answer to one request; 5xx, 429 and transport failures raise
        ``ProviderUnavailable`` naming ``what`` was asked."""
        try:
            with (client or self._shared()).stream(method, url, **options) as streamed:
                answer = _bounded(streamed)
        except (httpx.LocalProtocolError, UnicodeError):  # its text would quote the header
            raise ProviderError(f"identity provider {self.provider!r}: {what}: {UNSENDABLE}") from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError) as exc:
            raise ProviderUnavailable(
                f"identity provider {self.provider!r}: {what}: {_describe(exc)} ({url})") from None
        if answer is None:
            raise ProviderUnavailable(f"identity provider {self.provider!r}: {what}: an answer "
                                      f"larger than {MAX_ANSWER // 2**20} MiB ({url})")
        if answer.status_code >= 500 or answer.status_code == 429:
            raise ProviderUnavailable(
                f"identity provider {self.provider!r}: {what}: answered {answer.status_code} "
                f"{answer.reason_phrase}".rstrip() + (
                    f", retry after {answer.headers['retry-after']} s"
                    if "retry-after" in answer.headers else ""))
        return answer

    @contextmanager
    def with_certificate(self, certificate_pem: str, private_key_der: bytes) -> Iterator[httpx.Client]:
        """A client presenting ``certificate_pem`` (its key: ``private_key_der``) on its TLS
        connections, closed on exit."""
        if self._transport is not None:
            client = httpx.Client(transport=self._transport, timeout=self._timeout)
        else:
            context = self._context()
            _load_client_certificate(context, certificate_pem, private_key_der)
            client = httpx.Client(verify=context, timeout=self._timeout)
        with client:
            yield client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _shared(self) -> httpx.Client:
        if self._client is None:
            self._client = (httpx.Client(transport=self._transport, timeout=self._timeout)
                            if self._transport is not None
                            else httpx.Client(verify=self._context(), timeout=self._timeout))
        return self._client

    def _context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(
                cafile=str(self._ca_file) if self._ca_file is not None else None)
        except (OSError, ValueError) as exc:
            raise ProviderUnavailable(f"identity provider {self.provider!r}: CA file "
                                      f"{self._ca_file}: {_describe(exc)}") from None


def json_object(answer: httpx.Response, provider: str, what: str) -> dict[str, Any]:
    """The answer's JSON object; anything else is a malformed answer (``ProviderUnavailable``)."""
    try:
        body = answer.json()
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        body = None
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"identity provider {provider!r}: {what}: answered "
                                  f"{answer.status_code} without a JSON object")
    return body


def error_of(answer: httpx.Response) -> str:
    """``answered 400 (error: description)``: an OAuth error answer in one short phrase."""
    try:
        body = answer.json()
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict) and body.get("error"):
        text = f"{body['error']}: {body.get('error_description') or ''}".rstrip(": ")
    else:
        text = "no error code"
    return f"answered {answer.status_code} ({text[:300]})"


def _bounded(streamed: httpx.Response) -> httpx.Response | None:
    """The answer with its body read, no further than ``MAX_ANSWER`` bytes (None: larger)."""
    content = read_bounded(streamed, MAX_ANSWER)
    if content is None:
        return None
    headers = [(k, v) for k, v in streamed.headers.multi_items()  # the body is decoded now
               if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    return httpx.Response(streamed.status_code, headers=headers, content=content,
                          request=streamed.request)


def _load_client_certificate(context: ssl.SSLContext, certificate_pem: str,
                             private_key_der: bytes) -> None:
    try:
        key = serialization.load_der_private_key(private_key_der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ProviderError("the client certificate's private key cannot be loaded") from None
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with tempfile.TemporaryDirectory(prefix="orchestrator-mtls-") as folder:  # 0700
        cert_file, key_file = Path(folder) / "client.pem", Path(folder) / "client.key"
        for path, data in ((cert_file, certificate_pem.encode()), (key_file, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        try:
            context.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ProviderError(f"the client certificate cannot be used for TLS: "
                                f"{_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name
