"""Carries out the rotation process decided by ``orchestrator.domain.rotation``: the only I/O of it.

``advance`` runs the steps of one rotation until it has to wait (overlap, backoff), completes,
or a step fails; each step first does its idempotent outside work (keystore, provider, delivery
files), then records its event(s) with the rotation id as correlation id. A crash between the
two repeats the work on resume, which finds it done (the keystore item under the new credential
id, the provider's credential by id, the same files).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from events import catalog as ev
from events.state import AppState, Credential, Rotation, RotationStatus
from orchestrator.app.delivering import Deliverer
from orchestrator.app.key_work import DEFAULT_LIFETIME, KeyWork
from orchestrator.app.ports import Crypto, Delivery, HookRunner, Keystore, Provider
from orchestrator.app.secret_steps import SecretSteps
from orchestrator.app.service import Service, secret_item_id
from orchestrator.domain import rules
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.identity_provider import LOCAL_PROVIDER
from orchestrator.domain.rotation import (
    SECRET_USAGE,
    Next,
    Params,
    Reason,
    Recorded,
    Step,
    resume,
    shares_registration,
    start,
)
from orchestrator.domain.rotation_events import (
    decide_completion,
    decide_failure,
    decide_generated_key,
    decide_manual_start,
    decide_step,
    untested_at_provider,
    untested_credential,
)

__all__ = ["Rotator", "StepOutcome", "random_rotation_id"]

log = structlog.get_logger("orchestrator.rotation")
MAX_STEPS_PER_CALL = 20


def random_rotation_id() -> str:
    return f"rot_{uuid.uuid4().hex[:20]}"


@dataclass(frozen=True, slots=True)
class StepOutcome:
    rotation_id: str
    last: Next
    steps_done: int
    failed: bool = False
    parked: bool = False  # the failure used up the retry budget


class Rotator:
    def __init__(
        self,
        service: Service,
        provider: Provider,
        keystore: Keystore,
        crypto: Crypto,
        delivery: Delivery | None,
        clock: Callable[[], datetime],
        actor: str = "scheduler",
        on_step: Callable[[str, str, Step], None] | None = None,
        new_rotation_id: Callable[[], str] = random_rotation_id,
        hooks: HookRunner | None = None,
    ) -> None:
        self.service = service
        self.provider = provider
        self.keystore = keystore
        self.crypto = crypto
        self.delivery = delivery
        self.clock = clock
        self.actor = actor
        self.on_step = on_step  # test hook: called after each recorded step
        # ids, like time, come from outside: an exploration replays a path with the same ones
        self.new_rotation_id = new_rotation_id
        self.work = KeyWork(keystore, crypto, provider)
        self.deliverer = Deliverer(delivery, hooks)  # the files, then the policy's hook
        self.secrets = SecretSteps(provider, keystore, crypto, self.deliverer, self._record,
                                   self._step_event)

    # --- start ---------------------------------------------------------------------------------

    def start(self, app: str, usage: str, reason: Reason, policy: str | None = None,
              actor: str | None = None) -> str | None:
        """Allocate a rotation id and record ``rotation.started``; None if one is running."""
        return self._start(app, usage, actor, lambda s, rid, new_id, at: start(
            s, usage, reason, rid, new_id, at, policy), reason, policy)

    def start_manual(self, app: str, usage: str, policy: str | None, actor: str) -> str:
        """``orchestrator rotate``: refused (one line) without a policy or with one in flight."""
        rotation_id = self._start(app, usage, actor, lambda s, rid, new_id, at: decide_manual_start(
            s, usage, policy, rid, new_id, at), Reason.MANUAL, policy)
        assert rotation_id is not None  # decide_manual_start refuses rather than record nothing
        return rotation_id

    def _start(self, app: str, usage: str, actor: str | None,
               decide: Callable[[AppState, str, str, datetime], list[ev.Event]],
               reason: Reason, policy: str | None) -> str | None:
        rotation_id = self.new_rotation_id()
        new_id = self.crypto.new_credential_id() if usage != SECRET_USAGE else f"secret_{rotation_id}"
        at = self.clock()
        _, records = self.service.append_decided(
            app, lambda s: (decide(s, rotation_id, new_id, at), at),
            correlation_id=rotation_id, actor=actor or self.actor,
        )
        if not records:
            return None
        log.info("rotation_started", app=app, usage=usage, rotation_id=rotation_id,
                 reason=reason.value, policy=policy)
        return rotation_id

    # --- advance -------------------------------------------------------------------------------

    def advance(self, app: str, rotation_id: str, params: Params) -> StepOutcome:
        """Run the steps of a rotation until it waits, completes or a step fails (the read
        model caught up once, after them: ``Service.projected_once``)."""
        with self.service.projected_once():
            return self._advance(app, rotation_id, params)

    def _advance(self, app: str, rotation_id: str, params: Params) -> StepOutcome:
        done = 0
        nxt = Next(Step.WAIT)
        for _ in range(MAX_STEPS_PER_CALL):
            state = self.service.load(app)
            rotation = state.rotations.get(rotation_id)
            if rotation is None or rotation.status is not RotationStatus.RUNNING:
                return StepOutcome(rotation_id, Next(Step.COMPLETE), done)
            at = self.clock()
            nxt = resume(state, rotation, params, at)
            if nxt.step is Step.WAIT:
                return StepOutcome(rotation_id, nxt, done)
            bound = log.bind(app=app, rotation_id=rotation_id, step=nxt.step.value,
                             credential_id=nxt.credential_id)
            try:
                self._do(state, rotation, nxt, params, at)
            except (OrchestratorError, OSError) as exc:
                error = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
                parked = self._fail(state, rotation, nxt.step, error, params)
                return StepOutcome(rotation_id, nxt, done, failed=True, parked=parked)
            done += 1
            bound.info("rotation_step_completed")
            if self.on_step is not None:
                self.on_step(app, rotation_id, nxt.step)
            if nxt.step is Step.COMPLETE:
                return StepOutcome(rotation_id, nxt, done)
        return StepOutcome(rotation_id, nxt, done)

    def _fail(self, state: AppState, rotation: Rotation, step: Step, error: str,
              params: Params) -> bool:
        """Record a failed step. Parking disables an untested new credential: deactivated at
        the provider first (unless another credential shares its registration), even when the
        log does not call it active (an activation whose answer was lost), the old one
        untouched."""
        app, rid, now = state.app, rotation.id, self.clock()
        detached = True
        untested = untested_credential(state, rotation)
        withdrawn = untested_at_provider(state, rotation)
        parking = any(isinstance(e, ev.RotationParked) for e in decide_failure(
            state, rid, step, error, params, now))
        if parking and withdrawn is not None and shares_registration(state, withdrawn) is None:
            try:
                self.provider.deactivate(app, withdrawn.id)
            except (OrchestratorError, OSError):
                detached = False
        _, records = self.service.append_decided(
            app, lambda s: (decide_failure(s, rid, step, error, params, now, detached), now),
            correlation_id=rid, actor=self.actor)
        parked = any(r.type == ev.RotationParked.type_name for r in records)
        failed = records[0].payload if records else {}
        bound = log.bind(app=app, provider=state.provider or LOCAL_PROVIDER, rotation_id=rid,
                         step=step.value)
        fix = (f"fix the cause the error names, then: orchestrator rotations retry {app} {rid} "
               f"(or orchestrator rotations abandon {app} {rid}); the old credential is intact"
               if parked else "none needed yet: the daemon retries the step at retry_at; if it "
               "keeps failing, fix the cause the error names")
        (bound.error if parked else bound.warning)(
            "rotation_parked" if parked else "rotation_step_failed", error=error,
            attempt=failed.get("attempt"), retry_at=failed.get("next_attempt_at"),
            new_credential_disabled=parked and untested is not None, fix=fix)
        return parked

    def _record(self, app: str, rotation_id: str,
                decide: Callable[[AppState], list[ev.Event]]) -> None:
        at = self.clock()
        self.service.append_decided(app, lambda s: (decide(s), at),
                                    correlation_id=rotation_id, actor=self.actor)

    def _execute(self, app: str, rotation_id: str,
                 command: Callable[[AppState], rules.Command]) -> None:
        self.service.execute(app, command, correlation_id=rotation_id, actor=self.actor)

    def _step_event(self, app: str, rotation_id: str, recorded: Recorded,
                    detail: str | None = None) -> None:
        self._record(app, rotation_id, lambda s: decide_step(s, rotation_id, recorded, detail))

    def _do(self, state: AppState, rotation: Rotation, nxt: Next, params: Params,
            at: datetime) -> None:
        app, rid = state.app, rotation.id
        match nxt.step:
            case Step.FREE_SLOT:
                assert nxt.credential_id is not None
                if nxt.at_provider:
                    self.provider.deactivate(app, nxt.credential_id)
                    self.provider.remove(app, nxt.credential_id)
                # outside work first: a crash right after the record must not leave the
                # deleted credential's private key in the keystore (an orphan)
                self.service.forget_private(nxt.credential_id)
                self._execute(app, rid, lambda s: rules.DeleteCredential(
                    app, nxt.credential_id or "", self.clock()))
            case Step.GENERATE | Step.REGISTER | Step.TEST | Step.DELIVER if (
                    rotation.usage == SECRET_USAGE):
                self.secrets.do(nxt.step, state, rotation, params, at)
            case Step.GENERATE:
                self._generate_key(state, rotation, params, at)
            case Step.REGISTER:
                new = state.credentials[rotation.new_credential_id]
                self._registered(state, rid, new, self.provider.register(app, new))
            case Step.CONFIRM:
                new = state.credentials[rotation.new_credential_id]
                shared = shares_registration(state, new)
                # finds the registration of the subject DN
                self._registered(state, rid, new, self.provider.register(app, new),
                                 f"subject DN already registered as "
                                 f"{shared.id if shared else '?'}: nothing changed at the "
                                 "identity provider")
            case Step.ACTIVATE:
                self.provider.activate(app, rotation.new_credential_id)
                self._execute(app, rid, lambda s: rules.ActivateCredential(
                    app, rotation.new_credential_id, self.clock()))
            case Step.TEST:
                skipped = self.work.prove(state, state.credentials[rotation.new_credential_id],
                                          params, at)
                self._step_event(app, rid, Recorded.TESTED, skipped)
            case Step.DELIVER:
                self._deliver(state, rotation, params)
                self._step_event(app, rid, Recorded.DELIVERED)
            case Step.DISABLE_OLD:
                assert nxt.credential_id is not None
                if nxt.at_provider:
                    self.provider.deactivate(app, nxt.credential_id)
                self._execute(app, rid, lambda s: rules.DisableCredential(
                    app, nxt.credential_id or "", self.clock()))
            case Step.COMPLETE:
                if rotation.usage == SECRET_USAGE and state.secret is not None:
                    # before the record: a crash right after it must not leave them behind
                    for old in range(1, state.secret.version - 1):
                        self.keystore.delete(secret_item_id(app, old))
                self._record(app, rid, lambda s: decide_completion(s, rid))
            case Step.WAIT:
                return

    # --- steps with outside work ---------------------------------------------------------------

    def _generate_key(self, state: AppState, rotation: Rotation, params: Params,
                      at: datetime) -> None:
        material = self.work.material(state.app, rotation, params, at)
        expires_at = None if material.not_after is not None else at + (
            params.lifetime or DEFAULT_LIFETIME)
        self._record(state.app, rotation.id, lambda s: decide_generated_key(
            s, rotation.id, material, params, at, expires_at))

    def _registered(self, state: AppState, rotation_id: str, new: Credential,
                    provider_id: str | None, detail: str | None = None) -> None:
        """Record the register step, with the provider's own id for the credential when it
        gave one (a repeat that found the first upload gives the same id)."""
        provider = state.provider or LOCAL_PROVIDER

        def decide(s: AppState) -> list[ev.Event]:
            known = s.credentials.get(new.id)
            bound: list[ev.Event] = [] if provider_id is None or (
                known is not None and known.provider_id == provider_id) else [
                ev.CredentialRegistered(credential_id=new.id, provider=provider,
                                        provider_credential_id=provider_id)]
            return bound + decide_step(s, rotation_id, Recorded.REGISTERED, detail)

        self._record(state.app, rotation_id, decide)

    def _deliver(self, state: AppState, rotation: Rotation, params: Params) -> None:
        if self.delivery is None:  # the simulator, which delivers to nobody
            return
        files = self.work.files(state, state.credentials[rotation.new_credential_id])
        self.deliverer.deliver(state.app, rotation.usage, files, params.hook,
                               credential_id=rotation.new_credential_id, rotation_id=rotation.id)

