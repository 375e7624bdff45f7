"""What the loader gives back: resources as loaded from their files, and its refusals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.domain.errors import PolicyError
from orchestrator.policies.identity_providers import IdentityProvider
from orchestrator.policies.models import Policy
from orchestrator.policies.notifiers import Notifier

__all__ = ["LoadedIdentityProvider", "LoadedNotifier", "LoadedPolicy", "PolicyFileError",
           "PolicySet"]


class PolicyFileError(PolicyError):
    """A refused resource file: ``errors`` holds every problem found, one line each; ``str()``
    is the first."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(errors[0])
        self.errors: list[str] = list(errors)


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    path: Path
    content_hash: str  # "sha256:<hex>" of the file's bytes


@dataclass(frozen=True)
class LoadedIdentityProvider:
    resource: IdentityProvider  # its paths (a secret file, caFile) joined to the file's folder
    path: Path
    content_hash: str


@dataclass(frozen=True)
class LoadedNotifier:
    resource: Notifier  # its secret file's path joined to the file's folder
    path: Path
    content_hash: str


@dataclass(frozen=True)
class PolicySet:
    """The resources that loaded and conflict with no other, and every refusal."""

    policies: tuple[LoadedPolicy, ...]
    errors: tuple[PolicyError, ...]
    identity_providers: tuple[LoadedIdentityProvider, ...] = ()
    notifiers: tuple[LoadedNotifier, ...] = ()
