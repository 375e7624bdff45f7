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
# command name -> ("module:attribute", imported on first use; its summary, for ``--help``).
# The summary is the first sentence of the command's help, as click shortens it, so the
# top-level ``--help`` lists every command without importing one; a unit test holds each
# summary to the real command's (tests/unit/test_cli_commands.py).
COMMANDS: dict[str, tuple[str, str]] = {
    "app": ("apps:app", "Register and list applications."),
    "audit": ("audit:audit",
              "What happened, when, and by whom (``audit export``: the whole log for a SIEM)."),
    "checkpoint": ("anchors:checkpoint", "Sign the log's head now: a checkpoint that anchors "
                   "the hash chain outside the database."),
    "credential": ("credentials:credential", "Add, list, activate, disable, delete credentials "
                   "and change their expiry."),
    "daemon": ("daemon:daemon", "Apply the rotation policies: rotate on schedule, enforce "
               "expiry, until SIGTERM."),
    "drift": ("drift:drift", "Compare each application's credentials at its identity provider "
              "with the log."),
    "expire": ("maintenance:expire", "Record credential.expired for every credential whose "
               "expiry has passed."),
    "import": ("importing:import_clients", "Register every client of a provider's tenant as an "
               "application, with its credentials."),
    "init": ("maintenance:init",
             "Create the database schema (or upgrade it to the latest version)."),
    "keystore": ("keystore:keystore", "The keystore: status, master-key rotation, moving file "
                 "items into the database."),
    "plan": ("plan:plan", "What the daemon would do now (or at --at), and why."),
    "policy": ("policy:policy", "Check resource files: rotation policies, identity providers "
               "and notifiers."),
    "projections": ("maintenance:projections", "Read-model projections."),
    "rotate": ("rotations:rotate",
               "Rotate APP's USAGE credential now (reason: manual), with zero downtime."),
    "rotations": ("rotations:rotations", "Rotations in flight and parked ones waiting for a "
                  "human (retry, abandon), and every application left without a usable "
                  "credential of a usage it had."),
    "secret": ("secrets:secret", "Rotate client secrets."),
    "simulate": ("simulate:simulate", "Run the policies over a virtual fleet for DAYS in "
                 "memory; check every invariant at every event instant."),
    "state": ("audit:state", "APP's credentials as they were at a time, rebuilt from the log."),
    "status": ("status:status", "The fleet on one screen: applications and credentials by "
               "state, rotations in flight and parked, what expires soonest, the rotations due "
               "next, the applications the daemon's drift check holds, the leader (its epoch) "
               "and its last tick."),
    "verify": ("maintenance:verify", "Walk the hash chain; name the first broken position."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when used (click's documented lazy pattern);
    its ``--help`` lists them from ``COMMANDS``' summaries, importing none."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, _, attr = entry[0].partition(":")
        command = getattr(importlib.import_module(f"{_PKG}.{module}"), attr)
        assert isinstance(command, click.Command), entry
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing (``Group.format_commands``), each command a stand-in that
        carries only its summary: shortened to the width as click shortens the real help."""
        listed = click.Group(commands=[click.Command(name, help=summary)
                                       for name, (_, summary) in COMMANDS.items()])
        listed.format_commands(ctx, formatter)


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
