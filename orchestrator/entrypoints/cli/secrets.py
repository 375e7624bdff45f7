"""``orchestrator secret``: client secrets."""

from __future__ import annotations

from datetime import timedelta

import click

from orchestrator.entrypoints.cli.context import system_of
from orchestrator.entrypoints.cli.params import Duration


@click.group()
def secret() -> None:
    """Rotate client secrets."""


@secret.command("rotate")
@click.argument("app")
@click.option("--grace", type=Duration(), help="How long the previous secret stays valid (e.g. 1h).")
@click.pass_context
def secret_rotate(ctx: click.Context, app: str, grace: timedelta | None) -> None:
    """Rotate APP's client secret and show the new one, once."""
    system = system_of(ctx)
    version, value = system.service.rotate_secret(app, grace)
    secret_state = system.service.load(app).secret
    # the identity provider switches to it too (the previous one valid for the grace period)
    system.provider.set_secret(app, version, value,
                               secret_state.previous_valid_until if secret_state else None)
    click.echo(f"{app}: client secret version {version}; it is shown once, store it now:",
               err=True)
    click.echo(value)
