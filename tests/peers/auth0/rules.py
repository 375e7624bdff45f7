"""The tenant: clients, their credential pools and slots, client grants, and the rules that
guard them (auth0-credentials.md §9, checklist items 1 to 7 and 9).

Every public method is atomic under the tenant lock and validates the whole request before it
changes anything, so a refused request leaves no trace. Scope checks are the HTTP layer's
(``management.py``); this module knows nothing of HTTP.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from tests.peers.auth0.clock import Clock
from tests.peers.auth0.config import EmulatorConfig
from tests.peers.auth0.credentials import (
    build_credential,
    invalid_body,
    new_expiry,
    pool_cap_error,
)
from tests.peers.auth0.errors import ApiError, bad_request, not_found
from tests.peers.auth0.model import (
    AUTH_METHOD_SLOTS,
    JAR_SLOT,
    SLOT_TYPES,
    Client,
    Credential,
    Grant,
    new_client_id,
    new_grant_id,
    new_secret,
)

__all__ = ["CLIENT_FIELDS", "STILL_ATTACHED", "Tenant"]

STILL_ATTACHED = "The credential is still associated with a client authentication method"
UNKNOWN_CREDENTIALS = "One or more of the credentials provided do not exist"
# simple client fields stored as sent; anything else is refused (additionalProperties: false)
CLIENT_FIELDS = {
    "description", "logo_uri", "is_first_party", "oidc_conformant", "callbacks",
    "allowed_origins", "web_origins", "client_aliases", "allowed_clients",
    "allowed_logout_urls", "sso", "sso_disabled", "cross_origin_authentication",
    "client_metadata", "initiate_login_uri", "organization_usage",
    "organization_require_behavior", "refresh_token", "require_pushed_authorization_requests",
}
_MANAGED = {"name", "app_type", "grant_types", "jwt_configuration", "token_endpoint_auth_method",
            "client_authentication_methods", "signed_request_object", "client_secret"}
_SECRET_METHODS = (None, "none", "client_secret_post", "client_secret_basic")


class Tenant:
    def __init__(self, config: EmulatorConfig, clock: Clock, domain: str) -> None:
        self.config = config
        self.clock = clock
        self.domain = domain
        self.lock = threading.RLock()
        self.clients: dict[str, Client] = {}
        self.grants: dict[str, Grant] = {}
        self.used_jtis: dict[tuple[str, str], float] = {}
        self._order = 0

    @property
    def management_audience(self) -> str:
        return f"https://{self.domain}/api/v2/"

    # --- clients ---------------------------------------------------------------------------

    def list_clients(self) -> list[Client]:
        with self.lock:
            return sorted(self.clients.values(), key=lambda client: client.order)

    def client(self, client_id: str) -> Client:
        with self.lock:
            found = self.clients.get(client_id)
            if found is None:
                raise not_found("The client does not exist", "inexistent_client")
            return found

    def create_client(self, body: Any, *, client_id: str | None = None,
                      client_secret: str | None = None) -> Client:
        """``POST /clients``: inline credentials are created in the pool and attached at once
        ("automatically enabled", §2)."""
        if not isinstance(body, dict):
            raise invalid_body("Expected type object")
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise invalid_body("Missing required property: name")
        with self.lock:
            if client_id is not None and client_id in self.clients:
                raise ApiError(409, f"A client with client_id {client_id} already exists",
                               "conflict")
            now = self.clock.now()
            client = Client(client_id=client_id or new_client_id(), name=body["name"],
                            client_secret=client_secret or new_secret(), order=self._order)
            pool: list[Credential] = []
            slots: dict[str, list[str]] = {}
            methods = body.get("client_authentication_methods")
            if methods is not None:
                for slot, items in _slot_items(methods, AUTH_METHOD_SLOTS).items():
                    slots[slot] = self._inline(client, slot, items, pool, now)
            jar = body.get(JAR_SLOT)
            if jar is not None:
                jar_items = _jar_items(jar)
                if "credentials" in jar_items:
                    slots[JAR_SLOT] = self._inline(client, JAR_SLOT, jar_items["credentials"],
                                                   pool, now)
            if len(pool) > self.config.pool_cap:
                raise pool_cap_error(self.config.pool_cap)
            if "client_secret" in body:  # set it with PATCH (update:client_keys)
                raise invalid_body("Additional properties not allowed: client_secret")
            changes = {key: value for key, value in body.items()
                       if key not in {"client_authentication_methods", JAR_SLOT}}
            if methods is not None and "token_endpoint_auth_method" not in body:
                changes["token_endpoint_auth_method"] = None
            self._apply_fields(client, changes, now)
            client.client_authentication_methods = (
                {slot: ids for slot, ids in slots.items() if slot != JAR_SLOT}
                if methods is not None else None)
            if jar is not None:
                client.signed_request_object = {
                    "required": bool(jar.get("required", False)),
                    "credentials": slots.get(JAR_SLOT, [])}
            self._check_client(client)
            client.credentials = {cred.id: cred for cred in pool}
            self.clients[client.client_id] = client
            self._order += 1
            return client

    def _inline(self, client: Client, slot: str, items: list[Any], pool: list[Credential],
                now: float) -> list[str]:
        self._check_slot_length(slot, len(items))
        ids = []
        for item in items:
            if isinstance(item, dict) and "id" in item:
                raise invalid_body("POST /clients takes whole credentials (credential_type, "
                                   "pem, ...), not ids of existing ones")
            cred = build_credential(item, client.client_id, pool, now)
            _check_type(slot, cred)
            pool.append(cred)
            ids.append(cred.id)
        return ids

    def update_client(self, client_id: str, body: Any) -> Client:
        """``PATCH /clients/{id}``: slots take only ``{id}`` references to the pool."""
        if not isinstance(body, dict):
            raise invalid_body("Expected type object")
        with self.lock:
            client = self.client(client_id)
            now = self.clock.now()
            draft = copy.copy(client)
            draft.extra = dict(client.extra)
            if "client_authentication_methods" in body:
                methods = body["client_authentication_methods"]
                draft.client_authentication_methods = (
                    None if methods is None else
                    {slot: self._references(client, slot, items)
                     for slot, items in _slot_items(methods, AUTH_METHOD_SLOTS).items()})
            if JAR_SLOT in body:
                jar = body[JAR_SLOT]
                if jar is None:
                    draft.signed_request_object = None
                else:
                    merged = dict(client.signed_request_object or {"required": False,
                                                                     "credentials": []})
                    items = _jar_items(jar)
                    if "required" in items:
                        merged["required"] = items["required"]
                    if "credentials" in items:
                        merged["credentials"] = self._references(client, JAR_SLOT,
                                                                 items["credentials"])
                    draft.signed_request_object = merged
            changes = {key: value for key, value in body.items()
                       if key not in {"client_authentication_methods", JAR_SLOT}}
            self._apply_fields(draft, changes, now)
            self._check_client(draft)
            client.__dict__.update(draft.__dict__)
            return client

    def _references(self, client: Client, slot: str, items: list[Any]) -> list[str]:
        self._check_slot_length(slot, len(items))
        ids: list[str] = []
        for item in items:
            if not isinstance(item, dict) or set(item) != {"id"}:
                raise invalid_body("PATCH takes only credential ids ({\"id\": ...}); create "
                                   "credentials with POST /clients/{id}/credentials")
            ids.append(item["id"])
        if any(cid not in client.credentials for cid in ids):
            raise bad_request(UNKNOWN_CREDENTIALS)
        if len(set(ids)) != len(ids):
            raise invalid_body(f"Array items are not unique on property {slot}.credentials")
        for cid in ids:
            _check_type(slot, client.credentials[cid])
        return ids

    def _check_slot_length(self, slot: str, length: int) -> None:
        cap: int | None = self.config.slot_cap
        if slot in ("tls_client_auth", "self_signed_tls_client_auth"):
            cap = self.config.mtls_slot_cap
        if cap is not None and length > cap:
            raise bad_request(f"Array is too long ({length}), maximum {cap}")

    def _apply_fields(self, client: Client, changes: dict[str, Any], now: float) -> None:
        unknown = sorted(set(changes) - CLIENT_FIELDS - _MANAGED)
        if unknown:
            raise invalid_body(f"Additional properties not allowed: {','.join(unknown)}")
        for key, value in changes.items():
            if key == "name":
                if not isinstance(value, str) or not value:
                    raise invalid_body("name must be a non-empty string")
                client.name = value
            elif key == "token_endpoint_auth_method":
                if value not in _SECRET_METHODS:
                    raise invalid_body(f"No enum match for: {value!r} on property "
                                       "token_endpoint_auth_method")
                client.token_endpoint_auth_method = value
            elif key == "client_secret":
                if not isinstance(value, str) or not value:
                    raise invalid_body("client_secret must be a non-empty string")
                self._replace_secret(client, value, now)
            elif key == "grant_types":
                if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
                    raise invalid_body("grant_types must be an array of strings")
                client.grant_types = list(value)
            elif key == "jwt_configuration":
                if not isinstance(value, dict):
                    raise invalid_body("jwt_configuration must be an object")
                client.jwt_configuration = {**client.jwt_configuration, **value}
            elif key == "app_type":
                client.app_type = str(value)
            else:
                client.extra[key] = value

    def _check_client(self, client: Client) -> None:
        if (client.client_authentication_methods is not None
                and client.token_endpoint_auth_method is not None):
            # §1.1 mutually exclusive; message UNCONFIRMED
            raise bad_request("token_endpoint_auth_method and client_authentication_methods "
                              "are mutually exclusive: set token_endpoint_auth_method to null "
                              "to configure client_authentication_methods", "invalid_body")
        uses_keys = bool(client.client_authentication_methods) or bool(
            client.signed_request_object and client.signed_request_object.get("credentials"))
        if uses_keys and client.jwt_configuration.get("alg") != "RS256":
            raise bad_request("jwt_configuration.alg must be RS256 to use credentials",
                              "invalid_body")

    def _replace_secret(self, client: Client, secret: str, now: float) -> None:
        delay = self.config.secret_propagation_seconds
        client.previous_secret = client.client_secret if delay > 0 else None
        client.client_secret = secret
        client.secret_active_from = now + delay

    def delete_client(self, client_id: str) -> None:
        with self.lock:
            self.client(client_id)
            del self.clients[client_id]
            for grant_id in [g.id for g in self.grants.values() if g.client_id == client_id]:
                del self.grants[grant_id]

    def rotate_secret(self, client_id: str) -> Client:
        """§4.3: the old secret stops working at once. Refused for a Private Key JWT client;
        the status (config ``rotate_secret_pkjwt_status``, default 400) is UNCONFIRMED."""
        with self.lock:
            client = self.client(client_id)
            if "private_key_jwt" in (client.client_authentication_methods or {}):
                raise ApiError(self.config.rotate_secret_pkjwt_status,
                               "The client secret cannot be rotated for a client configured "
                               "with Private Key JWT authentication", "invalid_body")
            self._replace_secret(client, new_secret(), self.clock.now())
            return client

    def secrets_accepted(self, client: Client) -> tuple[str, ...]:
        """The secret(s) the token endpoint accepts now (one, or the previous one while a new
        secret propagates, config ``secret_propagation_seconds``)."""
        if self.clock.now() >= client.secret_active_from:
            return (client.client_secret,)
        return (client.previous_secret,) if client.previous_secret else ()

    # --- credentials -------------------------------------------------------------------------

    def credentials(self, client_id: str) -> list[Credential]:
        with self.lock:
            return list(self.client(client_id).credentials.values())

    def credential(self, client_id: str, credential_id: str) -> Credential:
        with self.lock:
            found = self.client(client_id).credentials.get(credential_id)
            if found is None:
                raise not_found("The credential does not exist", "inexistent_credential")
            return found

    def create_credential(self, client_id: str, body: Any) -> Credential:
        """Created but not enabled: it must be attached by a client PATCH (§2)."""
        with self.lock:
            client = self.client(client_id)
            cred = build_credential(body, client_id, client.credentials.values(),
                                    self.clock.now())
            if len(client.credentials) >= self.config.pool_cap:  # enforced at creation (§3)
                raise pool_cap_error(self.config.pool_cap)
            client.credentials[cred.id] = cred
            return cred

    def update_credential(self, client_id: str, credential_id: str, body: Any) -> Credential:
        with self.lock:
            cred = self.credential(client_id, credential_id)
            expiry = new_expiry(body)
            cred.expires_at = expiry
            cred.updated_at = self.clock.now()
            return cred

    def delete_credential(self, client_id: str, credential_id: str) -> None:
        with self.lock:
            client = self.client(client_id)
            self.credential(client_id, credential_id)
            if client.attached_slots(credential_id):
                raise bad_request(STILL_ATTACHED)  # no error code (TF) — go by the message
            del client.credentials[credential_id]

    # --- client grants -----------------------------------------------------------------------

    def list_grants(self, client_id: str | None = None,
                    audience: str | None = None) -> list[Grant]:
        with self.lock:
            return [g for g in self.grants.values()
                    if (client_id is None or g.client_id == client_id)
                    and (audience is None or g.audience == audience)]

    def grant_for(self, client_id: str, audience: str) -> Grant | None:
        found = self.list_grants(client_id, audience)
        return found[0] if found else None

    def audiences(self) -> set[str]:
        with self.lock:
            return {self.management_audience} | {g.audience for g in self.grants.values()}

    def create_grant(self, body: Any) -> Grant:
        if not isinstance(body, dict):
            raise invalid_body("Expected type object")
        unknown = sorted(set(body) - {"client_id", "audience", "scope"})
        if unknown:
            raise invalid_body(f"Additional properties not allowed: {','.join(unknown)}")
        client_id, audience, scope = body.get("client_id"), body.get("audience"), body.get(
            "scope", [])
        if not isinstance(client_id, str) or not isinstance(audience, str):
            raise invalid_body("Missing required property: client_id, audience")
        if not isinstance(scope, list) or not all(isinstance(s, str) for s in scope):
            raise invalid_body("scope must be an array of strings")
        with self.lock:
            if client_id not in self.clients:
                raise not_found("The client does not exist", "inexistent_client")
            if self.grant_for(client_id, audience) is not None:
                raise ApiError(409, "A resource with the same client_id and audience already "
                                    "exists", "conflict")
            grant = Grant(new_grant_id(), client_id, audience, list(scope))
            self.grants[grant.id] = grant
            return grant

    def delete_grant(self, grant_id: str) -> None:
        with self.lock:
            if self.grants.pop(grant_id, None) is None:
                raise not_found("The client grant does not exist", "inexistent_client_grant")

    # --- replay cache and snapshot -----------------------------------------------------------

    def remember_jti(self, client_id: str, jti: str, until: float) -> bool:
        """False when this client already used ``jti`` (and it has not expired)."""
        with self.lock:
            now = self.clock.now()
            if len(self.used_jtis) > 10_000:
                self.used_jtis = {k: v for k, v in self.used_jtis.items() if v > now}
            seen = self.used_jtis.get((client_id, jti))
            if seen is not None and seen > now:
                return False
            self.used_jtis[(client_id, jti)] = until
            return True

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "domain": self.domain,
                "now": self.clock.now(),
                "clients": [client.snapshot() for client in self.list_clients()],
                "grants": [grant.view() for grant in self.grants.values()],
            }


def _slot_items(methods: Any, allowed: tuple[str, ...]) -> dict[str, list[Any]]:
    if not isinstance(methods, dict):
        raise invalid_body("client_authentication_methods must be an object or null")
    unknown = sorted(set(methods) - set(allowed))
    if unknown:
        raise invalid_body(f"Additional properties not allowed: {','.join(unknown)} on "
                           "property client_authentication_methods")
    if len(methods) > 1:  # exactly one method at a time (identity-providers.md §1)
        raise invalid_body("client_authentication_methods takes one of "
                           f"{', '.join(allowed)}, not several")
    items: dict[str, list[Any]] = {}
    for slot, value in methods.items():
        if not isinstance(value, dict) or set(value) - {"credentials"}:
            raise invalid_body(f"client_authentication_methods.{slot} takes only credentials")
        creds = value.get("credentials", [])
        if not isinstance(creds, list):
            raise invalid_body(f"client_authentication_methods.{slot}.credentials must be an "
                               "array")
        items[slot] = creds
    return items


def _jar_items(jar: Any) -> dict[str, Any]:
    if not isinstance(jar, dict) or set(jar) - {"required", "credentials"}:
        raise invalid_body("signed_request_object takes required and credentials")
    if "required" in jar and not isinstance(jar["required"], bool):
        raise invalid_body("signed_request_object.required must be a boolean")
    if "credentials" in jar and not isinstance(jar["credentials"], list):
        raise invalid_body("signed_request_object.credentials must be an array")
    return dict(jar)


def _check_type(slot: str, cred: Credential) -> None:
    expected = SLOT_TYPES[slot]
    if cred.credential_type != expected:  # checklist 1; message UNCONFIRMED
        raise bad_request(f"Credential {cred.id} is of type {cred.credential_type}; {slot} "
                          f"takes {expected} credentials")
