"""The checkpoint signing key: Ed25519 on ``cryptography``, in a file the database never sees.

``create_key(path)`` makes the pair: ``path``, the private key (PKCS#8 PEM, mode 0600), and
``path.pub``, the public half (SPKI PEM, mode 0644), which is all a verifier on another host
needs. Neither is ever overwritten. ``load_signer`` refuses a key file its owner's group or
anyone else may read or write (ssh's rule for private keys); ``load_key`` reads a public key.
A key's id is "sha256:" + hex SHA-256 of its public half as SPKI DER (``openssl pkey -pubin
-in KEY.pub -outform DER | sha256sum`` gives the same hex).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from orchestrator.adapters.files import create_once
from orchestrator.domain.errors import InputError

__all__ = ["Ed25519Key", "Ed25519Signer", "create_key", "key_id", "load_key", "load_signer",
           "public_path"]

_MAX_KEY_FILE = 64 * 1024
_CREATE_HINT = "create one with: orchestrator checkpoint init-key"


def key_id(public: ed25519.Ed25519PublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def public_path(path: Path) -> Path:
    """Where ``create_key`` puts the public half of the key at ``path``."""
    return path.with_name(path.name + ".pub")


@dataclass(frozen=True)
class Ed25519Key:
    """The public half a verifier trusts (the ``CheckpointKey`` port)."""

    public: ed25519.Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def verifies(self, data: bytes, signature: bytes) -> bool:
        try:
            self.public.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Ed25519Signer:
    """The signing key (the ``CheckpointSigner`` port). Its repr shows the key id only."""

    private: ed25519.Ed25519PrivateKey
    path: Path

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    @property
    def key(self) -> Ed25519Key:
        return Ed25519Key(self.private.public_key())

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def __repr__(self) -> str:
        return f"Ed25519Signer({self.path}, {self.key_id})"


def create_key(path: Path) -> Ed25519Signer:
    """A new key pair at ``path`` and ``path.pub``; refused when either exists."""
    public = public_path(path)
    for existing in (path, public):
        if existing.exists() or existing.is_symlink():
            raise InputError(f"checkpoint key {existing} exists: a key is never overwritten "
                             "(checkpoints signed with it would no longer verify); choose "
                             "another path")
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not create_once(path, pem, 0o600):
            raise InputError(f"checkpoint key {path} exists: another process made it first")
        create_once(public, public_pem, 0o644)
    except OSError as exc:
        raise InputError(f"checkpoint key {path}: cannot write it ({exc.strerror})") from None
    return Ed25519Signer(private, path)


def load_signer(path: Path) -> Ed25519Signer:
    """The signing key at ``path``, refused when its mode lets anyone but its owner at it."""
    data = _read(path, "checkpoint key", f"no such file; {_CREATE_HINT} {path}")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise InputError(f"checkpoint key {path} has mode {mode:04o}: others may read or change "
                         f"it; chmod 600 {path} (and consider it exposed)")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        private = None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise InputError(f"checkpoint key {path}: not an unencrypted Ed25519 private key (PEM); "
                         f"{_CREATE_HINT}")
    return Ed25519Signer(private, path)


def load_key(path: Path) -> Ed25519Key:
    """The public key a verifier trusts, from a PEM file (as ``create_key`` writes ``.pub``)."""
    data = _read(path, "public key", "no such file")
    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        public = None
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise InputError(f"public key {path}: not an Ed25519 public key (PEM), such as the "
                         ".pub file orchestrator checkpoint init-key writes")
    return Ed25519Key(public)


def _read(path: Path, what: str, missing: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise InputError(f"{what} {path}: {missing}") from None
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    if len(data) > _MAX_KEY_FILE:
        raise InputError(f"{what} {path}: larger than a key file ({_MAX_KEY_FILE // 1024} KiB)")
    return data
