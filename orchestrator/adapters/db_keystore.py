"""Private material in the database: what several daemons on one PostgreSQL share without a
shared disk. The master key stays outside it.

One row of ``keystore_items`` per item: AES-256-GCM ciphertext, nonce, and the id of the master
key that encrypted it; the item id is the associated data, so a row copied under another id
does not decrypt. A master key's id is its key check value (``key_check_value``: an HMAC of a
fixed label, which reveals nothing of the key); ``keystore_keys`` records each with its status,
``current``, ``next`` (a rotation in progress) or ``retired``. The master key comes from the
caller, else ``ORCHESTRATOR_MASTER_KEY``, else ``<directory>/master.key`` (created, mode 0600,
on the first write to an empty keystore). The guards are the file keystore's: another key is
refused, a retired key is refused, a missing ``master.key`` is never minted anew once the
database holds a key, and a database keystore left empty beside a file keystore that holds
items refuses to start (``orchestrator keystore import-files`` moves them in).

Rotation (``begin_rotation``, ``pending``, ``reencrypt``, ``finish``; the loop is
``orchestrator.app.master_rotation``): the new key is recorded as ``next``, then each item is
re-encrypted in a transaction of its own that changes its ciphertext, nonce and key id together
(a compare-and-set on the old key id), and a last transaction retires the old key and makes the
new one current only when no item is left under the old one. A kill at any instant leaves every
item under exactly one key, which its row names; running the rotation again resumes it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Connection, Engine

from events.codec import format_time
from orchestrator.adapters.files import atomic_write, create_once
from orchestrator.adapters.keystore import (
    ENV_MASTER_KEY,
    KEY_BYTES,
    MASTER_KEY_FILE,
    NONCE_BYTES,
    decode_master_key,
    key_check_value,
    read_master_key_file,
)
from orchestrator.app.ports import RotationStart
from orchestrator.domain.errors import KeystoreError

__all__ = [
    "DatabaseKeystore",
    "KeyState",
    "KeyStatus",
    "keystore_items",
    "keystore_keys",
]

MAX_ITEM_ID = 200
WHERE = "database keystore"

_meta = sa.MetaData()
keystore_keys = sa.Table(
    "keystore_keys", _meta, sa.Column("key_id", sa.String, primary_key=True),
    sa.Column("status", sa.String), sa.Column("created_at", sa.String),
    sa.Column("retired_at", sa.String),
)
keystore_items = sa.Table(
    "keystore_items", _meta, sa.Column("item_id", sa.String, primary_key=True),
    sa.Column("ciphertext", sa.LargeBinary), sa.Column("nonce", sa.LargeBinary),
    sa.Column("key_id", sa.String), sa.Column("created_at", sa.String),
    sa.Column("updated_at", sa.String),
)


class KeyState(StrEnum):
    CURRENT = "current"
    NEXT = "next"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class KeyStatus:
    key_id: str
    state: KeyState
    items: int


class DatabaseKeystore:
    """AES-256-GCM items in ``keystore_items`` (see the module docstring)."""

    def __init__(self, engine: Engine, directory: Path, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 master_key: bytes | None = None, environ: Mapping[str, str] | None = None,
                 file_items: Path | None = None) -> None:
        import os

        self.engine = engine
        self.directory = Path(directory)
        self._clock = clock
        self._file_items = file_items
        self._keys: dict[str, bytes] = {}  # key id -> key, for the keys this process holds
        self._mine: str | None = None
        self._rotation: tuple[str, str] | None = None  # (old key id, new key id)
        env = os.environ if environ is None else environ
        self._given: tuple[bytes, str] | None = None
        if master_key is not None:
            if len(master_key) != KEY_BYTES:
                raise KeystoreError(f"{WHERE}: master key must be {KEY_BYTES} bytes, "
                                    f"got {len(master_key)}")
            self._given = bytes(master_key), "given"
        elif ENV_MASTER_KEY in env:
            self._given = decode_master_key(env[ENV_MASTER_KEY]), f"in {ENV_MASTER_KEY}"
        self.key_file = None if self._given else self.directory / MASTER_KEY_FILE

    # --- the Keystore port ------------------------------------------------------------------

    def put(self, item_id: str, data: bytes) -> None:
        """Encrypt and store ``data`` under ``item_id`` (insert or replace, one transaction)."""
        self._write_item(item_id, data, replace=True)

    def put_new(self, item_id: str, data: bytes) -> bytes:
        """Store ``data`` unless ``item_id`` is taken; what is stored."""
        self._write_item(item_id, data, replace=False)
        stored = self.get(item_id)
        assert stored is not None
        return stored

    def get(self, item_id: str) -> bytes | None:
        """Decrypt the item, or None when absent; KeystoreError when this process's key is not
        the keystore's (even for an absent item) or the row does not decrypt."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(keystore_items.c.ciphertext, keystore_items.c.nonce,
                          keystore_items.c.key_id)
                .where(keystore_items.c.item_id == _checked(item_id))).first()
        if row is None:
            if self._statuses():
                self._master(create=False)
            else:
                self._refuse_if_files_left()
            return None
        self._master(create=False)
        return self._open(item_id, bytes(row.ciphertext), bytes(row.nonce), row.key_id)

    def delete(self, item_id: str) -> None:
        """Remove the item's row; no error when it is absent."""
        with self._writing() as conn:
            conn.execute(keystore_items.delete().where(keystore_items.c.item_id == item_id))

    def ids(self) -> list[str]:
        """Every stored item id, sorted."""
        with self.engine.connect() as conn:
            found = list(conn.execute(
                sa.select(keystore_items.c.item_id).order_by(keystore_items.c.item_id)).scalars())
        if not found:
            self._refuse_if_files_left()
        return found

    # --- what an operator asks ----------------------------------------------------------------

    def status(self) -> list[KeyStatus]:
        """Every master key the keystore knows, with how many items each encrypts."""
        k, i = keystore_keys.c, keystore_items.c
        with self.engine.connect() as conn:
            counts = dict(conn.execute(sa.select(i.key_id, sa.func.count()).group_by(i.key_id))
                          .tuples().all())
            rows = conn.execute(sa.select(k.key_id, k.status).order_by(k.created_at)).tuples()
            return [KeyStatus(kid, KeyState(state), counts.get(kid, 0)) for kid, state in rows]

    def check_all(self) -> int:
        """Decrypt every item with the keys this process holds; how many there are."""
        count = 0
        for item_id in self.ids():
            count += self.get(item_id) is not None
        return count

    # --- master-key rotation -------------------------------------------------------------------

    def begin_rotation(self, new_key: bytes) -> RotationStart:
        """Record ``new_key`` as the next key (or find it recorded: a resumed rotation)."""
        new = key_check_value(new_key)
        statuses = self._statuses()
        if statuses.get(new) is KeyState.CURRENT:
            self._keys[new] = new_key
            self._mine = new
            return RotationStart.FINISHED
        if statuses.get(new) is KeyState.RETIRED:
            raise KeystoreError(f"{WHERE}: the new key was retired by an earlier rotation; a "
                                "retired key is never used again: generate a new one")
        old = self._master(create=False)
        if statuses.get(old) is not KeyState.CURRENT:
            raise KeystoreError(f"{WHERE}: the master key {self._source()} is the next key of a "
                                "rotation in progress, not the current one; run rotate-master "
                                "with the current key configured and the new one as --new-key-file")
        pending = [kid for kid, state in statuses.items() if state is KeyState.NEXT]
        if pending and pending[0] != new:
            raise KeystoreError(f"{WHERE}: a rotation to another key ({pending[0]}) is in "
                                "progress; resume it with that key's file")
        if not pending:
            with self._writing() as conn:
                conn.execute(keystore_keys.insert().values(
                    key_id=new, status=KeyState.NEXT.value, created_at=self._now()))
        self._keys[new] = new_key
        self._rotation = (old, new)
        return RotationStart.RESUMED if pending else RotationStart.STARTED

    def pending(self, limit: int) -> list[str]:
        """Up to ``limit`` item ids still under the old key of the rotation begun."""
        old, _ = self._rotating()
        with self.engine.connect() as conn:
            return list(conn.execute(
                sa.select(keystore_items.c.item_id).where(keystore_items.c.key_id == old)
                .order_by(keystore_items.c.item_id).limit(limit)).scalars())

    def reencrypt(self, item_id: str) -> bool:
        """Move one item from the old key to the new one, in one transaction; False when it
        was not under the old key any more (done already, or deleted)."""
        old, new = self._rotating()
        i = keystore_items.c
        with self._writing() as conn:
            row = conn.execute(
                sa.select(i.ciphertext, i.nonce).where(i.item_id == item_id, i.key_id == old)
                .with_for_update()).first()
            if row is None:
                return False
            data = self._open(item_id, bytes(row.ciphertext), bytes(row.nonce), old)
            nonce, sealed = self._seal(new, item_id, data)
            conn.execute(keystore_items.update().where(i.item_id == item_id, i.key_id == old)
                         .values(ciphertext=sealed, nonce=nonce, key_id=new,
                                 updated_at=self._now()))
        return True

    def finish(self) -> bool:
        """Retire the old key and make the new one current, when no item is left under the old
        one (False: some are, written meanwhile; re-encrypt them and finish again)."""
        old, new = self._rotating()
        k = keystore_keys.c
        try:
            with self._writing() as conn:
                # the old key's row first: a writer holding it (FOR SHARE) finishes before this
                # reads the count, and one that comes later finds the key retired
                conn.execute(keystore_keys.update().where(k.key_id == old,
                                                          k.status == KeyState.CURRENT.value)
                             .values(status=KeyState.RETIRED.value, retired_at=self._now()))
                left = conn.execute(sa.select(sa.func.count()).select_from(keystore_items)
                                    .where(keystore_items.c.key_id == old)).scalar_one()
                if left:
                    raise _ItemsLeft
                conn.execute(keystore_keys.update().where(k.key_id == new,
                                                          k.status == KeyState.NEXT.value)
                             .values(status=KeyState.CURRENT.value))
        except _ItemsLeft:
            return False  # rolled back: the old key is still current
        self._keys.pop(old, None)
        self._mine, self._rotation = new, None
        return True

    def install(self, new_key: bytes) -> str:
        """After ``finish``: put the new key where this process found the old one (the
        ``master.key`` file, atomically), or say what the operator must change."""
        if self.key_file is None:
            return (f"set {ENV_MASTER_KEY} to the new key for every process: the old key is "
                    "refused from now on")
        atomic_write(self.key_file, new_key)
        return f"{self.key_file} now holds the new key (back it up; the old key is refused)"

    # --- inside ------------------------------------------------------------------------------

    def _rotating(self) -> tuple[str, str]:
        if self._rotation is None:
            raise KeystoreError(f"{WHERE}: no rotation begun in this process")
        return self._rotation

    def _write_item(self, item_id: str, data: bytes, *, replace: bool) -> None:
        kid = self._master(create=True)
        nonce, sealed = self._seal(kid, _checked(item_id), bytes(data))
        now = self._now()
        values = {"item_id": item_id, "ciphertext": sealed, "nonce": nonce, "key_id": kid,
                  "created_at": now, "updated_at": now}
        with self._writing() as conn:
            state = conn.execute(sa.select(keystore_keys.c.status)
                                 .where(keystore_keys.c.key_id == kid)
                                 .with_for_update(read=True)).scalar_one_or_none()
            if state not in (KeyState.CURRENT.value, KeyState.NEXT.value):
                raise KeystoreError(f"{WHERE}: the master key {self._source()} was retired by "
                                    "a rotation meanwhile; use the new key")
            insert = _insert_for(conn)(keystore_items).values(**values)
            if replace:
                conn.execute(insert.on_conflict_do_update(
                    index_elements=["item_id"],
                    set_={k: values[k] for k in ("ciphertext", "nonce", "key_id", "updated_at")}))
            else:
                conn.execute(insert.on_conflict_do_nothing(index_elements=["item_id"]))

    def _seal(self, kid: str, item_id: str, data: bytes) -> tuple[bytes, bytes]:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce, AESGCM(self._keys[kid]).encrypt(nonce, data, item_id.encode("utf-8"))

    def _open(self, item_id: str, sealed: bytes, nonce: bytes, kid: str) -> bytes:
        key = self._keys.get(kid)
        if key is None:
            raise KeystoreError(self._not_held(item_id, kid))
        try:
            return AESGCM(key).decrypt(nonce, sealed, item_id.encode("utf-8"))
        except (InvalidTag, ValueError):
            raise KeystoreError(f"{WHERE}: cannot decrypt item {item_id}: its row was altered "
                                "or copied from another item; restore it from a backup") from None

    def _not_held(self, item_id: str, kid: str) -> str:
        state = self._statuses().get(kid)
        if state is KeyState.NEXT:
            return (f"{WHERE}: item {item_id} is under the new master key of a rotation in "
                    "progress; let orchestrator keystore rotate-master finish, then give this "
                    "process the new key")
        if state is KeyState.CURRENT:
            return (f"{WHERE}: item {item_id} is still under the current master key and this "
                    f"process holds only the next one ({self._source()}); finish the rotation "
                    "with orchestrator keystore rotate-master")
        return f"{WHERE}: item {item_id} is under a master key this process does not hold ({kid})"

    def _master(self, *, create: bool) -> str:
        """This process's key id, checked against the keystore's keys."""
        if self._mine is None:
            key, source = self._given or self._load_key_file(create)
            kid = key_check_value(key)
            statuses = self._statuses()
            if not statuses:
                self._refuse_if_files_left()
                if not create:
                    self._keys[kid] = key
                    return kid  # nothing recorded yet, nothing to check against
                statuses = self._record_first(kid)
            state = statuses.get(kid)
            if state is KeyState.RETIRED:
                raise KeystoreError(
                    f"{WHERE}: the master key {source} was retired by a master-key rotation; "
                    "use the new key (if the rotation was interrupted, run orchestrator "
                    "keystore rotate-master again with the same --new-key-file)")
            if state is None:
                raise KeystoreError(
                    f"{WHERE}: the master key {source} is not the key this keystore was "
                    f"created with; use that key ({ENV_MASTER_KEY} or "
                    f"{self.directory / MASTER_KEY_FILE})")
            self._keys[kid] = key
            self._mine = kid
        return self._mine

    def _record_first(self, kid: str) -> dict[str, KeyState]:
        try:
            with self._writing() as conn:
                conn.execute(keystore_keys.insert().values(
                    key_id=kid, status=KeyState.CURRENT.value, created_at=self._now()))
        except sa.exc.IntegrityError:
            pass  # another process recorded its key first: checked against it below
        return self._statuses()

    def _source(self) -> str:
        return self._given[1] if self._given else f"in {self.directory / MASTER_KEY_FILE}"

    def _load_key_file(self, create: bool) -> tuple[bytes, str]:
        path = self.directory / MASTER_KEY_FILE
        if not path.exists():
            if self._statuses():
                raise KeystoreError(
                    f"{WHERE}: {path} is missing but the keystore holds items encrypted with "
                    f"it; restore it from backup or set {ENV_MASTER_KEY} to that key (a new "
                    "key would not open them)")
            if not create:
                raise KeystoreError(f"{WHERE}: {path} is missing; restore it or set "
                                    f"{ENV_MASTER_KEY}")
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                create_once(path, secrets.token_bytes(KEY_BYTES))
            except OSError as error:
                raise KeystoreError(f"{WHERE}: cannot create {path} ({error.strerror}); fix "
                                    f"the permissions there or set {ENV_MASTER_KEY}") from None
        return read_master_key_file(path), f"in {path}"

    def _refuse_if_files_left(self) -> None:
        folder = self._file_items
        if folder is not None and folder.is_dir() and any(folder.glob("*.bin")):
            raise KeystoreError(
                f"{WHERE}: empty, but the file keystore {folder.parent} holds items; move them "
                "in with orchestrator keystore import-files (or keep using the files: "
                "ORCHESTRATOR_KEYSTORE_BACKEND=file)")

    def _statuses(self) -> dict[str, KeyState]:
        with self.engine.connect() as conn:
            return {kid: KeyState(state) for kid, state in conn.execute(
                sa.select(keystore_keys.c.key_id, keystore_keys.c.status)).tuples()}

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction: SQLite takes its write lock up front (the reads in it then
        see what the writes will be checked against)."""
        with self.engine.execution_options(sqlite_begin_immediate=True).begin() as conn:
            yield conn

    def _now(self) -> str:
        return format_time(self._clock())


class _ItemsLeft(Exception):
    """Rolls ``finish`` back: an item was written under the old key meanwhile."""


def _checked(item_id: str) -> str:
    if not item_id or len(item_id) > MAX_ITEM_ID:
        raise KeystoreError(f"{WHERE}: item id must be 1 to {MAX_ITEM_ID} characters, "
                            f"got {item_id!r:.60}")
    return item_id


def _insert_for(conn: Connection) -> Callable[..., sa.dialects.postgresql.Insert]:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert
