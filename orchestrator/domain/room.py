"""Room at an identity provider for a credential a manual command sends there. Pure.

A provider declares what a client may hold (``Capabilities``): the usages it takes, at most
``per_slot`` credentials attached to one usage at once, and at most ``per_client`` credential
records in all (Auth0's pool). The manual credential commands (``app.manual_credentials``) ask
these before anything changes at the provider, so a full slot or pool is refused in one line
that names what to disable or delete, instead of a provider refusal halfway through.

What the provider holds is read from it where it lists its clients (``remote``): the log's own
credentials and any the log does not know (made outside the orchestrator). Without it, the log's
active credentials of the usage stand for the slot. Not counted in a slot: ``cred``'s own record
(attached already: nothing to make room for), a registration ``cred`` shares (a CA-issued
certificate and its successor, one subject DN), and, where one key set serves every signing
usage (``shared_key_set``), a key the log holds for another usage (it fills that usage's slot).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from events.kinds import CredentialKind
from events.state import AppState, Credential, Status
from orchestrator.domain.drift import match_record
from orchestrator.domain.identity_provider import Capabilities, RemoteClient, RemoteCredential
from orchestrator.domain.rotation import registration_sharers

__all__ = ["pool_refusal", "slot_refusal", "usage_refusal"]


@dataclass(frozen=True, slots=True)
class _Holder:
    label: str  # our credential id, or the provider's id of one the log does not know
    ours: Credential | None


def usage_refusal(usage: str, caps: Capabilities, provider: str) -> str | None:
    """Why ``provider`` cannot hold a credential of ``usage`` (None: it can)."""
    if usage in caps.usages:
        return None
    held = ", ".join(sorted(str(u) for u in caps.usages))
    return (f"identity provider {provider!r} holds no {usage} credentials (only {held}): bind "
            "the application to a provider that does, or use one of those")


def slot_refusal(state: AppState, cred: Credential, caps: Capabilities, provider: str,
                 remote: RemoteClient | None = None) -> str | None:
    """Why attaching ``cred`` would put more than ``per_slot`` credentials in its usage's slot
    at ``provider`` (None: there is room, or it is attached there already)."""
    usage = str(cred.usage)
    if remote is None:
        holders = _log_holders(state, cred)
    else:
        own = match_record(cred, remote.credentials)
        if own is not None and usage in own.attached:
            return None
        holders = [_holder(r, state) for r in remote.credentials
                   if r is not own and usage in r.attached
                   and not _in_another_slot(r, state, usage, caps)]
    if len(holders) < caps.per_slot:
        return None
    todo = _todo(state.app, holders, "disable",  # one of ours that disabling detaches there
                 lambda c: c.status is Status.ACTIVE and str(c.usage) == usage,
                 "take the ones the log does not have active there out of it")
    return (f"the {usage} slot of client {state.provider_client_id!r} at identity provider "
            f"{provider!r} is full: it holds {len(holders)} of {caps.per_slot} "
            f"({_labels(holders)}); {todo}")


def pool_refusal(state: AppState, cred: Credential, caps: Capabilities, provider: str,
                 remote: RemoteClient | None) -> str | None:
    """Why uploading ``cred`` would put more than ``per_client`` records in the client at
    ``provider`` (None: there is room, it is there already, or the provider sets no limit)."""
    if caps.per_client is None or remote is None:
        return None
    if match_record(cred, remote.credentials) is not None:
        return None
    if len(remote.credentials) < caps.per_client:
        return None
    holders = [_holder(r, state) for r in remote.credentials]
    todo = _todo(state.app, holders, "delete", lambda c: True, "delete the ones the log does "
                 "not know")
    return (f"client {state.provider_client_id!r} at identity provider {provider!r} holds "
            f"{len(holders)} credentials, its limit of {caps.per_client} "
            f"({_labels(holders)}); {todo}")


def _log_holders(state: AppState, cred: Credential) -> list[_Holder]:
    """The log's active credentials of ``cred``'s usage, one per registration, but its own."""
    skip = {cred.id, *(c.id for c in registration_sharers(state, cred))}
    seen: set[str] = set()
    holders = []
    for other in sorted(state.credentials.values(), key=lambda c: c.id):
        if (other.id in skip or not other.live or other.status is not Status.ACTIVE
                or other.usage != cred.usage):
            continue
        registration = (other.subject_dn or other.id if other.kind is
                        CredentialKind.CERT_SUBJECT_DN else other.id)
        if registration not in seen:
            seen.add(registration)
            holders.append(_Holder(other.id, other))
    return holders


def _ours(record: RemoteCredential, state: AppState) -> Credential | None:
    return next((c for c in sorted(state.credentials.values(), key=lambda c: c.id)
                 if c.live and match_record(c, (record,)) is not None), None)


def _holder(record: RemoteCredential, state: AppState) -> _Holder:
    ours = _ours(record, state)
    if ours is not None:
        return _Holder(ours.id, ours)
    return _Holder(f"{record.provider_id}, not in the log", None)


def _in_another_slot(record: RemoteCredential, state: AppState, usage: str,
                     caps: Capabilities) -> bool:
    """A key of one shared key set that the log holds for another usage."""
    ours = _ours(record, state) if caps.shared_key_set else None
    return ours is not None and str(ours.usage) != usage


def _labels(holders: Sequence[_Holder]) -> str:
    return "; ".join(h.label for h in holders)


def _todo(app: str, holders: Sequence[_Holder], verb: str, fits: Callable[[Credential], bool],
          others: str) -> str:
    """What to do first: ``verb`` one of ours that ``fits``, and/or repair the rest."""
    ours = [h for h in holders if h.ours is not None and fits(h.ours)]
    steps = []
    if ours:
        steps.append(f"{verb} one first (orchestrator credential {verb} {app} ID)")
    if len(ours) < len(holders):
        steps.append(f"{others} (orchestrator drift --app {app} --repair)")
    return ", or ".join(steps)
