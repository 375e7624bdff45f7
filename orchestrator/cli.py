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
    version, value = _system(ctx).service.rotate_secret(app, grace)
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


# --- policies, planning, rotations, daemon, simulator ---------------------------------------


@cli.group()
def policy() -> None:
    """Check policy files."""


@policy.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.pass_context
def policy_validate(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Validate policy files or folders (default: the policies folder); for ops' own CI."""
    from orchestrator.policy import load_policies

    targets = list(paths) or [ctx.obj["settings"].policies]
    missing = [p for p in targets if not p.exists()]
    if missing:
        raise InputError(f"{missing[0]}: no such file or folder")
    result = load_policies(targets)
    for loaded in result.policies:
        click.echo(f"ok      {loaded.path}  {loaded.policy.metadata.name}  {loaded.content_hash[:19]}")
    for error in result.errors:
        click.echo(f"error   {error}", err=True)
    if result.errors:
        raise click.exceptions.Exit(1)
    if not result.policies:
        raise InputError(f"no policy files (*.yaml) in {', '.join(map(str, targets))}")


def _action_json(action: Any) -> dict[str, Any]:
    return {
        "kind": action.kind.value, "app": action.app, "usage": action.usage,
        "reason": action.reason.value, "message": action.message, "policy": action.policy,
        "credential_id": action.credential_id, "rotation_id": action.rotation_id,
        "urgent": action.urgent,
        "not_before": format_time(action.not_before) if action.not_before else None,
    }


@cli.command()
@click.option("--at", type=TIME, help="Plan as of this time (default: now).")
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder [env ORCHESTRATOR_POLICIES; default ./policies].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def plan(ctx: click.Context, at: datetime | None, policies_dir: Path | None,
         as_json: bool) -> None:
    """What the daemon would do now (or at --at), and why. Changes nothing."""
    system = _system(ctx, policies=policies_dir, record_policies=False)
    the_plan = system.ticker.plan(at)
    when = at or system.clock()
    if as_json:
        click.echo(json.dumps({
            "at": format_time(when),
            "actions": [_action_json(a) for a in the_plan.actions],
            "deferred": [_action_json(a) for a in the_plan.deferred],
            "problems": list(the_plan.problems),
            "policy_errors": list(system.policies.errors),
        }, indent=2))
        return
    for error in system.policies.errors:
        click.echo(f"policy error: {error}", err=True)
    for problem in the_plan.problems:
        click.echo(f"conflict: {problem}", err=True)
    rows = [(a.kind.value, a.app, a.usage or "-", a.reason.value, a.policy or "-", a.message)
            for a in the_plan.actions]
    rows += [("deferred", a.app, a.usage or "-", a.reason.value, a.policy or "-",
              f"{a.message}; not before {format_time(a.not_before)}" if a.not_before
              else f"{a.message}; over this tick's cap")
             for a in the_plan.deferred]
    print_table(["ACTION", "APP", "USAGE", "REASON", "POLICY", "WHY"], rows,
                empty=f"nothing to do at {format_time(when)}")


@cli.command()
@click.argument("app_name", metavar="APP")
@click.option("--usage", required=True,
              type=click.Choice([*USAGES, "client_secret"]))
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder (the matching policy's settings are used).")
@click.pass_context
def rotate(ctx: click.Context, app_name: str, usage: str, policies_dir: Path | None) -> None:
    """Rotate APP's USAGE credential now (reason: manual), with zero downtime."""
    from orchestrator.rotation import Reason, Step

    system = _system(ctx, policies=policies_dir, record_policies=False)
    if not system.service.load(app_name).registered:
        raise InputError(f"application {app_name!r} is not registered "
                         f"(register it with: orchestrator app register {app_name})")
    policy = next((p for p in system.policies.current()
                   if p.usage == usage and p.selects(system.service.load(app_name))), None)
    params = policy.params if policy else system.ticker.params_for(None, usage, {})
    rotation_id = system.rotator.start(app_name, usage, Reason.MANUAL,
                                       policy.name if policy else None,
                                       actor=system.settings.actor)
    if rotation_id is None:
        running = system.service.load(app_name).running_rotation(usage)
        raise InputError(f"{app_name} already has a {usage} rotation in flight "
                         f"({running.id if running else '?'}, {running.status.value if running else '?'}); "
                         "see: orchestrator rotations")
    outcome = system.rotator.advance(app_name, rotation_id, params)
    state = system.service.load(app_name)
    rot = state.rotations[rotation_id]
    if outcome.failed:
        raise OrchestratorError(f"rotation {rotation_id} failed at {outcome.last.step.value}: "
                                f"{rot.last_error}; the daemon retries it (attempt {rot.attempts})")
    if outcome.last.step is Step.WAIT and outcome.last.not_before:
        click.echo(f"rotation {rotation_id}: new credential {rot.new_credential_id} active and "
                   f"tested; the old one is disabled after the overlap, at "
                   f"{format_time(outcome.last.not_before)} (by the daemon)")
    else:
        click.echo(f"rotation {rotation_id}: {rot.status.value}; new credential "
                   f"{rot.new_credential_id}")


@cli.group(invoke_without_command=True)
@click.option("--app", "app_name", help="Only this application.")
@click.option("--all", "show_all", is_flag=True, help="Include completed and abandoned ones.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def rotations(ctx: click.Context, app_name: str | None, show_all: bool, as_json: bool) -> None:
    """Rotations in flight and parked ones waiting for a human (retry, abandon)."""
    if ctx.invoked_subcommand is not None:
        return
    system = _system(ctx)
    system.projector.catch_up()
    rows = []
    for state in system.projector.states():
        if app_name and state.app != app_name:
            continue
        for r in state.rotations.values():
            if show_all or r.status.value in ("running", "parked"):
                rows.append((state.app, r))
    if as_json:
        click.echo(json.dumps([{
            "app": a, "rotation_id": r.id, "usage": r.usage, "reason": r.reason,
            "status": r.status.value, "steps": list(r.steps), "attempts": r.attempts,
            "last_error": r.last_error, "policy": r.policy,
            "new_credential_id": r.new_credential_id, "old_credential_id": r.old_credential_id,
            "started_at": format_time(r.started_at),
            "next_attempt_at": format_time(r.next_attempt_at) if r.next_attempt_at else None,
        } for a, r in rows], indent=2))
        return
    print_table(["APP", "ROTATION", "USAGE", "STATUS", "REASON", "LAST STEP", "ATTEMPTS", "ERROR"],
                [(a, r.id, r.usage, r.status.value, r.reason, r.steps[-1] if r.steps else "-",
                  r.attempts, r.last_error or "-") for a, r in rows],
                empty="no rotations in flight")


def _rotation_admin(verb: str) -> None:
    @click.argument("app_name", metavar="APP")
    @click.argument("rotation_id", metavar="ROTATION")
    @click.pass_context
    def command(ctx: click.Context, app_name: str, rotation_id: str) -> None:
        from events import catalog as ev

        system = _system(ctx)

        def decide(state: AppState) -> tuple[list[Any], datetime]:
            rot = state.rotations.get(rotation_id)
            if rot is None:
                raise InputError(f"{app_name} has no rotation {rotation_id} "
                                 "(see: orchestrator rotations --all)")
            if rot.status.value not in ("parked", "running") or (
                    verb == "retry" and rot.status.value != "parked"):
                raise InputError(f"rotation {rotation_id} is {rot.status.value}; only a parked "
                                 f"rotation can be retried, and a running or parked one abandoned")
            event = (ev.RotationRetried(rotation_id=rotation_id) if verb == "retry"
                     else ev.RotationAbandoned(rotation_id=rotation_id))
            return [event], system.clock()

        system.service.append_decided(app_name, decide, correlation_id=rotation_id)
        click.echo(f"rotation {rotation_id}: {'retrying' if verb == 'retry' else 'abandoned'}")

    command.__doc__ = ("Send a parked rotation back to the daemon with a fresh retry budget."
                       if verb == "retry" else
                       "Give up a rotation; its new credential stays for you to delete.")
    rotations.command(verb)(command)


_rotation_admin("retry")
_rotation_admin("abandon")


@cli.command()
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder [env ORCHESTRATOR_POLICIES; default ./policies].")
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds between ticks.")
@click.option("--json-logs/--pretty-logs", default=None,
              help="Log format (default: pretty on a terminal, JSON lines otherwise).")
@click.pass_context
def daemon(ctx: click.Context, policies_dir: Path | None, once: bool, interval: float,
           json_logs: bool | None) -> None:
    """Apply the rotation policies: rotate on schedule, enforce expiry, until SIGTERM."""
    from datetime import timedelta

    from orchestrator.daemon import Daemon, Lease
    from orchestrator.logs import configure

    configure(json_logs)
    stop_flag: dict[str, Any] = {}
    system = _system(ctx, policies=policies_dir, daemon=True,
                     should_stop=lambda: bool(stop_flag.get("daemon")
                                              and stop_flag["daemon"].stopping.is_set()))

    def tick() -> None:
        system.projector.catch_up()
        system.ticker.tick()

    runner = Daemon(tick, system.projector.next_expiry, Lease(system.engine), system.clock,
                    interval=timedelta(seconds=interval))
    stop_flag["daemon"] = runner
    if once:
        if not runner.run_once():
            raise OrchestratorError("another daemon holds the leader lease; nothing done")
        runner.lease.release()
        return
    runner.run()


@cli.command()
@click.option("--days", type=click.IntRange(min=1, max=3660), default=365, show_default=True)
@click.option("--apps", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder [env ORCHESTRATOR_POLICIES; default ./policies].")
@click.option("--start", type=TIME, help="Virtual start time (default: now).")
@click.option("--tick", "tick_minutes", type=click.IntRange(min=1), default=60, show_default=True,
              help="Virtual minutes between ticks.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Share of provider calls that fail.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def simulate(ctx: click.Context, days: int, apps: int, policies_dir: Path | None,
             start: datetime | None, tick_minutes: int, fault_rate: float,
             as_json: bool) -> None:
    """Run the policies over a virtual fleet for DAYS in memory; check every invariant."""
    import logging
    from datetime import timedelta

    from orchestrator.logs import configure
    from orchestrator.policy import load_policies
    from orchestrator.policy_source import to_plan_policy
    from orchestrator.simulate import simulate as run

    configure(json_logs=True, level=logging.ERROR)
    directory = policies_dir or ctx.obj["settings"].policies
    loaded = load_policies([directory])
    if loaded.errors:
        raise InputError(str(loaded.errors[0]))
    if not loaded.policies:
        raise InputError(f"no policy files (*.yaml) in {directory}")
    policies = [to_plan_policy(p) for p in loaded.policies]
    from orchestrator.bootstrap import utc_now

    result = run(policies, apps, days, start or utc_now(), timedelta(minutes=tick_minutes),
                 fault_rate=fault_rate)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        click.echo(f"simulated {days} days, {apps} applications, {len(policies)} policies: "
                   f"{result.ticks} ticks, {result.events} events in "
                   f"{result.elapsed_seconds:.1f} s")
        kinds = ["rotations", "secret_rotations", "expiries", "deletions", "failures", "parked"]
        print_table(["MONTH", *[k.upper().replace("_", " ") for k in kinds]],
                    [(m, *[c.get(k, 0) for k in kinds]) for m, c in sorted(result.by_month.items())],
                    empty="nothing happened")
        for name, held in {**result.invariants, **result.liveness}.items():
            click.echo(f"{'held  ' if held else 'BROKEN'}  {name.replace('_', ' ')}")
        for violation in result.violations[:20]:
            click.echo(f"  {violation}")
    if not result.ok:
        raise click.exceptions.Exit(1)


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
