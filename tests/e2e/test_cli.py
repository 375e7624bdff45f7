"""The installed ``orchestrator`` command, driven as a user drives it, on SQLite and PostgreSQL.

Every test runs the script installed next to the interpreter in fresh processes, with
ORCHESTRATOR_DB and ORCHESTRATOR_KEYSTORE set, against a real SQLite file or a real PostgreSQL
schema (the ``db_url`` fixture), and reads only what a user sees: exit status, stdout, stderr.
Each test keeps one database for a whole story, to stay fast.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.adapters import crypto
from orchestrator.adapters.keystore import FileKeystore
from tests.helpers import (
    ORCHESTRATOR,
    ORCHESTRATOR_PYTHON,
    Cli,
    VirtualClock,
    assert_refused,
    certificate,
    dump_tables,
    ec_key,
    pkcs1_pem,
    rfc7638_thumbprint,
    rsa_key,
    spki_fingerprint,
    spki_pem,
)

AUDIT_FIELDS = {"position", "type", "stream", "stream_version", "occurred_at", "recorded_at",
                "actor", "correlation_id", "event_id", "payload"}
CREDENTIAL_FIELDS = {"id", "usage", "kind", "kid", "alg", "fingerprint", "status", "expires_at",
                     "key_size", "name", "recorded_status", "not_before", "subject_dn",
                     "generated", "added_at", "activated_at", "updated_at"}


def iso(value: datetime) -> str:
    """How a user writes a time on the command line."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def keys() -> SimpleNamespace:
    """Real keys, made once: RSA 2048 a-h and ca, one RSA 1024, one EC P-256."""
    made = SimpleNamespace(**{n: rsa_key(2048) for n in "abcdefgh"})
    made.ca, made.r1024, made.ec = rsa_key(2048), rsa_key(1024), ec_key()
    return made


@pytest.fixture
def pems(tmp_path: Path, keys: SimpleNamespace) -> SimpleNamespace:
    """PEM files as a user has them: SPKI and PKCS#1 keys, certificates, a broken file."""
    now = utcnow()
    folder = tmp_path / "pem"
    folder.mkdir()
    valid = {"not_before": now - timedelta(days=1), "not_after": now + timedelta(days=90)}
    contents = {
        "a.pem": spki_pem(keys.a),
        "b.pem": spki_pem(keys.b),
        "c_pkcs1.pem": pkcs1_pem(keys.c),
        "e.pem": spki_pem(keys.e),
        "f.pem": spki_pem(keys.f),
        "self_signed.pem": certificate(keys.d, "CN=payments-mtls", **valid),
        "issued.pem": certificate(keys.g, "CN=payments.example.com,O=Acme,C=DE",
                                  issuer_key=keys.ca, issuer="CN=Acme Issuing CA,O=Acme,C=DE",
                                  **valid),
        "expired.pem": certificate(keys.h, "CN=old", not_before=now - timedelta(days=60),
                                   not_after=now - timedelta(days=1)),
        "ec.pem": spki_pem(keys.ec),
        "rsa1024.pem": spki_pem(keys.r1024),
        "garbage.pem": b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
        "private.pem": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    }
    for filename, data in contents.items():
        (folder / filename).write_bytes(data)
    return SimpleNamespace(**{f.split(".")[0]: folder / f for f in contents}, dir=folder)


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    # the installed ``init`` on this very file (history[0]), not a copy of the template's
    return Cli(db_url, tmp_path / "keystore", cwd=tmp_path, template=False)


@pytest.fixture
def timed(db_url: str, tmp_path: Path) -> Cli:
    """The same command under a virtual clock that stands still until the test moves it
    (through tests/support/launch.py): an expiry is reached by moving the clock, not by sleeping,
    so nothing depends on how fast this machine runs a command."""
    clock = VirtualClock(tmp_path / "now", utcnow().replace(microsecond=0))
    return Cli(db_url, tmp_path / "keystore", cwd=tmp_path, clock=clock)


# --- the command itself ------------------------------------------------------------------------


def test_python_dash_m_orchestrator_help_lists_the_commands(tmp_path: Path) -> None:
    """``python -m orchestrator --help`` works and lists every command group."""
    done = subprocess.run([str(ORCHESTRATOR_PYTHON), "-m", "orchestrator", "--help"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for command in ("init", "app", "credential", "secret", "expire", "audit", "state", "verify",
                    "projections"):
        assert f"  {command} " in done.stdout or f"  {command}\n" in done.stdout, command


# --- adding credentials ------------------------------------------------------------------------


def test_init_then_credentials_from_pem_files_subject_dns_and_generated_keys(
        cli: Cli, pems: SimpleNamespace, keys: SimpleNamespace) -> None:
    """init creates the schema once (the fixture ran it); apps register with labels;
    credentials are added from SPKI and PKCS#1 keys, self-signed and CA-issued certificates, a
    subject DN, and generated for every usage; --json shows each credential's public facts;
    the lists show them all."""
    assert "is at schema 0007 (created)" in cli.history[0].stdout
    again = cli("init")
    assert "is at schema 0007" in again.stdout and "(created)" not in again.stdout
    assert cli("app", "register", "payments", "--label", "env=prod", "--label",
               "team=core").stdout == "registered payments\n"
    assert cli("app", "register", "shop").stdout == "registered shop\n"

    jwt_key = cli("credential", "add", "payments", "--usage", "private_key_jwt", "--pem", pems.a,
                  "--alg", "PS256", "--name", "signing key", "--json").json()
    assert set(jwt_key) >= CREDENTIAL_FIELDS
    assert jwt_key["id"].startswith("cred_") and len(jwt_key["id"]) == 27
    assert {k: jwt_key[k] for k in ("usage", "kind", "kid", "alg", "fingerprint", "status",
                                    "expires_at", "key_size", "name", "generated")} == {
        "usage": "private_key_jwt", "kind": "public_key", "kid": rfc7638_thumbprint(keys.a),
        "alg": "PS256", "fingerprint": spki_fingerprint(keys.a), "status": "added",
        "expires_at": None, "key_size": 2048, "name": "signing key", "generated": False,
    }

    jar_key = cli("credential", "add", "payments", "--usage", "jar", "--pem", pems.c_pkcs1,
                  "--json").json()
    assert (jar_key["kind"], jar_key["alg"], jar_key["fingerprint"], jar_key["kid"]) == (
        "public_key", "RS256", spki_fingerprint(keys.c), rfc7638_thumbprint(keys.c))

    self_signed = cli("credential", "add", "payments", "--usage", "mtls", "--pem",
                      pems.self_signed, "--json").json()
    not_after = crypto.parse_pem(pems.self_signed.read_bytes()).not_after
    assert (self_signed["kind"], self_signed["alg"], self_signed["expires_at"]) == (
        "x509_cert", None, iso(not_after))

    issued = cli("credential", "add", "payments", "--usage", "mtls", "--pem", pems.issued,
                 "--json").json()
    assert (issued["kind"], issued["subject_dn"]) == (
        "cert_subject_dn", "CN=payments.example.com,O=Acme,C=DE")

    by_dn = cli("credential", "add", "shop", "--usage", "mtls", "--subject-dn",
                "CN=shop.example.com,O=Acme,C=DE", "--json").json()
    assert (by_dn["kind"], by_dn["subject_dn"], by_dn["expires_at"]) == (
        "cert_subject_dn", "CN=shop.example.com,O=Acme,C=DE", None)
    assert by_dn["fingerprint"].startswith("dn-sha256:")

    mtls_expiry = (utcnow() + timedelta(days=30)).replace(microsecond=250000)
    generated = {
        usage: cli("credential", "add", "shop", "--usage", usage, "--generate", *extra,
                   "--json").json()
        for usage, extra in (("private_key_jwt", ()), ("jar", ()),
                             ("mtls", ("--expires-at", iso(mtls_expiry))))
    }
    assert {u: (c["kind"], c["generated"], c["key_size"]) for u, c in generated.items()} == {
        "private_key_jwt": ("public_key", True, 2048), "jar": ("public_key", True, 2048),
        "mtls": ("x509_cert", True, 2048),
    }
    # a generated certificate covers the expiry asked for, even one between two whole seconds
    assert generated["mtls"]["expires_at"] == iso(mtls_expiry)
    keystore = FileKeystore(cli.keystore)
    for cred in generated.values():  # the private half went to the keystore, and only there
        der = keystore.get(cred["id"])
        assert der is not None
        assert crypto.fingerprint_of_private_key(der) == cred["fingerprint"]

    listed = cli("credential", "list", "payments", "--json").json()
    assert isinstance(listed, list)
    assert all(set(c) >= CREDENTIAL_FIELDS for c in listed)
    assert sorted((c["id"], c["usage"], c["kind"], c["status"]) for c in listed) == sorted([
        (jwt_key["id"], "private_key_jwt", "public_key", "added"),
        (jar_key["id"], "jar", "public_key", "added"),
        (self_signed["id"], "mtls", "x509_cert", "added"),
        (issued["id"], "mtls", "cert_subject_dn", "added"),
    ])
    table = cli("credential", "list", "shop").stdout
    for header in ("ID", "USAGE", "KIND", "KID", "ALG", "STATUS", "EXPIRES", "FINGERPRINT"):
        assert header in table
    assert by_dn["id"] in table and generated["jar"]["id"] in table

    apps = cli("app", "list", "--json").json()
    assert [(a["app"], a["labels"], a["secret"], len(a["credentials"])) for a in apps] == [
        ("payments", {"env": "prod", "team": "core"}, None, 4), ("shop", {}, None, 4)]
    assert {c["id"] for c in apps[0]["credentials"]} == {c["id"] for c in listed}


# --- the lifecycle, expiry and history ---------------------------------------------------------


def test_lifecycle_expiry_and_the_history_of_an_application(
        timed: Cli, pems: SimpleNamespace, keys: SimpleNamespace) -> None:
    """activate, disable (and --force), activate again, set-expiry, expire, delete (which frees
    the slot); then list, state --at, audit in every format, verify and projections."""
    cli, clock = timed, timed.clock
    assert clock is not None
    def add(*args: str | Path) -> dict:
        return cli("credential", "add", "billing", *args, "--json").json()

    def lifecycle(verb: str, cid: str, *flags: str) -> str:
        return cli("credential", verb, "billing", cid, *flags).stdout

    cli("app", "register", "billing", "--label", "env=prod")
    a = add("--usage", "private_key_jwt", "--pem", pems.a, "--alg", "RS384",
            "--expires-at", iso(clock.now() + timedelta(days=1)))["id"]
    assert lifecycle("activate", a) == f"billing {a}: active\n"
    b = add("--usage", "private_key_jwt", "--pem", pems.b)["id"]
    assert lifecycle("activate", b) == f"billing {b}: active\n"
    assert lifecycle("disable", b) == f"billing {b}: disabled\n"  # a is still active
    due = clock.now() + timedelta(minutes=5)  # a expires when the clock is moved
    moved = cli("credential", "set-expiry", "billing", a, "--expires-at", iso(due))
    assert moved.stdout == f"billing {a}: expires at {iso(due)}\n"

    c = add("--usage", "jar", "--generate")["id"]
    assert lifecycle("activate", c) == f"billing {c}: active\n"
    clock.advance(timedelta(seconds=1))
    assert lifecycle("disable", c, "--force") == f"billing {c}: disabled\n"  # the last active jar
    assert lifecycle("activate", c) == f"billing {c}: active\n"  # disabled -> active again
    d = add("--usage", "mtls", "--pem", pems.self_signed)["id"]
    clock.set(due + timedelta(seconds=1))

    listed = {x["id"]: x for x in cli("credential", "list", "billing", "--json").json()}
    assert {cid: (x["status"], x["recorded_status"]) for cid, x in listed.items()} == {
        a: ("expired", "active"),  # past its expiry: shown expired before the event is recorded
        b: ("disabled", "disabled"), c: ("active", "active"), d: ("added", "added"),
    }
    assert listed[a]["expires_at"] == iso(due)
    assert listed[c]["activated_at"] < listed[c]["updated_at"]  # the first activation is kept

    assert cli("expire").stdout == f"billing {a}: expired\n1 credential(s) expired\n"
    before_delete = clock.advance(timedelta(seconds=1))
    clock.advance(timedelta(seconds=1))
    assert lifecycle("delete", a) == f"billing {a}: deleted\n"
    after_delete = clock.advance(timedelta(seconds=1))
    f = add("--usage", "private_key_jwt", "--pem", pems.f)["id"]  # the deleted one freed a slot

    (then, now_state, history, disabled_csv, table, window, verified, status) = cli.many([
        ("state", "billing", "--at", iso(before_delete), "--json"),
        ("state", "billing", "--json"),
        ("audit", "--app", "billing", "--format", "json"),
        ("audit", "--app", "billing", "--type", "credential.disabled", "--format", "csv"),
        ("audit", "--format", "table"),
        ("audit", "--app", "billing", "--since", iso(before_delete), "--until", iso(after_delete),
         "--format", "json"),
        ("verify",),
        ("projections", "status"),
    ])
    for result in (then, now_state, history, disabled_csv, table, window, verified, status):
        assert result.returncode == 0 and result.stderr == "", str(result)

    # state --at: the application as it was before the deletion, and as it is now
    was = {x["id"]: x["status"] for x in then.json()["credentials"]}
    assert was == {a: "expired", b: "disabled", c: "active", d: "added"}
    now_credentials = {x["id"]: x["status"] for x in now_state.json()["credentials"]}
    assert now_credentials == {a: "deleted", b: "disabled", c: "active", d: "added", f: "added"}
    assert now_state.json()["labels"] == {"env": "prod"}

    # audit --format json: JSON Lines, one event each, in order, with who and when
    events = history.json_lines()
    assert all(set(e) >= AUDIT_FIELDS for e in events)
    assert [e["type"] for e in events] == [
        "application.registered",
        "credential.added", "credential.activated",
        "credential.added", "credential.activated", "credential.disabled",
        "credential.expiry_changed",
        "credential.added", "credential.activated", "credential.disabled", "credential.activated",
        "credential.added", "credential.expired", "credential.deleted", "credential.added",
    ]
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert {e["stream"] for e in events} == {"app:billing"}
    assert {e["actor"] for e in events} == {"cli:alice"}
    assert [e["stream_version"] for e in events] == list(range(1, 16))
    assert [e["payload"]["credential_id"] for e in events if e["type"] == "credential.disabled"
            ] == [b, c]
    assert [e["payload"].get("forced") for e in events if e["type"] == "credential.disabled"
            ] == [False, True]
    assert [(e["payload"]["credential_id"], e["payload"]["expired_at"])
            for e in events if e["type"] == "credential.expired"] == [(a, iso(due))]

    rows = list(csv.DictReader(io.StringIO(disabled_csv.stdout)))
    assert [r["type"] for r in rows] == ["credential.disabled", "credential.disabled"]
    assert set(rows[0]) == {"position", "occurred_at", "type", "stream", "actor",
                            "correlation_id", "payload"}
    assert '"forced":true' in rows[1]["payload"]
    for header in ("POS", "OCCURRED AT", "TYPE", "STREAM", "ACTOR", "DETAIL"):
        assert header in table.stdout
    assert f"credential_id={a}" in table.stdout

    assert [(e["type"], e["payload"]["credential_id"]) for e in window.json_lines()] == [
        ("credential.deleted", a)]  # --since is inclusive, --until exclusive

    assert verified.stdout.startswith(f"ok: {len(events)} events, chain intact, head position "
                                      f"{positions[-1]} hash ")
    assert status.stdout == f"read_models: position {positions[-1]} of {positions[-1]} (lag 0)\n"
    rebuild = cli("projections", "rebuild")
    assert rebuild.stdout == f"read_models: rebuilt from {len(events)} events\n"
    rebuilt = cli("app", "list", "--json").json()  # read from the rebuilt read models
    assert [(s["app"], {x["id"]: x["status"] for x in s["credentials"]}) for s in rebuilt] == [
        ("billing", {cid: st for cid, st in now_credentials.items() if st != "deleted"})]


# --- the client secret -------------------------------------------------------------------------


def test_secret_rotate_shows_the_new_secret_once_and_keeps_the_old_one_for_the_grace(
        cli: Cli) -> None:
    """Each rotation prints the secret alone on stdout and says on stderr it is shown once;
    the log keeps its fingerprint and the previous one's validity until rotation + --grace."""
    cli("app", "register", "vault-app")
    first = cli("secret", "rotate", "vault-app", "--grace", "1h")
    second = cli("secret", "rotate", "vault-app", "--grace", "1h")
    secrets = [first.stdout.strip(), second.stdout.strip()]
    for version, result in enumerate((first, second), start=1):
        assert result.stderr == (f"vault-app: client secret version {version}; it is shown once, "
                                 "store it now:\n")
        assert len(result.stdout.splitlines()) == 1
    assert all(len(s) == 64 for s in secrets) and secrets[0] != secrets[1]

    secret = cli("state", "vault-app", "--json").json()["secret"]
    assert secret["version"] == 2
    assert secret["fingerprint"] == crypto.secret_fingerprint(secrets[1])
    rotated = datetime.fromisoformat(secret["rotated_at"])
    # the grace runs from the delivery, recorded with secret.rotated right after it
    delivered = datetime.fromisoformat(secret["previous_valid_until"]) - timedelta(hours=1)
    assert delivered <= rotated <= delivered + timedelta(seconds=30)
    assert FileKeystore(cli.keystore).get("secret/vault-app/v2") == secrets[1].encode()


# --- refusals ----------------------------------------------------------------------------------


def _snapshot(cli: Cli) -> tuple[list[dict], dict[str, list], dict[str, bytes]]:
    """What a refusal must leave alone: the log as audit shows it, every table, the keystore."""
    audit = cli("audit", "--format", "json").json_lines()
    return audit, dump_tables(cli.db_url), cli.item_files()


def test_every_refusal_exits_non_zero_with_one_error_line_and_writes_nothing(
        timed: Cli, pems: SimpleNamespace, keys: SimpleNamespace) -> None:
    """Given payments with an active and a generated private_key_jwt key and an expired jar key,
    every bad input is refused with exactly one ``error:`` line on stderr, no traceback, and no
    event, no table row and no keystore file changes. (The refusals run side by side to save
    time; the log is append-only, so any one of them writing would show in the comparison.)"""
    cli, clock = timed, timed.clock
    assert clock is not None
    cli("app", "register", "payments")
    cli("app", "register", "other")
    due = clock.now() + timedelta(minutes=5)
    expiring = cli("credential", "add", "payments", "--usage", "jar", "--pem", pems.b,
                   "--expires-at", iso(due), "--json").json()["id"]
    active = cli("credential", "add", "payments", "--usage", "private_key_jwt", "--pem", pems.a,
                 "--activate", "--json").json()["id"]
    generated = cli("credential", "add", "payments", "--usage", "private_key_jwt", "--generate",
                    "--json").json()
    clock.set(due + timedelta(seconds=1))

    before = _snapshot(cli)
    assert len(before[0]) == 6 and len(before[2]) == 1  # the events and the one generated key

    add = ("credential", "add")
    cases: list[tuple[str, tuple[str | Path, ...], tuple[str, ...]]] = [
        ("a malformed PEM file is refused",
         (*add, "payments", "--usage", "jar", "--pem", pems.garbage),
         ("not a PEM public key or certificate",)),
        ("a private key file is refused without echoing it",
         (*add, "payments", "--usage", "jar", "--pem", pems.private), ("this is a private key",)),
        ("an EC key is refused, naming RSA",
         (*add, "payments", "--usage", "jar", "--pem", pems.ec),
         ("EC keys are not supported", "RSA")),
        ("a 1024-bit key is refused",
         (*add, "payments", "--usage", "jar", "--pem", pems.rsa1024),
         ("1024-bit RSA key is not allowed",)),
        ("RS512 is refused, naming the supported algorithms",
         (*add, "payments", "--usage", "jar", "--pem", pems.e, "--alg", "RS512"),
         ("RS256, RS384, PS256",)),
        ("an expired certificate is refused",
         (*add, "payments", "--usage", "mtls", "--pem", pems.expired),
         ("the certificate expired",)),
        ("a third private_key_jwt credential is refused",
         (*add, "payments", "--usage", "private_key_jwt", "--pem", pems.e),
         ("at most 2 are allowed", active, generated["id"])),
        ("a third generated credential is refused and leaves no key behind",
         (*add, "payments", "--usage", "private_key_jwt", "--generate"),
         ("at most 2 are allowed",)),
        ("the same key again for the same app and usage is refused",
         (*add, "payments", "--usage", "private_key_jwt", "--pem", pems.a),
         (f"already credential {active} (private_key_jwt)",)),
        ("the same key for another usage of the same app is refused",
         (*add, "payments", "--usage", "jar", "--pem", pems.a),
         (f"already credential {active} (private_key_jwt)",)),
        ("the same key on another app is refused",
         (*add, "other", "--usage", "private_key_jwt", "--pem", pems.a),
         ("already registered to application 'payments'",)),
        ("the same key on another app for another usage is refused",
         (*add, "other", "--usage", "jar", "--pem", pems.a),
         ("already registered to application 'payments'",)),
        ("a key id used on another app is refused",
         (*add, "other", "--usage", "jar", "--pem", pems.e, "--kid", generated["kid"]),
         ("is already used by application 'payments'",)),
        ("adding to an unknown app is refused",
         (*add, "ghost", "--usage", "jar", "--pem", pems.e),
         ("application 'ghost' is not registered", "orchestrator app register ghost")),
        ("rotating the secret of an unknown app is refused",
         ("secret", "rotate", "ghost"), ("application 'ghost' is not registered",)),
        ("activating an unknown credential is refused",
         ("credential", "activate", "payments", "cred_nope"),
         ("has no credential 'cred_nope'",)),
        ("activating an expired credential is refused",
         ("credential", "activate", "payments", expiring),
         (f"credential {expiring} expired at", "can't be activated")),
        ("disabling the last active credential is refused",
         ("credential", "disable", "payments", active),
         ("is the last active private_key_jwt credential", "--force")),
        ("a bad --expires-at text is refused",
         (*add, "payments", "--usage", "jar", "--pem", pems.e, "--expires-at", "next tuesday"),
         ("Invalid value for '--expires-at'", "is not an ISO-8601 time")),
        ("a missing file is refused",
         (*add, "payments", "--usage", "jar", "--pem", pems.dir / "nowhere.pem"),
         ("cannot read it",)),
        ("no source option is refused",
         (*add, "payments", "--usage", "jar"), ("give exactly one of --pem FILE",)),
        ("two source options are refused",
         (*add, "payments", "--usage", "jar", "--pem", pems.e, "--generate"),
         ("give exactly one of --pem FILE",)),
        ("a generated key size outside 2048-4096 is refused",
         (*add, "other", "--usage", "jar", "--generate", "--key-size", "1024"),
         ("--key-size 1024 is not allowed",)),
    ]
    results = cli.many([argv for _, argv, _ in cases])
    failures = []
    for (sentence, _, fragments), result in zip(cases, results, strict=True):
        try:
            assert_refused(result, *fragments)
            assert "MII" not in result.stderr and "bm90IGEga2V5" not in result.stderr, (
                f"the error echoes the file's content\n{result}")
        except AssertionError as error:
            failures.append(f"{sentence}:\n{error}")
    assert not failures, "\n\n".join(failures)

    after = _snapshot(cli)
    assert after[0] == before[0], "a refusal wrote an event"
    assert after[1] == before[1], "a refusal changed a table"
    assert after[2] == before[2], "a refusal changed the keystore's item files"


def test_secret_rotate_switches_the_local_provider_to_the_new_secret(tmp_path: Path) -> None:
    """`secret rotate` makes the provider accept the new secret at once, and the previous one
    only for the grace period."""
    from orchestrator.bootstrap import Settings, bootstrap
    from orchestrator.domain.errors import ProviderError

    env = {**os.environ, "ORCHESTRATOR_DB": f"sqlite:///{tmp_path / 'o.db'}",
           "ORCHESTRATOR_KEYSTORE": str(tmp_path / "ks")}
    run = [str(ORCHESTRATOR)]
    subprocess.run([*run, "init"], env=env, check=True, capture_output=True)
    subprocess.run([*run, "app", "register", "svc"], env=env, check=True, capture_output=True)
    first = subprocess.run([*run, "secret", "rotate", "svc"], env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    second = subprocess.run([*run, "secret", "rotate", "svc", "--grace", "1h"], env=env,
                            check=True, capture_output=True, text=True).stdout.strip()
    system = bootstrap(Settings(db=env["ORCHESTRATOR_DB"], keystore=tmp_path / "ks"))
    try:
        now = datetime.now(UTC)
        assert system.provider.local.verify_secret("svc", second, now) == 2
        assert system.provider.local.verify_secret("svc", first, now) == 1  # within the grace
        with pytest.raises(ProviderError):
            system.provider.local.verify_secret("svc", first, now + timedelta(hours=2))
    finally:
        system.close()
