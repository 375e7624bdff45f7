"""Adoption: the events that record what an identity provider holds. Pure.

``import`` adopts whole clients (``decide_import``: the application, bound to the provider and
its client id, and its credentials); ``drift --adopt`` adopts differences
(``decide_adoption``). A credential is recorded as it is at the provider:

    credential.added       usage, kind, kid, alg, expiry, and the public material the provider
                           returns (Auth0 never returns a PEM after creation)
    credential.registered  the provider's id for it
    credential.activated   when it is attached to its usage's slot

Without the public key itself, the fingerprint (used once in the whole log, like a key's) is
derived from what the provider says and marked as such: ``provider:<name>:kid:<kid>``,
``provider:<name>:x5t#S256:<thumbprint>``, or the provider's own id as a last resort. Such a
credential cannot be uploaded again by ``drift --repair`` (the log does not hold its key); it is
rotated like any other, and its successor carries the real fingerprint.

An application is named from its client's name, made to fit the application-name rules
(``rules.APP_PATTERN``), and a clash is resolved predictably: ``name``, then
``name-<first 8 characters of the client id>``, then ``name-<client id>``, then numbered.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from events import catalog as ev
from events.kinds import CredentialKind
from events.state import AppState, Status, evolve
from orchestrator.domain import rules
from orchestrator.domain.drift import Difference, DriftKind
from orchestrator.domain.errors import RefusedError
from orchestrator.domain.identity_provider import RemoteClient, RemoteCredential
from orchestrator.domain.material import PublicMaterial
from orchestrator.domain.timemath import END_OF_TIME
from orchestrator.domain.vocabulary import MAX_APP_NAME, CredentialUsage

__all__ = [
    "MARK",
    "Refusal",
    "app_name",
    "attached_first",
    "decide_adopt_credential",
    "decide_adoption",
    "decide_import",
    "marked_fingerprint",
    "sanitise_name",
    "usage_of",
]

MARK = "provider:"  # a fingerprint derived from the provider's record, not from the key
FALLBACK_NAME = "client"
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._-]+")
_KID = re.compile(r"[0-9a-zA-Z\-_]{10,64}")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A remote credential (or a difference) that could not be recorded, and why."""

    provider_id: str | None
    reason: str
    kind: str | None = None


# --- names -------------------------------------------------------------------------------------


def sanitise_name(name: str) -> str:
    """A client's name made into an application name: accents dropped, every run of other
    characters one '-', starting with a letter or digit, at most 64 characters."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = _NOT_ALLOWED.sub("-", ascii_text).strip("-._")
    text = text[:MAX_APP_NAME].rstrip("-._")
    return text if text and rules.APP_PATTERN.fullmatch(text) else FALLBACK_NAME


def _suffixed(base: str, suffix: str) -> str:
    suffix = _NOT_ALLOWED.sub("-", suffix).strip("-._") or "x"
    room = MAX_APP_NAME - len(suffix) - 1
    return f"{base[:room].rstrip('-._') or FALLBACK_NAME}-{suffix}"[:MAX_APP_NAME]


def app_name(client_name: str, client_id: str, taken: Callable[[str], bool]) -> str:
    """The application name for a client: its sanitised name, or the first of the predictable
    alternatives that is not ``taken``."""
    base = sanitise_name(client_name)
    candidates = [base, _suffixed(base, client_id[:8]), _suffixed(base, client_id)]
    for candidate in candidates:
        if not taken(candidate):
            return candidate
    number = 2
    while taken(name := _suffixed(candidates[-1], str(number))):
        number += 1
    return name


# --- credentials -------------------------------------------------------------------------------


def usage_of(record: RemoteCredential) -> CredentialUsage:
    """The usage a remote credential serves: its slot's, else what its kind is for (a key in
    no slot is taken for a Private Key JWT key)."""
    if record.kind is not CredentialKind.PUBLIC_KEY:
        return CredentialUsage.MTLS
    for usage in record.attached:
        if usage in (CredentialUsage.PRIVATE_KEY_JWT, CredentialUsage.JAR):
            return CredentialUsage(usage)
    return CredentialUsage.PRIVATE_KEY_JWT


def marked_fingerprint(provider: str, record: RemoteCredential) -> str:
    """A fingerprint for a credential whose public key the provider does not return."""
    if record.kid and record.kind is CredentialKind.PUBLIC_KEY:
        return f"{MARK}{provider}:kid:{record.kid}"  # Auth0's kid: the RFC 7638 thumbprint
    if record.thumbprint:
        return f"{MARK}{provider}:x5t#S256:{record.thumbprint}"
    if record.kid:
        return f"{MARK}{provider}:kid:{record.kid}"
    return f"{MARK}{provider}:id:{record.provider_id}"


def _kid(record: RemoteCredential, material: PublicMaterial) -> str:
    if record.kid and _KID.fullmatch(record.kid):
        return record.kid
    if material.jwk_thumbprint:
        return material.jwk_thumbprint
    if record.thumbprint and _KID.fullmatch(record.thumbprint):
        return record.thumbprint
    return material.fingerprint.rsplit(":", 1)[-1][:64]


def decide_adopt_credential(state: AppState, provider: str, record: RemoteCredential,
                            credential_id: str, material: PublicMaterial) -> list[ev.Event]:
    """The events recording ``record`` in ``state``'s application as it is at the provider;
    RefusedError when the credential rules cannot hold it (a third live credential of a usage,
    a key or key id the application holds already)."""
    usage = usage_of(record)
    kid = _kid(record, material)
    for other in state.credentials.values():
        if other.fingerprint == material.fingerprint or other.kid == kid:
            raise RefusedError(f"the application holds this credential already as {other.id}")
    live = state.live(usage)
    if len(live) >= rules.MAX_LIVE_PER_USAGE:
        raise RefusedError(f"the application has {len(live)} {usage} credentials already "
                           f"({', '.join(c.id for c in live)}); at most "
                           f"{rules.MAX_LIVE_PER_USAGE} are allowed")
    keyed = record.kind is CredentialKind.PUBLIC_KEY
    added = ev.CredentialAdded(
        credential_id=credential_id, usage=usage, kind=record.kind, kid=kid,
        alg=(record.alg or "RS256") if keyed else None, key_size=material.key_size,
        fingerprint=material.fingerprint, name=record.name,
        public_pem=material.public_pem if keyed else None,
        certificate_pem=material.certificate_pem,
        subject_dn=(material.subject_dn or record.subject_dn
                    if record.kind is CredentialKind.CERT_SUBJECT_DN else None),
        not_before=material.not_before, expires_at=record.expires_at)
    events: list[ev.Event] = [added, ev.CredentialRegistered(
        credential_id=credential_id, provider=provider, provider_credential_id=record.provider_id)]
    if usage in record.attached:
        events.append(ev.CredentialActivated(credential_id=credential_id))
    return events


def _folded(state: AppState, events: list[ev.Event], at: datetime) -> AppState:
    for event in events:
        state = evolve(state, event, at)
    return state


def decide_import(state: AppState, app: str, provider: str, remote: RemoteClient,
                  ids: Mapping[str, str], materials: Mapping[str, PublicMaterial],
                  at: datetime) -> tuple[list[ev.Event], list[Refusal]]:
    """The events importing ``remote`` as application ``app``: registered, bound to
    ``provider`` and the client id, with every credential the rules can hold (``ids`` and
    ``materials`` by the provider's credential id; those missing are not recorded). Refused
    credentials are returned with the reason; a refused application raises."""
    events: list[ev.Event] = rules.decide(rules.RegisterApplication(
        app=app, at=at, provider=provider, client_id=remote.client_id), state)
    current = _folded(state, events, at)
    refused: list[Refusal] = []
    for record in attached_first(remote.credentials):
        if record.provider_id not in ids:
            continue
        try:
            more = decide_adopt_credential(current, provider, record, ids[record.provider_id],
                                           materials[record.provider_id])
        except RefusedError as exc:
            refused.append(Refusal(record.provider_id, str(exc)))
            continue
        events += more
        current = _folded(current, more, at)
    return events, refused


def attached_first(records: tuple[RemoteCredential, ...]) -> list[RemoteCredential]:
    """Attached credentials before the others: when a usage has more than the log can hold,
    the ones the client authenticates with are kept."""
    return sorted(records, key=lambda r: not r.attached)


# --- drift --adopt -----------------------------------------------------------------------------


def decide_adoption(state: AppState, differences: tuple[Difference, ...], provider: str,
                    ids: Mapping[str, str], materials: Mapping[str, PublicMaterial],
                    at: datetime) -> tuple[list[ev.Event], list[Refusal]]:
    """The events that make the log say what the provider has, difference by difference:
    added -> recorded (as ``decide_adopt_credential``), removed -> deleted, attached ->
    activated, detached -> disabled, redated -> the provider's expiry (its "never" recorded as
    the end of time), reregistered -> the provider's id, auth_method -> the credentials of the
    method the provider no longer uses disabled. What the log cannot say is refused."""
    events: list[ev.Event] = []
    refused: list[Refusal] = []
    current = state
    for diff in differences:
        try:
            more = _adopt_one(current, diff, provider, ids, materials, at)
        except RefusedError as exc:
            refused.append(Refusal(diff.provider_id or diff.credential_id, str(exc), diff.kind))
            continue
        events += more
        current = _folded(current, more, at)
    return events, refused


def _adopt_one(state: AppState, diff: Difference, provider: str, ids: Mapping[str, str],
               materials: Mapping[str, PublicMaterial], at: datetime) -> list[ev.Event]:
    kind = diff.kind
    if kind is DriftKind.ADDED:
        assert diff.remote is not None
        pid = diff.remote.provider_id
        if pid not in ids:
            raise RefusedError("no public facts of it could be read")
        return decide_adopt_credential(state, provider, diff.remote, ids[pid], materials[pid])
    live = [state.credentials[c.id] for c in diff.credentials
            if c.id in state.credentials and state.credentials[c.id].live]
    if kind is DriftKind.REMOVED:
        return [ev.CredentialDeleted(credential_id=c.id) for c in live]
    if kind is DriftKind.ATTACHED:
        own = [c for c in live if str(c.usage) == diff.usage]
        if not own:
            raise RefusedError(f"the log holds a credential for one usage; it cannot be "
                               f"{diff.usage} as well: repair it instead")
        return [ev.CredentialActivated(credential_id=c.id) for c in own
                if c.status is not Status.ACTIVE]
    if kind in (DriftKind.DETACHED, DriftKind.AUTH_METHOD):
        return [ev.CredentialDisabled(credential_id=c.id, forced=True) for c in live
                if c.status is Status.ACTIVE]
    if kind is DriftKind.REDATED:
        assert diff.remote is not None
        expires = diff.remote.expires_at or END_OF_TIME
        return [ev.CredentialExpiryChanged(credential_id=c.id, expires_at=expires,
                                           previous_expires_at=c.expires_at) for c in live]
    if kind is DriftKind.REREGISTERED:
        assert diff.remote is not None
        return [ev.CredentialRegistered(credential_id=c.id, provider=provider,
                                        provider_credential_id=diff.remote.provider_id)
                for c in live]
    raise RefusedError(f"a {kind} difference cannot be adopted")
