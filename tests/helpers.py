"""Test helpers: real keys and certificates made with ``cryptography``, and the installed CLI.

Nothing here is a double: certificates are built with ``x509.CertificateBuilder`` and signed,
and ``Cli`` runs the installed ``orchestrator`` script (``ORCHESTRATOR``: ``ORCHESTRATOR_BIN``, or
the one next to the running interpreter) in a fresh process, as a user would.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import copy
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID


def _installation() -> tuple[Path, Path]:
    """The ``orchestrator`` script every end-to-end test runs, and the interpreter of the same
    installation (for ``python -m orchestrator``): ``ORCHESTRATOR_BIN`` when set (.ci/run points
    it at a virtual environment holding only the wheel and its declared runtime dependencies),
    else the script next to the running interpreter (the development install)."""
    configured = os.environ.get("ORCHESTRATOR_BIN")
    if configured:
        script = Path(configured).absolute()  # not resolve(): a venv's python is a symlink
        return script, script.parent / "python"
    return Path(sys.executable).parent / "orchestrator", Path(sys.executable)


ORCHESTRATOR, ORCHESTRATOR_PYTHON = _installation()
# the test-only launcher: the same installation's orchestrator, under a virtual clock or set to
# crash (tests/support/launch.py)
LAUNCHER = (str(ORCHESTRATOR_PYTHON), str(Path(__file__).parent / "support" / "launch.py"))
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER

T = TypeVar("T")
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --- keys and certificates ---------------------------------------------------------------------


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def spki_pem(key: PrivateKey) -> bytes:
    """The public half as an SPKI PEM (-----BEGIN PUBLIC KEY-----)."""
    return key.public_key().public_bytes(PEM, SPKI)


def pkcs1_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The public half as a PKCS#1 PEM (-----BEGIN RSA PUBLIC KEY-----)."""
    return key.public_key().public_bytes(PEM, serialization.PublicFormat.PKCS1)


def spki_fingerprint(key: PrivateKey) -> str:
    """"sha256:" + hex SHA-256 of the SPKI DER, computed here independently of the code."""
    return "sha256:" + hashlib.sha256(key.public_key().public_bytes(DER, SPKI)).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rfc7638_thumbprint(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint written out by hand: SHA-256 of {"e","kty","n"} in that order."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = public.public_numbers()

    def b64int(value: int) -> str:
        return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    canonical = '{"e":"' + b64int(numbers.e) + '","kty":"RSA","n":"' + b64int(numbers.n) + '"}'
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def name(dn: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(dn)


def certificate(
    key: PrivateKey,
    subject: str,
    *,
    not_before: datetime,
    not_after: datetime,
    issuer_key: PrivateKey | None = None,
    issuer: str | None = None,
    ca: bool = False,
) -> bytes:
    """A signed X.509 certificate (PEM) for ``key``'s public half. Self-signed unless
    ``issuer_key`` (and the issuer's DN ``issuer``) are given."""
    signer = issuer_key or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer or subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(signer, hashes.SHA256()).public_bytes(PEM)


def rsa_public_pem_of_size(bits: int, seed: bytes = b"orchestrator") -> bytes:
    """An RSA public key (SPKI PEM) with a ``bits``-bit modulus, built from public numbers.

    Only the public half reaches the rules; generating an 8192-bit *private* key costs seconds
    to minutes, so the modulus here is a deterministic odd number of exactly ``bits`` bits."""
    stream = b""
    counter = 0
    while len(stream) * 8 < bits:
        stream += hashlib.sha512(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    n = int.from_bytes(stream, "big") >> (len(stream) * 8 - bits)
    n |= (1 << (bits - 1)) | 1
    public = rsa.RSAPublicNumbers(65537, n).public_key()
    return public.public_bytes(PEM, SPKI)


def private_der(key: PrivateKey) -> bytes:
    return key.private_bytes(DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


# --- delivered files ---------------------------------------------------------------------------


def read_delivered(folder: Path) -> dict[str, bytes]:
    """One version of a delivery folder's files, read as a reader that needs consistency does:
    through ``<folder>/..data``, opened once (orchestrator/adapters/delivery.py)."""
    fd = os.open(folder / "..data", os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = {}
        for entry in os.listdir(fd):
            file_fd = os.open(entry, os.O_RDONLY, dir_fd=fd)
            with os.fdopen(file_fd, "rb") as handle:
                found[entry] = handle.read()
        return found
    finally:
        os.close(fd)


def assert_key_belongs(files: dict[str, bytes], registered: str | bytes | None = None, *,
                       kid_is_thumbprint: bool = False) -> None:
    """The delivered private key belongs to what was delivered and registered with it: its
    public half is certificate.pem's (when delivered) and the registered public key or
    certificate's (when given); with ``kid_is_thumbprint`` the kid is its RFC 7638 thumbprint.
    Everything is computed here, from the bytes, independently of the code under test."""
    key = serialization.load_pem_private_key(files["private_key.pem"], password=None)
    assert isinstance(key, rsa.RSAPrivateKey), type(key)
    own = key.public_key().public_bytes(DER, SPKI)
    if "certificate.pem" in files:
        certificate = x509.load_pem_x509_certificate(files["certificate.pem"])
        assert certificate.public_key().public_bytes(DER, SPKI) == own, (
            "the delivered private key is not the delivered certificate's")
    if registered is not None:
        data = registered.encode() if isinstance(registered, str) else registered
        public = (x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data
                  else serialization.load_pem_public_key(data))
        assert public.public_bytes(DER, SPKI) == own, (
            "the delivered private key is not the registered credential's")
    if kid_is_thumbprint:
        assert files["kid"].decode() == rfc7638_thumbprint(key), "the kid is another key's"


# --- policy files --------------------------------------------------------------------------------


def variant(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``base`` (a resource as data) with dotted keys set (``spec__rotation__overlap="1h"``);
    None deletes."""
    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def write_yaml(folder: Path, name: str, data: dict[str, Any] | str) -> Path:
    """``data`` written as the YAML file ``folder/name`` (text as it is)."""
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def policy_yaml(name: str, apps: str, credential: str, rotation: str,
                lifetime: str | None = "120d", extra: str = "") -> str:
    """A RotationPolicy file as ops write it; each argument is the YAML flow text of its key,
    e.g. ``policy_yaml("web", '["web-*"]', "{usage: jar}", "{every: 90d, ...}")``."""
    return (f"apiVersion: orchestrator/v1\nkind: RotationPolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  selector: {{apps: {apps}}}\n  credential: {credential}\n"
            f"  rotation: {rotation}\n"
            + (f"  lifetime: {lifetime}\n" if lifetime else "") + extra)


# --- the installed command line ----------------------------------------------------------------


class VirtualClock:
    """The time every process started through ``LAUNCHER`` with ``env`` reads: a file holding an
    instant. It stands still until the test moves it; nothing depends on the machine's speed."""

    def __init__(self, path: Path, start: datetime) -> None:
        self.path = path
        self.set(start)

    @property
    def env(self) -> dict[str, str]:
        return {"ORCHESTRATOR_TEST_CLOCK": str(self.path)}

    def now(self) -> datetime:
        return datetime.fromisoformat(self.path.read_text())

    def set(self, at: datetime) -> datetime:
        assert at.tzinfo is not None
        scratch = self.path.with_name(self.path.name + ".new")
        scratch.write_text(at.isoformat())
        os.replace(scratch, self.path)  # a reader sees the old instant or the new, whole
        return at

    def advance(self, delta: timedelta) -> datetime:
        return self.set(self.now() + delta)



@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    def json(self) -> Any:
        return json.loads(self.stdout)

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def __str__(self) -> str:
        return (f"$ orchestrator {' '.join(self.argv)}\nexit {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


_TEMPLATE_LOCK = threading.Lock()
_TEMPLATE: list[Path] = []  # the SQLite file the installed ``orchestrator init`` made (once)


def _sqlite_template() -> Path:
    """A SQLite database created by the installed ``orchestrator init``, once per process (each
    xdist worker has its own); removed when the process exits."""
    with _TEMPLATE_LOCK:
        if not _TEMPLATE:
            folder = Path(tempfile.mkdtemp(prefix="orchestrator-template-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            path = folder / "orchestrator.db"
            env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
            done = subprocess.run([str(ORCHESTRATOR), "init"], cwd=folder, capture_output=True,
                                  text=True, timeout=120, check=False,
                                  env={**env, "ORCHESTRATOR_DB": f"sqlite:///{path}"})
            assert done.returncode == 0, f"init of the template database: {done}"
            assert "(created)" in done.stdout, done.stdout
            # WAL mode lives in the file's header; the last connection's close checkpointed the
            # WAL into the file, so the one file is the whole database
            assert not path.with_name(path.name + "-wal").exists(), "the template has a WAL"
            _TEMPLATE.append(path)
        return _TEMPLATE[0]


def _copy_initialised(db_url: str) -> bool:
    """Put a copy of the template where ``db_url`` (a plain SQLite file URL) names a file that
    does not exist yet: the same bytes ``orchestrator init`` writes there, without starting a
    process for it. False (nothing left behind) for any other URL, or when the copy fails (a
    test's tiny file system): then ``init`` runs."""
    if not db_url.startswith("sqlite:///") or "?" in db_url:
        return False
    target = Path(db_url.removeprefix("sqlite:///"))
    if not target.is_absolute() or target.exists() or not target.parent.is_dir():
        return False
    template = _sqlite_template()
    try:
        shutil.copyfile(template, target)
    except OSError:
        target.unlink(missing_ok=True)
        return False
    return True


class Cli:
    """Runs the installed ``orchestrator`` against one database and one keystore directory.

    Only ``orchestrator init`` creates a schema, so by default the database is initialised
    here, as a user's first command would; ``init=False`` leaves it untouched. A new SQLite
    file is a copy of one the installed ``orchestrator init`` made once per process (the same
    bytes, one process fewer per test); ``template=False`` runs ``init`` here every time (its
    result is then ``history[0]``). PostgreSQL schemas are always initialised by ``init``."""

    def __init__(self, db_url: str, keystore: Path, cwd: Path, actor: str = "cli:alice",
                 clock: VirtualClock | None = None, *, init: bool = True,
                 template: bool = True) -> None:
        self.db_url = db_url
        self.keystore = keystore
        self.cwd = cwd
        self.clock = clock  # when given, every command runs through LAUNCHER at its instant
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
        # the file keystore on both databases, as these tests were written for (the database
        # keystore, PostgreSQL's default, has its own: test_db_keystore, test_master_key_rotation)
        env.update(ORCHESTRATOR_DB=db_url, ORCHESTRATOR_KEYSTORE=str(keystore),
                   ORCHESTRATOR_KEYSTORE_BACKEND="file", ORCHESTRATOR_ACTOR=actor,
                   **(clock.env if clock else {}))
        self.env = env
        self.history: list[Result] = []
        if init and not (template and _copy_initialised(db_url)):
            self("init")

    def run(self, *args: str | Path) -> Result:
        argv = tuple(str(a) for a in args)
        started = time.monotonic()
        program = list(LAUNCHER) if self.clock is not None else [str(ORCHESTRATOR)]
        done = subprocess.run(
            [*program, *argv], env=self.env, cwd=self.cwd, capture_output=True,
            text=True, timeout=120, check=False,
        )
        result = Result(argv, done.returncode, done.stdout, done.stderr,
                        time.monotonic() - started)
        self.history.append(result)
        return result

    def __call__(self, *args: str | Path) -> Result:
        """Run a command that must succeed."""
        result = self.run(*args)
        assert result.returncode == 0, str(result)
        return result

    def many(self, commands: Sequence[Sequence[str | Path]]) -> list[Result]:
        """Run independent commands concurrently (each still its own process); in order."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda argv: self.run(*argv), commands))

    def item_files(self) -> dict[str, bytes]:
        """The keystore's item files on disk: name -> bytes."""
        items = self.keystore / "items"
        if not items.is_dir():
            return {}
        return {p.name: p.read_bytes() for p in sorted(items.iterdir()) if p.is_file()}


def wait_for(check: Callable[[], T], what: str, proc: subprocess.Popen[Any] | None = None,
             log: Path | None = None, timeout: float = 90.0) -> T:
    """Poll ``check`` until it returns something truthy. The timeout only covers process
    start-up on a loaded machine: a test's verdict never rests on it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
        assert proc is None or proc.poll() is None, f"the process exited waiting for {what}\n{tail}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s\n{tail}"
        time.sleep(0.05)


@contextlib.contextmanager
def json_daemon(cli: Cli, *args: str, program: Sequence[str] | None = None,
                log: Path | None = None) -> Iterator[tuple[subprocess.Popen[Any], Path]]:
    """``orchestrator daemon --json-logs ARGS`` running (through ``LAUNCHER``, or ``program``)
    with ``cli``'s environment, its stderr in ``log`` (default ``daemon.log`` in ``cli.cwd``);
    terminated (SIGTERM: it finishes its step) and waited for on the way out."""
    log = log or cli.cwd / "daemon.log"
    with log.open("w") as err:
        daemon = subprocess.Popen([*(program or LAUNCHER), "daemon", "--json-logs", *args],
                                  env=cli.env, cwd=cli.cwd, stdout=subprocess.DEVNULL,
                                  stderr=err)
    try:
        yield daemon, log
    finally:
        daemon.terminate()
        daemon.wait(60)


def json_events(log: Path, event: str) -> list[dict[str, Any]]:
    """The lines of a JSON log file whose ``event`` is ``event`` (a line still being written,
    with no newline yet, is left for the next look)."""
    lines = (json.loads(line) for line in log.read_text().split("\n")[:-1] if line)
    return [line for line in lines if line.get("event") == event]


def site_cli(db_url: str, tmp_path: Path, *apps: str) -> Cli:
    """A ``Cli`` whose deliveries go to ``tmp_path/delivery``, with ``apps`` registered."""
    cli = Cli(db_url, tmp_path / "keystore", cwd=tmp_path)
    cli.env["ORCHESTRATOR_DELIVERY"] = str(tmp_path / "delivery")
    if apps:
        cli("app", "register", *apps)
    return cli


def assert_refused(result: Result, *fragments: str) -> None:
    """A refusal as the user sees it: non-zero exit, exactly one stderr line starting with
    ``error: `` that contains every fragment, and no traceback anywhere."""
    assert result.returncode != 0, str(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, str(result)
    assert lines[0].startswith("error: "), str(result)
    assert "Traceback" not in result.stderr + result.stdout, str(result)
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in the error line\n{result}"


def dump_tables(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the database (reflected), each table's rows sorted."""
    import sqlalchemy as sa

    from events.sql import create_engine

    engine = create_engine(db_url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {
                table.name: sorted((tuple(row) for row in conn.execute(sa.select(table))), key=repr)
                for table in meta.sorted_tables
            }
    finally:
        engine.dispose()


# --- real file-system faults ---------------------------------------------------------------------


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str = "64k") -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``path`` for the test, unmounted after it. Mounting
    needs root (CAP_SYS_ADMIN); elsewhere the test is skipped, never faked."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill_filesystem(path: Path) -> None:
    """Write a filler file into ``path`` until its file system says ENOSPC (again: tops it up,
    once something freed a little)."""
    fd = os.open(path / ".filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def make_read_only(path: Path) -> None:
    """Remount the tmpfs at ``path`` read-only (EROFS for every write, even root's)."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
