"""The test of a new credential at Auth0: a real request to the tenant's authentication API.

* private_key_jwt: ``POST /oauth/token`` (client_credentials) with a client assertion signed by
  the new key: ``aud`` the tenant URL with its trailing slash, the key's ``kid`` and ``alg``, a
  fresh ``jti``, 60 s of lifetime, dated by the adapter's WALL clock (Auth0 checks it against
  its own; the orchestrator's ``at`` may be a test's virtual time).
* client secret: the same request with ``client_secret_post``.
* mtls: only through the customer edge (``mtlsEdge``): the certificate in the
  ``client-certificate`` header (URL-encoded PEM) with ``client-certificate-ca-verified``
  (SUCCESS for a CA-issued one, FAILED for a self-signed one); else ``TestSkipped``.
* jar: ``POST /oauth/par`` with a request object signed by the new key. The client must
  authenticate there with its current method: a private_key_jwt key of the app that the
  keystore holds, or the app's client secret; when the orchestrator holds neither, the test is
  skipped and says why.

Auth0 answers a refused client authentication with 401 (``invalid_client``, and a wrong secret
has been seen as ``access_denied``): refused. An error after authentication (403/400
``access_denied``, ``unauthorized_client``, ``invalid_grant``, ``invalid_scope``: the app has no
grant for the audience asked) means the credential authenticated, so an app without any grant
can still be tested. The audience asked is the Management API's unless one is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

from events.kinds import CredentialKind, Usage
from events.state import AppState, Credential
from orchestrator.adapters import crypto
from orchestrator.adapters.providers.auth0.client import Auth0Http, Reply
from orchestrator.adapters.providers.auth0.mapping import auth0_kid
from orchestrator.app.ports import Keystore
from orchestrator.app.service import secret_item_id
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import Proof, TestSkipped
from orchestrator.domain.vocabulary import DEFAULT_ALGORITHM, SECRET_USAGE

__all__ = ["ASSERTION_TYPE", "MTLS_UNTESTABLE", "TokenEndpoint"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MTLS_UNTESTABLE = "Auth0 tests mTLS only through the customer edge; set mtlsEdge"
AFTER_AUTHENTICATION = frozenset({"access_denied", "unauthorized_client", "invalid_grant",
                                  "invalid_scope"})
LIFETIME = 60  # seconds; Auth0 allows at most 300 between iat and exp

Fields = dict[str, str]


class TokenEndpoint:
    def __init__(self, http: Auth0Http, *, issuer: str, audience: str,
                 state_of: Callable[[str], AppState], keystore: Keystore,
                 wall_clock: Callable[[], float], mtls_edge: bool) -> None:
        self.http = http
        self.issuer = issuer  # https://{domain}/ : the aud of assertions and request objects
        self.audience = audience
        self._state_of = state_of
        self._keystore = keystore
        self._clock = wall_clock
        self.mtls_edge = mtls_edge

    def test(self, app: str, proof: Proof, at: datetime) -> str | None:
        """One attempt of the test (the provider retries it whole: a fresh jti each time).
        Auth0 does not say which credential matched: None when it authenticated."""
        if proof.usage == SECRET_USAGE:
            reply = self._token({"client_id": proof.client_id,
                                 "client_secret": proof.secret or ""})
            _judge(reply, f"client secret v{proof.secret_version} of {app!r}")
            return None
        cred = proof.credential
        if cred is None or proof.private_key_der is None:
            raise ProviderError("Auth0: the test needs the credential and its private key")
        if proof.usage == Usage.MTLS:
            self._mtls(cred, proof.client_id)
        elif proof.usage == Usage.JAR:
            self._par(app, proof, cred, at)
        else:
            reply = self._token(self._assertion(proof.private_key_der, cred, proof.client_id))
            _judge(reply, f"private_key_jwt credential {cred.id}")
        return None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _token(self, fields: Fields, headers: dict[str, str] | None = None) -> Reply:
        return self.http.authentication("/oauth/token", {
            "grant_type": "client_credentials", "audience": self.audience, **fields}, headers)

    def _assertion(self, key: bytes, cred: Credential, client_id: str) -> Fields:
        token = crypto.sign_client_assertion(
            key, alg=cred.alg or DEFAULT_ALGORITHM, kid=auth0_kid(cred), client_id=client_id,
            audience=self.issuer, now=self._now(), lifetime_seconds=LIFETIME)
        return {"client_id": client_id, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": token}

    def _mtls(self, cred: Credential, client_id: str) -> None:
        if not self.mtls_edge:
            raise TestSkipped(MTLS_UNTESTABLE)
        reply = self._token({"client_id": client_id}, _edge_headers(cred))
        _judge(reply, f"mtls credential {cred.id}")

    def _par(self, app: str, proof: Proof, cred: Credential, at: datetime) -> None:
        fields, headers = self._client_authentication(app, proof.client_id, at)
        request = crypto.sign_request_object(
            proof.private_key_der or b"", alg=cred.alg or DEFAULT_ALGORITHM, kid=auth0_kid(cred),
            client_id=proof.client_id, audience=self.issuer, now=self._now(),
            lifetime_seconds=LIFETIME, parameters={"response_type": "code", "scope": "openid"})
        reply = self.http.authentication("/oauth/par", {
            "client_id": proof.client_id, "request": request, **fields}, headers)
        what = f"jar credential {cred.id}"
        if reply.status in (200, 201):
            return
        if reply.status == 401:
            raise ProviderError(f"Auth0 refused the client authentication of {app!r} at the "
                                f"pushed authorization request ({_said(reply)}): {what} was "
                                "not tested")
        if reply.error == "invalid_request_object":
            raise ProviderError(f"Auth0 refused {what} ({_said(reply)})")
        raise ProviderError(f"Auth0 could not test {what}: {reply.status} ({_said(reply)})")

    def _client_authentication(self, app: str, client_id: str,
                               at: datetime) -> tuple[Fields, dict[str, str] | None]:
        """How the client authenticates at PAR, from what the orchestrator holds: its newest
        usable private_key_jwt key, else its client secret, else (with the edge) its newest
        usable mTLS certificate."""
        state = self._state_of(app)
        newest_first = sorted(state.credentials.values(), reverse=True,
                              key=lambda c: (c.activated_at or c.added_at, c.id))
        for other in newest_first:
            if other.usage == Usage.PRIVATE_KEY_JWT and other.usable(at):
                key = self._keystore.get(other.id)
                if key is not None:
                    return self._assertion(key, other, client_id), None
        if state.secret is not None:
            secret = self._keystore.get(secret_item_id(app, state.secret.version))
            if secret is not None:
                return {"client_secret": secret.decode()}, None
        if self.mtls_edge:
            for other in newest_first:
                if other.usage == Usage.MTLS and other.usable(at) and other.certificate_pem:
                    return {}, _edge_headers(other)
        raise TestSkipped(
            "Auth0 tests a jar key with a pushed authorization request, at which the client "
            f"must authenticate; the orchestrator holds no private_key_jwt key or client secret "
            f"of {app!r} to do so")


def _edge_headers(cred: Credential) -> dict[str, str]:
    verified = "SUCCESS" if cred.kind is CredentialKind.CERT_SUBJECT_DN else "FAILED"
    return {"client-certificate": quote(cred.certificate_pem or "", safe=""),
            "client-certificate-ca-verified": verified}


def _said(reply: Reply) -> str:
    return f"{reply.error}: {reply.message}" if reply.error else reply.message or "no reason"


def _judge(reply: Reply, what: str) -> None:
    """200: authenticated; 401: refused; 400/403 with an error after authentication:
    authenticated without a grant; anything else cannot be read either way."""
    if reply.status == 200:
        return
    if reply.status == 401:
        raise ProviderError(f"Auth0 refused {what} ({_said(reply)})")
    if reply.status in (400, 403) and reply.error in AFTER_AUTHENTICATION:
        return
    raise ProviderError(f"Auth0 could not test {what}: {reply.status} ({_said(reply)})")
