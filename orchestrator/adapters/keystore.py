"""Where private material lives: encrypted at rest, never in the event log.

``FileKeystore`` keeps one AES-256-GCM encrypted file per item under ``<directory>/items``;
the item id is the associated data, so a file renamed to another id does not decrypt. The
master key comes from the caller, else ``ORCHESTRATOR_MASTER_KEY`` (base64url of 32 bytes),
else ``<directory>/master.key`` (created on first write, mode 0600).

A keystore knows its key: the first write stores a key check value,
``<directory>/key-check`` = HMAC-SHA256(key, "orchestrator-keystore-kcv") (it reveals nothing of
the key), and every later use compares the key it is given with it. A different key is refused,
and so is a missing ``master.key`` once the keystore holds anything: minting a new key would
leave items under two keys. A keystore made before check values gets one on its next write,
once the key has decrypted one of its items.

Once open, a keystore is checked again before every use: its check value must still be in its
folder, and a key read from ``master.key`` must still be there, unchanged. A keystore folder
moved away, replaced or unmounted under a running daemon, or its ``master.key`` removed or
replaced, is refused rather than written beside (a fresh folder made at the old path would
hold the new private keys where no restore looks for them) or read around: the process would
otherwise go on with the key it holds in memory, under which nothing could be opened after its
restart.

Every failure to read or write (ENOSPC, EACCES, EROFS...) is a ``KeystoreError`` of one line:
what, where, what to do.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

from orchestrator.adapters.files import atomic_write, create_once, fsync_dir
from orchestrator.app.ports import MAX_ITEM_ID_BYTES
from orchestrator.domain.errors import KeystoreError

__all__ = [
    "ENV_MASTER_KEY",
    "KEY_BYTES",
    "KEY_CHECK_FILE",
    "MAGIC",
    "MASTER_KEY_FILE",
    "NONCE_BYTES",
    "FileKeystore",
    "MemoryKeystore",
    "decode_master_key",
    "key_check_value",
    "read_master_key_file",
    "read_new_key",
]

ENV_MASTER_KEY = "ORCHESTRATOR_MASTER_KEY"
MASTER_KEY_FILE = "master.key"
KEY_CHECK_FILE = "key-check"
_KCV_LABEL = b"orchestrator-keystore-kcv"
MAGIC = b"OKS1"
NONCE_BYTES = 12
KEY_BYTES = 32
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
        self._items[_checked("memory keystore", item_id)] = bytes(data)

    def put_new(self, item_id: str, data: bytes) -> bytes:
        """Store ``data`` unless ``item_id`` is taken; what is stored."""
        return self._items.setdefault(_checked("memory keystore", item_id), bytes(data))

    def get(self, item_id: str) -> bytes | None:
        """The bytes stored under ``item_id``, or None."""
        return self._items.get(_checked("memory keystore", item_id))

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
        self._key: bytes | None = None  # checked against the keystore's check value
        self._kcv: str | None = None  # that check value, once read or written
        self._given: tuple[bytes, str] | None = None  # (key, where it came from)
        env = os.environ if environ is None else environ
        if master_key is not None:
            if len(master_key) != KEY_BYTES:
                raise KeystoreError(
                    f"keystore {self.directory}: master key must be {KEY_BYTES} bytes, "
                    f"got {len(master_key)}"
                )
            self._given = bytes(master_key), "given"
        elif ENV_MASTER_KEY in env:
            self._given = decode_master_key(env[ENV_MASTER_KEY]), f"in {ENV_MASTER_KEY}"

    def put(self, item_id: str, data: bytes) -> None:
        """Encrypt and store ``data`` under ``item_id`` (atomic replace)."""
        path = self._path(item_id)
        sealed = _seal(self._master_key(create=True), item_id, data)
        with self._writing(f"write item {item_id}", self.items_dir):
            _make_dir(self.items_dir)
            atomic_write(path, sealed)

    def put_new(self, item_id: str, data: bytes) -> bytes:
        """Encrypt and store ``data`` unless ``item_id`` is taken (created with a hard link,
        which fails on an existing name); return what is stored."""
        stored = self.get(item_id)
        if stored is not None:
            return stored
        sealed = _seal(self._master_key(create=True), item_id, data)
        with self._writing(f"write item {item_id}", self.items_dir):
            _make_dir(self.items_dir)
            create_once(self._path(item_id), sealed)
        stored = self.get(item_id)
        assert stored is not None
        return stored

    def get(self, item_id: str) -> bytes | None:
        """Decrypt the item, or None when absent; KeystoreError when it cannot be decrypted,
        or (even for an absent item) when the keystore holds items but its key is not the one
        given or is lost: a caller learns that before it acts, not after."""
        path = self._path(item_id)
        if self._key is not None:
            self._still_there()
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            if self._key is None and self._holds_items():
                self._master_key(create=False)
            return None
        except OSError as error:
            raise KeystoreError(
                f"keystore {self.directory}: cannot read item {item_id} ({error.strerror})"
            ) from None
        opened = _unseal(self._master_key(create=False), item_id, blob)
        if opened is None:
            raise KeystoreError(
                f"keystore {self.directory}: cannot decrypt item {item_id} "
                f"(wrong {ENV_MASTER_KEY} or {MASTER_KEY_FILE}?)"
            )
        return opened

    def delete(self, item_id: str) -> None:
        """Remove the item's file; no error when it is absent."""
        if self._key is not None:
            self._still_there()
        with self._writing(f"remove item {item_id}", self.items_dir), \
                contextlib.suppress(FileNotFoundError):
            self._path(item_id).unlink()
            fsync_dir(self.items_dir)

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
        raw = _checked(f"keystore {self.directory}", item_id).encode("utf-8")
        name = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")  # at most 200
        return self.items_dir / f"{name}.bin"

    @contextlib.contextmanager
    def _writing(self, what: str, where: Path) -> Iterator[None]:
        """Turn an OS error (ENOSPC, EACCES, EROFS...) into one KeystoreError line."""
        try:
            yield
        except OSError as error:
            raise KeystoreError(
                f"keystore {self.directory}: cannot {what} in {where} "
                f"({error.strerror or type(error).__name__}); free space or fix the "
                "permissions there, then try again"
            ) from None

    def _master_key(self, *, create: bool) -> bytes:
        if self._key is None:
            key, source = self._given or self._load_key_file(create)
            self._check(key, source, create)
            self._key = key
        else:
            self._still_there()
        return self._key

    def _still_there(self) -> None:
        """Refuse to go on with the key in memory when the keystore it opened is no longer at
        its path: its check value gone or changed, or the ``master.key`` it was read from."""
        assert self._key is not None
        gone = ("restore it (the keystore folder moved, replaced or unmounted?); nothing is "
                "read or written in the keystore until then")
        if self._given is None:
            path = self.directory / MASTER_KEY_FILE
            try:
                on_disk = path.read_bytes()
            except FileNotFoundError:
                raise KeystoreError(f"keystore {self.directory}: {path} is gone since this "
                                    f"process opened the keystore; {gone}") from None
            except OSError as error:
                raise KeystoreError(f"keystore {self.directory}: cannot read {path} "
                                    f"({error.strerror}); {gone}") from None
            if not hmac.compare_digest(on_disk, self._key):
                raise KeystoreError(
                    f"keystore {self.directory}: {path} no longer holds the key this process "
                    f"opened the keystore with (replaced since); restore it from backup; "
                    "nothing is read or written in the keystore until then")
        if self._kcv is None:
            return  # a keystore made before check values, opened without writing one
        path = self.directory / KEY_CHECK_FILE
        try:
            stored = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as error:
            why = getattr(error, "strerror", None) or type(error).__name__
            raise KeystoreError(f"keystore {self.directory}: cannot read {path} ({why}); "
                                f"{gone}") from None
        if not hmac.compare_digest(stored, self._kcv):
            raise KeystoreError(f"keystore {self.directory}: {path} is another keystore's "
                                f"since this process opened it; {gone}")

    def _holds_items(self) -> bool:
        return bool(self.ids()) or (self.directory / KEY_CHECK_FILE).exists()

    def _load_key_file(self, create: bool) -> tuple[bytes, str]:
        path = self.directory / MASTER_KEY_FILE
        if not path.exists():
            if self._holds_items():
                raise KeystoreError(
                    f"keystore {self.directory}: {MASTER_KEY_FILE} is missing but the keystore "
                    f"holds items encrypted with it; restore {path} from backup or set "
                    f"{ENV_MASTER_KEY} to that key (a new key would not open them)"
                )
            if not create:
                raise KeystoreError(
                    f"keystore {self.directory}: {MASTER_KEY_FILE} is missing; restore it "
                    f"or set {ENV_MASTER_KEY}"
                )
            with self._writing(f"create {MASTER_KEY_FILE}", self.directory):
                _make_dir(self.directory)
                create_once(path, secrets.token_bytes(KEY_BYTES))
        return read_master_key_file(path), f"in {path}"

    def _check(self, key: bytes, source: str, create: bool) -> None:
        """Refuse a key that is not this keystore's; record the check value on first write."""
        path = self.directory / KEY_CHECK_FILE
        expected = key_check_value(key)
        try:
            stored: str | None = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            stored = None
        except (OSError, UnicodeDecodeError) as error:
            raise KeystoreError(f"keystore {path}: cannot read the key check value "
                                f"({getattr(error, 'strerror', None) or error})") from None
        if stored is None:
            if not self._opens_an_item(key):
                stored = "(an item it cannot decrypt)"
            elif not create:
                return
            else:
                with self._writing(f"write {KEY_CHECK_FILE}", self.directory):
                    _make_dir(self.directory)
                    create_once(path, expected.encode("ascii"))
                stored = path.read_text(encoding="ascii").strip()  # another process may have won
        if not hmac.compare_digest(stored, expected):
            raise KeystoreError(
                f"keystore {self.directory}: the master key {source} is not the key this "
                f"keystore was created with (see {path}); use that key "
                f"({ENV_MASTER_KEY} or {self.directory / MASTER_KEY_FILE}), or another keystore "
                "directory"
            )
        self._kcv = stored

    def _opens_an_item(self, key: bytes) -> bool:
        """A keystore made before check values: the key must decrypt one of its items."""
        for item_id in self.ids()[:1]:
            try:
                blob = self._path(item_id).read_bytes()
            except OSError as error:
                raise KeystoreError(f"keystore {self.directory}: cannot read item {item_id} "
                                    f"({error.strerror})") from None
            if _unseal(key, item_id, blob) is None:
                return False
        return True


def _seal(key: bytes, item_id: str, data: bytes) -> bytes:
    """An item as stored: MAGIC, a fresh nonce, AES-256-GCM of ``data`` with the item id as
    associated data. (``cryptography`` is imported here, on the first item read or written, so
    a command that never opens one does not load it.)"""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, bytes(data), item_id.encode("utf-8"))


def _unseal(key: bytes, item_id: str, blob: bytes) -> bytes | None:
    """What ``_seal`` sealed, or None when ``blob`` is not an item or does not open under
    ``key`` for ``item_id``."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(MAGIC):
        return None
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES :],
                                   item_id.encode("utf-8"))
    except (InvalidTag, ValueError):
        return None


def _checked(where: str, item_id: str) -> str:
    """``item_id`` when it is 1 to ``MAX_ITEM_ID_BYTES`` bytes; KeystoreError otherwise."""
    if not item_id or len(item_id.encode("utf-8")) > MAX_ITEM_ID_BYTES:
        raise KeystoreError(f"{where}: item id must be 1 to {MAX_ITEM_ID_BYTES} bytes, got "
                            f"{len(item_id.encode('utf-8'))} ({item_id[:60]!r})")
    return item_id


def key_check_value(key: bytes) -> str:
    """What ``key-check`` holds: an HMAC of a fixed label under the key (reveals nothing)."""
    digest = hmac.new(key, _KCV_LABEL, hashlib.sha256).digest()
    return "hmac-sha256:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def decode_master_key(value: str, where: str = ENV_MASTER_KEY) -> bytes:
    """A master key written as base64url of 32 bytes (the environment variable's form)."""
    try:
        key = base64.b64decode(
            value.strip() + "=" * (-len(value.strip()) % 4), altchars=b"-_", validate=True
        )
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeystoreError(f"{where} is not base64url of {KEY_BYTES} bytes; {_GENERATE_HINT}")
    return key


def read_master_key_file(path: Path) -> bytes:
    """The 32 bytes of a ``master.key`` file."""
    try:
        key = path.read_bytes()
    except OSError as error:
        raise KeystoreError(f"keystore {path}: cannot read ({error.strerror})") from None
    if len(key) != KEY_BYTES:
        raise KeystoreError(
            f"keystore {path}: must hold exactly {KEY_BYTES} bytes; restore it from backup"
        )
    return key


def read_new_key(path: Path) -> bytes:
    """A new master key from a file: its 32 raw bytes (a ``master.key``) or base64url text of
    them (the environment variable's form)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise KeystoreError(f"new master key {path}: cannot read ({error.strerror})") from None
    if len(raw) == KEY_BYTES:
        return raw
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    return decode_master_key(text, where=f"new master key {path}")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _make_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
