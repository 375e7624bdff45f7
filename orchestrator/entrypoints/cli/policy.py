"""``orchestrator policy``: check resource files."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.domain.errors import InputError


@click.group()
def policy() -> None:
    """Check resource files: rotation policies, identity providers and notifiers."""


@policy.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.pass_context
def policy_validate(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Validate resource files or folders (default: the policies folder); for ops' own CI.

    Checks RotationPolicy, IdentityProvider and Notifier files, and the rules across them
    (names given twice, policies claiming one application, a client_secret policy beside a
    provider with one secret and no acceptSecretGap). Secret references (a provider's, a
    notifier's) are not resolved here: the pipeline need not hold the secrets."""
    from orchestrator.policies.files import load_policies

    targets = list(paths) or [ctx.obj["settings"].policies]
    missing = [p for p in targets if not p.exists()]
    if missing:
        raise InputError(f"{missing[0]}: no such file or folder")
    result = load_policies(targets)
    for loaded in result.policies:
        click.echo(f"ok      {loaded.path}  {loaded.policy.metadata.name}  {loaded.content_hash[:19]}")
    for provider in result.identity_providers:
        click.echo(f"ok      {provider.path}  {provider.resource.name}  "
                   f"{provider.content_hash[:19]}  identity provider ({provider.resource.spec.type})")
    for notifier in result.notifiers:
        click.echo(f"ok      {notifier.path}  {notifier.resource.name}  "
                   f"{notifier.content_hash[:19]}  notifier")
    for error in result.errors:  # every problem of every file, one line each
        for line in getattr(error, "errors", None) or [str(error)]:
            click.echo(f"error: {line}", err=True)
    if result.errors:
        raise click.exceptions.Exit(1)
    if not result.policies and not result.identity_providers and not result.notifiers:
        raise InputError(f"no resource files (*.yaml) in {', '.join(map(str, targets))}")


@policy.command("schema")
@click.argument("kind", required=False, metavar="[KIND]")
@click.option("--write", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Write every kind's schema into DIR (its file name: rotation-policy.json, ...).")
def policy_schema(kind: str | None, folder: Path | None) -> None:
    """Print the JSON Schema of a resource KIND (RotationPolicy, IdentityProvider), for an
    editor: name it on a resource file's first line, ``# yaml-language-server:
    $schema=PATH``. The loader stays the judge of the rules across fields."""
    from orchestrator.policies.schemas import KINDS, kind_named, render, write

    if folder is not None:
        if kind is not None:
            raise click.UsageError("--write writes every kind: give no KIND with it")
        for path in write(folder):
            click.echo(f"wrote {path}")
        return
    if kind is None:
        raise click.UsageError(f"give a KIND: {', '.join(k.name for k in KINDS)} (or --write DIR)")
    try:
        chosen = kind_named(kind)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    click.echo(render(chosen), nl=False)
