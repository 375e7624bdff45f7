"""The test of a new credential: a real request to the provider, made the way the app will.

* private_key_jwt: a client_credentials request at the token endpoint with a client assertion
  signed by the new key (``aud`` = the issuer, times from the adapter's wall clock: the provider
  checks them against its own);
* mtls: a client_credentials request over a TLS connection presenting the new certificate (at
  the mTLS token endpoint alias when there is one), for self-signed and CA-issued alike;
* jar: a pushed authorization request (RFC 9126) whose request object is signed by the new key:
  201 means the provider verified it; without a PAR endpoint nothing can test it
  (``TestSkipped``). The request itself must authenticate as the client does (``ClientAuth``).

Answers (RFC 6749 section 5.2): 200 authenticated; 401 or ``invalid_client`` refused; 403,
``unauthorized_client``, ``invalid_grant`` or ``access_denied`` come after authentication, so the
credential works even for a client without the client_credentials grant. Anything else proves
nothing and is an error.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from events.state import Credential
from orchestrator.adapters.crypto import sign_client_assertion
from orchestrator.adapters.providers.oidc.discovery import Endpoints
from orchestrator.adapters.providers.oidc.http import Http, error_of
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import TestSkipped
from orchestrator.domain.vocabulary import DEFAULT_ALGORITHM

__all__ = ["AFTER_AUTHENTICATION", "ASSERTION_TYPE", "ClientAuth", "TokenTest"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AFTER_AUTHENTICATION = frozenset({"unauthorized_client", "invalid_grant", "access_denied"})
LIFETIME = 60  # seconds: a client assertion or request object is used at once


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """How a request authenticates as the client: form fields (client_id, an assertion or a
    secret), HTTP basic credentials, or a certificate and its key on the TLS connection."""

    form: dict[str, str] = field(default_factory=dict, repr=False)
    basic: tuple[str, str] | None = field(default=None, repr=False)
    certificate: tuple[str, bytes] | None = field(default=None, repr=False)
    by: str = ""  # what authenticates, for messages: "credential cred_…", "the client secret"


class TokenTest:
    def __init__(self, http: Http, wall_clock: Callable[[], float]) -> None:
        self._http = http
        self._wall_clock = wall_clock

    @property
    def provider(self) -> str:
        return self._http.provider

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall_clock(), UTC)

    def assertion(self, endpoints: Endpoints, client_id: str, cred: Credential,
                  private_key_der: bytes) -> ClientAuth:
        token = sign_client_assertion(
            private_key_der, alg=cred.alg or DEFAULT_ALGORITHM, kid=cred.kid, client_id=client_id,
            audience=endpoints.issuer, now=self.now(), lifetime_seconds=LIFETIME)
        return ClientAuth(form={"client_assertion_type": ASSERTION_TYPE,
                                "client_assertion": token}, by=f"credential {cred.id}")

    def private_key_jwt(self, endpoints: Endpoints, client_id: str, cred: Credential,
                        private_key_der: bytes) -> None:
        auth = self.assertion(endpoints, client_id, cred, private_key_der)
        answer = self._http.request(
            "POST", endpoints.token, what="token request (the test)",
            data={"grant_type": "client_credentials", "client_id": client_id, **auth.form})
        self._token_verdict(answer, cred)

    def mtls(self, endpoints: Endpoints, client_id: str, cred: Credential,
             private_key_der: bytes) -> None:
        with self._http.with_certificate(cred.certificate_pem or "", private_key_der) as client:
            answer = self._http.request(
                "POST", endpoints.token_for(mtls=True), what="token request over mTLS (the test)",
                client=client, data={"grant_type": "client_credentials", "client_id": client_id})
        self._token_verdict(answer, cred)

    def jar(self, endpoints: Endpoints, record: dict[str, Any], cred: Credential,
            private_key_der: bytes, auth: ClientAuth) -> None:
        client_id = str(record.get("client_id"))
        par = endpoints.par_for(mtls=auth.certificate is not None)
        if par is None:
            raise TestSkipped(f"identity provider {self.provider!r} offers no pushed "
                              "authorization request endpoint, where a request object could "
                              "be verified without a user")
        redirects, response_types = record.get("redirect_uris"), record.get("response_types")
        if not redirects or not response_types:
            raise TestSkipped(f"client {client_id!r} has no redirect_uris or response_types: "
                              "no authorization request can be made for it")
        now = int(self.now().timestamp())
        claims = {"iss": client_id, "aud": endpoints.issuer, "client_id": client_id,
                  "response_type": str(response_types[0]), "redirect_uri": str(redirects[0]),
                  "scope": "openid", "state": uuid.uuid4().hex, "nonce": uuid.uuid4().hex,
                  "iat": now, "nbf": now, "exp": now + LIFETIME, "jti": uuid.uuid4().hex}
        key = serialization.load_der_private_key(private_key_der, password=None)
        request = jwt.encode(claims, key, algorithm=cred.alg or DEFAULT_ALGORITHM,  # type: ignore[arg-type]
                             headers={"kid": cred.kid})
        data = {"client_id": client_id, **auth.form, "request": request}
        what = "pushed authorization request (the test)"
        if auth.certificate is not None:
            with self._http.with_certificate(*auth.certificate) as client:
                answer = self._http.request("POST", par, what=what, client=client, data=data)
        else:
            answer = self._http.request("POST", par, what=what, data=data,
                                        auth=httpx.BasicAuth(*auth.basic) if auth.basic else None)
        if answer.status_code == 201:
            return
        error = _error_code(answer)
        if error == "invalid_request_object":
            raise ProviderError(f"identity provider {self.provider!r} refused the request object "
                                f"signed by {cred.id}: {error_of(answer)}")
        if answer.status_code == 401 or error == "invalid_client":
            raise ProviderError(
                f"identity provider {self.provider!r} refused the client authentication of the "
                f"pushed authorization request ({auth.by}): {error_of(answer)}; the request "
                f"object of {cred.id} could not be tested")
        raise ProviderError(f"identity provider {self.provider!r}: {what}: {error_of(answer)}; "
                            f"the request object of {cred.id} was not shown to be accepted")

    def _token_verdict(self, answer: httpx.Response, cred: Credential) -> None:
        if answer.status_code == 200:
            return
        error = _error_code(answer)
        if answer.status_code == 401 or error == "invalid_client":
            raise ProviderError(f"identity provider {self.provider!r} refused {cred.id} at its "
                                f"token endpoint: {error_of(answer)}")
        if answer.status_code == 403 or error in AFTER_AUTHENTICATION:
            return  # authenticated, then not allowed: the credential works
        raise ProviderError(f"identity provider {self.provider!r}: token request with {cred.id}: "
                            f"{error_of(answer)}; it was not shown to authenticate")


def _error_code(answer: httpx.Response) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None
