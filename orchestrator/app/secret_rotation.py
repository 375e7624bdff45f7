"""``secret rotate``: a person rotates a client secret now, through the daemon's own rotation.

The command starts a rotation of usage ``client_secret`` (reason ``manual``) and drives it with
the rotator to its end in the same process: generated, registered, tested, delivered, and only
then is the new secret shown. Nothing is decided here that the rotation process does not decide
for the daemon too; this module only chooses the parameters and reads the outcome.

* Grace: the previous secret stays valid for ``grace`` after the new one is delivered; by
  default the overlap of the client_secret policy that selects the application, else
  ``DEFAULT_GRACE`` (the rotation process's default overlap).
* A person is waiting: a failed step parks the rotation at once (a retry budget of one attempt),
  with the previous secret intact and the log and provider agreeing on it. The same command
  run again retries the parked rotation; ``rotations abandon`` gives it up.
* Refused before anything is written where the secret would never be used: at a provider whose
  client authenticates one way at a time (Auth0), a client that authenticates with keys
  (``domain.client_auth``: the log's usable keys, else one read of the client at the provider).
  An identity provider that is not configured, or cannot be asked, refuses it too.
* Concurrency: ``rotation.started`` is appended at the version the command read, so of two
  commands racing for one application exactly one starts a rotation; while one is running the
  other is refused ("a rotation of client_secret is already in flight").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from events import catalog as ev
from events.codec import format_time
from events.state import AppState, Rotation, RotationStatus, stream_id
from events.store import ReadFilter
from orchestrator.app.ports import ClientLookup, Providers
from orchestrator.app.rotator import Rotator
from orchestrator.app.secret_steps import next_secret_version
from orchestrator.app.service import secret_item_id
from orchestrator.domain.client_auth import secret_refused
from orchestrator.domain.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    OrchestratorError,
    ProviderError,
    RefusedError,
)
from orchestrator.domain.planner import PlanPolicy
from orchestrator.domain.rotation import Params, Reason
from orchestrator.domain.rotation_events import decide_retry
from orchestrator.domain.vocabulary import SECRET_USAGE

__all__ = ["DEFAULT_GRACE", "ShownSecret", "rotate_secret_now", "secret_params"]

DEFAULT_GRACE = Params(usage=SECRET_USAGE).overlap


@dataclass(frozen=True, slots=True)
class ShownSecret:
    rotation_id: str
    version: int
    secret: str = ""
    previous_valid_until: datetime | None = None

    def __repr__(self) -> str:  # never the secret itself
        return f"ShownSecret({self.rotation_id!r}, v{self.version})"


def secret_params(state: AppState, policies: Sequence[PlanPolicy],
                  grace: timedelta | None) -> tuple[Params, str | None]:
    """The rotation's parameters: the selecting client_secret policy's (else the defaults),
    ``grace`` as the overlap when given, and one attempt (a person is waiting)."""
    policy = next((p for p in policies if p.usage == SECRET_USAGE and p.selects(state)), None)
    params = policy.params if policy is not None else Params(usage=SECRET_USAGE)
    if grace is not None:
        params = replace(params, overlap=grace)
    return replace(params, attempts=1), policy.name if policy is not None else None


def rotate_secret_now(rotator: Rotator, app: str, *, policies: Sequence[PlanPolicy] = (),
                      grace: timedelta | None = None, actor: str | None = None,
                      accept_gap: bool = False) -> ShownSecret:
    """Rotate ``app``'s client secret to its end; the new secret, once. OrchestratorError (one
    line) when it is refused or parked. At a provider that keeps one secret (no overlap) it is
    refused unless ``accept_gap`` or the selecting policy accepts the gap."""
    service = rotator.service
    state = service.load(app)
    if not state.registered:
        raise NotFoundError(f"application {app!r} is not registered "
                            f"(register it with: orchestrator app register {app})")
    _check_grace(grace, rotator.clock())
    # the keystore opens with its own key before anything is recorded (KeystoreError if not)
    rotator.keystore.get(secret_item_id(app, next_secret_version(state)))
    params, policy = secret_params(state, policies, grace)
    _secret_usable(rotator, state)
    if not (accept_gap or params.accept_secret_gap
            or rotator.provider.capabilities(app).secret_overlap):
        raise RefusedError(
            f"{app!r} belongs to identity provider {state.provider!r}, which keeps one client "
            "secret: the previous one stops working the moment the new one is set, before the "
            "application has read it; run again with --accept-gap to accept that gap (or move "
            "the application to private_key_jwt, whose keys overlap)")
    rotation_id = _start_or_retry(rotator, app, policy, actor)
    outcome = rotator.advance(app, rotation_id, params)
    rotation = service.load(app).rotations[rotation_id]
    if rotation.status is not RotationStatus.COMPLETED:
        raise OrchestratorError(_not_finished(app, rotation, params, outcome.last.step.value))
    rotated = _rotated(rotator, app, rotation_id)
    secret = rotator.secrets.secret(app, rotated.version)
    if rotator.crypto.secret_fingerprint(secret) != rotated.fingerprint:
        raise OrchestratorError(f"{app}: client secret v{rotated.version} was replaced before "
                                "it could be shown; rotate again")
    return ShownSecret(rotation_id, rotated.version, secret, rotated.previous_valid_until)


def _secret_usable(rotator: Rotator, state: AppState) -> None:
    """Refused (one line, nothing written) when the app's client takes no client secret: the
    log says it authenticates with keys, else the provider does (one read of the client)."""
    capabilities = rotator.provider.capabilities(state.app)  # not configured: refused here
    at = rotator.clock()
    why = secret_refused(state, capabilities, at)
    found = rotator.provider
    if isinstance(found, Providers) and state.provider is not None:
        found = found.named(state.provider)
    if why is None and not capabilities.secret_beside_keys and isinstance(found, ClientLookup):
        client_id = state.provider_client_id
        try:
            client = found.find_client(client_id)
        except ProviderError as exc:
            raise ProviderError(f"{state.app!r}: cannot ask identity provider "
                                f"{state.provider!r} how client {client_id!r} authenticates "
                                f"({exc}); nothing was changed: run the command again once it "
                                "answers") from None
        if client is None:
            raise NotFoundError(f"{state.app!r}: identity provider {state.provider!r} has no "
                                f"client {client_id!r} (deleted there?); nothing was changed")
        why = secret_refused(state, capabilities, at, client.auth_method)
    if why is not None:
        raise RefusedError(why)


def _check_grace(grace: timedelta | None, now: datetime) -> None:
    if grace is None:
        return
    if grace < timedelta(0):
        raise InputError("--grace can't be negative")
    try:
        now + grace * 2
    except OverflowError:
        raise InputError("--grace is too long: the previous secret would stay valid past the "
                         "year 9999; give a shorter grace (e.g. 1h, 7d)") from None


def _start_or_retry(rotator: Rotator, app: str, policy: str | None, actor: str | None) -> str:
    """A new rotation, or the parked one sent back to running; refused while one runs."""
    for _ in range(3):  # a rotation that ends between two reads: look again
        rotation_id = rotator.start(app, SECRET_USAGE, Reason.MANUAL, policy, actor=actor)
        if rotation_id is not None:
            return rotation_id
        running = rotator.service.load(app).running_rotation(SECRET_USAGE)
        if running is not None and running.status is RotationStatus.PARKED:
            if _retried(rotator, app, running.id, actor):
                return running.id
            running = rotator.service.load(app).running_rotation(SECRET_USAGE)
        if running is not None:
            raise ConflictError(
                f"a rotation of client_secret is already in flight for {app!r} ({running.id}, "
                f"{running.status.value} since {format_time(running.started_at)}); wait for it "
                f"to finish (see: orchestrator rotations --app {app})")
    raise ConflictError(f"{app!r} kept changing under this command; try again")


def _retried(rotator: Rotator, app: str, rotation_id: str, actor: str | None) -> bool:
    """Record ``rotation.retried`` if the rotation is still parked; whether it was recorded."""
    try:
        _, records = rotator.service.append_decided(
            app, lambda state: (decide_retry(state, rotation_id), rotator.clock()),
            correlation_id=rotation_id, actor=actor)
    except RefusedError:  # no longer parked: another command took it
        return False
    return bool(records)


def _not_finished(app: str, rotation: Rotation, params: Params, step: str) -> str:
    error = rotation.last_error or "it did not finish"
    registered = rotation.done("registered")
    keeps = (f"the previous secret stays valid for {params.overlap} after the new one was "
             "registered, so run this command again within that time to finish it"
             if registered else
             "nothing changed at the identity provider and the previous secret stays valid; "
             "run this command again to retry")
    return (f"secret rotation {rotation.id} of {app!r} {rotation.status.value} at {step}: "
            f"{error}; {keeps}, or give it up with: orchestrator rotations abandon {app} "
            f"{rotation.id}")


def _rotated(rotator: Rotator, app: str, rotation_id: str) -> ev.SecretRotated:
    for record in rotator.service.audit(ReadFilter(stream_id=stream_id(app),
                                                   types=(ev.SecretRotated.type_name,))):
        if record.correlation_id == rotation_id and isinstance(record.event, ev.SecretRotated):
            return record.event
    raise OrchestratorError(f"{app}: rotation {rotation_id} completed without secret.rotated")
