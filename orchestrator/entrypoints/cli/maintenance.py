"""``orchestrator init``, ``expire``, ``verify`` and ``projections``: the database itself."""

from __future__ import annotations

import click

from events.chain import Break
from orchestrator import bootstrap as boot
from orchestrator.domain.errors import OrchestratorError
from orchestrator.entrypoints.cli.context import system_of


@click.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the database schema (or upgrade it to the latest version)."""
    settings = ctx.obj["settings"]
    engine = boot.open_engine(settings.db)
    try:
        changed = boot.ensure_schema(engine, settings.db)
    finally:
        engine.dispose()
    click.echo(f"database {boot.redacted_url(settings.db)} is at schema {boot.HEAD_REVISION}"
               f"{' (created)' if changed else ''}")


@click.command()
@click.pass_context
def expire(ctx: click.Context) -> None:
    """Record credential.expired for every credential whose expiry has passed."""
    expired = system_of(ctx).service.expire_due()
    for app_name, cid in expired:
        click.echo(f"{app_name} {cid}: expired")
    click.echo(f"{len(expired)} credential(s) expired")


@click.command()
@click.pass_context
def verify(ctx: click.Context) -> None:
    """Walk the hash chain; name the first broken position."""
    result = system_of(ctx).service.verify()
    if isinstance(result, Break):
        raise OrchestratorError(f"chain broken at position {result.position}: {result.reason}")
    click.echo(f"ok: {result.count} events, chain intact, head position {result.head_position} "
               f"hash {result.head_hash}")


@click.group()
def projections() -> None:
    """Read-model projections."""


@projections.command("status")
@click.pass_context
def projections_status(ctx: click.Context) -> None:
    """Checkpoint, log head and lag."""
    status = system_of(ctx).projector.status()
    click.echo(f"{status.name}: position {status.position} of {status.head} (lag {status.lag})")


@projections.command("rebuild")
@click.pass_context
def projections_rebuild(ctx: click.Context) -> None:
    """Replay the whole log into fresh read-model tables."""
    count = system_of(ctx).projector.rebuild()
    click.echo(f"read_models: rebuilt from {count} events")
