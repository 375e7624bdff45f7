"""No private key and no client secret leaves the encrypted keystore, except the secret shown once.

Through the installed command line: generate a key for every usage, rotate the client secret
several times, read everything back as a user would; then look for every form of every private
key (PKCS#8 DER, the base64 of its PEM body, the private exponent and primes) and every secret in
the database (every row of every table, and on SQLite the file bytes and its WAL), in every
command's stdout and stderr, and in the keystore's files on disk.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import make_url

from orchestrator.adapters.keystore import FileKeystore
from tests.helpers import Cli, Result, dump_tables

USAGES = ("private_key_jwt", "jar", "mtls")


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path / "keystore", cwd=tmp_path)


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def private_forms(der: bytes) -> dict[str, bytes]:
    """Every form in which a private key could leak, by name."""
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    numbers = key.private_numbers()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    traditional = key.private_bytes(serialization.Encoding.DER,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
    body = [line for line in pem.splitlines() if line and not line.startswith(b"-----")]
    forms = {
        "PKCS#8 DER": der,
        "PKCS#1 DER": traditional,
        "PEM body, one line": b"".join(body),
        "private exponent d": _int_bytes(numbers.d),
        "prime p": _int_bytes(numbers.p),
        "prime q": _int_bytes(numbers.q),
        "d as hex": _int_bytes(numbers.d).hex().encode(),
        "d as base64url (JWK)": base64.urlsafe_b64encode(_int_bytes(numbers.d)).rstrip(b"="),
    }
    # each full 64-character PEM line (48 DER bytes) from the private exponent on: earlier lines
    # hold only the public modulus, which certificates and public PEMs rightly carry
    private_from = der.find(_int_bytes(numbers.d))
    assert private_from > 0
    forms.update({f"PEM body line {i}": line for i, line in enumerate(body[:-1])
                  if i * 48 >= private_from})
    return forms


def occurrences(haystacks: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    return [f"{n} in {h}" for n, needle in needles.items() for h, hay in haystacks.items()
            if needle in hay]


def test_private_keys_and_secrets_appear_only_in_the_keystore_and_the_one_output(
        cli: Cli, db_url: str) -> None:
    """Generated keys for every usage and three rotated secrets leak nowhere: not in any row,
    the SQLite file or WAL, any command's output (but each secret's own rotation), or the
    keystore's files in plaintext."""
    cli("app", "register", "vault-app")
    added = {usage: cli("credential", "add", "vault-app", "--usage", usage, "--generate",
                        "--json").json() for usage in USAGES}
    rotations: list[Result] = [cli("secret", "rotate", "vault-app") for _ in range(3)]
    cli.many([
        ("credential", "list", "vault-app", "--json"), ("state", "vault-app", "--json"),
        ("audit", "--format", "json"), ("audit", "--format", "csv"),
    ])
    audit_json = next(r for r in cli.history if r.argv == ("audit", "--format", "json"))
    secrets = [r.stdout.strip() for r in rotations]

    # the secrets were shown, once each, and are distinct
    assert len(set(secrets)) == 3 and all(len(s) == 64 for s in secrets)
    for version, result in enumerate(rotations, start=1):
        assert result.stdout == secrets[version - 1] + "\n"
        assert "shown once" in result.stderr and secrets[version - 1] not in result.stderr

    # the private keys are in the keystore, readable with its master key
    keystore = FileKeystore(cli.keystore)
    ders = {usage: keystore.get(cred["id"]) for usage, cred in added.items()}
    assert all(der is not None for der in ders.values())
    needles: dict[str, bytes] = {}
    for usage, der in ders.items():
        assert der is not None
        needles.update({f"{usage} key {form}": value
                        for form, value in private_forms(der).items()})
    # the current and the previous secret; older ones are removed when a rotation completes
    assert [keystore.get(f"secret/vault-app/v{v}") for v in (1, 2, 3)] == [
        None, *(s.encode() for s in secrets[1:])]
    secret_needles = {f"secret v{v}": s.encode() for v, s in enumerate(secrets, start=1)}

    # command output: no private key anywhere; each secret only on its own rotation's stdout
    outputs: dict[str, bytes] = {}
    for i, result in enumerate(cli.history):
        outputs[f"stdout of #{i} {' '.join(result.argv)}"] = result.stdout.encode()
        outputs[f"stderr of #{i} {' '.join(result.argv)}"] = result.stderr.encode()
    assert occurrences(outputs, needles) == []
    shown = sorted(occurrences(outputs, secret_needles))
    assert shown == sorted(
        f"secret v{v} in stdout of #{cli.history.index(r)} secret rotate vault-app"
        for v, r in enumerate(rotations, start=1))
    assert occurrences({"audit --format json": audit_json.stdout.encode()},
                       needles | secret_needles) == []
    assert added["mtls"]["fingerprint"].encode() in audit_json.stdout.encode()  # it was read

    # the database: on SQLite the file and its WAL as the command line left them (read first),
    # and every row of every table
    if make_url(db_url).get_backend_name() == "sqlite":
        database = Path(make_url(db_url).database or "")
        files = {p.name: p.read_bytes() for p in database.parent.glob(database.name + "*")}
        assert database.name in files
        assert any(added["jar"]["fingerprint"].encode() in data for data in files.values())
        assert occurrences(files, needles | secret_needles) == []
    tables = dump_tables(db_url)
    assert tables["events"], "the dump read the events"
    rows = {name: repr(content).encode() for name, content in tables.items()}
    assert added["jar"]["fingerprint"].encode() in rows["events"]
    assert occurrences(rows, needles | secret_needles) == []

    # the keystore on disk holds them only encrypted
    on_disk = {str(p.relative_to(cli.keystore)): p.read_bytes()
               for p in cli.keystore.rglob("*") if p.is_file()}
    on_disk.update({f"name {n}": n.encode() for n in on_disk})
    assert set(keystore.ids()) >= {c["id"] for c in added.values()} | {
        f"secret/vault-app/v{v}" for v in (2, 3)}
    assert occurrences(on_disk, needles | secret_needles) == []

    # the delivery files hold the current secret, for the application, and nothing else of it
    delivery = cli.cwd / "var" / "delivery"
    assert (delivery / "vault-app" / "client_secret" / "client_secret").read_bytes() == \
        secrets[-1].encode()
    delivered = {str(p.relative_to(cli.cwd)): p.read_bytes() for p in delivery.rglob("*")
                 if p.is_file()}
    assert sorted(occurrences(delivered, needles | secret_needles)) == [
        f"secret v3 in {name}" for name in sorted(delivered) if name.endswith("/client_secret")]

    # nor does any other file the commands left under their working directory
    elsewhere = {str(p.relative_to(cli.cwd)): p.read_bytes() for p in cli.cwd.rglob("*")
                 if p.is_file() and cli.keystore not in p.parents and delivery not in p.parents}
    assert occurrences(elsewhere, needles | secret_needles) == []

    # deleting a generated credential removes its private key from the keystore
    cli("credential", "delete", "vault-app", added["jar"]["id"])
    assert FileKeystore(cli.keystore).get(added["jar"]["id"]) is None
    assert occurrences(outputs | {"delete": cli.history[-1].stdout.encode()}, needles) == []
