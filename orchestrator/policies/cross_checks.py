"""Checks across the files of a set: what no single file can be refused for on its own.

* two policies with one name, or whose selectors can claim one application for one usage;
* two identity providers with one name, or two notifiers;
* a client_secret policy beside an identity provider that holds one secret (Auth0, RFC 7592)
  and so cannot overlap the old secret with the new, unless the policy says ``acceptSecretGap``.

Each returns its refusals (one line each, naming the file and the field) and the paths of the
files it leaves out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from itertools import combinations
from pathlib import Path

from orchestrator.domain.errors import PolicyError
from orchestrator.policies.loaded import (
    LoadedIdentityProvider,
    LoadedNotifier,
    LoadedPolicy,
    PolicyFileError,
)
from orchestrator.policies.models import ONE_POLICY, Policy, Usage

__all__ = ["duplicate_notifiers", "duplicate_providers", "policy_conflicts", "secret_gaps"]

Refused = tuple[list[PolicyError], set[Path]]


def policy_conflicts(loaded: Sequence[LoadedPolicy]) -> Refused:
    """Two policies with one name, or that can both claim an application for one usage: both
    are left out."""
    errors: list[PolicyError] = []
    conflicted: set[Path] = set()
    for first, second in combinations(loaded, 2):
        a, b = first.policy, second.policy
        if a.name == b.name:
            line = (
                f"{first.path}: metadata.name: '{a.name}' is also the name of the policy in "
                f"{second.path}; give each policy a unique name"
            )
        elif (shared := _shared_claim(a, b)) is not None:
            line = (
                f"{first.path}: spec.selector: policy '{a.name}' and policy '{b.name}' "
                f"({second.path}) can both claim an application for usage {a.usage} (apps "
                f"{shared[0]!r} and {shared[1]!r} can match one name, labels do not "
                f"contradict); {ONE_POLICY}"
            )
        else:
            continue
        errors.append(PolicyFileError([line]))
        conflicted.update((first.path, second.path))
    return errors, conflicted


def duplicate_providers(loaded: Sequence[LoadedIdentityProvider]) -> Refused:
    """Two identity providers with one name: both are left out (an application names its
    provider, so which one it meant cannot be guessed)."""
    return _same_names(loaded, "identity provider")


def duplicate_notifiers(loaded: Sequence[LoadedNotifier]) -> Refused:
    """Two notifiers with one name: both are left out (a notifier's name keys its place in
    the log and what it was told)."""
    return _same_names(loaded, "notifier")


def _same_names(loaded: Sequence[LoadedIdentityProvider | LoadedNotifier], what: str
                ) -> Refused:
    errors: list[PolicyError] = []
    refused: set[Path] = set()
    for first, second in combinations(loaded, 2):
        if first.resource.name == second.resource.name:
            errors.append(PolicyFileError([
                f"{first.path}: metadata.name: '{first.resource.name}' is also the name of the "
                f"{what} in {second.path}; give each {what} a unique name"]))
            refused.update((first.path, second.path))
    return errors, refused


def secret_gaps(policies: Sequence[LoadedPolicy],
                providers: Sequence[LoadedIdentityProvider]) -> Refused:
    """A client_secret policy beside a provider with one secret, without ``acceptSecretGap``.

    Auth0 and an RFC 7592 provider hold one client secret: the old one stops working the moment
    the new one is set, and the application is refused until it reads the new one from its
    delivery folder. The overlap a policy asks for cannot be given, so the policy must say that
    it accepts the gap. Which provider each application belongs to is known only at run time
    (the tick guards that too), so any such provider in the set is enough to ask."""
    single = [p for p in providers if not p.resource.spec.secret_overlap]
    if not single:
        return [], set()
    first = single[0]
    also = f" (so do {len(single) - 1} more)" if len(single) > 1 else ""
    errors: list[PolicyError] = []
    refused: set[Path] = set()
    for item in policies:
        rotation = item.policy.spec.rotation
        if item.policy.usage is not Usage.CLIENT_SECRET or rotation.accept_secret_gap:
            continue
        errors.append(PolicyFileError([
            f"{item.path}: spec.rotation.acceptSecretGap: policy '{item.policy.name}' rotates "
            f"client secrets, and identity provider '{first.resource.name}' "
            f"({first.resource.spec.type}, {first.path}) holds one client secret{also}: the old "
            "one stops working when the new one is set, a gap with no overlap until the "
            "application reads the new secret; set acceptSecretGap: true to accept that gap, "
            "or rotate private_key_jwt keys instead, which overlap and avoid it"]))
        refused.add(item.path)
    return errors, refused


def _shared_claim(a: Policy, b: Policy) -> tuple[str, str] | None:
    """Two app globs that can match one name, if the policies' usages and labels allow it."""
    left, right = a.spec.selector, b.spec.selector
    if a.usage != b.usage or any(
        key in right.labels and right.labels[key] != value for key, value in left.labels.items()
    ):
        return None
    return next(((x, y) for x in left.apps for y in right.apps if _globs_meet(x, y)), None)


def _globs_meet(x: str, y: str) -> bool:
    """Whether some name can match both fnmatch globs. ``*`` and ``?`` are exact; a bracket
    class is taken as ``?`` (any one character), which may report an overlap that classes
    would rule out, never miss one."""
    a, b = _glob_tokens(x), _glob_tokens(y)

    @cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        p, q = a[i] if i < len(a) else "", b[j] if j < len(b) else ""
        if (p == "*" and meet(i + 1, j)) or (q == "*" and meet(i, j + 1)):
            return True  # a * that matches nothing
        if not p or not q or p == q == "*":
            return False
        if p != q and "*" not in (p, q) and "?" not in (p, q):
            return False  # two different characters
        return meet(i + (p != "*"), j + (q != "*"))  # a * stays to take more characters

    return meet(0, 0)


def _glob_tokens(pattern: str) -> list[str]:
    """One token per position: a literal character, "?" (also for a [class]), or "*"."""
    literal = re.sub(r"\[(?:!?\]?[^\]]*)\]", "\0", pattern)  # classes become a placeholder
    tokens = ["?" if c == "\0" else c for c in literal]
    return [t for k, t in enumerate(tokens) if not (t == "*" and k and tokens[k - 1] == "*")]
