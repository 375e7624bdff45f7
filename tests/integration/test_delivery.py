"""Delivery replaces an application's files as one set: a reader in another process, reading
``kid`` and ``private_key.pem`` in a tight loop the way the layout documents (through ``..data``,
opened once), never sees a kid of another key while the set is replaced many times."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from orchestrator.adapters.delivery import FileDelivery
from tests.helpers import rfc7638_thumbprint, rsa_key

DELIVERIES = 400

# The reader, in its own process: it computes each kid itself (RFC 7638, written out by hand) and
# reads through ..data when the folder has one (the documented way), else the folder itself.
READER = textwrap.dedent('''
    import base64, hashlib, json, os, sys
    from cryptography.hazmat.primitives import serialization

    folder, stop = sys.argv[1], sys.argv[2]

    def b64(n):
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def thumbprint(pem):
        key = serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True)
        numbers = key.public_key().public_numbers()
        text = '{"e":"' + b64(numbers.e) + '","kty":"RSA","n":"' + b64(numbers.n) + '"}'
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")

    def read(name, fd):
        with os.fdopen(os.open(name, os.O_RDONLY, dir_fd=fd), "rb") as handle:
            return handle.read()

    reads = torn = retries = 0
    print("ready", flush=True)
    while not os.path.exists(stop):
        data = os.path.join(folder, "..data")
        try:
            fd = os.open(data if os.path.lexists(data) else folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            retries += 1
            continue
        try:
            kid, pem = read("kid", fd), read("private_key.pem", fd)
        except FileNotFoundError:  # the version opened was just replaced: open ..data again
            retries += 1
            continue
        finally:
            os.close(fd)
        reads += 1
        torn += thumbprint(pem) != kid
    print(json.dumps({"reads": reads, "torn": torn, "retries": retries}), flush=True)
''')


def test_a_reader_never_sees_the_kid_of_another_key(tmp_path: Path) -> None:
    """400 deliveries of three keys in turn, each set = private_key.pem + its kid +
    credential_id, while another process reads kid and key as fast as it can: every read pair
    is one version (the kid is the key's RFC 7638 thumbprint)."""
    keys = [rsa_key() for _ in range(3)]
    sets = [{
        "private_key.pem": key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()),
        "kid": rfc7638_thumbprint(key).encode(),
        "credential_id": f"cred_{i}".encode(),
    } for i, key in enumerate(keys)]
    delivery = FileDelivery(tmp_path / "delivery")
    folder = delivery.deliver("svc", "private_key_jwt", sets[0])
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(folder), str(stop)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == "ready\n"
        for n in range(1, DELIVERIES + 1):
            delivery.deliver("svc", "private_key_jwt", sets[n % 3])
        stop.touch()
        out, _ = reader.communicate(timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
    counts = json.loads(out)
    print(f"{DELIVERIES} deliveries: {counts}")
    assert counts["reads"] > 0
    assert counts["torn"] == 0, counts
    # the old versions are gone: one version folder, ..data, and the three names
    versions = [p.name for p in folder.iterdir() if p.name.startswith("..") and p.name != "..data"]
    assert versions == [os.readlink(folder / "..data")]
