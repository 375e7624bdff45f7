"""``Auth0Provider``: the ``Provider`` and ``Inventory`` ports on one Auth0 tenant's Management
API v2 (auth0-credentials.md sections 1 to 4; identity-providers.md section 1).

Each method is one *operation* retried whole (``retries.RetryPolicy``), so a repeat after a
lost answer finds what the first attempt did instead of doing it twice:

* ``register`` uploads a public key or certificate at once and, when Auth0 says the client
  holds that key already (or its pool is full), lists the pool and finds ours (kid or
  certificate thumbprint); a subject DN, which Auth0 has no key to refuse twice for, is looked
  for in the pool before it is uploaded;
* ``activate`` / ``deactivate`` read the client and PATCH only when the slot must change,
  sending the slot's whole list of ``{id}`` references (at most 2) and every other slot as it is;
* ``remove`` detaches the credential from any slot still holding it, then DELETEs it (404: done);
* ``set_secret`` PATCHes ``client_secret`` (the same value again is harmless), or, with
  ``secretRotation: rotate-secret``, reads the client and, unless it holds the secret the
  orchestrator kept already, has Auth0 make one (``POST /clients/{id}/rotate-secret``) and
  returns it: after a lost answer the client holds a secret nobody has, so the repeat rotates
  again and returns that one;
* ``detach_remote`` / ``delete_remote`` / ``set_remote_expiry`` (``RemoteEdits``, for ``drift
  --repair``) work on Auth0's own credential ids, for records the log does not know;
* ``find_client`` reads one client without its pool (None: there is none of that id);
* ``clients`` pages through the tenant, leaving out the Management API application the
  adapter itself uses (rotating its credentials would cut the orchestrator off) and Auth0's
  ``global`` pseudo-client.

Our credential ids become Auth0's through ``Credential.provider_id`` (recorded from
``register``), or, for a credential the log has no provider id for, by finding it in the pool.
"""

from __future__ import annotations

import fnmatch
import hmac
import re
import time
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from events.kinds import CredentialKind
from events.state import AppState, Credential
from orchestrator.adapters.providers.auth0 import mapping
from orchestrator.adapters.providers.auth0.client import Auth0Http, Reply
from orchestrator.adapters.providers.auth0.pacer import Pacer, RateLimit, tenant_pacer
from orchestrator.adapters.providers.auth0.retries import RetryPolicy, Transient
from orchestrator.adapters.providers.auth0.token_endpoint import MTLS_UNTESTABLE, TokenEndpoint
from orchestrator.app.ports import Keystore
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import (
    ALL_USAGES,
    Capabilities,
    ClientMissing,
    Proof,
    RemoteClient,
    SecretRotation,
)
from orchestrator.domain.vocabulary import Usage

__all__ = ["PER_PAGE", "Auth0Provider"]

T = TypeVar("T")
PER_PAGE = 100
POOL_FULL = re.compile(r"maximum of (\d+) credentials")
# the refusal of a key the client holds, by its key ("credentials contains public keys that
# already exist in client") or by its kid ("A credential with kid ... already exists in
# client"): which of the two Auth0 checks first is not documented
HELD_ALREADY = re.compile(r"already exists? in client")
STILL_ATTACHED = "still associated"
CLIENT_FIELDS = ("client_id,name,app_type,global,token_endpoint_auth_method,"
                 "client_authentication_methods,signed_request_object")
SECRET_FIELDS = "client_id,client_secret,token_endpoint_auth_method,client_authentication_methods"


class Auth0Provider:
    def __init__(self, name: str, *, domain: str, client_id: str, client_secret: str,
                 base_url: str | None, state_of: Callable[[str], AppState], keystore: Keystore,
                 rate_limit: tuple[float, int] | None = None, max_credentials: int = 4,
                 mtls_edge: bool = False, transport: httpx.BaseTransport | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, audience: str | None = None,
                 retry: RetryPolicy | None = None,
                 secret_rotation: SecretRotation = SecretRotation.PATCH) -> None:
        self.name = name
        self.management_client_id = client_id
        self.domain = domain.strip().removeprefix("https://").rstrip("/")
        self.base_url = (base_url or f"https://{self.domain}").rstrip("/")
        self.issuer = f"https://{self.domain}/"
        self.max_credentials = max_credentials
        self.mtls_edge = mtls_edge
        self.secret_rotation = SecretRotation(secret_rotation)
        self._state_of = state_of
        self._sleep = sleep
        self.retry = retry or RetryPolicy()
        limit = RateLimit(*rate_limit) if rate_limit is not None else None
        self.pacer: Pacer = tenant_pacer(self.domain, limit, wall_clock, sleep)
        self.http = Auth0Http(
            domain=self.domain, base_url=self.base_url, client_id=client_id,
            client_secret=client_secret, management_pacer=self.pacer,
            authentication_pacer=tenant_pacer(f"{self.domain} authentication", None,
                                               wall_clock, sleep),
            transport=transport, wall_clock=wall_clock)
        self.tests = TokenEndpoint(self.http, issuer=self.issuer,
                                   audience=audience or self.http.management_audience,
                                   state_of=state_of, keystore=keystore, wall_clock=wall_clock,
                                   mtls_edge=mtls_edge)

    def close(self) -> None:
        self.http.close()

    def __repr__(self) -> str:
        return f"Auth0Provider({self.name!r}, domain={self.domain!r})"

    # --- what it is ----------------------------------------------------------------------------

    def capabilities(self, app: str) -> Capabilities:
        untestable = () if self.mtls_edge else ((str(Usage.MTLS), MTLS_UNTESTABLE),)
        return Capabilities(usages=ALL_USAGES, per_slot=mapping.MAX_PER_SLOT,
                            per_client=self.max_credentials, secret_overlap=False,
                            secret_beside_keys=False,
                            untestable=untestable)

    def metadata(self, app: str) -> dict[str, str]:
        return {"issuer": self.issuer, "token_endpoint": f"{self.base_url}/oauth/token",
                "audience": self.issuer, "client_id": self._state_of(app).provider_client_id}

    # --- credentials ---------------------------------------------------------------------------

    def register(self, app: str, credential: Credential) -> str | None:
        client_id = self._client_id(app)
        body = mapping.create_body(credential, credential.name or
                                   f"{app} {credential.usage} {credential.id}")
        path = f"/clients/{_q(client_id)}/credentials"
        # Auth0 refuses a public key (or certificate) the client holds already (400
        # HELD_ALREADY; reference 2.1): such an upload is simply made, and a refusal finds the
        # copy an earlier attempt made before its answer was lost: one request, not a read
        # first. A subject DN carries no key to be refused for: it is looked for first.
        refused_twice = credential.kind in (CredentialKind.PUBLIC_KEY, CredentialKind.X509_CERT)

        def attempt() -> str:
            if not refused_twice:  # a copy made before an answer was lost is found first
                found = self._find(client_id, credential)
                if found is not None:
                    return found
            reply = self.http.management("POST", path, json_body=body)
            if reply.status in (200, 201) and isinstance(reply.body, dict) and reply.body.get("id"):
                return str(reply.body["id"])
            held = reply.status == 400 and HELD_ALREADY.search(reply.message) is not None
            full = POOL_FULL.search(reply.message) if reply.status == 400 else None
            if held or (full is not None and refused_twice):  # our own copy, maybe
                found = self._find(client_id, credential)
                if found is not None:
                    return found
            if held:
                raise ProviderError(f"Auth0 {self.domain}: client {client_id} already holds the "
                                    f"key of {credential.id} under another key id")
            if full is not None:
                raise ProviderError(
                    f"Auth0 {self.domain}: client {client_id} holds its maximum of "
                    f"{full.group(1)} credentials; a slot must be freed (a retired credential "
                    "deleted) before another is uploaded")
            raise self._refused(reply, f"upload of {credential.id} to client {client_id}")

        return self._run(attempt, f"register {credential.id}")

    def activate(self, app: str, credential_id: str) -> None:
        credential = self._credential(app, credential_id)
        if credential is None:
            raise ProviderError(f"Auth0: application {app!r} has no credential {credential_id}")
        client_id, slot = self._client_id(app), mapping.slot_of(credential)

        def attempt() -> None:
            provider_id = self._provider_id(client_id, credential)
            if provider_id is None:
                raise ProviderError(f"Auth0 {self.domain}: credential {credential_id} is not "
                                    f"registered at client {client_id}")
            client = self._client(client_id)
            held = mapping.slot_ids(client, slot)
            if provider_id not in held:
                self._patch(client_id, mapping.slot_patch(client, slot, [*held, provider_id]),
                            f"attach {credential_id} to {mapping.slot_path(slot)}")

        self._run(attempt, f"activate {credential_id}")

    def deactivate(self, app: str, credential_id: str) -> None:
        credential = self._credential(app, credential_id)
        if credential is None:
            return
        client_id, slot = self._client_id(app), mapping.slot_of(credential)

        def attempt() -> None:
            provider_id = self._provider_id(client_id, credential)
            if provider_id is None:
                return
            self._detach(client_id, self._client(client_id), (slot,), provider_id, credential_id)

        self._run(attempt, f"deactivate {credential_id}")

    def remove(self, app: str, credential_id: str) -> None:
        credential = self._credential(app, credential_id)
        if credential is None:
            return
        client_id = self._client_id(app)

        def attempt() -> None:
            provider_id = self._provider_id(client_id, credential)
            if provider_id is not None:
                self._delete(client_id, provider_id, credential_id)

        self._run(attempt, f"remove {credential_id}")

    def set_secret(self, app: str, version: int, secret: str,
                   previous_valid_until: datetime | None) -> str | None:
        """The client's one secret (reference 4.3; the previous one stops at once): ``secret``
        as a custom client secret (None), or, with ``rotate-secret``, one Auth0 makes, returned
        for the caller to keep (None when the client holds ``secret`` already)."""
        client_id = self._client_id(app)
        what = f"client secret v{version} of client {client_id}"
        if self.secret_rotation is SecretRotation.ROTATE_SECRET:
            return self._run(lambda: self._rotate_secret(client_id, secret, what),
                             f"rotate client secret v{version}")

        def attempt() -> None:
            reply = self.http.management("PATCH", f"/clients/{_q(client_id)}",
                                         json_body={"client_secret": secret})
            if reply.status != 200:
                raise ProviderError(str(self._refused(reply, what)).replace(secret, "[secret]"))

        self._run(attempt, f"set client secret v{version}")
        return None

    def authenticate(self, app: str, proof: Proof, at: datetime) -> str | None:
        return self._run(lambda: self.tests.test(app, proof, at),
                         f"test of {proof.usage} for {app!r}")

    # --- edits by Auth0's own ids (RemoteEdits: drift --repair) --------------------------------

    def detach_remote(self, client_id: str, provider_credential_id: str, usage: str) -> None:
        def attempt() -> None:
            self._detach(client_id, self._client(client_id), mapping.slots_of_usage(usage),
                         provider_credential_id, provider_credential_id)

        self._run(attempt, f"detach {provider_credential_id} from {usage}")

    def delete_remote(self, client_id: str, provider_credential_id: str) -> None:
        def attempt() -> None:
            self._delete(client_id, provider_credential_id, provider_credential_id)

        self._run(attempt, f"delete {provider_credential_id}")

    def set_remote_expiry(self, client_id: str, provider_credential_id: str,
                          expires_at: datetime | None) -> None:
        if expires_at is None:
            raise ProviderError(f"Auth0 {self.domain}: a credential's expiry cannot be removed "
                                f"(credential {provider_credential_id} of client {client_id}); "
                                "adopt the provider's expiry, or rotate the credential")
        path = f"/clients/{_q(client_id)}/credentials/{_q(provider_credential_id)}"

        def attempt() -> None:
            reply = self.http.management("PATCH", path,
                                         json_body={"expires_at": mapping.iso(expires_at)})
            if reply.status not in (200, 201):  # the OpenAPI document lists 201, Auth0 says 200
                raise self._refused(reply, f"new expiry of {provider_credential_id} of client "
                                           f"{client_id}")

        self._run(attempt, f"set the expiry of {provider_credential_id}")

    # --- inventory -----------------------------------------------------------------------------

    def clients(self, match: str | None = None,
                known: Collection[str] = ()) -> Iterator[RemoteClient]:
        page = 0
        while True:
            params = {"page": page, "per_page": PER_PAGE, "include_totals": "true",
                      "fields": CLIENT_FIELDS, "include_fields": "true"}
            items, total = self._run(lambda params=params: self._page(params),  # type: ignore[misc]
                                     f"list clients, page {page}")
            for item in items:
                if item.get("client_id") == self.management_client_id or item.get("global"):
                    continue
                if match is not None and not fnmatch.fnmatchcase(str(item.get("name", "")),
                                                                 match):
                    continue
                if item.get("client_id") in known:  # the caller holds it: no pool read
                    yield mapping.remote_client(item, ())
                else:
                    yield self._remote(item)
            page += 1
            if len(items) < PER_PAGE or (isinstance(total, int) and page * PER_PAGE >= total):
                return

    def client(self, client_id: str) -> RemoteClient:
        return self._remote(self._run(lambda: self._client(client_id), f"read {client_id}"))

    def find_client(self, client_id: str) -> RemoteClient | None:
        """``ClientLookup``: one GET of the client (its fields, not its credentials)."""
        path = f"/clients/{_q(client_id)}"

        def attempt() -> dict[str, Any] | None:
            reply = self.http.management("GET", path, params={
                "fields": CLIENT_FIELDS, "include_fields": "true"})
            if reply.status == 404:
                return None
            if reply.status != 200:
                raise self._refused(reply, f"GET {path}")
            if not _is_client(reply.body):
                raise Transient(f"GET {path}: malformed client")
            return dict(reply.body)

        found = self._run(attempt, f"read {client_id}")
        return None if found is None else mapping.remote_client(found, ())

    def _remote(self, client: dict[str, Any]) -> RemoteClient:
        client_id = str(client["client_id"])
        pool = self._run(lambda: self._pool(client_id), f"list credentials of {client_id}")
        return mapping.remote_client(client, pool)

    # --- single requests (one attempt each) ----------------------------------------------------

    def _run(self, operation: Callable[[], T], what: str) -> T:
        return self.retry.run(operation, f"{self.domain}: {what}", self._sleep)

    def _client_id(self, app: str) -> str:
        return self._state_of(app).provider_client_id

    def _credential(self, app: str, credential_id: str) -> Credential | None:
        return self._state_of(app).credentials.get(credential_id)

    def _read(self, path: str, params: dict[str, Any] | None = None,
              client_id: str | None = None) -> Any:
        """The answer's body; a 404 is ``ClientMissing`` when ``path`` is ``client_id``'s."""
        reply = self.http.management("GET", path, params=params)
        if reply.status == 404 and client_id is not None:
            raise ClientMissing(self.name, client_id, f"Auth0 {self.domain}: GET {path}: "
                                f"{reply.message or 'not found'}")
        if reply.status == 404:
            raise ProviderError(f"Auth0 {self.domain}: {reply.message or 'not found'} "
                                f"(GET {path})")
        if reply.status != 200:
            raise self._refused(reply, f"GET {path}")
        return reply.body

    def _page(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
        """One page of clients and the total, each a client object with a client id."""
        body = self._read("/clients", params)
        items, total = (body.get("clients"), body.get("total")) if isinstance(
            body, dict) else (body, None)
        if not isinstance(items, list) or not all(map(_is_client, items)):
            raise Transient("GET /clients: malformed list of clients")
        return items, total if isinstance(total, int) else None

    def _client(self, client_id: str) -> dict[str, Any]:
        body = self._read(f"/clients/{_q(client_id)}", client_id=client_id)
        if not _is_client(body):
            raise Transient(f"GET /clients/{client_id}: malformed client")
        return dict(body)

    def _pool(self, client_id: str) -> list[dict[str, Any]]:
        body = self._read(f"/clients/{_q(client_id)}/credentials", client_id=client_id)
        items = body.get("credentials") if isinstance(body, dict) else body
        if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("id"), str) and i["id"] for i in items):
            raise Transient(f"GET /clients/{client_id}/credentials: malformed list")
        return items

    def _find(self, client_id: str, credential: Credential) -> str | None:
        for item in self._pool(client_id):
            if mapping.matches(credential, item):
                return str(item["id"])
        return None

    def _provider_id(self, client_id: str, credential: Credential) -> str | None:
        return credential.provider_id or self._find(client_id, credential)

    def _rotate_secret(self, client_id: str, kept: str, what: str) -> str | None:
        """One attempt: None when the client holds ``kept`` (the secret the orchestrator kept
        for this version: a repeat after success); else Auth0's new secret. A client whose
        secret cannot be read is refused before anything changes: a lost answer could not be
        told from a success there, and each repeat would end the secret just made."""
        path = f"/clients/{_q(client_id)}"
        client = self._read(path, {"fields": SECRET_FIELDS, "include_fields": "true"},
                            client_id=client_id)
        if not _is_client(client):
            raise Transient(f"GET {path}: malformed client")
        held = client.get("client_secret")
        if isinstance(held, str) and hmac.compare_digest(held.encode(), kept.encode()):
            return None
        method = mapping.auth_method(client)
        if method in mapping.AUTH_METHOD_SLOTS:
            raise ProviderError(f"Auth0 {self.domain}: client {client_id} authenticates with "
                                f"{method}, which takes no client secret; {what} not rotated")
        if not isinstance(held, str) or not held:
            raise ProviderError(
                f"Auth0 {self.domain}: the secret of client {client_id} cannot be read, so a "
                "lost answer could not be told from a rotation; grant application "
                f"{self.management_client_id} the read:client_keys scope (secretRotation: "
                f"rotate-secret needs it); {what} not rotated")
        reply = self.http.management("POST", f"{path}/rotate-secret")
        if reply.status != 200:
            raise self._refused(reply, f"rotation of the {what}")
        made = reply.body.get("client_secret") if isinstance(reply.body, dict) else None
        if not isinstance(made, str) or not made:  # it may have rotated: the repeat reads
            raise Transient(f"POST {path}/rotate-secret: 200 without the new secret")
        return made

    def _delete(self, client_id: str, provider_id: str, shown: str) -> None:
        """Take ``provider_id`` out of every slot holding it, then DELETE it (404: done)."""
        self._detach(client_id, self._client(client_id),
                     (*mapping.AUTH_METHOD_SLOTS, mapping.JAR_SLOT), provider_id, shown)
        reply = self.http.management(
            "DELETE", f"/clients/{_q(client_id)}/credentials/{_q(provider_id)}")
        if reply.status in (200, 204, 404):
            return
        if reply.status == 400 and STILL_ATTACHED in reply.message:
            raise Transient(f"{shown} is still attached (read again)")
        raise self._refused(reply, f"delete of {shown} from client {client_id}")

    def _detach(self, client_id: str, client: dict[str, Any], slots: tuple[str, ...],
                provider_id: str, credential_id: str) -> None:
        """Take ``provider_id`` out of each of ``slots`` that holds it (one PATCH a slot)."""
        for slot in slots:
            held = mapping.slot_ids(client, slot)
            if provider_id in held:
                client = self._patch(client_id, mapping.slot_patch(
                    client, slot, [cid for cid in held if cid != provider_id]),
                    f"detach {credential_id} from {mapping.slot_path(slot)}")

    def _patch(self, client_id: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        reply = self.http.management("PATCH", f"/clients/{_q(client_id)}", json_body=body)
        if reply.status == 200 and isinstance(reply.body, dict) and "client_id" in reply.body:
            return reply.body
        if reply.status == 200:
            return self._client(client_id)
        raise self._refused(reply, f"{what} of client {client_id}")

    def _refused(self, reply: Reply, what: str) -> ProviderError:
        code = f" {reply.error}" if reply.error else ""
        return ProviderError(f"Auth0 {self.domain} refused the {what}: {reply.status}{code} "
                             f"{reply.message}".rstrip())


def _is_client(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("client_id"), str) and bool(
        item["client_id"])


def _q(part: str) -> str:
    return quote(part, safe="")
