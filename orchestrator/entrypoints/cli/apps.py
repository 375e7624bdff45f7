"""``orchestrator app``: register and list applications."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from orchestrator.entrypoints.cli.context import system_of
from orchestrator.entrypoints.cli.output import print_table, state_json
from orchestrator.entrypoints.cli.params import Label


@click.group()
def app() -> None:
    """Register and list applications."""


@app.command("register")
@click.argument("name")
@click.option("--label", "labels", multiple=True, type=Label(), help="KEY=VALUE, repeatable.")
@click.option("--exist-ok", is_flag=True, help="Succeed without change if already registered.")
@click.pass_context
def app_register(ctx: click.Context, name: str, labels: Sequence[tuple[str, str]],
                 exist_ok: bool) -> None:
    """Register application NAME."""
    service = system_of(ctx).service
    if exist_ok and service.load(name).registered:
        click.echo(f"{name} is already registered")
        return
    state = service.register_app(name, dict(labels))
    click.echo(f"registered {state.app}")


@app.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def app_list(ctx: click.Context, as_json: bool) -> None:
    """List registered applications with their live credentials."""
    system = system_of(ctx)
    system.projector.catch_up()
    now = system.clock()
    states = list(system.projector.states())
    if as_json:
        click.echo(json.dumps([state_json(s, now) for s in states], indent=2))
        return
    rows = [
        (s.app, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())),
         sum(1 for c in s.credentials.values() if c.live),
         str(s.secret.version) if s.secret else "-")
        for s in states
    ]
    print_table(["APP", "LABELS", "LIVE CREDENTIALS", "SECRET VERSION"], rows,
                empty="no applications registered (orchestrator app register NAME)")
