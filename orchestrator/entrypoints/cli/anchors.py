"""``orchestrator checkpoint``: sign the log's head now; ``checkpoint init-key``: make the key."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator import bootstrap as boot
from orchestrator.domain.errors import InputError
from orchestrator.entrypoints.cli.context import system_of

_NO_KEY = ("no checkpoint key: give --key FILE or set ORCHESTRATOR_CHECKPOINT_KEY (create one "
           "with orchestrator checkpoint init-key FILE, on a host other than the database's)")


@click.group(invoke_without_command=True)
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path),
              help="The Ed25519 signing key, mode 0600 [env ORCHESTRATOR_CHECKPOINT_KEY].")
@click.option("--out", metavar="DIR|-",
              help="The folder the checkpoint file goes to, or - for stdout "
                   "[env ORCHESTRATOR_CHECKPOINTS].")
@click.pass_context
def checkpoint(ctx: click.Context, key: Path | None, out: str | None) -> None:
    """Sign the log's head now: a checkpoint that anchors the hash chain outside the database.

    The whole chain is walked first; a broken one is refused and nothing is signed."""
    if ctx.invoked_subcommand is not None:
        return
    settings = ctx.find_root().obj["settings"]
    key = key or settings.checkpoint_key
    target = out or settings.checkpoints
    if key is None:
        raise InputError(_NO_KEY)
    if target is None:
        raise InputError("no output: give --out DIR (or - for stdout) or set "
                         "ORCHESTRATOR_CHECKPOINTS")
    written = system_of(ctx).anchorer(key, target).write()
    if str(target) != "-":
        statement = written.checkpoint.statement
        click.echo(f"checkpoint {written.where}: position {statement.position} hash "
                   f"{statement.hash}, signed by key {statement.key_id}")


@checkpoint.command("init-key")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def init_key(ctx: click.Context, path: Path | None) -> None:
    """Create the checkpoint signing key at PATH (mode 0600) and its public half, PATH.pub.

    PATH defaults to --key or ORCHESTRATOR_CHECKPOINT_KEY; an existing key is never replaced."""
    given = ctx.parent.params.get("key") if ctx.parent is not None else None
    path = path or given or ctx.find_root().obj["settings"].checkpoint_key
    if path is None:
        raise InputError("checkpoint init-key needs a PATH (or --key, or "
                         "ORCHESTRATOR_CHECKPOINT_KEY)")
    key_id, public = boot.create_checkpoint_key(path)
    click.echo(f"checkpoint key {path} (mode 0600), public key {public}, key id {key_id}")
    click.echo("keep the key off the database host; give the public key to whoever verifies")
