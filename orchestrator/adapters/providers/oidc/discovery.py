"""OpenID Provider discovery: the endpoints the adapter uses, read from
``{issuer}/.well-known/openid-configuration`` and kept for ``MAX_AGE``.

The document must name the configured issuer exactly (OpenID Connect Discovery 1.0 section 4.3:
anything else could be an impostor's document) and a token endpoint. The registration endpoint
(RFC 7591), the pushed authorization request endpoint (RFC 9126: how JAR keys are tested) and
the mTLS endpoint aliases (RFC 8705 section 5: where client certificates are presented, when
the provider serves mTLS on other hosts) are optional.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.adapters.providers.oidc.http import Http, json_object
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import ProviderUnavailable

__all__ = ["MAX_AGE", "Discovery", "Endpoints"]

MAX_AGE = 3600.0  # seconds a discovery document is used before it is read again
WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class Endpoints:
    issuer: str
    token: str
    registration: str | None = None
    par: str | None = None
    mtls_token: str | None = None  # mtls_endpoint_aliases.token_endpoint
    mtls_par: str | None = None  # mtls_endpoint_aliases.pushed_authorization_request_endpoint

    def token_for(self, mtls: bool) -> str:
        return (self.mtls_token or self.token) if mtls else self.token

    def par_for(self, mtls: bool) -> str | None:
        return (self.mtls_par or self.par) if mtls else self.par


class Discovery:
    def __init__(self, http: Http, issuer: str, wall_clock: Callable[[], float]) -> None:
        self._http = http
        self.issuer = issuer
        self._wall_clock = wall_clock
        self._cached: tuple[float, Endpoints] | None = None

    def endpoints(self) -> Endpoints:
        now = self._wall_clock()
        if self._cached is not None and now - self._cached[0] < MAX_AGE:
            return self._cached[1]
        found = self._read()
        self._cached = (now, found)
        return found

    def cached(self) -> Endpoints | None:
        """The endpoints read last, however old; None before the first read."""
        return self._cached[1] if self._cached is not None else None

    def _read(self) -> Endpoints:
        url = self.issuer.rstrip("/") + WELL_KNOWN
        what = "discovery"
        answer = self._http.request("GET", url, what=what)
        if answer.status_code != 200:
            raise ProviderError(f"identity provider {self._http.provider!r}: {what}: {url} "
                                f"answered {answer.status_code}; is the issuer right?")
        document = json_object(answer, self._http.provider, what)
        if document.get("issuer") != self.issuer:
            raise ProviderError(
                f"identity provider {self._http.provider!r}: {url} names the issuer "
                f"{str(document.get('issuer'))[:200]!r}, not {self.issuer!r}: configure the "
                "issuer exactly as the provider spells it")
        aliases = document.get("mtls_endpoint_aliases")
        aliases = aliases if isinstance(aliases, dict) else {}
        return Endpoints(
            issuer=self.issuer,
            token=self._url(document, "token_endpoint", required=True) or "",
            registration=self._url(document, "registration_endpoint"),
            par=self._url(document, "pushed_authorization_request_endpoint"),
            mtls_token=self._url(aliases, "token_endpoint"),
            mtls_par=self._url(aliases, "pushed_authorization_request_endpoint"),
        )

    def _url(self, document: dict[str, Any], name: str, required: bool = False) -> str | None:
        value = document.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise ProviderUnavailable(f"identity provider {self._http.provider!r}: discovery: "
                                      f"{name} is {'missing' if value is None else 'not a URL'}")
        return value
