"""Resource files on disk: finding, parsing (safe YAML) and validating them, one line per error
naming file and field.

A folder holds resources of three kinds, told apart by ``kind``: ``RotationPolicy``
(``orchestrator.policies.models``), ``IdentityProvider``
(``orchestrator.policies.identity_providers``) and ``Notifier``
(``orchestrator.policies.notifiers``). The checks across files (names given twice,
policies claiming one application, a client-secret policy beside a provider with one secret)
are in ``orchestrator.policies.cross_checks``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.domain.errors import PolicyError
from orchestrator.policies.cross_checks import (
    duplicate_notifiers,
    duplicate_providers,
    policy_conflicts,
    secret_gaps,
)
from orchestrator.policies.explain import explain
from orchestrator.policies.identity_providers import IdentityProvider
from orchestrator.policies.loaded import (
    LoadedIdentityProvider,
    LoadedNotifier,
    LoadedPolicy,
    PolicyFileError,
    PolicySet,
)
from orchestrator.policies.models import ONE_POLICY, Policy, Usage
from orchestrator.policies.notifiers import Notifier
from orchestrator.policies.safe_yaml import parse_yaml

__all__ = [
    "KINDS",
    "MAX_POLICY_BYTES",
    "Loaded",
    "LoadedIdentityProvider",
    "LoadedNotifier",
    "LoadedPolicy",
    "PolicyFileError",
    "PolicySet",
    "find_conflicts",
    "load_policies",
    "load_policy_file",
    "load_resource_file",
    "validate_paths",
]

MAX_POLICY_BYTES = 1024 * 1024  # a resource is a page of YAML; a bigger file is refused unread
MAX_CA_BYTES = 4 * 1024 * 1024  # a CA bundle (the system's whole is about 200 KiB)
KINDS: dict[str, type[BaseModel]] = {"RotationPolicy": Policy, "IdentityProvider": IdentityProvider,
                                     "Notifier": Notifier}
Loaded = LoadedPolicy | LoadedIdentityProvider | LoadedNotifier


def load_resource_file(path: Path) -> Loaded:
    """Read, parse and validate one resource file of any kind; PolicyFileError names the file
    and field of every problem."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_POLICY_BYTES + 1)  # never more: the file may be huge or growing
    except OSError as exc:
        raise PolicyFileError(
            [f"{path}: cannot be read ({exc.strerror}); check the path"]
        ) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyFileError([f"{path}: larger than {MAX_POLICY_BYTES // 1024} KiB, the most a "
                               "resource file may hold; split it or check that it is one"])
    data = parse_yaml(path, raw)
    model = _model_of(path, data)
    try:  # relative paths in a resource start at its folder
        resource = model.model_validate(data, context={"base": path.parent})
    except ValidationError as exc:
        raise PolicyFileError([f"{path}: {line}" for line in explain(exc, model)]) from None
    content_hash = "sha256:" + hashlib.sha256(raw).hexdigest()
    if isinstance(resource, IdentityProvider):
        if problems := _ca_problems(resource):
            raise PolicyFileError([f"{path}: {line}" for line in problems])
        return LoadedIdentityProvider(resource, path, content_hash)
    if isinstance(resource, Notifier):
        return LoadedNotifier(resource, path, content_hash)
    assert isinstance(resource, Policy)
    if problems := _issuer_problems(resource, path.parent):
        raise PolicyFileError([f"{path}: {line}" for line in problems])
    return LoadedPolicy(resource, path, content_hash)


def load_policy_file(path: Path) -> LoadedPolicy:
    """One RotationPolicy file (another kind is refused, naming it)."""
    loaded = load_resource_file(path)
    if not isinstance(loaded, LoadedPolicy):
        kind = type(loaded.resource).__name__
        raise PolicyFileError([f"{path}: kind: {'an' if kind[0] in 'AEIOU' else 'a'} {kind}, "
                               "not a RotationPolicy; give a policy file"])
    return loaded


def load_policies(paths: Iterable[Path]) -> PolicySet:
    """Load files and folders (their ``*.yaml``/``*.yml``, sorted, not recursive); a broken
    file is reported and the rest still load. Duplicate names and overlapping selectors are
    reported and leave both resources out; a client-secret policy the providers cannot honour
    is reported and left out."""
    files, errors = _policy_files(paths)
    policies: list[LoadedPolicy] = []
    providers: list[LoadedIdentityProvider] = []
    notifiers: list[LoadedNotifier] = []
    for file in files:
        try:
            loaded = load_resource_file(file)
        except PolicyError as exc:
            errors.append(exc)
            continue
        if isinstance(loaded, LoadedPolicy):
            policies.append(loaded)
        elif isinstance(loaded, LoadedNotifier):
            notifiers.append(loaded)
        else:
            providers.append(loaded)
    refused: set[Path] = set()
    for found, left_out in (policy_conflicts(policies), duplicate_providers(providers),
                            secret_gaps(policies, providers), duplicate_notifiers(notifiers)):
        errors.extend(found)
        refused |= left_out
    return PolicySet(policies=tuple(p for p in policies if p.path not in refused),
                     errors=tuple(errors),
                     identity_providers=tuple(p for p in providers if p.path not in refused),
                     notifiers=tuple(n for n in notifiers if n.path not in refused))


def validate_paths(paths: Iterable[Path]) -> list[str]:
    """Every error line for ``orchestrator policy validate``; empty when all is well."""
    return [line for error in load_policies(paths).errors for line in _lines(error)]


def find_conflicts(
    policies: Iterable[LoadedPolicy], apps: Iterable[tuple[str, Mapping[str, str]]]
) -> list[str]:
    """For a concrete fleet: each application claimed by two or more policies for one usage."""
    policies = list(policies)
    lines = []
    for app, labels in apps:
        claims: dict[Usage, list[LoadedPolicy]] = defaultdict(list)
        for item in policies:
            if item.policy.matches(app, labels):
                claims[item.policy.usage].append(item)
        for usage, claimants in claims.items():
            if len(claimants) > 1:
                who = " and ".join(f"policy '{c.policy.name}' ({c.path})" for c in claimants)
                lines.append(
                    f"application '{app}': usage {usage} is claimed by {who}; {ONE_POLICY}"
                )
    return lines


def _model_of(path: Path, data: dict[Any, Any]) -> type[BaseModel]:
    *first, last = KINDS
    kinds = f"{', '.join(first)} or {last}"
    if "kind" not in data:
        raise PolicyFileError([f"{path}: kind: required key missing; add it ({kinds})"])
    kind = data["kind"]
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        shown = repr(kind) if isinstance(kind, str) and len(kind) <= 64 else "this"
        raise PolicyFileError([f"{path}: kind: {shown} is not a resource kind; use {kinds}"])
    return model


def _issuer_problems(policy: Policy, folder: Path) -> list[str]:
    certificate = policy.spec.credential.certificate
    if certificate is None or certificate.issuer is None:
        return []
    from orchestrator.policies.issuer import issuer_problems

    return issuer_problems(folder / certificate.issuer.certificate, folder / certificate.issuer.key)


def _ca_problems(resource: IdentityProvider) -> list[str]:
    """An OIDC provider's caFile: readable, and PEM certificates (the bundle its TLS is
    verified with; checked at load, as a policy's issuer is)."""
    oidc = resource.spec.oidc
    if oidc is None or oidc.ca_file is None:
        return []
    try:
        with oidc.ca_file.open("rb") as file:
            data = file.read(MAX_CA_BYTES + 1)  # never more: the path may name a log or device
    except OSError as exc:
        return [f"spec.oidc.caFile: cannot read {oidc.ca_file} ({exc.strerror}); check the path "
                "(relative paths start at this file's folder)"]
    if len(data) > MAX_CA_BYTES:
        return [f"spec.oidc.caFile: {oidc.ca_file} is larger than {MAX_CA_BYTES // 2**20} MiB, "
                "so it is not a CA bundle; check the path"]
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        return [f"spec.oidc.caFile: {oidc.ca_file} holds no PEM certificate; give the CA "
                "bundle that signed the provider's TLS certificate"]
    return []


def _lines(error: PolicyError) -> list[str]:
    return error.errors if isinstance(error, PolicyFileError) else [str(error)]


def _policy_files(paths: Iterable[Path]) -> tuple[list[Path], list[PolicyError]]:
    files: list[Path] = []
    errors: list[PolicyError] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
            )
        elif path.is_file():
            files.append(path)
        else:
            errors.append(PolicyFileError([f"{path}: no such file or folder; check the path"]))
    unique: dict[Path, Path] = {}  # by resolved path: a file named twice loads once
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values()), errors
