"""The wired system a command works on, built once per invocation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from orchestrator import bootstrap as boot

__all__ = ["only_the_error_line", "system_of"]


def system_of(ctx: click.Context, policies: Path | None = None, record_policies: bool = True,
            **options: Any) -> boot.System:
    obj = ctx.find_root().obj
    if obj.get("system") is None:
        settings = obj["settings"]
        if policies is not None:
            settings = boot.Settings(**{**settings.__dict__, "policies": policies})
        obj["system"] = boot.bootstrap(settings, migrate=False, before_logging=_quiet_logs,
                                       **{**obj.get("overrides", {}), **options})
        if not record_policies:
            obj["system"].policies.store = None  # planning only reads the policies
        ctx.find_root().call_on_close(obj["system"].close)
    system: boot.System = obj["system"]
    return system


def _quiet_logs() -> None:
    """Commands print their results; logs (stderr, WARNING and up) only say what went wrong.
    Set up only when a part that logs is built, so read-only commands never load structlog; a
    command that set up its own logs (the daemon) keeps them."""
    import logging

    from orchestrator.entrypoints.logs import configure, is_configured

    if not is_configured():
        configure(level=logging.WARNING)


def only_the_error_line() -> None:
    """For a command whose failure is its own one ``error:`` line (naming the cause, a broken
    resource file included): no log line beside it."""
    import logging

    from orchestrator.entrypoints.logs import configure

    configure(level=logging.CRITICAL)
