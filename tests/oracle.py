"""An independent oracle: the events table read with plain SQL and folded here.

Nothing of the product is imported: the rows are read with SQL (``sqlite3`` for a SQLite file,
SQLAlchemy's bare ``text`` for any URL), the payloads with ``json``, the
times with ``datetime``, and credentials are followed through their life by this module's own
small fold, so a defect in the product's fold (``events.state.evolve``) cannot hide one in the
rotation. Delivered files and the file keystore's items are judged with ``cryptography`` alone.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["Cred", "Log", "file_keystore_item", "gaps", "key_belongs_to_certificate",
           "key_belongs_to_public_key", "read_log"]


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class Cred:
    id: str
    usage: str
    kind: str
    expires_at: datetime | None
    certificate_pem: str | None
    subject_dn: str | None
    active_from: list[datetime] = field(default_factory=list)
    inactive_from: list[datetime] = field(default_factory=list)  # disabled, expired, deleted

    def usable_intervals(self, end: datetime) -> list[tuple[datetime, datetime]]:
        """When the identity provider accepted it: from each activation to the next
        disabling / expiry / deletion, and never past its expiry."""
        out = []
        for start in self.active_from:
            stops = [t for t in self.inactive_from if t >= start]
            stop = min([*stops, end, *([self.expires_at] if self.expires_at else [])])
            if stop > start:
                out.append((start, stop))
        return out


@dataclass
class Log:
    rows: list[dict[str, Any]]
    creds: dict[str, dict[str, Cred]]  # app -> credential id -> Cred
    by_rotation: dict[str, list[dict[str, Any]]]  # rotation id -> its rows (in order)

    def types(self, app: str | None = None) -> list[str]:
        return [r["type"] for r in self.rows if app is None or r["app"] == app]

    def delivered_at(self, app: str, credential_id: str) -> datetime | None:
        """When a rotation delivered the credential to the application (None: never)."""
        for rid, rows in self.by_rotation.items():
            if rows and rows[0]["app"] == app and rows[0]["type"] == "rotation.started" and (
                    rows[0]["payload"]["new_credential_id"] == credential_id):
                return self.step_time(rid, "delivered")
        return None

    def held_intervals(self, app: str, end: datetime) -> list[tuple[datetime, datetime]]:
        """When the application held a credential the provider accepted: from its delivery on."""
        out = []
        for cred in self.creds[app].values():
            delivered = self.delivered_at(app, cred.id)
            if delivered is None:
                continue
            out.extend((max(a, delivered), b) for a, b in cred.usable_intervals(end)
                       if b > delivered)
        return out

    def step_time(self, rotation_id: str, step: str) -> datetime | None:
        return next((r["at"] for r in self.by_rotation[rotation_id]
                     if r["type"] == "rotation.step_recorded" and r["payload"]["step"] == step),
                    None)


QUERY = "SELECT position, stream_id, type, occurred_at, payload FROM events ORDER BY position"


def _rows(db: Path | str) -> list[Any]:
    if isinstance(db, Path):
        with sqlite3.connect(db) as conn:
            return conn.execute(QUERY).fetchall()
    import sqlalchemy as sa

    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(QUERY))]
    finally:
        engine.dispose()


def read_log(db: Path | str) -> Log:
    """The log of a SQLite file (a Path) or of any database URL."""
    raw = _rows(db)
    rows = [{"position": p, "app": s.removeprefix("app:"), "type": t, "at": _time(o),
             "payload": json.loads(body)} for p, s, t, o, body in raw]
    creds: dict[str, dict[str, Cred]] = defaultdict(dict)
    by_rotation: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        data, at, app = row["payload"], row["at"], row["app"]
        if "rotation_id" in data:
            by_rotation[data["rotation_id"]].append(row)
        cid = data.get("credential_id")
        if row["type"] == "credential.added":
            creds[app][cid] = Cred(cid, data["usage"], data["kind"], _time(data.get("expires_at")),
                                   data.get("certificate_pem"), data.get("subject_dn"))
        elif row["type"] == "credential.activated":
            creds[app][cid].active_from.append(at)
        elif row["type"] in ("credential.disabled", "credential.expired", "credential.deleted"):
            creds[app][cid].inactive_from.append(at)
    return Log(rows, creds, by_rotation)


def gaps(intervals: list[tuple[datetime, datetime]], start: datetime,
         end: datetime) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end) that no interval covers."""
    out = []
    cursor = start
    for a, b in sorted(intervals):
        if a > cursor:
            out.append((cursor, min(a, end)))
        cursor = max(cursor, b)
        if cursor >= end:
            break
    if cursor < end:
        out.append((cursor, end))
    return [(a, b) for a, b in out if a < b]


def key_belongs_to_certificate(private_key_pem: bytes, certificate_pem: bytes) -> bool:
    """Sign a challenge with the private key and verify it with the certificate's public key."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    public = x509.load_pem_x509_certificate(certificate_pem).public_key()
    assert isinstance(key, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)
    challenge = b"does this key belong to this certificate?"
    signature = key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
    try:
        public.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        return False
    return True


def key_belongs_to_public_key(private_key: bytes, public_pem: str) -> bool:
    """The private key (PEM or DER) is the other half of the public key (PEM): the same public
    numbers."""
    load = (serialization.load_pem_private_key if private_key.startswith(b"-----")
            else serialization.load_der_private_key)
    key = load(private_key, password=None)
    public = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(key, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)
    return key.public_key().public_numbers() == public.public_numbers()


def file_keystore_item(directory: Path, item_id: str) -> bytes | None:
    """An item of a file keystore opened with AES-256-GCM alone (None: no such file): the file
    ``items/<base64url of the id>.bin`` holds ``OKS1``, a 12-byte nonce and the ciphertext,
    sealed under the 32 bytes of ``master.key`` with the item id as associated data."""
    name = base64.urlsafe_b64encode(item_id.encode()).rstrip(b"=").decode()
    path = directory / "items" / f"{name}.bin"
    if not path.exists():
        return None
    blob = path.read_bytes()
    assert blob[:4] == b"OKS1", path
    key = (directory / "master.key").read_bytes()
    return AESGCM(key).decrypt(blob[4:16], blob[16:], item_id.encode())
