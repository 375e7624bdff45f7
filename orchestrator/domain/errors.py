"""Every error a user can meet, in one small hierarchy.

    OrchestratorError            one line for the user: what, where, what to do; exit status 1
    ├── RefusedError             a rule refused the command (decide); nothing was written
    │   ├── NotFoundError        unknown application or credential
    │   └── ConflictError        duplicate material, a stale write that retries could not settle
    ├── InputError               bad input: a file, a PEM, a DN, a time, an option; exit status 2
    │   ├── MaterialError        key or certificate that cannot be used
    │   └── PolicyError          a policy file that cannot be accepted (names file and field)
    ├── KeystoreError            the keystore cannot be opened, decrypted or written
    ├── DeliveryError            an application's delivery folder cannot be written safely
    ├── EvidenceError            the log disagrees with its hash chain or a signed checkpoint,
    │                            or a checkpoint's signature does not hold (tampering, or
    │                            evidence of another log or key)
    └── ProviderError            the identity provider refused or failed

The command line prints ``error: <message>`` on stderr and exits non-zero; it never shows a
traceback for these. Anything else is a bug and is reported as one.
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "DeliveryError",
    "EvidenceError",
    "InputError",
    "KeystoreError",
    "MaterialError",
    "NotFoundError",
    "OrchestratorError",
    "PolicyError",
    "ProviderError",
    "RefusedError",
]


class OrchestratorError(Exception):
    """Base of every error meant for the user. ``str(error)`` is the one line they see."""

    exit_code = 1


class RefusedError(OrchestratorError):
    """A credential rule refused the command; nothing was written."""


class NotFoundError(RefusedError):
    """An application or credential that does not exist."""


class ConflictError(RefusedError):
    """The write conflicts with what is already recorded (duplicate material, lost race)."""


class InputError(OrchestratorError):
    """Input that cannot be used as given."""

    exit_code = 2


class MaterialError(InputError):
    """A key, certificate or subject DN that cannot be used."""


class PolicyError(InputError):
    """A policy file that cannot be accepted."""


class KeystoreError(OrchestratorError):
    """The keystore cannot be opened, read or written."""


class DeliveryError(OrchestratorError):
    """An application's delivery folder cannot be written, or holds a link it must not follow."""


class EvidenceError(OrchestratorError):
    """The log does not hold against its chain or its checkpoints, or a checkpoint is not
    signed by the trusted key."""


class ProviderError(OrchestratorError):
    """The identity provider refused the request or could not be reached."""
