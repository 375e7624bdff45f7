"""A running daemon's ticker says, every tick, which applications hold no usable credential.

The ticker plans only the applications that changed or fell due; its alarms must not go quiet
on the ticks in between. Wired through ``bootstrap.in_memory`` with a virtual clock; the log
lines are captured with structlog's own ``capture_logs``.
"""

from __future__ import annotations

from datetime import timedelta

from structlog.testing import capture_logs

from orchestrator.app.service import CredentialSource
from orchestrator.bootstrap import fast_keys, in_memory
from tests.conftest import NOW

HOUR = timedelta(hours=1)


def test_every_tick_logs_each_application_without_a_usable_credential() -> None:
    now = [NOW]
    core = in_memory(lambda: now[0], crypto=fast_keys())
    core.service.register_app("lonely", {})
    core.service.register_app("fine", {})
    for app, expires in (("lonely", NOW + HOUR), ("fine", None)):
        core.service.add_credential(app, "private_key_jwt", CredentialSource(generate=True),
                                    expires_at=expires, activate=True)
    alarmed = []
    for at in (NOW, NOW + 2 * HOUR, NOW + 3 * HOUR, NOW + 4 * HOUR):
        now[0] = at
        with capture_logs() as logs:
            core.ticker.tick()
        alarmed.append(sorted((e["app"], e["usage"], e["log_level"]) for e in logs
                              if e["event"] == "app_without_usable_credential"))
    assert alarmed == [[], *[[("lonely", "private_key_jwt", "error")]] * 3]
