"""Where private material lives: encrypted at rest, never in the event log.

``FileKeystore`` keeps one AES-256-GCM encrypted file per item under ``<directory>/items``;
the item id is the associated data, so a file renamed to another id does not decrypt. The
master key comes from the caller, else ``ORCHESTRATOR_MASTER_KEY`` (base64url of 32 bytes),
else ``<directory>/master.key`` (created on first write, mode 0600).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orchestrator.domain.errors import KeystoreError

__all__ = [
    "ENV_MASTER_KEY",
    "KEY_BYTES",
    "MAGIC",
    "MASTER_KEY_FILE",
    "NONCE_BYTES",
    "FileKeystore",
    "MemoryKeystore",
    "atomic_write",
]

ENV_MASTER_KEY = "ORCHESTRATOR_MASTER_KEY"
MASTER_KEY_FILE = "master.key"
MAGIC = b"OKS1"
NONCE_BYTES = 12
KEY_BYTES = 32
_MAX_NAME = 200  # encoded file name length, well under the usual 255-byte limit
_GENERATE_HINT = (
    "generate one with: python -c \"import base64,os; "
    'print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
)


class MemoryKeystore:
    """A dict-backed keystore for tests and dry runs (nothing is encrypted or persisted)."""

    def __init__(self) -> None:
        self._items: dict[str, bytes] = {}

    def put(self, item_id: str, data: bytes) -> None:
        """Store ``data`` under ``item_id``, replacing any previous value."""
        self._items[item_id] = bytes(data)

    def get(self, item_id: str) -> bytes | None:
        """The bytes stored under ``item_id``, or None."""
        return self._items.get(item_id)

    def delete(self, item_id: str) -> None:
        """Forget ``item_id``; no error when it is absent."""
        self._items.pop(item_id, None)

    def ids(self) -> list[str]:
        """Every stored item id, sorted."""
        return sorted(self._items)


class FileKeystore:
    """AES-256-GCM encrypted files, one per item, in ``<directory>/items``."""

    def __init__(
        self,
        directory: Path,
        master_key: bytes | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.items_dir = self.directory / "items"
        self._key: bytes | None = None
        env = os.environ if environ is None else environ
        if master_key is not None:
            if len(master_key) != KEY_BYTES:
                raise KeystoreError(
                    f"keystore {self.directory}: master key must be {KEY_BYTES} bytes, "
                    f"got {len(master_key)}"
                )
            self._key = bytes(master_key)
        elif ENV_MASTER_KEY in env:
            self._key = _decode_env_key(env[ENV_MASTER_KEY])

    def put(self, item_id: str, data: bytes) -> None:
        """Encrypt and store ``data`` under ``item_id`` (atomic replace)."""
        path = self._path(item_id)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self._master_key(create=True)).encrypt(
            nonce, bytes(data), item_id.encode("utf-8")
        )
        _make_dir(self.items_dir)
        atomic_write(path, MAGIC + nonce + sealed)

    def get(self, item_id: str) -> bytes | None:
        """Decrypt the item, or None when absent; KeystoreError when it cannot be decrypted."""
        path = self._path(item_id)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise KeystoreError(
                f"keystore {self.directory}: cannot read item {item_id} ({error.strerror})"
            ) from None
        key = self._master_key(create=False)
        try:
            if not blob.startswith(MAGIC):
                raise InvalidTag
            nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
            body = blob[len(MAGIC) + NONCE_BYTES :]
            return AESGCM(key).decrypt(nonce, body, item_id.encode("utf-8"))
        except (InvalidTag, ValueError):
            raise KeystoreError(
                f"keystore {self.directory}: cannot decrypt item {item_id} "
                f"(wrong {ENV_MASTER_KEY} or {MASTER_KEY_FILE}?)"
            ) from None

    def delete(self, item_id: str) -> None:
        """Remove the item's file; no error when it is absent."""
        with contextlib.suppress(FileNotFoundError):
            self._path(item_id).unlink()
            _fsync_dir(self.items_dir)

    def ids(self) -> list[str]:
        """Every stored item id, sorted (decoded from the file names)."""
        if not self.items_dir.is_dir():
            return []
        found = []
        for path in self.items_dir.glob("*.bin"):
            if path.name.startswith("."):
                continue
            try:
                found.append(_unb64(path.stem).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue  # not one of ours
        return sorted(found)

    def _path(self, item_id: str) -> Path:
        name = base64.urlsafe_b64encode(item_id.encode("utf-8")).rstrip(b"=").decode("ascii")
        if not item_id or len(name) > _MAX_NAME:
            raise KeystoreError(
                f"keystore {self.directory}: item id must be 1 to 150 bytes, got {item_id!r:.60}"
            )
        return self.items_dir / f"{name}.bin"

    def _master_key(self, *, create: bool) -> bytes:
        if self._key is None:
            self._key = self._load_key_file(create)
        return self._key

    def _load_key_file(self, create: bool) -> bytes:
        path = self.directory / MASTER_KEY_FILE
        if not path.exists():
            if not create:
                raise KeystoreError(
                    f"keystore {self.directory}: {MASTER_KEY_FILE} is missing; restore it "
                    f"or set {ENV_MASTER_KEY}"
                )
            _make_dir(self.directory)
            _create_key_file(path)
        try:
            key = path.read_bytes()
        except OSError as error:
            raise KeystoreError(f"keystore {path}: cannot read ({error.strerror})") from None
        if len(key) != KEY_BYTES:
            raise KeystoreError(
                f"keystore {path}: must hold exactly {KEY_BYTES} bytes; restore it from backup"
            )
        return key


def _decode_env_key(value: str) -> bytes:
    try:
        key = base64.b64decode(
            value.strip() + "=" * (-len(value.strip()) % 4), altchars=b"-_", validate=True
        )
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeystoreError(f"{ENV_MASTER_KEY} is not base64url of {KEY_BYTES} bytes; {_GENERATE_HINT}")
    return key


def _create_key_file(path: Path) -> None:
    """Write a new random master key; atomic, never overwrites one another process made."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # lost a race: keep the other key
            os.link(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _make_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically: temp file (0600) in the same dir, fsync, rename
    (and fsync the folder, unless the caller does that once for several files)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if sync_dir:
        _fsync_dir(path.parent)
