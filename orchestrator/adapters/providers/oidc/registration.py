"""A client's registration record (RFC 7591/7592): read, modify, write the whole record, and the
registration access token (RAT) that every one of those calls needs.

**The whole record.** RFC 7592 section 2.2: an update *replaces* the client's metadata; whatever
the body omits becomes null or the provider's default (node oidc-provider turned a
private_key_jwt client into a client-secret client with a minted secret on a partial update).
So every change is a GET, a change of the record read, and a PUT of all of it, without the
fields the server manages (``SERVER_MANAGED``: sending them back is refused). A change that
leaves the record as it is sends nothing.

**The registration access token.** Kept in the keystore, encrypted, under
``idp/<provider>/<client_id>/registration-token`` (with the client's registration URI and id).
A client id too long for that item id (``MAX_ITEM_ID_BYTES``: a 63-character provider name and
a 64-character client id) is replaced there by ``~`` and the base64url SHA-256 of the client id
(``token_item``): every id that fits keeps the item it always had, so tokens kept before stay
readable, and ``client_ids`` reads the client id from a hashed item. The
provider may rotate it on every update (oidc-provider does): the old token is refused at once
and the new one comes only in the update's answer. The guarantee:

* the new token is written to the keystore (fsynced, then renamed into place) the instant the
  answer is read, before anything else is done with the answer; if that write fails the token
  is kept in memory, used, and written again by the next call;
* a token refused (401) is read from the keystore again: when another process has stored a newer
  one since (two processes updating one client), the whole GET-modify-PUT is done again with it;
* what RFC 7592 cannot recover: an update applied by the provider whose answer never arrives
  (the connection drops or times out after the PUT was sent), or a process killed between the
  answer and the write (a window of one keystore write). The new token exists only in that lost
  answer and no request of RFC 7592 gives it again. This is detected, not hidden: the stored
  token is refused (401) and every call says, in one line, to get a new registration access
  token from the provider's administrator and hand it over with ``orchestrator app register APP
  --provider NAME --client-id ID --registration-token-file FILE --exist-ok``.

One lock per client serializes the read-modify-writes of this process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from orchestrator.adapters.providers.oidc.discovery import Discovery
from orchestrator.adapters.providers.oidc.http import Http, error_of, json_object
from orchestrator.app.ports import MAX_ITEM_ID_BYTES, Keystore
from orchestrator.domain.errors import KeystoreError, ProviderError
from orchestrator.domain.identity_provider import ClientMissing

__all__ = ["SERVER_MANAGED", "Registrations", "TokenRefused", "writable"]

SERVER_MANAGED = ("registration_access_token", "registration_client_uri",
                  "client_secret_expires_at", "client_id_issued_at")
MAX_TOKEN = 8192  # characters: a registration access token, as read from a file or an answer
TOKEN_SUFFIX = "/registration-token"
HASHED = re.compile(r"~[A-Za-z0-9_-]{43}")  # a client id's place in a token item, when hashed

Record = dict[str, Any]


class TokenRefused(ClientMissing):
    """The stored registration access token was refused (401): the client is gone, or an update
    whose answer carried the new token was lost. Only an operator can give a new token."""

    def __init__(self, provider: str, client_id: str) -> None:
        super().__init__(provider, client_id)

    def for_app(self, app: str | None) -> str:
        return (f"identity provider {self.provider!r} refused the registration access token of "
                f"client {self.client_id!r} (401): the client was deleted, or an update's answer "
                "carrying its new token was lost; get a new registration access token from the "
                "provider's administrator and run: orchestrator app register "
                f"{app or 'APP'} --provider {self.provider} --client-id {self.client_id} "
                "--registration-token-file FILE --exist-ok")


class Registrations:
    def __init__(self, provider: str, http: Http, discovery: Discovery,
                 keystore: Keystore) -> None:
        self.provider = provider
        self._http = http
        self._discovery = discovery
        self._keystore = keystore
        self._unsaved: dict[str, tuple[str, str]] = {}  # client id -> newest (token, uri)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # --- the stored token ---------------------------------------------------------------------

    def token_item(self, client_id: str) -> str:
        """The keystore item of the client's token: the client id as it is when the item id
        fits the keystore, else ``~`` and its base64url SHA-256 (43 characters)."""
        item = f"idp/{self.provider}/{client_id}{TOKEN_SUFFIX}"
        if len(item.encode("utf-8")) <= MAX_ITEM_ID_BYTES:
            return item
        digest = hashlib.sha256(client_id.encode("utf-8")).digest()
        hashed = "~" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        return f"idp/{self.provider}/{hashed}{TOKEN_SUFFIX}"

    def client_ids(self) -> list[str]:
        """The clients this provider holds a registration access token for."""
        prefix = f"idp/{self.provider}/"
        found = set()
        for item in self._keystore.ids():
            place = item[len(prefix):-len(TOKEN_SUFFIX)]
            if not (item.startswith(prefix) and item.endswith(TOKEN_SUFFIX)) or "/" in place:
                continue
            if HASHED.fullmatch(place) and (client_id := self._hashed_id(item)) is not None:
                found.add(client_id)
            else:
                found.add(place)
        return sorted(found)

    def _hashed_id(self, item: str) -> str | None:
        """The client id kept in a hashed token item (None: not one of ours)."""
        try:
            client_id = json.loads(self._keystore.get(item) or b"null").get("client_id")
        except (ValueError, AttributeError):
            return None
        return client_id if isinstance(client_id, str) and self.token_item(
            client_id) == item else None

    def has_token(self, client_id: str) -> bool:
        return client_id in self._unsaved or self._keystore.get(self.token_item(client_id)) is not None

    def _stored(self, client_id: str) -> tuple[str, str]:
        """(token, registration client URI); a token not yet written is written first."""
        if client_id in self._unsaved:
            token, uri = self._unsaved[client_id]
            self._store(client_id, token, uri)
            return token, uri
        raw = self._keystore.get(self.token_item(client_id))
        if raw is None:
            raise ProviderError(
                f"identity provider {self.provider!r}: no registration access token is kept for "
                f"client {client_id!r}; hand one over with: orchestrator app register APP "
                f"--provider {self.provider} --client-id {client_id} --registration-token-file "
                "FILE --exist-ok")
        try:
            kept = json.loads(raw)
            token, uri = str(kept["token"]), kept.get("uri")
        except (ValueError, TypeError, KeyError):
            raise ProviderError(f"identity provider {self.provider!r}: the kept registration "
                                f"access token of client {client_id!r} is unreadable; hand it "
                                "over again with --registration-token-file") from None
        return token, str(uri or self._default_uri(client_id))

    def _store(self, client_id: str, token: str, uri: str) -> None:
        """Write the token durably; if the keystore fails, keep it in memory (and raise)."""
        self._unsaved[client_id] = (token, uri)
        data = json.dumps({"token": token, "uri": uri, "client_id": client_id}).encode()
        self._keystore.put(self.token_item(client_id), data)
        del self._unsaved[client_id]

    def _default_uri(self, client_id: str) -> str:
        """Where RFC 7592 management of ``client_id`` is, before an answer names it: the
        registration endpoint followed by the client id (oidc-provider, Keycloak, Okta)."""
        endpoint = self._discovery.endpoints().registration
        if endpoint is None:
            raise ProviderError(f"identity provider {self.provider!r} has no "
                                "registration_endpoint: it does not offer RFC 7591/7592")
        return endpoint.rstrip("/") + "/" + urllib.parse.quote(client_id, safe="")

    def _lock(self, client_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(client_id, threading.Lock())

    # --- read, modify, write -------------------------------------------------------------------

    def read(self, client_id: str) -> Record:
        """The client's record as the provider has it now."""
        with self._lock(client_id):
            for retry in (True, False):
                token, uri = self._stored(client_id)
                answer = self._send("GET", client_id, uri, token, f"read of client {client_id!r}")
                if answer is not None:
                    return answer
                self._refused(client_id, token, retry)
        raise AssertionError("unreachable")

    def update(self, client_id: str, change: Callable[[Record], Record | None]) -> Record:
        """GET the record, ``change`` it (None: nothing to change, nothing is sent), PUT the
        whole of it; the new token in the answer is stored before anything else. Returns the
        record as the provider has it afterwards."""
        with self._lock(client_id):
            for retry in (True, False):
                token, uri = self._stored(client_id)
                current = self._send("GET", client_id, uri, token, f"read of client {client_id!r}")
                if current is None:
                    self._refused(client_id, token, retry)
                    continue
                changed = change(writable(current))
                if changed is None:
                    return current
                body = {**writable(changed), "client_id": client_id}
                answer = self._send("PUT", client_id, uri, token, f"update of client {client_id!r}", body)
                if answer is None:
                    self._refused(client_id, token, retry)
                    continue
                return answer
        raise AssertionError("unreachable")

    def adopt(self, client_id: str, token: str) -> Record:
        """Check ``token`` reads the client's record, then keep it (replacing a kept one)."""
        token = token.strip()
        if not token or len(token) > MAX_TOKEN or any(c.isspace() for c in token):
            raise ProviderError("the registration access token must be one word of at most "
                                f"{MAX_TOKEN} characters")
        with self._lock(client_id):
            uri = self._default_uri(client_id)
            try:
                record = self._send("GET", client_id, uri, token, f"read of client {client_id!r}",
                                    store=False)
            except ClientMissing:  # never bound: not "deleted", most likely mistyped
                raise ProviderError(f"identity provider {self.provider!r} has no client "
                                    f"{client_id!r} ({uri} answered 404): check the client "
                                    "id") from None
            if record is None:
                raise ProviderError(
                    f"identity provider {self.provider!r} refused the registration access token "
                    f"given for client {client_id!r} (401): check the token and the client id")
            if record.get("client_id") != client_id:
                raise ProviderError(f"identity provider {self.provider!r}: {uri} describes "
                                    f"client {str(record.get('client_id'))[:64]!r}, not {client_id!r}")
            self._store(client_id, token, str(record.get("registration_client_uri") or uri))
            return record

    def create(self, metadata: Record, initial_access_token: str | None,
               before_store: Callable[[Record], None] = lambda record: None) -> Record:
        """Register a new client (RFC 7591) and keep its token; ``before_store`` sees the
        answer first (the caller writes what lets a repeat find this client)."""
        endpoint = self._discovery.endpoints().registration
        if endpoint is None:
            raise ProviderError(f"identity provider {self.provider!r} has no "
                                "registration_endpoint: clients cannot be created there")
        headers = {"Authorization": f"Bearer {initial_access_token}"} if initial_access_token else {}
        what = "registration of a new client"
        answer = self._http.request("POST", endpoint, what=what, json=metadata, headers=headers)
        if answer.status_code != 201:
            raise ProviderError(f"identity provider {self.provider!r}: {what}: "
                                f"{error_of(answer)}" + (
                                    " (is the initial access token right?)"
                                    if answer.status_code in (401, 403) else ""))
        record = json_object(answer, self.provider, what)
        client_id, token = record.get("client_id"), record.get("registration_access_token")
        if not isinstance(client_id, str) or not isinstance(token, str):
            raise ProviderError(f"identity provider {self.provider!r}: {what}: the answer has no "
                                "client_id or no registration_access_token (RFC 7592 "
                                "management is not enabled?)")
        before_store(record)
        self._store(client_id, token,
                    str(record.get("registration_client_uri") or self._default_uri(client_id)))
        return record

    def keep(self, client_id: str, token: str, uri: str) -> None:
        """Keep a token unless one is kept already (a repeat of ``create`` finding its client)."""
        if not self.has_token(client_id):
            self._store(client_id, token, uri)

    def _send(self, method: str, client_id: str, uri: str, token: str, what: str,
              body: Record | None = None, store: bool = True) -> Record | None:
        """The record in the answer (its new token stored first); None when the token is
        refused (401)."""
        answer = self._http.request(method, uri, what=what, json=body,
                                    headers={"Authorization": f"Bearer {token}"})
        if answer.status_code == 401:
            return None
        if answer.status_code == 404:
            raise ClientMissing(self.provider, client_id, f"{what}: 404")
        if answer.status_code != 200:
            raise ProviderError(f"identity provider {self.provider!r}: {what}: {error_of(answer)}")
        record = json_object(answer, self.provider, what)
        rotated = record.get("registration_access_token")
        if store and isinstance(rotated, str) and rotated != token:
            try:
                self._store(client_id, rotated, str(record.get("registration_client_uri") or uri))
            except KeystoreError as exc:
                raise KeystoreError(f"{exc} (the client's new registration access token is kept "
                                    "in memory and written again by the next call)") from None
        return record

    def _refused(self, client_id: str, token: str, retry: bool) -> None:
        """A refused token: go on (return) when a newer one has been stored meanwhile."""
        if retry and self._stored(client_id)[0] != token:
            return
        raise TokenRefused(self.provider, client_id)


def writable(record: Record) -> Record:
    """The record without what the server manages (an update must not send it)."""
    return {k: v for k, v in record.items() if k not in SERVER_MANAGED}

