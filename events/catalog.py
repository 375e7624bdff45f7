"""The catalog of facts the log can hold: frozen, past-tense, versioned event types.

Every event type has a stable dotted name (``credential.added``) and a schema version. A shipped
event type is never edited: a new field gets a default, or the type gets a new schema version and
an upcaster that turns the old payload into the new one on read (``upcast``).

Payloads hold public material and fingerprints only, never private keys or secrets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, PlainSerializer

from events.kinds import CredentialKind, Usage
from events.times import format_time

__all__ = [
    "ApplicationRegistered",
    "CredentialActivated",
    "CredentialAdded",
    "CredentialDeleted",
    "CredentialDisabled",
    "CredentialExpired",
    "CredentialExpiryChanged",
    "CredentialKind",
    "CredentialRegistered",
    "DriftRepaired",
    "Event",
    "PolicyApplied",
    "PolicyRejected",
    "RotationAbandoned",
    "RotationCompleted",
    "RotationFailed",
    "RotationParked",
    "RotationRetried",
    "RotationRolledBack",
    "RotationStarted",
    "RotationStepRecorded",
    "SecretRotated",
    "UnknownEventType",
    "Usage",
    "decode",
    "decode_json",
    "event_types",
    "json_decoder",
    "upcast",
    "upcaster",
]


# A time in an event: aware (UTC offset required), written in the log's fixed-width UTC form
# when the event is dumped for encoding (so encoding needs no walk of its own).
Time = Annotated[AwareDatetime, PlainSerializer(format_time, return_type=str, when_used="json")]


class UnknownEventType(LookupError):
    """The log holds a type (or schema version) this code does not know."""


_REGISTRY: dict[str, type[Event]] = {}
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


class Event(BaseModel):
    """Base of every event: a frozen value whose class names its type and schema version."""

    # defer_build: an event type's validator is built when it is first used, not at import (21
    # types; a command touches a few)
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    type_name: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type_name:
            if cls.type_name in _REGISTRY:
                raise TypeError(f"event type {cls.type_name!r} is defined twice")
            _REGISTRY[cls.type_name] = cls


def event_types() -> Mapping[str, type[Event]]:
    """Every registered event type by its dotted name."""
    return dict(_REGISTRY)


def upcaster(
    type_name: str, from_version: int
) -> Callable[[Callable[[dict[str, Any]], dict[str, Any]]], Callable[[dict[str, Any]], dict[str, Any]]]:
    """Register a function turning a ``from_version`` payload into a ``from_version + 1`` one."""

    def register(
        fn: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return register


def upcast(type_name: str, schema_version: int, payload: dict[str, Any]) -> dict[str, Any]:
    """Bring an old payload up to the current schema version of its type."""
    cls = _REGISTRY.get(type_name)
    if cls is None:
        raise UnknownEventType(f"unknown event type {type_name!r}")
    version = schema_version
    while version < cls.schema_version:
        step = _UPCASTERS.get((type_name, version))
        if step is None:
            raise UnknownEventType(f"no upcaster for {type_name!r} v{version}")
        payload = step(payload)
        version += 1
    if version != cls.schema_version:
        raise UnknownEventType(f"{type_name!r} v{schema_version} is newer than this code")
    return payload


def decode(type_name: str, schema_version: int, payload: dict[str, Any]) -> Event:
    """The typed event for a stored payload (upcast first when it is older)."""
    cls = _REGISTRY.get(type_name)
    if cls is None:
        raise UnknownEventType(f"unknown event type {type_name!r}")
    if schema_version != cls.schema_version:
        payload = upcast(type_name, schema_version, payload)
    return cls.model_validate(payload)


_JSON_VALIDATORS: dict[str, Callable[[str], Event]] = {}


def decode_json(type_name: str, schema_version: int, payload_json: str) -> Event:
    """``decode`` of a stored payload's JSON text: the same event, with the text parsed by
    pydantic's own JSON parser straight into the model (2-3x cheaper than ``json.loads`` and
    validating the dict: a rebuild decodes every event of the log). An older schema version
    goes through ``upcast`` as in ``decode``."""
    return json_decoder(type_name, schema_version)(payload_json)


def json_decoder(type_name: str, schema_version: int) -> Callable[[str], Event]:
    """``decode_json`` for one type and schema version, as a function of the payload's text
    alone: a fold looks it up once per type rather than once per event. An unknown type gives a
    function that raises ``UnknownEventType`` when called, as ``decode_json`` does."""
    cls = _REGISTRY.get(type_name)
    if cls is None or schema_version != cls.schema_version:
        return lambda text: decode(type_name, schema_version, json.loads(text))
    validate = _JSON_VALIDATORS.get(type_name)
    if validate is None:
        cls.model_rebuild()  # build the deferred validator (a no-op once built)
        validate = _JSON_VALIDATORS[type_name] = cls.__pydantic_validator__.validate_json
    return validate


# --- applications ------------------------------------------------------------------------------


class ApplicationRegistered(Event):
    type_name = "application.registered"
    app: str
    labels: dict[str, str] = {}
    provider: str | None = None  # the identity provider resource it belongs to; None: local
    client_id: str | None = None  # the provider's client id; None: the app's name


# --- credentials -------------------------------------------------------------------------------


class CredentialAdded(Event):
    type_name = "credential.added"
    credential_id: str
    usage: Usage
    kind: CredentialKind
    kid: str
    alg: str | None = None
    key_size: int | None = None
    fingerprint: str
    name: str | None = None
    public_pem: str | None = None
    certificate_pem: str | None = None
    subject_dn: str | None = None
    not_before: Time | None = None
    expires_at: Time | None = None
    generated: bool = False  # the orchestrator made the key pair; its private part is in the keystore


class CredentialRegistered(Event):
    """The identity provider holds the credential under its own id (an Auth0 ``cred_...``, an
    OIDC key id): found again by it, not uploaded twice."""

    type_name = "credential.registered"
    credential_id: str
    provider: str
    provider_credential_id: str


class CredentialActivated(Event):
    type_name = "credential.activated"
    credential_id: str


class CredentialDisabled(Event):
    type_name = "credential.disabled"
    credential_id: str
    forced: bool = False


class CredentialExpired(Event):
    type_name = "credential.expired"
    credential_id: str
    expired_at: Time


class CredentialDeleted(Event):
    type_name = "credential.deleted"
    credential_id: str


class CredentialExpiryChanged(Event):
    type_name = "credential.expiry_changed"
    credential_id: str
    expires_at: Time
    previous_expires_at: Time | None = None


class SecretRotated(Event):
    type_name = "secret.rotated"
    version: int
    fingerprint: str
    previous_valid_until: Time | None = None


# --- drift -------------------------------------------------------------------------------------


class DriftRepaired(Event):
    """The identity provider was put back to what the log says (``drift --repair``): one
    difference, what it was (``kind``: added, removed, attached, ...) and what was done. The
    credentials' own facts do not change: the provider now agrees with them."""

    type_name = "drift.repaired"
    kind: str
    detail: str
    credential_id: str | None = None
    provider_credential_id: str | None = None


# --- rotations ---------------------------------------------------------------------------------


class RotationStarted(Event):
    type_name = "rotation.started"
    rotation_id: str
    usage: str
    reason: str
    policy: str | None = None
    old_credential_id: str | None = None
    new_credential_id: str


class RotationStepRecorded(Event):
    type_name = "rotation.step_recorded"
    rotation_id: str
    step: str
    detail: str | None = None


class RotationCompleted(Event):
    type_name = "rotation.completed"
    rotation_id: str
    new_credential_id: str
    old_credential_id: str | None = None


class RotationFailed(Event):
    type_name = "rotation.failed"
    rotation_id: str
    step: str
    error: str
    attempt: int
    next_attempt_at: Time | None = None


class RotationParked(Event):
    type_name = "rotation.parked"
    rotation_id: str
    step: str
    error: str
    attempts: int


class RotationRetried(Event):
    type_name = "rotation.retried"
    rotation_id: str


class RotationRolledBack(Event):
    """A completed rotation undone (``orchestrator rotations rollback``): its old credential
    active again at the provider and delivered again, its new one disabled."""

    type_name = "rotation.rolled_back"
    rotation_id: str
    restored_credential_id: str
    retired_credential_id: str
    note: str | None = None


class RotationAbandoned(Event):
    type_name = "rotation.abandoned"
    rotation_id: str
    note: str | None = None


# --- policies ----------------------------------------------------------------------------------


class PolicyApplied(Event):
    type_name = "policy.applied"
    name: str
    content_hash: str
    path: str | None = None


class PolicyRejected(Event):
    type_name = "policy.rejected"
    path: str
    content_hash: str
    error: str
