"""``OidcProvider``: the ``Provider``, ``Inventory`` and ``ClientRegistrar`` ports for one OpenID
provider with dynamic client registration and management (RFC 7591/7592).

**Register and activate.** In RFC 7592 there is no pool of uploaded-but-unused credentials: a
key in the record's ``jwks`` (or a subject DN) authenticates the moment the update is applied.
So the record holds exactly the credentials the log says are *active*, and:

* ``register`` changes nothing at the provider. It reads the record (proving the registration
  access token still works) and checks that attaching the credential would be allowed (one auth
  method, one subject DN per client: ``record``), so a refusal comes before anything changed;
  it returns the key id as the provider's id for a key (the provider knows keys by ``kid``) and
  None for a subject DN (the provider keeps no id of its own). A repeat is the same read.
* ``activate`` puts the credential into the record (GET, modify, PUT of the whole record);
  ``deactivate`` and ``remove`` take it out. Already present (or absent): nothing is sent.

This keeps the invariants at the provider too: the record never holds more keys of a usage than
the log has active (never more than 2), a new key authenticates only from its ``activate`` step,
and the old one leaves only when the rotator deactivates it, after its successor passed the test.

**Clients listed.** RFC 7592 has no listing of clients: ``clients()`` lists the clients this
provider holds a registration access token for (the ones bound to it by ``app register``), each
read with its token.

**Client secrets** are not supported: RFC 7592 cannot rotate a secret (a ``client_secret`` in an
update must equal the current one), so ``set_secret`` is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from events.kinds import CredentialKind, Usage
from events.state import AppState, Credential
from orchestrator.adapters.providers.oidc.discovery import Discovery, Endpoints
from orchestrator.adapters.providers.oidc.http import Http
from orchestrator.adapters.providers.oidc.record import (
    SELF_SIGNED,
    TLS_CLIENT_AUTH,
    attach,
    detach,
    matches,
    remote_client,
)
from orchestrator.adapters.providers.oidc.registration import Registrations, TokenRefused
from orchestrator.adapters.providers.oidc.token_test import ClientAuth, TokenTest
from orchestrator.app.ports import Keystore
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import (
    Capabilities,
    Proof,
    RemoteClient,
    TestSkipped,
)

__all__ = ["OIDC_USAGES", "OidcProvider"]

OIDC_USAGES = frozenset({Usage.PRIVATE_KEY_JWT, Usage.JAR, Usage.MTLS})
NO_SECRET = ("RFC 7592 cannot rotate a client secret (an update must send the current one "
             "back); use private_key_jwt or mTLS with this provider")
NEW_CLIENT = {"grant_types": ["client_credentials"], "response_types": [],
              "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []}}


class OidcProvider:
    def __init__(self, name: str, *, issuer: str, state_of: Callable[[str], AppState],
                 keystore: Keystore, initial_access_token: str | None = None,
                 ca_file: Path | None = None, transport: httpx.BaseTransport | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.issuer = issuer
        self._state_of = state_of
        self._keystore = keystore
        self._initial_access_token = initial_access_token
        self._wall_clock = wall_clock
        self._http = Http(name, ca_file=ca_file, transport=transport)
        self._discovery = Discovery(self._http, issuer, wall_clock)
        self.registrations = Registrations(name, self._http, self._discovery, keystore)
        self._test = TokenTest(self._http, wall_clock)

    def close(self) -> None:
        self._http.close()

    # --- what it is --------------------------------------------------------------------------

    def capabilities(self, app: str) -> Capabilities:
        """Keys and certificates, 2 per usage, no client secret; JAR testable only through
        PAR (when discovery cannot be read, the test will say so itself)."""
        try:
            endpoints: Endpoints | None = self._discovery.endpoints()
        except ProviderError:
            endpoints = self._discovery.cached()
        untestable = () if endpoints is None or endpoints.par is not None else (
            (Usage.JAR.value, "the provider offers no pushed authorization request endpoint"),)
        return Capabilities(usages=frozenset(u.value for u in OIDC_USAGES), per_slot=2,
                            per_client=None, secret_overlap=False, untestable=untestable,
                            expiry=False, shared_key_set=True,  # one jwks, no dates in it
                            keeps_detached=False)  # the record holds only what is active

    def metadata(self, app: str) -> dict[str, str]:
        endpoints = self._discovery.endpoints()
        facts = {"issuer": endpoints.issuer, "token_endpoint": endpoints.token,
                 "audience": endpoints.issuer, "client_id": self._state_of(app).provider_client_id}
        if endpoints.mtls_token and endpoints.mtls_token != endpoints.token:
            facts["mtls_token_endpoint"] = endpoints.mtls_token
        if endpoints.par:
            facts["pushed_authorization_request_endpoint"] = endpoints.par
        return facts

    # --- the record ----------------------------------------------------------------------------

    def register(self, app: str, credential: Credential) -> str | None:
        state, cred = self._credential(app, credential.id)
        record = self._managed(app, lambda: self.registrations.read(state.provider_client_id))
        attach(record, cred, state.credentials, self._now())  # refused here, before any change
        return None if cred.kind is CredentialKind.CERT_SUBJECT_DN else cred.kid

    def activate(self, app: str, credential_id: str) -> None:
        state, cred = self._credential(app, credential_id)
        self._managed(app, lambda: self.registrations.update(
            state.provider_client_id, lambda r: attach(r, cred, state.credentials, self._now())))

    def deactivate(self, app: str, credential_id: str) -> None:
        state, cred = self._credential(app, credential_id)
        self._managed(app, lambda: self.registrations.update(
            state.provider_client_id, lambda r: detach(r, cred, state.credentials)))

    def remove(self, app: str, credential_id: str) -> None:
        """The record holds only attached credentials: removing is detaching (absent: fine)."""
        state = self._state_of(app)
        if credential_id not in state.credentials:
            return
        self.deactivate(app, credential_id)

    def set_secret(self, app: str, version: int, secret: str,
                   previous_valid_until: datetime | None) -> None:
        raise ProviderError(f"identity provider {self.name!r}: {NO_SECRET}")

    # --- the test ------------------------------------------------------------------------------

    def authenticate(self, app: str, proof: Proof, at: datetime) -> str | None:
        cred, key = proof.credential, proof.private_key_der
        if proof.usage not in OIDC_USAGES:
            raise ProviderError(f"identity provider {self.name!r}: {NO_SECRET}")
        if cred is None or key is None:
            raise ProviderError("the test needs the credential and its private key")
        endpoints = self._discovery.endpoints()
        if proof.usage == Usage.PRIVATE_KEY_JWT:
            self._test.private_key_jwt(endpoints, proof.client_id, cred, key)
        elif proof.usage == Usage.MTLS:
            self._test.mtls(endpoints, proof.client_id, cred, key)
        else:
            if endpoints.par is None:
                raise TestSkipped(f"identity provider {self.name!r} offers no pushed "
                                  "authorization request endpoint")
            record = self._managed(app, lambda: self.registrations.read(proof.client_id))
            auth = self._client_auth(app, endpoints, record, cred, key, at)
            self._test.jar(endpoints, record, cred, key, auth)
        return None  # the provider does not say which key it matched

    def _client_auth(self, app: str, endpoints: Endpoints, record: dict[str, Any],
                     jar: Credential, jar_key: bytes, at: datetime) -> ClientAuth:
        """How the pushed authorization request authenticates: as the client does."""
        method, client_id = record.get("token_endpoint_auth_method"), str(record.get("client_id"))
        secret = record.get("client_secret")
        if method == "client_secret_basic" and isinstance(secret, str):
            return ClientAuth(basic=(client_id, secret), by="the client secret")
        if method == "client_secret_post" and isinstance(secret, str):
            return ClientAuth(form={"client_secret": secret}, by="the client secret")
        if method == "none":
            return ClientAuth(by="no client authentication")
        state = self._state_of(app)
        if method == "private_key_jwt":
            for cred in self._usable(state, Usage.PRIVATE_KEY_JWT, at):
                key = self._keystore.get(cred.id)
                if key is not None:
                    return self._test.assertion(endpoints, client_id, cred, key)
            # no private_key_jwt key of ours: the JAR key is in the same jwks, so it
            # authenticates the client as well (RFC 7591 has one key set for both)
            return self._test.assertion(endpoints, client_id, jar, jar_key)
        if method in (SELF_SIGNED, TLS_CLIENT_AUTH):
            for cred in self._usable(state, Usage.MTLS, at):
                key = self._keystore.get(cred.id)
                if key is not None and cred.certificate_pem:
                    return ClientAuth(certificate=(cred.certificate_pem, key),
                                      by=f"credential {cred.id}")
        raise TestSkipped(f"the pushed authorization request cannot authenticate as client "
                          f"{client_id!r} ({method}): the orchestrator holds no usable "
                          "credential of that method for it")

    @staticmethod
    def _usable(state: AppState, usage: Usage, at: datetime) -> list[Credential]:
        return sorted((c for c in state.credentials.values()
                       if c.usage == usage and c.usable(at)),
                      key=lambda c: (c.activated_at or c.added_at), reverse=True)

    # --- Inventory -----------------------------------------------------------------------------

    def clients(self, match: str | None = None,
                known: Collection[str] = ()) -> Iterator[RemoteClient]:
        """The clients this provider holds a registration access token for (RFC 7592 lists
        none), each read with its token (the name is in the record, so ``known`` ones are
        read too); ``match``: a glob on the client name."""
        for client_id in self.registrations.client_ids():
            record = self.registrations.read(client_id)
            if matches(record, match):
                yield remote_client(record)

    def client(self, client_id: str) -> RemoteClient:
        return remote_client(self.registrations.read(client_id))

    # --- ClientRegistrar -----------------------------------------------------------------------

    def adopt(self, client_id: str, registration_token: str) -> None:
        self.registrations.adopt(client_id, registration_token)

    def create(self, name: str) -> str:
        """A new client named ``name``, with no credential yet (private_key_jwt, an empty key
        set: nothing authenticates until a credential is activated). Until ``created(name)``,
        a repeat returns the same client: the answer is noted in the keystore before anything
        else, so a crash after it loses nothing. (A registration whose answer is lost leaves a
        client at the provider nobody can manage; RFC 7591 cannot find it again.)"""
        note = f"idp/{self.name}/created/{name}"
        kept = self._keystore.get(note)
        if kept is not None:
            first = json.loads(kept)
            self.registrations.keep(first["client_id"], first["token"], first["uri"])
            return str(first["client_id"])

        def noted(record: dict[str, Any]) -> None:
            self._keystore.put(note, json.dumps({
                "client_id": record["client_id"], "token": record["registration_access_token"],
                "uri": record.get("registration_client_uri") or ""}).encode())

        record = self.registrations.create({**NEW_CLIENT, "client_name": name},
                                           self._initial_access_token, before_store=noted)
        return str(record["client_id"])

    def created(self, name: str) -> None:
        self._keystore.delete(f"idp/{self.name}/created/{name}")

    def holds_token(self, client_id: str) -> bool:
        return self.registrations.has_token(client_id)

    # --- helpers -------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall_clock(), UTC)

    def _credential(self, app: str, credential_id: str) -> tuple[AppState, Credential]:
        state = self._state_of(app)
        cred = state.credentials.get(credential_id)
        if cred is None:
            raise ProviderError(f"application {app!r} has no credential {credential_id}")
        if cred.usage not in OIDC_USAGES:
            raise ProviderError(f"identity provider {self.name!r}: {NO_SECRET}")
        return state, cred

    def _managed(self, app: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``call``, with a refused registration access token named for ``app``."""
        try:
            return call()
        except TokenRefused as exc:
            raise ProviderError(exc.for_app(app)) from None
