"""``orchestrator credential``: add, list, activate, disable, delete, set-expiry.

The commands that change a credential go through ``app.manual_credentials``: for an application
bound to an identity provider they do it there first (and say what they did there, on a line of
their own), for one of the local provider they only record it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from events.codec import format_time
from events.state import Credential
from orchestrator.app.service import CredentialSource
from orchestrator.domain.errors import InputError
from orchestrator.entrypoints.cli.context import only_the_error_line, system_of
from orchestrator.entrypoints.cli.output import credential_json, credential_table, printable
from orchestrator.entrypoints.cli.params import TIME, USAGES

if TYPE_CHECKING:
    from orchestrator.app.manual_credentials import ManualCredentials


@click.group()
def credential() -> None:
    """Add, list, activate, disable, delete credentials and change their expiry."""


def _manual(ctx: click.Context) -> ManualCredentials:
    """The use cases, on a system that only reads the policies folder (for the identity
    providers); a refusal is the one error line, no log line beside it."""
    from orchestrator.app.manual_credentials import ManualCredentials

    only_the_error_line()
    system = system_of(ctx, record_policies=False)
    return ManualCredentials(system.service, system.provider)


def _show_credential(cred: Credential, app: str, now: datetime, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(credential_json(cred, now), indent=2))
    else:
        credential_table(app, [cred], now)


@credential.command("add")
@click.argument("app")
@click.option("--usage", required=True, type=click.Choice(USAGES))
@click.option("--pem", type=click.Path(dir_okay=False, path_type=Path),
              help="Public key (SPKI or PKCS#1) or X.509 certificate, PEM.")
@click.option("--subject-dn", help="mtls only: the subject DN of a CA-issued certificate.")
@click.option("--generate", is_flag=True,
              help="Generate the key pair (mtls: a self-signed certificate); the private key goes "
                   "only to the encrypted keystore.")
@click.option("--alg", help="RS256 (default), RS384 or PS256; private_key_jwt and jar only.")
@click.option("--key-size", type=int, default=2048, show_default=True,
              help="Bits of a generated RSA key (2048-4096).")
@click.option("--name", help="A friendly name.")
@click.option("--kid", help="Key id, [0-9a-zA-Z-_]{10,64} (default: RFC 7638 thumbprint).")
@click.option("--kind", type=click.Choice(["x509_cert", "cert_subject_dn"]),
              help="mtls only: override self-signed detection.")
@click.option("--expires-at", type=TIME, help="Expiry, ISO-8601 (no offset = UTC).")
@click.option("--parse-expiry-from-cert", is_flag=True,
              help="Take the expiry from the certificate's notAfter.")
@click.option("--activate", is_flag=True, help="Activate it at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the credential as one JSON object.")
@click.pass_context
def credential_add(ctx: click.Context, app: str, usage: str, pem: Path | None,
                   subject_dn: str | None, generate: bool, alg: str | None, key_size: int,
                   name: str | None, kid: str | None, kind: str | None,
                   expires_at: datetime | None, parse_expiry_from_cert: bool, activate: bool,
                   as_json: bool) -> None:
    """Add a credential to APP (created inactive unless --activate)."""
    from events.catalog import CredentialKind

    given = [x for x in (pem is not None, subject_dn is not None, generate) if x]
    if len(given) != 1:
        raise InputError("give exactly one of --pem FILE, --subject-dn DN or --generate")
    source = CredentialSource(
        pem=_read_file(pem) if pem is not None else None, pem_name=str(pem),
        subject_dn=subject_dn, generate=generate, key_size=key_size,
    )
    manual = _manual(ctx)
    done = manual.add(
        app, usage, source, alg=alg, kid=kid, name=name, expires_at=expires_at,
        parse_expiry_from_cert=parse_expiry_from_cert, activate=activate,
        kind=CredentialKind(kind) if kind else None,
    )
    _show_credential(done.credential, app, manual.service.clock(), as_json)
    if done.note and not as_json:
        click.echo(printable(f"{app} {done.credential.id}: {done.note}"))


MAX_PEM_BYTES = 1024 * 1024  # a key or a certificate chain is a few KiB


def _read_file(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PEM_BYTES + 1)  # never more: /dev/zero has no end
    except OSError as exc:
        raise InputError(f"--pem {path}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_PEM_BYTES:
        raise InputError(f"--pem {path}: larger than 1 MiB, so not a PEM key or certificate; "
                         "give the public key or certificate file")
    return data


@credential.command("list")
@click.argument("app")
@click.option("--all", "show_all", is_flag=True, help="Include deleted credentials.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def credential_list(ctx: click.Context, app: str, show_all: bool, as_json: bool) -> None:
    """List APP's credentials."""
    system = system_of(ctx)
    state = system.service.state_at(app, None)
    now = system.clock()
    creds = [c for c in state.credentials.values() if show_all or c.live]
    if as_json:
        click.echo(json.dumps([credential_json(c, now) for c in creds], indent=2))
    else:
        credential_table(app, creds, now)


def _lifecycle(verb: str, help_text: str, with_force: bool) -> None:
    @click.argument("app")
    @click.argument("credential_id", metavar="ID")
    @click.pass_context
    def command(ctx: click.Context, app: str, credential_id: str, force: bool = False) -> None:
        manual = _manual(ctx)
        if verb == "activate":
            done = manual.activate(app, credential_id)
        elif verb == "disable":
            done = manual.disable(app, credential_id, force)
        else:
            done = manual.delete(app, credential_id, force)
        status = done.credential.status.value
        click.echo(printable(f"{app} {credential_id}: {status}"
                             + (f" ({done.note})" if done.note else "")))

    command.__doc__ = help_text
    if with_force:
        command = click.option(
            "--force", is_flag=True,
            help="Allow it even for the last active credential of its usage.")(command)
    credential.command(verb)(command)


_lifecycle("activate", "Activate credential ID of APP.", with_force=False)


_lifecycle("disable", "Disable credential ID of APP (refused for the last active one).", True)


_lifecycle("delete", "Delete credential ID of APP; frees its slot (and its private key).", True)


@credential.command("set-expiry")
@click.argument("app")
@click.argument("credential_id", metavar="ID")
@click.option("--expires-at", type=TIME, required=True, help="New expiry, in the future.")
@click.pass_context
def credential_set_expiry(ctx: click.Context, app: str, credential_id: str,
                          expires_at: datetime) -> None:
    """Change the expiry of credential ID of APP."""
    done = _manual(ctx).set_expiry(app, credential_id, expires_at)
    cred = done.credential
    line = (f"{app} {credential_id}: expires at {format_time(cred.expires_at)}"
            if cred.expires_at else f"{app} {credential_id}: never expires")
    click.echo(printable(line + (f" ({done.note})" if done.note else "")))
