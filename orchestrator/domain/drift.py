"""Drift: how an application's credentials at its identity provider differ from the log. Pure.

``compare(state, remote, at)`` matches each live credential of the log to the provider's record
of it (by the provider's id first; then by key id, certificate thumbprint, key fingerprint or
subject DN, for a credential whose id was never recorded) and returns one ``Difference`` per
fact that disagrees, each with what the log says, what the provider says and a one-line text:

* ``added``: a credential at the provider the log does not know (made outside the
  orchestrator, or left behind);
* ``removed``: a credential of the log the provider does not hold (deleted outside, or never
  uploaded, such as one added to the log by hand);
* ``attached``: in a usage's slot at the provider while the log has it added or disabled (or in
  a slot of another usage than its own);
* ``detached``: active in the log, not in its usage's slot at the provider;
* ``redated``: another expiry at the provider (keys only: a certificate expires at its
  notAfter, and a subject-DN registration carries no date of its own);
* ``reregistered``: the provider holds the credential (the same key id, thumbprint or DN) under
  another id than the one recorded (deleted and uploaded again outside): only the log's record
  of the id can follow;
* ``auth_method``: the client authenticates another way at the provider (Auth0 holds one
  method at a time, so a client switched to a client secret has detached every key of the
  method the log expects: those credentials are named by this one difference, not also as
  ``detached``).

Where one key set serves every signing usage (RFC 7591's ``jwks``: ``shared_key_set``), a key
is in both signing slots at once, so a key held for another usage is no difference there.
Where the provider keeps no credential that is not attached (RFC 7592's record holds only what
authenticates: ``keeps_detached`` False), a credential added or disabled in the log is expected
absent, so its absence is no difference (a retired key between its rotation and its deletion).
What is inoperable either way is not compared: a credential past its expiry (or recorded
expired) is neither expected in a slot nor missing from the provider. Two credentials of the
log may share one registration (a CA-issued certificate and its successor, matched by subject
DN): their record is expected in the slot while either is active.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from events.kinds import CredentialKind
from events.state import AppState, Credential, Status
from events.times import format_time
from orchestrator.domain.identity_provider import RemoteClient, RemoteCredential
from orchestrator.domain.timemath import END_OF_TIME
from orchestrator.domain.vocabulary import CredentialUsage

__all__ = [
    "AuthMethod",
    "Difference",
    "DriftKind",
    "auth_method_of",
    "certificate_thumbprint",
    "compare",
    "match_record",
    "same_dn",
    "same_expiry",
]

EXPIRY_TOLERANCE = timedelta(seconds=1)  # providers keep milliseconds (Auth0) or seconds


class DriftKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    ATTACHED = "attached"
    DETACHED = "detached"
    REDATED = "redated"
    REREGISTERED = "reregistered"
    AUTH_METHOD = "auth_method"


class AuthMethod(StrEnum):
    """How a client authenticates at the token endpoint (the provider's names)."""

    PRIVATE_KEY_JWT = "private_key_jwt"
    SELF_SIGNED_TLS = "self_signed_tls_client_auth"
    TLS = "tls_client_auth"


def auth_method_of(credential: Credential) -> AuthMethod | None:
    """The token endpoint method a credential serves (None: a JAR key signs requests only)."""
    if credential.usage == CredentialUsage.PRIVATE_KEY_JWT:
        return AuthMethod.PRIVATE_KEY_JWT
    if credential.usage == CredentialUsage.MTLS:
        if credential.kind is CredentialKind.CERT_SUBJECT_DN:
            return AuthMethod.TLS
        return AuthMethod.SELF_SIGNED_TLS
    return None


@dataclass(frozen=True, slots=True)
class Difference:
    """One fact the log and the provider disagree on. ``credentials``: the log's credentials
    concerned (none for ``added``); ``remote``: the provider's record (none for ``removed``)."""

    kind: DriftKind
    log: str  # what the log says, in a few words
    provider: str  # what the provider says
    usage: str | None = None
    credentials: tuple[Credential, ...] = ()
    remote: RemoteCredential | None = None
    auth_method: str | None = None  # auth_method: the provider's

    @property
    def credential_id(self) -> str | None:
        return self.credentials[0].id if self.credentials else None

    @property
    def provider_id(self) -> str | None:
        if self.remote is not None:
            return self.remote.provider_id
        return self.credentials[0].provider_id if self.credentials else None

    @property
    def subject(self) -> str:
        """The credential in a few words: ours and the provider's id, whichever are known."""
        ids = [i for i in (self.credential_id, self.provider_id) if i]
        if len(self.credentials) > 1:
            ids = [", ".join(c.id for c in self.credentials)]
        return " / ".join(dict.fromkeys(ids)) or "-"

    @property
    def text(self) -> str:
        """One line: what differs, the log's side and the provider's."""
        usage = self.usage or "-"
        if self.kind is DriftKind.ADDED:
            return (f"credential {self.subject} is at the provider ({self.provider}) and not in "
                    "the log")
        if self.kind is DriftKind.REMOVED:
            return (f"credential {self.subject} ({usage}, {self.log} in the log) is not at the "
                    "provider")
        if self.kind is DriftKind.ATTACHED:
            return (f"credential {self.subject} is attached to {usage} at the provider; the log "
                    f"has it {self.log}")
        if self.kind is DriftKind.DETACHED:
            return (f"credential {self.subject} is not attached to {usage} at the provider; the "
                    "log has it active")
        if self.kind is DriftKind.REREGISTERED:
            return (f"credential {self.credential_id} is held by the provider as {self.provider}; "
                    f"the log recorded {self.log}")
        if self.kind is DriftKind.REDATED:
            return (f"credential {self.subject} expires {self.provider} at the provider; the "
                    f"log says {self.log}")
        return (f"the client authenticates with {self.provider} at the provider; the log "
                f"authenticates with {self.log} (credentials {self.subject})")


def compare(state: AppState, remote: RemoteClient, at: datetime, *, dates: bool = True,
            shared_key_set: bool = False, keeps_detached: bool = True) -> tuple[Difference, ...]:
    """Every difference between the log's ``state`` of an app and the provider's ``remote``
    client at ``at``. ``dates``: whether the provider keeps expiry dates at all;
    ``shared_key_set``: whether one key set serves every signing usage; ``keeps_detached``:
    whether a credential that is not attached stays at the provider."""
    live = [c for c in state.credentials.values() if c.live]
    matched: dict[str, list[Credential]] = {}  # remote provider id -> the log's credentials
    unmatched: list[Credential] = []
    for cred in live:
        found = match_record(cred, remote.credentials)
        if found is None:
            unmatched.append(cred)
        else:
            matched.setdefault(found.provider_id, []).append(cred)
    out: list[Difference] = []
    for cred in unmatched:
        if not _inoperable(cred, at) and (keeps_detached or cred.status is Status.ACTIVE):
            out.append(Difference(DriftKind.REMOVED, _status(cred), "absent", str(cred.usage),
                                  (cred,)))
    method = _auth_method_difference(live, remote, at)
    covered = {c.id for c in method.credentials} if method else set()
    if method is not None:
        out.append(method)
    for record in remote.credentials:
        group = matched.get(record.provider_id)
        if group is None:
            out.append(Difference(DriftKind.ADDED, "absent", _describe(record), None, (),
                                  record))
            continue
        out.extend(_ids(group, record))
        out.extend(_slots(group, record, at, covered, shared_key_set))
        if dates:
            out.extend(_dates(group, record))
    return tuple(sorted(out, key=_order))


def _order(diff: Difference) -> tuple[int, str, str]:
    return (list(DriftKind).index(diff.kind), diff.subject, diff.usage or "")


# --- matching ----------------------------------------------------------------------------------


def match_record(cred: Credential,
                 records: Sequence[RemoteCredential]) -> RemoteCredential | None:
    """The provider's record of ``cred``: by the recorded provider id, then by key id,
    certificate thumbprint, key fingerprint or subject DN (None: the provider holds none)."""
    for record in records:
        if cred.provider_id is not None and record.provider_id == cred.provider_id:
            return record
    thumbprint = certificate_thumbprint(cred.certificate_pem) if cred.certificate_pem else None
    for record in records:
        if record.kid is not None and record.kid == cred.kid:
            return record
        if thumbprint is not None and record.thumbprint == thumbprint:
            return record
        if record.fingerprint is not None and record.fingerprint == cred.fingerprint:
            return record
        if (cred.kind is CredentialKind.CERT_SUBJECT_DN and cred.subject_dn
                and record.subject_dn and same_dn(cred.subject_dn, record.subject_dn)):
            return record
    return None


def certificate_thumbprint(certificate_pem: str) -> str | None:
    """The x5t#S256 of a PEM certificate: base64url SHA-256 of its DER, unpadded."""
    body = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----",
                     certificate_pem, re.S)
    if body is None:
        return None
    try:
        der = base64.b64decode("".join(body.group(1).split()), validate=True)
    except ValueError:
        return None
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


_RDN_SPLIT = re.compile(r"(?<!\\)[,+\n]")


def _dn_parts(dn: str) -> list[tuple[str, str]]:
    parts = []
    for item in _RDN_SPLIT.split(dn):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.append((key.strip().upper(), value.strip().replace("\\", "")))
    return sorted(parts)


def same_dn(one: str, other: str) -> bool:
    """Whether two subject DNs name the same attributes: RFC 4514 (``CN=a,O=b``) and the
    provider's one-attribute-a-line form alike, in any order."""
    return _dn_parts(one) == _dn_parts(other)


# --- what differs ------------------------------------------------------------------------------


def _inoperable(cred: Credential, at: datetime) -> bool:
    return cred.status is Status.EXPIRED or cred.expired_by(at)


def _status(cred: Credential) -> str:
    return "active" if cred.status is Status.ACTIVE else str(cred.status)


def _describe(record: RemoteCredential) -> str:
    attached = ", ".join(record.attached) or "not attached"
    key = record.kid or record.thumbprint or record.subject_dn or record.kind
    return f"{record.kind} {key}, {attached}"


def _slots(group: list[Credential], record: RemoteCredential, at: datetime,
           covered: set[str], shared_key_set: bool) -> list[Difference]:
    operable = [c for c in group if not _inoperable(c, at)]
    if not operable or (record.expires_at is not None and record.expires_at <= at):
        return []
    expected = {str(c.usage) for c in operable if c.status is Status.ACTIVE}
    held = set(record.attached)
    if shared_key_set:  # in every signing slot at once: only its own usage's counts
        held &= {str(c.usage) for c in operable}
    out = []
    for usage in sorted(held - expected):
        owners = [c for c in operable if str(c.usage) == usage] or operable
        status = "/".join(sorted({_status(c) for c in owners}))
        if usage not in {str(c.usage) for c in operable}:
            status = f"for {operable[0].usage} only"
        out.append(Difference(DriftKind.ATTACHED, status, "attached", usage, tuple(owners),
                              record))
    for usage in sorted(expected - held):
        owners = [c for c in operable if str(c.usage) == usage and c.status is Status.ACTIVE]
        if all(c.id in covered for c in owners):
            continue
        out.append(Difference(DriftKind.DETACHED, "active", "not attached", usage,
                              tuple(owners), record))
    return out


def _ids(group: list[Credential], record: RemoteCredential) -> list[Difference]:
    return [Difference(DriftKind.REREGISTERED, cred.provider_id, record.provider_id,
                       str(cred.usage), (cred,), record)
            for cred in group if cred.provider_id is not None
            and cred.provider_id != record.provider_id]


def same_expiry(one: datetime | None, other: datetime | None) -> bool:
    """Whether two expiries are the same instant as far as a provider keeps it: within a
    second, and "never" the same as the end of time (Auth0 answers 9999-12-31T23:59:59.000Z
    for a certificate without an expiry)."""
    first, second = one or END_OF_TIME, other or END_OF_TIME
    return abs(first - second) < EXPIRY_TOLERANCE


def _when(at: datetime | None) -> str:
    return "never" if at is None or same_expiry(at, None) else format_time(at)


def _dates(group: list[Credential], record: RemoteCredential) -> list[Difference]:
    if len(group) != 1 or group[0].kind is not CredentialKind.PUBLIC_KEY:
        return []
    cred = group[0]
    if cred.status is Status.EXPIRED or same_expiry(cred.expires_at, record.expires_at):
        return []
    return [Difference(DriftKind.REDATED, _when(cred.expires_at), _when(record.expires_at),
                       str(cred.usage), (cred,), record)]


def _auth_method_difference(live: list[Credential], remote: RemoteClient,
                            at: datetime) -> Difference | None:
    usable = [c for c in live if c.usable(at) and auth_method_of(c) is not None]
    expected = {auth_method_of(c) for c in usable}
    if not expected or remote.auth_method is None or remote.auth_method in expected:
        return None
    names = "/".join(sorted(str(m) for m in expected if m is not None))
    return Difference(DriftKind.AUTH_METHOD, names, remote.auth_method, None,
                      tuple(sorted(usable, key=lambda c: c.id)), None, remote.auth_method)
