"""``orchestrator app``: register and list applications."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, TextIO

import click

from orchestrator.domain.errors import InputError
from orchestrator.domain.identity_provider import LOCAL_PROVIDER
from orchestrator.entrypoints.cli.context import only_the_error_line, system_of
from orchestrator.entrypoints.cli.output import print_table, state_json
from orchestrator.entrypoints.cli.params import Label, label_map

if TYPE_CHECKING:
    from orchestrator.bootstrap import System


@click.group()
def app() -> None:
    """Register and list applications."""


@app.command("register")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--from-file", "from_file", type=click.File("r", encoding="utf-8"),
              help="Also register the applications of FILE ('-': stdin): one a line, "
                   "NAME [KEY=VALUE ...]; blank lines and # comments are skipped.")
@click.option("--label", "labels", multiple=True, type=Label(),
              help="KEY=VALUE for every application, repeatable.")
@click.option("--exist-ok", is_flag=True, help="Succeed without change for those already registered.")
@click.option("--provider", "provider", metavar="NAME",
              help="The identity provider the applications belong to: the name of an "
                   "IdentityProvider resource in the policies folder (default: the embedded "
                   "local provider).")
@click.option("--client-id", "client_id", metavar="ID",
              help="The application's client id at --provider (one NAME only; default: NAME).")
@click.option("--registration-token-file", "token_file", type=click.File("r", encoding="utf-8"),
              metavar="FILE",
              help="OpenID providers (RFC 7592): the client's registration access token, read "
                   "from FILE ('-': stdin), checked with the provider and kept in the keystore "
                   "(never printed). With --exist-ok on an application bound to that client, "
                   "replaces the kept token.")
@click.option("--create", is_flag=True,
              help="OpenID providers (RFC 7591): register a new client for NAME with the "
                   "provider's initial access token; its client id is recorded, its "
                   "registration access token kept in the keystore.")
@click.pass_context
def app_register(ctx: click.Context, names: Sequence[str], from_file: TextIO | None,
                 labels: Sequence[tuple[str, str]], exist_ok: bool, provider: str | None,
                 client_id: str | None, token_file: TextIO | None, create: bool) -> None:
    """Register one or many applications (NAME arguments and/or --from-file).

    Every name and label is checked before anything is written: one refusal writes nothing."""
    common = label_map(labels, "--label")
    apps = [(name, common) for name in names]
    if from_file is not None:
        apps += [(name, {**common, **own}) for name, own in _read_apps(from_file)]
    if not apps:
        raise click.UsageError("give at least one NAME or --from-file FILE")
    if client_id is not None and (len(apps) != 1 or provider is None):
        raise click.UsageError("--client-id needs --provider and exactly one NAME")
    if (token_file is not None or create) and (len(apps) != 1 or provider is None):
        raise click.UsageError("--registration-token-file and --create need --provider and "
                               "exactly one NAME")
    if create and (token_file is not None or client_id is not None):
        raise click.UsageError("--create makes a new client: give no --client-id or "
                               "--registration-token-file with it")
    # a provider is looked up in the policies folder, which is only read: nothing recorded
    if provider is not None:
        only_the_error_line()
    system = system_of(ctx, record_policies=provider is None)
    if provider is not None and (token_file is not None or create):
        _bind_client(system, apps[0], provider, client_id, token_file, create, exist_ok)
        return
    bound = None if provider == LOCAL_PROVIDER else provider
    confirm: Callable[[list[str]], None] | None = None
    if bound is not None:  # the clients are read once every rule passed, before any write
        from orchestrator.app.onboarding import require_clients

        _not_its_own(system, bound, {client_id or name for name, _ in apps})
        confirm = partial(require_clients, system.provider.named(bound), bound)
    for name, registered in system.service.register_apps(
            apps, exist_ok=exist_ok, provider=bound, client_id=client_id, confirm=confirm):
        click.echo(f"registered {name}" if registered else f"{name} is already registered")


def _not_its_own(system: System, provider: str, client_ids: set[str]) -> None:
    """Refused, nothing written, when ``provider`` is not configured, one of ``client_ids``
    is the client the orchestrator reaches it through, or (RFC 7592) is one whose registration
    access token it does not hold."""
    from orchestrator.app.ports import ClientRegistrar, OwnClient

    found = system.provider.named(provider)
    untokened = sorted(c for c in client_ids if isinstance(found, ClientRegistrar)
                       and not found.holds_token(c))
    if untokened:
        raise InputError(f"--provider {provider}: client {untokened[0]!r} can be managed only "
                         "with its registration access token: bind one application with "
                         "--client-id ID --registration-token-file FILE, or register a new "
                         "client with --create")
    if isinstance(found, OwnClient) and found.management_client_id in client_ids:
        raise InputError(f"client {found.management_client_id!r} is the Management API "
                         f"application the orchestrator uses at {provider!r} (its clientId): "
                         "binding an application to it would rotate the orchestrator's own "
                         "access away; give the application its own client")


def _bind_client(system: System, app: tuple[str, dict[str, str]], provider: str,
                 client_id: str | None, token_file: TextIO | None, create: bool,
                 exist_ok: bool) -> None:
    from orchestrator.app.onboarding import bind_client
    from orchestrator.app.ports import ClientRegistrar

    registrar = system.provider.named(provider)
    if not isinstance(registrar, ClientRegistrar):
        raise InputError(f"--provider {provider}: this identity provider manages no client with "
                         "a registration access token (RFC 7592): drop --registration-token-file "
                         "and --create")
    token = _read_token(token_file) if token_file is not None else None
    name, labels = app
    registered = bind_client(system.service, registrar, name, labels, provider,
                             client_id=client_id, registration_token=token, create=create,
                             exist_ok=exist_ok)
    if registered:
        bound = system.service.load(name).provider_client_id
        click.echo(f"registered {name} (client {bound}, {'created' if create else 'adopted'} "
                   f"at {provider})")
    else:
        click.echo(f"{name} is already registered" + (
            " (its registration access token was replaced)" if token is not None else ""))


MAX_TOKEN_FILE = 64 * 1024  # characters: a registration access token is far shorter


def _read_token(handle: TextIO) -> str:
    where = getattr(handle, "name", "FILE")
    try:
        text = handle.read(MAX_TOKEN_FILE + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--registration-token-file {where}: cannot be read ({exc})") from None
    if len(text) > MAX_TOKEN_FILE or not text.strip():
        raise InputError(f"--registration-token-file {where}: holds no registration access "
                         "token")
    return text.strip()


MAX_APPS_FILE = 16 * 1024 * 1024  # characters: a million applications; never read without end


def _read_apps(handle: TextIO) -> list[tuple[str, dict[str, str]]]:
    where = getattr(handle, "name", "FILE")
    text = handle.read(MAX_APPS_FILE + 1)
    if len(text) > MAX_APPS_FILE:
        raise InputError(f"{where}: larger than 16 MiB; register the applications in parts")
    apps = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        name, *pairs = fields
        try:
            labels = label_map([Label().parse_pair(p) for p in pairs], f"{where}:{number}")
        except ValueError as exc:
            raise InputError(f"{where}:{number}: {exc}") from None
        apps.append((name, labels))
    return apps


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
