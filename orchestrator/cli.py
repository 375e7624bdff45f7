"""The command line: ``orchestrator``. Every refusal is one line on stderr and a non-zero exit.

Global options: ``--db URL`` (``ORCHESTRATOR_DB``, default ``sqlite:///var/orchestrator.db``)
and ``--keystore DIR`` (``ORCHESTRATOR_KEYSTORE``, default ``var/keystore``).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy.exc import SQLAlchemyError

from events.chain import Break
from events.codec import format_time
from events.state import AppState, Credential
from events.store import ReadFilter, Recorded
from orchestrator import bootstrap as boot
from orchestrator.errors import InputError, OrchestratorError
from orchestrator.output import credential_json, print_table, state_json
from orchestrator.service import CredentialSource

USAGES = ("private_key_jwt", "jar", "mtls")


# --- parameter types ---------------------------------------------------------------------------


class Instant(click.ParamType):
    """An ISO-8601 time; without an offset it is taken as UTC."""

    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time (e.g. 2027-01-31T00:00:00Z)", param, ctx)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        from orchestrator.durations import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Label(click.ParamType):
    name = "KEY=VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str]:
        key, sep, val = value.partition("=")
        if not sep or not key:
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key, val


TIME = Instant()


def _system(ctx: click.Context, policies: Path | None = None, record_policies: bool = True,
            **options: Any) -> boot.System:
    obj = ctx.find_root().obj
    if obj.get("system") is None:
        settings = obj["settings"]
        if policies is not None:
            settings = boot.Settings(**{**settings.__dict__, "policies": policies})
        obj["system"] = boot.bootstrap(settings, **options)
        if not record_policies:
            obj["system"].policies.store = None  # planning only reads the policies
        ctx.find_root().call_on_close(obj["system"].close)
    return obj["system"]


# --- root --------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", envvar="ORCHESTRATOR_DB", default=None, metavar="URL",
              help="Database URL [env ORCHESTRATOR_DB; default sqlite:///var/orchestrator.db].")
@click.option("--keystore", envvar="ORCHESTRATOR_KEYSTORE", default=None, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Encrypted keystore directory [env ORCHESTRATOR_KEYSTORE; default var/keystore].")
@click.version_option(package_name="credential-orchestrator")
@click.pass_context
def cli(ctx: click.Context, db: str | None, keystore: Path | None) -> None:
    """Keep OAuth application credentials rotated, expiry enforced, and every change provable."""
    import logging

    from orchestrator.logs import configure

    configure(level=logging.WARNING)  # commands print results; logs (stderr) only for trouble
    ctx.obj = {"settings": boot.Settings.from_env(db=db, keystore=keystore), "system": None}


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the database schema (or upgrade it to the latest version)."""
    settings = ctx.obj["settings"]
    engine = boot.open_engine(settings.db)
    try:
        changed = boot.ensure_schema(engine, settings.db)
    finally:
        engine.dispose()
    click.echo(f"database {boot._safe(settings.db)} is at schema {boot.HEAD_REVISION}"
               f"{' (created)' if changed else ''}")


# --- applications ------------------------------------------------------------------------------


@cli.group()
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
    service = _system(ctx).service
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
    system = _system(ctx)
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


# --- credentials -------------------------------------------------------------------------------


@cli.group()
def credential() -> None:
    """Add, list, activate, disable, delete credentials and change their expiry."""


def _show_credential(cred: Credential, app: str, now: datetime, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(credential_json(cred, now), indent=2))
    else:
        _credential_table(app, [cred], now)


def _credential_table(app: str, creds: Iterable[Credential], now: datetime) -> None:
    rows = [
        (c.id, c.usage.value, c.kind.value, c.kid, c.alg or "-", c.effective_status(now).value,
         format_time(c.expires_at) if c.expires_at else "never", c.fingerprint[:23] + "…")
        for c in creds
    ]
    print_table(["ID", "USAGE", "KIND", "KID", "ALG", "STATUS", "EXPIRES", "FINGERPRINT"], rows,
                empty=f"application {app} has no credentials")


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
    system = _system(ctx)
    cred = system.service.add_credential(
        app, usage, source, alg=alg, kid=kid, name=name, expires_at=expires_at,
        parse_expiry_from_cert=parse_expiry_from_cert, activate=activate,
        kind=CredentialKind(kind) if kind else None,
    )
    _show_credential(cred, app, system.clock(), as_json)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"--pem {path}: cannot read it ({exc.strerror})") from None


@credential.command("list")
@click.argument("app")
@click.option("--all", "show_all", is_flag=True, help="Include deleted credentials.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def credential_list(ctx: click.Context, app: str, show_all: bool, as_json: bool) -> None:
    """List APP's credentials."""
    system = _system(ctx)
    state = system.service.state_at(app, None)
    now = system.clock()
    creds = [c for c in state.credentials.values() if show_all or c.live]
    if as_json:
        click.echo(json.dumps([credential_json(c, now) for c in creds], indent=2))
    else:
        _credential_table(app, creds, now)


def _lifecycle(verb: str, help_text: str, with_force: bool) -> None:
    @click.argument("app")
    @click.argument("credential_id", metavar="ID")
    @click.pass_context
    def command(ctx: click.Context, app: str, credential_id: str, force: bool = False) -> None:
        service = _system(ctx).service
        if verb == "activate":
            state = service.activate(app, credential_id)
        elif verb == "disable":
            state = service.disable(app, credential_id, force)
        else:
            state = service.delete(app, credential_id, force)
        status = state.credentials[credential_id].status.value
        click.echo(f"{app} {credential_id}: {status}")

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
    state = _system(ctx).service.set_expiry(app, credential_id, expires_at)
    cred = state.credentials[credential_id]
    click.echo(f"{app} {credential_id}: expires at {format_time(cred.expires_at)}"
               if cred.expires_at else f"{app} {credential_id}: never expires")


# --- secrets, expiry ---------------------------------------------------------------------------


@cli.group()
def secret() -> None:
    """Rotate client secrets."""


@secret.command("rotate")
@click.argument("app")
@click.option("--grace", type=Duration(), help="How long the previous secret stays valid (e.g. 1h).")
@click.pass_context
def secret_rotate(ctx: click.Context, app: str, grace: timedelta | None) -> None:
    """Rotate APP's client secret and show the new one, once."""
    system = _system(ctx)
    version, value = system.service.rotate_secret(app, grace)
    secret_state = system.service.load(app).secret
    # the identity provider switches to it too (the previous one valid for the grace period)
    system.provider.set_secret(app, version, value,
                               secret_state.previous_valid_until if secret_state else None)
    click.echo(f"{app}: client secret version {version}; it is shown once, store it now:",
               err=True)
    click.echo(value)


@cli.command()
@click.pass_context
def expire(ctx: click.Context) -> None:
    """Record credential.expired for every credential whose expiry has passed."""
    expired = _system(ctx).service.expire_due()
    for app_name, cid in expired:
        click.echo(f"{app_name} {cid}: expired")
    click.echo(f"{len(expired)} credential(s) expired")


# --- audit -------------------------------------------------------------------------------------


@cli.command()
@click.option("--app", "app_name", help="Only this application.")
@click.option("--credential", "credential_id", help="Only events about this credential.")
@click.option("--type", "types", multiple=True, help="Event type, e.g. credential.added (repeatable).")
@click.option("--actor", help="Only events by this actor, e.g. cli:alice or scheduler.")
@click.option("--since", type=TIME, help="Occurred at or after this time.")
@click.option("--until", type=TIME, help="Occurred before this time.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many events.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="json is JSON Lines, one event per line.")
@click.pass_context
def audit(ctx: click.Context, app_name: str | None, credential_id: str | None,
          types: tuple[str, ...], actor: str | None, since: datetime | None,
          until: datetime | None, limit: int | None, fmt: str) -> None:
    """What happened, when, and by whom."""
    from events.catalog import event_types
    from events.state import stream_id

    unknown = [t for t in types if t not in event_types()]
    if unknown:
        raise InputError(f"--type {unknown[0]} is not an event type; known: "
                         f"{', '.join(sorted(event_types()))}")
    where = ReadFilter(
        stream_id=stream_id(app_name) if app_name else None, types=types, actor=actor,
        since=since, until=until, limit=None if credential_id else limit,
    )
    records: Iterable[Recorded] = _system(ctx).service.audit(where)
    if credential_id:
        records = _only_credential(records, credential_id, limit)
    _print_records(records, fmt)


def _only_credential(records: Iterable[Recorded], cid: str, limit: int | None) -> Iterable[Recorded]:
    count = 0
    for rec in records:
        data = rec.payload
        if cid in (data.get("credential_id"), data.get("new_credential_id"),
                   data.get("old_credential_id")):
            yield rec
            count += 1
            if limit is not None and count >= limit:
                return


def _audit_row(rec: Recorded) -> dict[str, Any]:
    return {
        "position": rec.position, "type": rec.type, "stream": rec.stream_id,
        "stream_version": rec.stream_version, "occurred_at": format_time(rec.occurred_at),
        "recorded_at": format_time(rec.recorded_at), "actor": rec.actor,
        "correlation_id": rec.correlation_id, "event_id": rec.event_id, "payload": rec.payload,
    }


def _print_records(records: Iterable[Recorded], fmt: str) -> None:
    out = click.get_text_stream("stdout")
    if fmt == "json":
        for rec in records:
            out.write(json.dumps(_audit_row(rec), sort_keys=True) + "\n")
        return
    if fmt == "csv":
        fields = ["position", "occurred_at", "type", "stream", "actor", "correlation_id",
                  "payload"]
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for rec in records:
            row = _audit_row(rec)
            row["payload"] = rec.payload_json
            writer.writerow(row)
        return
    rows = [
        (rec.position, format_time(rec.occurred_at), rec.type, rec.stream_id, rec.actor,
         _summary(rec.payload))
        for rec in records
    ]
    print_table(["POS", "OCCURRED AT", "TYPE", "STREAM", "ACTOR", "DETAIL"], rows,
                empty="no events match")


def _summary(payload: dict[str, Any]) -> str:
    keys = ("credential_id", "usage", "kind", "kid", "version", "rotation_id", "reason", "step",
            "expires_at", "name", "error")
    return " ".join(f"{k}={payload[k]}" for k in keys if payload.get(k) is not None)


@cli.command()
@click.argument("app_name", metavar="APP")
@click.option("--at", type=TIME, help="Rebuild the state as it was at this time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def state(ctx: click.Context, app_name: str, at: datetime | None, as_json: bool) -> None:
    """APP's credentials as they were at a time, rebuilt from the log."""
    system = _system(ctx)
    app_state: AppState = system.service.state_at(app_name, at)
    when = at or system.clock()
    if as_json:
        click.echo(json.dumps(state_json(app_state, when, include_deleted=True), indent=2))
        return
    click.echo(f"{app_name} at {format_time(when)} (version {app_state.version})")
    _credential_table(app_name, [c for c in app_state.credentials.values() if c.live], when)
    if app_state.secret:
        click.echo(f"client secret: version {app_state.secret.version} "
                   f"({app_state.secret.fingerprint[:23]}…)")


@cli.command()
@click.pass_context
def verify(ctx: click.Context) -> None:
    """Walk the hash chain; name the first broken position."""
    result = _system(ctx).service.verify()
    if isinstance(result, Break):
        raise OrchestratorError(f"chain broken at position {result.position}: {result.reason}")
    click.echo(f"ok: {result.count} events, chain intact, head position {result.head_position} "
               f"hash {result.head_hash}")


@cli.group()
def projections() -> None:
    """Read-model projections."""


@projections.command("status")
@click.pass_context
def projections_status(ctx: click.Context) -> None:
    """Checkpoint, log head and lag."""
    status = _system(ctx).projector.status()
    click.echo(f"{status.name}: position {status.position} of {status.head} (lag {status.lag})")


@projections.command("rebuild")
@click.pass_context
def projections_rebuild(ctx: click.Context) -> None:
    """Replay the whole log into fresh read-model tables."""
    count = _system(ctx).projector.rebuild()
    click.echo(f"read_models: rebuilt from {count} events")


# --- entry point -------------------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = cli.main(args=argv, prog_name="orchestrator", standalone_mode=False)
        if isinstance(code, int) and code != 0:  # standalone_mode=False returns Exit(n)'s n
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        _fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except OrchestratorError as exc:
        _fail(str(exc), exc.exit_code)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        _fail(f"database: {reason}", 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


# The operations commands (policies, plan, rotate, rotations, daemon, simulate) live in
# orchestrator/cli_ops.py and register themselves on ``cli`` when imported.
from orchestrator import cli_ops  # noqa: E402,F401
