"""``orchestrator rotations rollback``: a completed rotation undone, through the provider.

The decisions are ``orchestrator.domain.rollback``'s; this does the outside work in the order
that keeps the application authenticating at every instant, each part recorded as it is done:

1. the previous credential attached again at the identity provider and recorded active
   (``ManualCredentials.activate``: the same path as ``credential activate``);
2. its files delivered again, then the policy's hook run (``Deliverer``);
3. the rotation's new credential detached and recorded disabled (``ManualCredentials.disable``);
4. ``rotation.rolled_back`` recorded, with the rotation id as correlation id.

Everything that can refuse is checked before step 1 (nothing written). A failure after it (the
provider, the delivery, the hook) stops with one line saying what is done; both credentials are
then active, and the same command finishes the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from orchestrator.app.delivering import Deliverer
from orchestrator.app.key_work import KeyWork
from orchestrator.app.manual_credentials import ManualCredentials
from orchestrator.app.ports import Keystore
from orchestrator.app.service import Service
from orchestrator.domain.errors import OrchestratorError, RefusedError
from orchestrator.domain.hooks import Hook
from orchestrator.domain.rollback import RollbackPlan, decide_rolled_back, plan_rollback

__all__ = ["Rollback", "RolledBack"]

log = structlog.get_logger("orchestrator.rollback")


@dataclass(frozen=True, slots=True)
class RolledBack:
    """What a rollback did: the credential back in service, the one taken out, and where the
    files went (None: nowhere is configured)."""

    rotation_id: str
    restored: str
    retired: str
    delivered_to: str | None
    notes: tuple[str, ...] = ()


class Rollback:
    def __init__(self, service: Service, manual: ManualCredentials, keystore: Keystore,
                 work: KeyWork, deliverer: Deliverer) -> None:
        self.service = service
        self.manual = manual
        self.keystore = keystore
        self.work = work
        self.deliverer = deliverer

    def plan(self, app: str, rotation_id: str) -> RollbackPlan:
        """The rollback, or the one-line refusal (nothing done)."""
        plan = plan_rollback(self.service.load(app), rotation_id, self.service.clock())
        if self.keystore.get(plan.restore.id) is None:
            raise RefusedError(f"the keystore no longer holds the private key of {plan.restore.id}, "
                               f"the previous credential of rotation {rotation_id}, so it cannot "
                               f"be delivered again; rotate instead: orchestrator rotate {app} "
                               f"--usage {plan.rotation.usage}")
        return plan

    def run(self, app: str, rotation_id: str,
            hook_for: Callable[[str], Hook | None]) -> RolledBack:
        """Roll ``rotation_id`` back; ``hook_for(usage)`` is the hook of the policy that
        selects the app for the usage (None: none)."""
        plan = self.plan(app, rotation_id)
        old, new, usage = plan.restore.id, plan.retire.id, plan.rotation.usage
        bound = log.bind(app=app, rotation_id=rotation_id, usage=usage, restored=old, retired=new)
        notes = [n for n in (self.manual.activate(app, old).note,) if n]
        bound.info("rollback_credential_restored", note=notes[0] if notes else None)
        done = f"{old} is active again" + (f" ({notes[0]})" if notes else "")
        try:
            state = self.service.load(app)
            folder = self.deliverer.deliver(app, usage, self.work.files(
                state, state.credentials[old]), hook_for(usage), credential_id=old,
                rotation_id=rotation_id)
            note = self.manual.disable(app, new).note
            if note:
                notes.append(note)
            self.service.append_decided(
                app, lambda s: (decide_rolled_back(s, rotation_id, self.service.clock()),
                                self.service.clock()),
                correlation_id=rotation_id)
        except OrchestratorError as exc:
            raise OrchestratorError(
                f"rollback of {rotation_id} stopped: {done}, but then {exc}; {new} stays active "
                f"too: fix that, then run again: orchestrator rotations rollback {app} "
                f"{rotation_id}") from exc
        bound.info("rotation_rolled_back", delivered_to=str(folder) if folder else None)
        return RolledBack(rotation_id, old, new, str(folder) if folder else None, tuple(notes))
