"""``orchestrator init``, ``expire``, ``verify`` and ``projections``: the database itself."""

from __future__ import annotations

from pathlib import Path

import click

from events.chain import Break, Verified
from events.chain import verify as walk
from orchestrator import bootstrap as boot
from orchestrator.domain.errors import EvidenceError, InputError
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
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="PATH",
              type=click.Path(path_type=Path),
              help="A checkpoint file, a JSON Lines file of them, or a folder of them "
                   "(repeatable): check the log against each too.")
@click.option("--public-key", type=click.Path(dir_okay=False, path_type=Path),
              help="The public key the checkpoints must be signed with (default: the public "
                   "half of ORCHESTRATOR_CHECKPOINT_KEY).")
@click.pass_context
def verify(ctx: click.Context, checkpoints: tuple[Path, ...], public_key: Path | None) -> None:
    """Walk the hash chain; name the first broken position. With --checkpoint, also check that
    the log still holds what each signed checkpoint says it held."""
    if public_key is not None and not checkpoints:
        raise InputError("--public-key goes with --checkpoint: give the checkpoints to check")
    if checkpoints:
        _verify_anchored(ctx, checkpoints, public_key)
        return
    result = walk(system_of(ctx).store.read())  # the log alone: no service to wire
    if isinstance(result, Break):
        raise EvidenceError(result.message())
    _say_intact(result)
    _verify_read_models(ctx)


def _verify_read_models(ctx: click.Context) -> None:
    """The read-model tables against the log: every difference on stdout, exit 1 if any."""
    position, problems = system_of(ctx).projector.verify()
    for line in problems:
        click.echo(line)
    if problems:
        more = f" (and {len(problems) - 1} more, listed on stdout)" if len(problems) > 1 else ""
        raise EvidenceError(f"read models disagree with the log: {problems[0]}{more}; "
                            "orchestrator projections rebuild rewrites them from the log")
    click.echo(f"ok: read models agree with the log up to position {position}")


def _say_intact(result: Verified) -> None:
    click.echo(f"ok: {result.count} events, chain intact, head position {result.head_position} "
               f"hash {result.head_hash}")


def _verify_anchored(ctx: click.Context, paths: tuple[Path, ...], public_key: Path | None
                     ) -> None:
    from orchestrator.app.anchoring import check_log

    key = boot.checkpoint_key(public_key, ctx.find_root().obj["settings"].checkpoint_key)
    found = boot.read_checkpoints(paths)
    report = check_log(system_of(ctx).sql_store, found, key)
    problems = ([report.chain.message()] if isinstance(report.chain, Break) else []) + [
        d.message() for d in report.disagreements]
    if problems:
        for line in problems:
            click.echo(line)
        more = f" (and {len(problems) - 1} more, listed on stdout)" if len(problems) > 1 else ""
        raise EvidenceError(problems[0] + more)
    assert isinstance(report.chain, Verified) and report.newest is not None
    _say_intact(report.chain)
    source, newest = report.newest
    click.echo(f"ok: {report.checked} checkpoint(s) signed by {key.key_id} agree with the log; "
               f"the newest, {source}, anchors positions 1 to {newest.position} "
               f"(signed at {newest.at})")
    if (gap := report.unanchored) is not None:
        span = f"position {gap[0]}" if gap[0] == gap[1] else f"positions {gap[0]} to {gap[1]}"
        click.echo(f"not anchored: {span} came after the newest checkpoint; no checkpoint "
                   "speaks for them yet (honest growth and events forged at the end look alike "
                   "until one does)")


@click.group()
def projections() -> None:
    """Read-model projections."""


@projections.command("status")
@click.pass_context
def projections_status(ctx: click.Context) -> None:
    """Checkpoint, log head and lag."""
    status = system_of(ctx).projector.status()
    click.echo(f"{status.name}: position {status.position} of {status.head} (lag {status.lag})")


@projections.command("verify")
@click.pass_context
def projections_verify(ctx: click.Context) -> None:
    """Rebuild the read model in memory from the log and compare it with the tables."""
    _verify_read_models(ctx)


@projections.command("rebuild")
@click.pass_context
def projections_rebuild(ctx: click.Context) -> None:
    """Replay the whole log into fresh read-model tables."""
    count = system_of(ctx).projector.rebuild()
    click.echo(f"read_models: rebuilt from {count} events")
