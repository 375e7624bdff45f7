"""A delivery as a rotation's deliver step does it: the files, then the policy's hook.

The files are written as one set (``Delivery``); then, when the policy names a hook
(``orchestrator.domain.hooks``), it runs with the folder's path. A hook that fails, cannot start
or outlives its timeout fails the step with a ``DeliveryError`` line (retried with the step's
backoff, parked after the budget), so the step is recorded as done only after the hook
succeeded, and the old credential is never retired before that. Each attempt delivers the same
files again and runs the hook again: a hook must be idempotent. Its output goes to the log
(``hook_succeeded`` at info, ``hook_failed`` at warning, with the app), scrubbed of the
delivered private key or secret; never to the event log.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import structlog

from orchestrator.app.ports import Delivery, HookRunner
from orchestrator.domain.errors import DeliveryError
from orchestrator.domain.hooks import (
    Hook,
    hook_environment,
    private_values,
    scrub_output,
    why_hook_failed,
)

__all__ = ["PRIVATE_FILES", "PRIVATE_KEY_FILE", "SECRET_FILE", "Deliverer"]

log = structlog.get_logger("orchestrator.delivery")
PRIVATE_KEY_FILE = "private_key.pem"
SECRET_FILE = "client_secret"
PRIVATE_FILES = (PRIVATE_KEY_FILE, SECRET_FILE)


class Deliverer:
    """The deliver step's outside work: ``delivery`` (None: the simulator, which delivers to
    nobody) and the runner of hooks (None: a policy's hook is refused, not skipped)."""

    def __init__(self, delivery: Delivery | None, hooks: HookRunner | None) -> None:
        self.delivery = delivery
        self.hooks = hooks

    def deliver(self, app: str, usage: str, files: Mapping[str, bytes], hook: Hook | None, *,
                credential_id: str | None = None, rotation_id: str | None = None) -> Path | None:
        """Deliver ``files``, then run ``hook``; DeliveryError when either fails."""
        if self.delivery is None:
            return None
        folder = self.delivery.deliver(app, usage, files)
        if hook is None:
            return folder
        if self.hooks is None:
            raise DeliveryError(f"{app}: the policy names a delivery hook ({hook.name}) but this "
                                "process cannot run hooks")
        env = hook_environment(str(folder), app, usage, credential_id, rotation_id)
        result = self.hooks.run((*hook.command, str(folder)), env, hook.timeout)
        bound = log.bind(app=app, usage=usage, rotation_id=rotation_id,
                         credential_id=credential_id, hook=hook.name, exit_code=result.exit_code,
                         output=scrub_output(result.output, private_values(files, PRIVATE_FILES)))
        why = why_hook_failed(hook, result, app, usage)
        if why is not None:
            bound.warning("hook_failed", error=result.error)
            raise DeliveryError(why)
        bound.info("hook_succeeded")
        return folder
