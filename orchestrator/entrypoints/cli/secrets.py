"""``orchestrator secret``: client secrets."""

from __future__ import annotations

from datetime import timedelta

import click

from orchestrator.entrypoints.cli.context import system_of
from orchestrator.entrypoints.cli.params import Duration

__all__ = ["secret"]


@click.group()
def secret() -> None:
    """Rotate client secrets."""


@secret.command("rotate")
@click.argument("app")
@click.option("--grace", type=Duration(),
              help="How long the previous secret stays valid after the new one is delivered "
                   "[default: the overlap of the client_secret policy that selects APP, else 1h].")
@click.option("--accept-gap", is_flag=True,
              help="At an identity provider that keeps one client secret (Auth0, RFC 7592), "
                   "accept that the previous secret stops working the moment the new one is "
                   "set, before APP reads it; refused without it.")
@click.pass_context
def secret_rotate(ctx: click.Context, app: str, grace: timedelta | None,
                  accept_gap: bool) -> None:
    """Rotate APP's client secret now, the daemon's way, and show the new one once.

    The new secret is generated, registered with the identity provider, tested, delivered to
    APP's files (client_secret, version), and only then recorded and shown on stdout; the
    previous secret stays valid for the grace. While a rotation of APP's secret is in flight,
    another is refused. A step that fails parks the rotation with the previous secret intact:
    run the command again to retry it."""
    import logging

    from orchestrator.app.secret_rotation import rotate_secret_now
    from orchestrator.entrypoints.logs import configure

    configure(level=logging.CRITICAL)  # a failure is this command's one error line, not a log
    system = system_of(ctx, record_policies=False)
    policies = system.policies.current() if system.settings.policies.is_dir() else ()
    shown = rotate_secret_now(system.rotator, app, policies=policies, grace=grace,
                              actor=system.settings.actor, accept_gap=accept_gap)
    click.echo(f"{app}: client secret version {shown.version}; it is shown once, store it now:",
               err=True)
    click.echo(shown.secret)
