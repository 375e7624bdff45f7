"""The command line: ``orchestrator``. Every refusal is one line on stderr and a non-zero exit.

Global options: ``--db URL`` (``ORCHESTRATOR_DB``, default ``sqlite:///var/orchestrator.db``)
and ``--keystore DIR`` (``ORCHESTRATOR_KEYSTORE``, default ``var/keystore``).

Each command lives in a small module of this package and is imported only when it runs, so
``orchestrator --version`` or ``orchestrator app list`` loads only what it needs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from orchestrator.domain.errors import OrchestratorError

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from events.store import EventStore
    from orchestrator.app.ports import Keystore

__all__ = ["COMMANDS", "LazyGroup", "cli", "main"]

_PKG = "orchestrator.entrypoints.cli"
COMMANDS = {  # command name -> "module:attribute", imported on first use
    "app": "apps:app",
    "audit": "audit:audit",
    "checkpoint": "anchors:checkpoint",
    "credential": "credentials:credential",
    "daemon": "daemon:daemon",
    "drift": "drift:drift",
    "expire": "maintenance:expire",
    "import": "importing:import_clients",
    "init": "maintenance:init",
    "keystore": "keystore:keystore",
    "plan": "plan:plan",
    "policy": "policy:policy",
    "projections": "maintenance:projections",
    "rotate": "rotations:rotate",
    "rotations": "rotations:rotations",
    "secret": "secrets:secret",
    "simulate": "simulate:simulate",
    "state": "audit:state",
    "status": "status:status",
    "verify": "maintenance:verify",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when used (click's documented lazy pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(f"{_PKG}.{module}"), attr)
        assert isinstance(command, click.Command), target
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", envvar="ORCHESTRATOR_DB", default=None, metavar="URL",
              help="Database URL [env ORCHESTRATOR_DB; default sqlite:///var/orchestrator.db].")
@click.option("--keystore", envvar="ORCHESTRATOR_KEYSTORE", default=None, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Encrypted keystore directory [env ORCHESTRATOR_KEYSTORE; default var/keystore].")
@click.version_option(package_name="credential-orchestrator")
@click.pass_context
def cli(ctx: click.Context, db: str | None, keystore: Path | None) -> None:
    """Keep OAuth application credentials rotated, expiry enforced, and every change provable."""
    from orchestrator.bootstrap import Settings

    given = ctx.obj or {}
    ctx.obj = {"settings": Settings.from_env(db=db, keystore=keystore), "system": None,
               "overrides": given.get("overrides", {}),  # main()'s clock=, wrap_store=, ...
               "daemon_poll": given.get("daemon_poll")}


# --- entry point -------------------------------------------------------------------------------


def _is_database_error(exc: BaseException) -> bool:
    """A SQLAlchemy error, or the driver's own (the store's hot paths use the driver's cursor:
    SQLite's "database or disk is full" comes as ``sqlite3.OperationalError``), without
    importing a module the command never did."""
    kinds = [getattr(sys.modules.get(module), name, None) for module, name in (
        ("sqlalchemy.exc", "SQLAlchemyError"), ("sqlite3", "Error"), ("psycopg", "Error"))]
    return any(isinstance(kind, type) and isinstance(exc, kind) for kind in kinds)


def _fail(message: str, code: int) -> NoReturn:
    from orchestrator.entrypoints.cli.output import printable

    click.echo(f"error: {printable(message)}", err=True)
    sys.exit(code)


def main(
    argv: Sequence[str] | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
    wrap_store: Callable[[EventStore], EventStore] | None = None,
    wrap_keystore: Callable[[Keystore], Keystore] | None = None,
    daemon_poll: timedelta | None = None,
) -> None:
    """The console script. ``clock``, ``wrap_store`` and ``wrap_keystore`` go to ``bootstrap`` for every command,
    ``daemon_poll`` to the daemon (how often, in real time, it looks at ``clock`` while it
    waits: a virtual clock moves in jumps, and a shorter look notices one sooner): only a caller
    in Python can pass them (the test launcher under tests/), no option or environment variable
    reaches them."""
    overrides = {k: v for k, v in (("clock", clock), ("wrap_store", wrap_store),
                                   ("wrap_keystore", wrap_keystore)) if v is not None}
    try:
        code = cli.main(args=argv, prog_name="orchestrator", standalone_mode=False,
                        obj={"overrides": overrides, "daemon_poll": daemon_poll})
        if isinstance(code, int) and code != 0:  # standalone_mode=False returns Exit(n)'s n
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        _fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except OrchestratorError as exc:
        _fail(str(exc), exc.exit_code)
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _fail(f"database: {reason}", 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
