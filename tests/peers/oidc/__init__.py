"""node ``oidc-provider`` as a test peer: start it, trust it, stop it.

``start_oidc_provider(workdir)`` writes a test CA and a server certificate for 127.0.0.1 signed
by it, starts ``node server.js`` on a port the system picks (the server reports it), waits for
its ``listening`` line and returns an :class:`OidcPeer`. Clients verify the server's TLS for
real with ``peer.ca_file``. ``client_ca_pem`` is the bundle of CAs whose client certificates
``tls_client_auth`` trusts (empty by default); ``peer.set_client_ca(pem)`` replaces it and
``peer.add_client_ca(pem)`` adds to it, for new connections. ``node_available()`` says whether
this can run here and, if not, why.

The provider is installed from ``package-lock.json`` by ``npm ci --prefix tests/peers/oidc
--no-audit --no-fund`` (``.ci/run`` does it when npm is present).
"""

from __future__ import annotations

import ipaddress
import os
import queue
import secrets
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PEER_DIR", "OidcPeer", "node_available", "start_oidc_provider"]

PEER_DIR = Path(__file__).resolve().parent
# Safety nets only: start-up is about a second, a reload a few milliseconds.
START_TIMEOUT = 60.0
RELOAD_TIMEOUT = 30.0


def node_available() -> tuple[bool, str]:
    """(True, node's version) or (False, why the peer cannot start here)."""
    node = shutil.which("node")
    if node is None:
        return False, "node is not installed (the oidc-provider peer needs Node.js >= 20)"
    if not (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        return False, "oidc-provider is not installed: run npm ci --prefix tests/peers/oidc"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return True, version.stdout.strip()


@dataclass
class OidcPeer:
    """A running provider. ``issuer`` is ``https://127.0.0.1:PORT``; discovery is at
    ``issuer + /.well-known/openid-configuration``. ``log_file`` holds the server's stderr."""

    issuer: str
    ca_file: Path
    client_ca_file: Path
    initial_access_token: str
    log_file: Path
    process: subprocess.Popen[str] = field(repr=False)
    _lines: queue.Queue[str | None] = field(repr=False)

    @property
    def port(self) -> int:
        return int(self.issuer.rsplit(":", 1)[1])

    def set_client_ca(self, pem: bytes | str) -> None:
        """Replace the trusted client-CA bundle (PEM, may be empty). New TLS connections use it
        once this returns; connections already open keep the bundle they were made with."""
        text = pem.decode() if isinstance(pem, bytes) else pem
        self.client_ca_file.write_text(text)
        self.process.send_signal(signal.SIGHUP)
        line = self._next_line(RELOAD_TIMEOUT)
        if not line.startswith("reloaded client-ca"):
            raise RuntimeError(f"oidc-provider did not reload its client CA: {line!r}")

    def add_client_ca(self, pem: bytes | str) -> None:
        """Trust one more client CA (tests sharing the provider each add their own)."""
        text = pem.decode() if isinstance(pem, bytes) else pem
        current = self.client_ca_file.read_text()
        self.set_client_ca(current + ("" if not current or current.endswith("\n") else "\n") + text)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def last_refusal(self) -> str | None:
        """The real reason of the latest refused request (every failed client authentication
        answers the same invalid_client). Needs ``debug=True``; the server writes it before it
        answers, so it is there once the answer is."""
        details = [line for line in self.log().splitlines() if " detail=" in line]
        return details[-1].rsplit(" detail=", 1)[1] if details else None

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # the server exits when its stdin closes
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> OidcPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"oidc-provider said nothing for {timeout} s\n{self.log()}") from None
        if line is None:
            raise RuntimeError(
                f"oidc-provider exited ({self.process.wait()}) before answering\n{self.log()}")
        return line


def start_oidc_provider(
    workdir: Path,
    *,
    client_ca_pem: bytes | str | None = None,
    initial_access_token: str | None = None,
    debug: bool = False,
) -> OidcPeer:
    """Start the provider with its files under ``workdir``. ``initial_access_token`` defaults to a
    fresh random one; ``debug`` writes the real reason of every refusal to ``log_file``."""
    available, why = node_available()
    if not available:
        raise RuntimeError(why)
    workdir.mkdir(parents=True, exist_ok=True)
    ca_file, key_file, cert_file = _server_tls(workdir)
    client_ca_file = workdir / "client-ca.pem"
    pem = client_ca_pem or ""
    client_ca_file.write_text(pem.decode() if isinstance(pem, bytes) else pem)
    token = initial_access_token or secrets.token_urlsafe(24)
    log_file = workdir / "oidc-provider.log"
    command = ["node", str(PEER_DIR / "server.js"), "--port", "0", "--key", str(key_file),
               "--cert", str(cert_file), "--client-ca", str(client_ca_file)]
    if debug:
        command.append("--debug")
    with open(log_file, "w") as log:
        process = subprocess.Popen(
            command, cwd=PEER_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            text=True, env={**os.environ, "OIDC_PEER_INITIAL_ACCESS_TOKEN": token},
        )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process, lines), daemon=True).start()
    peer = OidcPeer("", ca_file, client_ca_file, token, log_file, process, lines)
    try:
        line = peer._next_line(START_TIMEOUT)
        if not line.startswith("listening https://"):
            raise RuntimeError(f"oidc-provider said {line!r}\n{peer.log()}")
    except BaseException:
        peer.stop()
        raise
    peer.issuer = line.split(" ", 1)[1]
    return peer


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line.strip())
    lines.put(None)


def _server_tls(workdir: Path) -> tuple[Path, Path, Path]:
    """A test CA (server-ca.pem) and a certificate for 127.0.0.1 it signed, with its key."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oidc-provider peer test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, key_file, cert_file = (workdir / name for name in
                                    ("server-ca.pem", "server-key.pem", "server-cert.pem"))
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return ca_file, key_file, cert_file
