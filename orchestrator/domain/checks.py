"""The planner's chain of checks, pure: each reads one application under one policy at ``now``.

The first check that fires wins and gives an action with a reason and a message (the way
cert-manager decides re-issuance); each also says when it could next fire by time alone, so
``planner.next_due`` is derived from this same table and a new check cannot be missed:

    stranded        a parked rotation, no usable credential: retry it every max-backoff, or
                    abandon it when its new credential expired untested (a new one starts)
    running         an in-flight rotation: resume it when its next step is due, else nothing;
                    a parked one whose old credential enters beforeExpiry is retried
    no-usable       no usable credential: provision, or (the last ones expired) expired
    expiring        the newest usable credential expires within beforeExpiry (a duration, or
                    a share of that credential's own lifetime: ``PlanPolicy.renew_before``)
    policy-changed  it no longer matches the policy (algorithm, key size)
    age             it is older than the rotation age
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase

from events.state import AppState, Credential, Rotation, RotationStatus, Status
from orchestrator.domain.rotation import (
    SECRET_USAGE,
    Params,
    Reason,
    Step,
    held_usable,
    replaced_credential,
    resume,
)
from orchestrator.domain.timemath import earlier, later
from orchestrator.domain.window import Window

__all__ = ["CHAIN", "NOTHING", "Action", "Check", "Input", "Kind", "PlanPolicy", "human", "slot"]


class Kind(StrEnum):
    START = "start"  # start a rotation
    RESUME = "resume"  # advance an in-flight rotation
    RETRY = "retry"  # send a parked rotation back to work: its old credential is expiring
    ABANDON = "abandon"  # give up a parked rotation that can never finish (a new one starts)
    EXPIRE = "expire"  # record credential.expired
    DELETE = "delete"  # delete a credential past retention


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """What the planner needs of a policy (built from the policy file by the shell)."""

    name: str
    params: Params
    every: timedelta
    before_expiry: timedelta
    retention: timedelta
    apps: tuple[str, ...] = ("*",)
    labels: Mapping[str, str] = field(default_factory=dict)
    window: Window | None = None
    max_per_tick: int = 50
    matches: Callable[[str, Mapping[str, str]], bool] | None = None
    # beforeExpiry as a share of each credential's own lifetime (0.33 for 33%); None: the
    # fixed ``before_expiry``, which is then the share of the policy's lifetime
    before_expiry_fraction: float | None = None
    # ``params.usage``, kept as a field: the checks read it a dozen times per application
    usage: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "usage", self.params.usage)

    def renew_before(self, cred: Credential) -> timedelta:
        """How long before its expiry ``cred`` is due: ``before_expiry``, or the policy's
        fraction of ``cred``'s own lifetime (from its not-before, else from when it was added,
        to its expiry), as cert-manager's renewBeforePercentage: a credential the provider
        issued shorter is renewed earlier, never in a loop."""
        fraction = self.before_expiry_fraction
        start = cred.not_before or cred.added_at
        if fraction is None or cred.expires_at is None or start is None:
            return self.before_expiry
        lifetime = cred.expires_at - start
        if lifetime <= timedelta(0):
            return self.before_expiry
        return timedelta(seconds=round(lifetime.total_seconds() * fraction))

    def selects(self, app: AppState) -> bool:
        if self.matches is not None:
            return self.matches(app.app, app.labels)
        return any(fnmatchcase(app.app, p) for p in self.apps) and all(
            app.labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    app: str
    reason: Reason
    message: str
    usage: str | None = None
    policy: str | None = None
    credential_id: str | None = None
    rotation_id: str | None = None
    urgent: bool = False
    not_before: datetime | None = None  # START: deferred inside the window until then
    at_provider: bool = True  # DELETE: False when another credential shares its registration

    def due(self, now: datetime) -> bool:
        return self.not_before is None or self.not_before <= now


class Input:
    """One application under one policy at ``now``, with the two facts every check reads
    looked up once: ``newest``, the credential a new rotation replaces (the newest usable one
    of the usage), and ``running``, the rotation of the usage in flight (running, or parked),
    if any. Read-only by convention: each fact is a function of the other three."""

    __slots__ = ("newest", "now", "policy", "running", "state")

    def __init__(self, state: AppState, policy: PlanPolicy, now: datetime) -> None:
        self.state, self.policy, self.now = state, policy, now
        self.newest: Credential | None = replaced_credential(state, policy.usage, now)
        self.running: Rotation | None = state.running_rotation(policy.usage)

    def __repr__(self) -> str:
        return f"Input({self.state.app!r}, {self.policy.name!r}, {self.now.isoformat()})"


# --- the chain of checks -----------------------------------------------------------------------
# Each check: ``fires(i)`` an Action, None (pass on) or NOTHING (stop the chain); ``due(i)`` the
# earliest instant it could fire by time alone (None: only a change of state makes it fire).


def _has_usable(i: Input) -> bool:
    """Whether the application holds a usable credential (not one still to be delivered)."""
    if i.policy.usage == SECRET_USAGE:
        return i.state.secret is not None
    return bool(held_usable(i.state, i.policy.usage, i.now))


def _parked_stranded(i: Input) -> Rotation | None:
    """The parked rotation of an application that has no usable credential of the usage."""
    rot = i.running
    if rot is None or rot.status is not RotationStatus.PARKED or _has_usable(i):
        return None
    return rot


def _parked_until(i: Input, rot: Rotation) -> datetime:
    """A parked rotation the daemon retries on its own waits the policy's longest backoff
    after it was parked: retried again and again, never back to back."""
    return later(rot.updated_at, i.policy.params.max_backoff)


def _dead_end(i: Input, rot: Rotation) -> Credential | None:
    """The rotation's new credential when it can never pass the test (expired or deleted)."""
    new = i.state.credentials.get(rot.new_credential_id)
    if new is not None and (not new.live or new.status is Status.EXPIRED or new.expired_by(i.now)):
        return new
    return None


def _stranded(i: Input) -> Action | None:
    rot = _parked_stranded(i)
    if rot is None:
        return None
    app, usage = i.state.app, i.policy.usage
    dead = _dead_end(i, rot)
    if dead is not None:
        return Action(Kind.ABANDON, app, Reason.EXPIRED,
                      f"rotation {rot.id} is parked and its new credential {dead.id} expired "
                      f"before it passed the test; no usable {usage} credential: abandoning it "
                      "so that a new rotation starts", usage=usage, policy=i.policy.name,
                      rotation_id=rot.id, urgent=True)
    if i.now < _parked_until(i, rot):
        return NOTHING  # its backoff runs; _stranded_due knows when it ends
    return Action(Kind.RETRY, app, Reason.EXPIRED,
                  f"no usable {usage} credential and rotation {rot.id} is parked ({rot.last_error}):"
                  f" retrying it (every {human(i.policy.params.max_backoff)} until it completes)",
                  usage=usage, policy=i.policy.name, rotation_id=rot.id, urgent=True)


def _stranded_due(i: Input) -> datetime | None:
    rot = _parked_stranded(i)
    if rot is None or _dead_end(i, rot) is not None:
        return None
    return _parked_until(i, rot)


def _running(i: Input) -> Action | None:
    rot = i.running
    if rot is None:
        return None
    if rot.status is RotationStatus.PARKED:
        old = i.state.credentials.get(rot.old_credential_id or "")
        if (old is not None and old.usable(i.now) and old.expires_at is not None
                and old.expires_at - i.now <= i.policy.renew_before(old)):
            if i.now < _parked_until(i, rot):
                return NOTHING  # parked a moment ago: retried once its capped backoff ran
            return Action(Kind.RETRY, i.state.app, Reason.EXPIRING,
                          f"rotation {rot.id} is parked and {old.id} expires in "
                          f"{human(old.expires_at - i.now)}: retrying rather than let it expire",
                          usage=rot.usage, policy=i.policy.name, rotation_id=rot.id, urgent=True)
        return NOTHING  # a human decides: orchestrator rotations retry|abandon
    if resume(i.state, rot, i.policy.params, i.now).step is Step.WAIT:
        return NOTHING  # its backoff or its overlap runs; _running_due knows when it ends
    return Action(Kind.RESUME, i.state.app, Reason.OVERDUE_STEP,
                  f"rotation {rot.id} has a step due", usage=rot.usage, policy=i.policy.name,
                  rotation_id=rot.id, urgent=True)


def _running_due(i: Input) -> datetime | None:
    rot = i.running
    if rot is None:
        return None
    if rot.status is RotationStatus.PARKED:
        old = i.state.credentials.get(rot.old_credential_id or "")
        if old is None or old.expires_at is None:
            return None
        return max(earlier(old.expires_at, i.policy.renew_before(old)), _parked_until(i, rot))
    ends = (rot.next_attempt_at,
            later(rot.tested_at, i.policy.params.overlap) if rot.tested_at else None)
    future = [t for t in ends if t is not None and t > i.now]
    return min(future) if future else i.now  # its next step is due now


def _no_usable(i: Input) -> Action | None:
    if i.policy.usage == SECRET_USAGE:
        if i.state.secret is None:
            return _start(i, Reason.PROVISION, "the application has no client secret yet", True)
        return None
    if i.newest is not None:
        return None
    had = [c for c in i.state.credentials.values() if c.usage == i.policy.usage]
    if any(c.status is Status.EXPIRED or c.expired_by(i.now) for c in had):
        return _start(i, Reason.EXPIRED, f"every {i.policy.usage} credential has expired", True)
    return _start(i, Reason.PROVISION, f"no usable {i.policy.usage} credential yet", True)


def _newest_expiry(i: Input) -> datetime | None:
    """When the newest usable credential stops being usable (then _no_usable fires)."""
    cred = i.newest
    return cred.expires_at if cred is not None and i.policy.usage != SECRET_USAGE else None


def _expiring(i: Input) -> Action | None:
    cred = i.newest
    if cred is None or cred.expires_at is None:
        return None
    left = cred.expires_at - i.now
    if left > i.policy.renew_before(cred):
        return None
    return _start(i, Reason.EXPIRING, f"{cred.id} expires in {human(left)}",
                  _must_not_wait(i, cred.expires_at))


def _expiring_due(i: Input) -> datetime | None:
    cred = i.newest
    if cred is None or cred.expires_at is None or i.policy.usage == SECRET_USAGE:
        return None
    return earlier(cred.expires_at, i.policy.renew_before(cred))


def _policy_changed(i: Input) -> Action | None:
    cred = i.newest
    params = i.policy.params
    if cred is None or i.policy.usage in (SECRET_USAGE, "mtls"):
        return None
    if cred.alg != params.algorithm or cred.key_size != params.key_size:
        return _start(i, Reason.POLICY_CHANGED,
                      f"{cred.id} is {cred.alg}/{cred.key_size}, the policy wants "
                      f"{params.algorithm}/{params.key_size}", False)
    return None


def _age_since(i: Input) -> tuple[datetime, str] | None:
    if i.policy.usage == SECRET_USAGE:
        if i.state.secret is None:
            return None
        return i.state.secret.rotated_at, f"client secret v{i.state.secret.version}"
    cred = i.newest
    if cred is None:
        return None
    # a credential a rollback put back counts its age from then: the daemon does not undo the
    # rollback at its next tick (beforeExpiry still rotates it before it expires)
    return cred.restored_at or cred.activated_at or cred.added_at, cred.id


def _age(i: Input) -> Action | None:
    aged = _age_since(i)
    if aged is None:
        return None
    since, subject = aged
    age = i.now - since
    if age < i.policy.every:
        return None
    return _start(i, Reason.AGE, f"{subject} is {human(age)} old (rotate every "
                  f"{human(i.policy.every)})", False)


def _age_due(i: Input) -> datetime | None:
    aged = _age_since(i)
    return later(aged[0], i.policy.every) if aged is not None else None


def _never(i: Input) -> datetime | None:
    return None  # fires on a change of state only


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    fires: Callable[[Input], Action | None]
    due: Callable[[Input], datetime | None]
    idle_only: bool = False  # reached only when no rotation of the usage is in flight


CHAIN: tuple[Check, ...] = (
    Check("stranded", _stranded, _stranded_due),
    Check("running", _running, _running_due),
    Check("no-usable", _no_usable, _newest_expiry, idle_only=True),
    Check("expiring", _expiring, _expiring_due, idle_only=True),
    Check("policy-changed", _policy_changed, _never, idle_only=True),
    Check("age", _age, _age_due, idle_only=True),
)
NOTHING = Action(Kind.RESUME, "", Reason.OVERDUE_STEP, "")  # sentinel: stop the chain


def _start(i: Input, reason: Reason, message: str, urgent: bool) -> Action:
    return Action(Kind.START, i.state.app, reason, message, usage=i.policy.usage,
                  policy=i.policy.name, urgent=urgent)


def _must_not_wait(i: Input, expires_at: datetime) -> bool:
    """True when waiting for this application's slot in the next window would leave less
    than the overlap before ``expires_at``."""
    window = i.policy.window
    if window is None or window.is_open(i.now):
        return True
    nxt = window.current_or_next(i.now)
    return nxt is None or (
        slot(nxt, i.state.app, i.policy.name) + i.policy.params.overlap >= expires_at)


def _jitter(app: str, policy: str) -> float:
    digest = hashlib.sha256(f"{policy}/{app}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def slot(window: tuple[datetime, datetime], app: str, policy: str) -> datetime:
    """Where a routine start of ``app`` goes in ``window``: a deterministic offset in its
    first half."""
    return window[0] + (window[1] - window[0]) / 2 * _jitter(app, policy)


def human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds // size}{unit}"
    return f"{sign}{seconds}s"
