"""``orchestrator import``: adopt every client of an identity provider's tenant."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from events.codec import format_time
from orchestrator.domain.errors import InputError, OrchestratorError
from orchestrator.domain.identity_provider import LOCAL_PROVIDER
from orchestrator.entrypoints.cli.context import only_the_error_line, system_of
from orchestrator.entrypoints.cli.output import printable

if TYPE_CHECKING:
    from orchestrator.app.importing import ClientImport


@click.command("import")
@click.option("--provider", "provider", required=True, metavar="NAME",
              help="The IdentityProvider resource (in the policies folder) to import from.")
@click.option("--match", metavar="GLOB", help="Only clients whose name matches GLOB.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document of what was imported.")
@click.pass_context
def import_clients(ctx: click.Context, provider: str, match: str | None, as_json: bool) -> None:
    """Register every client of a provider's tenant as an application, with its credentials.

    Each application is named from its client's name (a clash gets the first 8 characters of
    the client id appended) and bound to the provider and client id; a client imported before
    is skipped, so running it again imports only what is new. Exit 1 when a client failed."""
    from orchestrator.app.importing import Importer, Outcome
    from orchestrator.app.ports import Inventory

    if provider == LOCAL_PROVIDER:
        raise InputError("the local provider is the orchestrator's own log: there is nothing "
                         "to import (name an IdentityProvider resource with --provider)")
    only_the_error_line()
    system = system_of(ctx, record_policies=False)  # the policies folder is only read
    inventory = system.provider.named(provider)
    if not isinstance(inventory, Inventory):
        raise InputError(f"identity provider {provider!r} cannot list its clients")
    importer = Importer(system.service, system.service.crypto, system.fleet.all, system.clock)
    done: list[ClientImport] = []
    with _progress(provider) as advance:
        def on_client(result: ClientImport) -> None:
            done.append(result)
            advance(result)
        try:
            importer.run(provider, inventory, match, on_client)
        except OrchestratorError as exc:
            imported = sum(1 for d in done if d.outcome == Outcome.IMPORTED)
            raise type(exc)(f"{exc} ({imported} clients imported before it; run the import "
                            "again to continue: clients imported already are skipped)") from None
    counts = {k: sum(1 for d in done if d.outcome == k)
              for k in (Outcome.IMPORTED, Outcome.ALREADY, Outcome.FAILED)}
    creds = sum(len(d.credentials) for d in done)
    left_out = sum(len(d.refused) for d in done)
    if as_json:
        click.echo(json.dumps(_document(provider, match, done, counts, creds, left_out),
                              indent=2))
    else:
        for d in done:
            if d.outcome == Outcome.FAILED:
                click.echo(printable(f"failed: client {d.client_id} ({d.client_name}): {d.error}"))
            for refusal in d.refused:
                click.echo(printable(f"left out: credential {refusal.provider_id} of {d.app}: "
                                     f"{refusal.reason}"))
        click.echo(f"imported {counts[Outcome.IMPORTED]} clients from {provider} ({creds} "
                   f"credentials, {left_out} left out); {counts[Outcome.ALREADY]} imported "
                   f"before; {counts[Outcome.FAILED]} failed")
    if counts[Outcome.FAILED]:
        ctx.exit(1)


def _document(provider: str, match: str | None, done: list[ClientImport],
              counts: dict[str, int], creds: int, left_out: int) -> dict[str, Any]:
    from orchestrator.app.importing import Outcome

    def client(d: ClientImport) -> dict[str, Any]:
        return {
            "client_id": d.client_id, "client_name": d.client_name, "app": d.app,
            "credentials": [{
                "credential_id": c.id, "provider_credential_id": c.provider_id,
                "usage": c.usage.value, "kind": c.kind.value, "kid": c.kid, "alg": c.alg,
                "status": c.status.value, "fingerprint": c.fingerprint,
                "expires_at": format_time(c.expires_at) if c.expires_at else None,
            } for c in d.credentials],
            "left_out": [{"provider_credential_id": r.provider_id, "reason": r.reason}
                         for r in d.refused],
        }

    return {
        "provider": provider,
        "match": match,
        "imported": [client(d) for d in done if d.outcome == Outcome.IMPORTED],
        "already_imported": [{"client_id": d.client_id, "client_name": d.client_name,
                              "app": d.app} for d in done if d.outcome == Outcome.ALREADY],
        "failed": [{"client_id": d.client_id, "client_name": d.client_name, "app": d.app,
                    "error": d.error} for d in done if d.outcome == Outcome.FAILED],
        "summary": {"imported": counts[Outcome.IMPORTED],
                    "already_imported": counts[Outcome.ALREADY],
                    "failed": counts[Outcome.FAILED], "credentials": creds,
                    "credentials_left_out": left_out},
    }


@contextmanager
def _progress(provider: str) -> Iterator[Callable[[ClientImport], None]]:
    """A progress bar on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield lambda _result: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (SpinnerColumn(), TextColumn("importing from {task.fields[provider]}"),
               BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("import", total=None, provider=printable(provider), last="")
        yield lambda result: bar.update(task, advance=1,
                                        last=printable(result.app or result.client_id))
