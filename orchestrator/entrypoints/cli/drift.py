"""``orchestrator drift``: compare the log with the identity providers; adopt or repair."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from orchestrator.domain.errors import NotFoundError
from orchestrator.domain.identity_provider import LOCAL_PROVIDER
from orchestrator.entrypoints.cli.context import only_the_error_line, system_of
from orchestrator.entrypoints.cli.output import print_table, printable

if TYPE_CHECKING:
    from orchestrator.app.drift import AppDrift, Fix

UNCHECKED_EXIT = 3
LOCAL_LINE = ("{what} the local provider: the log itself is the identity provider, so there is "
              "nothing to compare")


@click.command()
@click.option("--provider", metavar="NAME", help="Only the applications of this provider.")
@click.option("--app", "app", metavar="APP", help="Only this application.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option("--adopt", is_flag=True,
              help="Record in the log what the provider has (the provider is left as it is).")
@click.option("--repair", is_flag=True,
              help="Put the provider back to what the log says (the log is left as it is).")
@click.pass_context
def drift(ctx: click.Context, provider: str | None, app: str | None, as_json: bool,
          adopt: bool, repair: bool) -> None:
    """Compare each application's credentials at its identity provider with the log.

    Finds credentials added, removed, attached, detached or re-dated at the provider outside
    the orchestrator, a changed auth method, and a client deleted there. Exit 0 when they
    agree, 1 when they differ (with --adopt or --repair: when a difference is left) or a client
    is missing, 3 when an application could not be compared (the provider could not be
    reached)."""
    if adopt and repair:
        raise click.UsageError("--adopt and --repair exclude each other: choose which side wins")
    if provider == LOCAL_PROVIDER:
        click.echo(LOCAL_LINE.format(what="provider local is"))
        return
    from orchestrator.app.drift import DriftChecker

    only_the_error_line()
    system = system_of(ctx, record_policies=False)  # the policies folder is only read
    if provider is not None:
        system.provider.named(provider)  # refused in one line when it is not configured
    checker = DriftChecker(system.service, system.provider, system.service.crypto,
                           system.fleet.all, system.clock)
    if app is not None:
        state = system.fleet.get(app)
        if not state.registered:
            raise NotFoundError(f"application {app!r} is not registered")
        if state.provider is None:
            click.echo(LOCAL_LINE.format(what=f"application {app} belongs to"))
            return
    targets = checker.targets(provider, app)
    if not targets:
        where = f"provider {provider}" if provider else "a provider that can list its clients"
        click.echo(f"no application is bound to {where}: nothing to compare "
                   "(orchestrator import --provider NAME adopts a tenant's clients)")
        return
    found = [checker.check(state) for state in targets]
    fixes: dict[str, list[Fix]] = {}
    if adopt or repair:
        for one in found:
            if one.differences:
                fixes[one.app] = checker.adopt(one) if adopt else checker.repair(one)
    if as_json:
        click.echo(json.dumps(_document(found, fixes), indent=2))
    else:
        _show(found, fixes, "adopted" if adopt else "repaired")
    left = sum(len(d.differences) for d in found) - sum(
        1 for done in fixes.values() for f in done if f.done)
    if left or any(d.missing for d in found):
        ctx.exit(1)
    if any(d.error for d in found):
        ctx.exit(UNCHECKED_EXIT)


def _difference(diff: Any) -> dict[str, Any]:
    return {"kind": str(diff.kind), "credential_id": diff.credential_id,
            "provider_credential_id": diff.provider_id, "usage": diff.usage, "log": diff.log,
            "provider": diff.provider, "text": diff.text}


def _document(found: list[AppDrift], fixes: dict[str, list[Fix]]) -> dict[str, Any]:
    apps = []
    for one in found:
        apps.append({
            "app": one.app, "provider": one.provider, "client_id": one.client_id,
            "clean": one.clean, "error": one.error, "client_missing": one.missing,
            "rotation_in_flight": one.rotation,
            "differences": [_difference(d) for d in one.differences],
            "fixes": [{**_difference(f.difference), "done": f.done, "detail": f.detail}
                      for f in fixes.get(one.app, [])],
        })
    return {"apps": apps, "summary": _counts(found)}


def _counts(found: list[AppDrift]) -> dict[str, int]:
    return {"compared": sum(1 for d in found if d.error is None or d.missing),
            "clean": sum(1 for d in found if d.clean),
            "drifted": sum(1 for d in found if d.differences),
            "differences": sum(len(d.differences) for d in found),
            "client_missing": sum(1 for d in found if d.missing),
            "not_compared": sum(1 for d in found if d.error is not None and not d.missing)}


def _show(found: list[AppDrift], fixes: dict[str, list[Fix]], verb: str) -> None:
    rows = [(d.app, d.provider, str(x.kind), x.subject, x.usage, x.log, x.provider)
            for d in found for x in d.differences]
    if rows:
        print_table(["APP", "PROVIDER", "DIFFERENCE", "CREDENTIAL", "USAGE", "LOG SAYS",
                     "PROVIDER SAYS"], rows, empty="")
    for d in found:
        if d.missing:
            click.echo(printable(f"client missing: {d.app} ({d.provider}): {d.error}"))
        elif d.error is not None:
            click.echo(printable(f"not compared: {d.app} ({d.provider}): {d.error}"))
        elif d.rotation is not None and d.differences:
            click.echo(printable(f"note: {d.app} has rotation {d.rotation} in flight; its "
                                 "differences may be the rotation's own steps"))
        for fix in fixes.get(d.app, []):
            head = verb if fix.done else f"not {verb}"
            click.echo(printable(f"{head}: {d.app}: {fix.difference.text}: {fix.detail}"))
    counts = _counts(found)
    missing = (f", {counts['client_missing']} whose client is missing at the provider"
               if counts["client_missing"] else "")
    click.echo(f"{len(found)} applications: {counts['clean']} agree with the provider, "
               f"{counts['drifted']} differ ({counts['differences']} differences), "
               f"{counts['not_compared']} could not be compared{missing}")
