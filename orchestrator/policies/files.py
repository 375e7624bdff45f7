"""Policy files on disk: finding, parsing (YAML) and validating them, with one-line errors
naming file and field; detecting policies that claim the same application and usage.

The models live in ``orchestrator.policies.models``; this module reads files into them.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.domain.errors import PolicyError
from orchestrator.policies.models import ONE_POLICY, Policy, Usage

__all__ = [
    "MAX_POLICY_BYTES",
    "LoadedPolicy",
    "PolicyFileError",
    "PolicySet",
    "find_conflicts",
    "load_policies",
    "load_policy_file",
    "validate_paths",
]

MAX_POLICY_BYTES = 1024 * 1024  # a policy is a page of YAML; a bigger file is refused unread

# -- loading ---------------------------------------------------------------------------------


class PolicyFileError(PolicyError):
    """A refused policy: ``errors`` holds every problem found, one line each; ``str()`` is the
    first."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(errors[0])
        self.errors: list[str] = list(errors)


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    path: Path
    content_hash: str  # "sha256:<hex>" of the file's bytes


@dataclass(frozen=True)
class PolicySet:
    """The policies that loaded and conflict with no other, and every refusal."""

    policies: tuple[LoadedPolicy, ...]
    errors: tuple[PolicyError, ...]


def load_policy_file(path: Path) -> LoadedPolicy:
    """Read, parse and validate one policy file; PolicyFileError names the file and field."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_POLICY_BYTES + 1)  # never more: the file may be huge or growing
    except OSError as exc:
        raise PolicyFileError(
            [f"{path}: cannot be read ({exc.strerror}); check the path"]
        ) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyFileError([f"{path}: larger than {MAX_POLICY_BYTES // 1024} KiB, the most a "
                               "policy file may hold; split it or check that it is a policy"])
    data = _parse_yaml(path, raw)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyFileError([f"{path}: {line}" for line in _explain(exc)]) from None
    if missing := _issuer_problems(policy, path.parent):
        raise PolicyFileError([f"{path}: {line}" for line in missing])
    return LoadedPolicy(policy, path, "sha256:" + hashlib.sha256(raw).hexdigest())


def load_policies(paths: Iterable[Path]) -> PolicySet:
    """Load files and folders (their ``*.yaml``/``*.yml``, sorted, not recursive); a broken
    file is reported and the rest still load; duplicate names and overlapping selectors are
    reported and leave both policies out."""
    files, errors = _policy_files(paths)
    loaded: list[LoadedPolicy] = []
    for file in files:
        try:
            loaded.append(load_policy_file(file))
        except PolicyError as exc:
            errors.append(exc)
    conflicts, conflicted = _conflicts(loaded)
    kept = tuple(item for item in loaded if item.path not in conflicted)
    return PolicySet(policies=kept, errors=(*errors, *conflicts))


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


def _issuer_problems(policy: Policy, folder: Path) -> list[str]:
    certificate = policy.spec.credential.certificate
    if certificate is None or certificate.issuer is None:
        return []
    from orchestrator.policies.issuer import issuer_problems

    return issuer_problems(folder / certificate.issuer.certificate, folder / certificate.issuer.key)


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


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last), and
    every anchor and alias (``&a``, ``*a``, ``<<: *a``): a policy does not need them, and
    aliases nest into a "billion laughs" that takes gigabytes to build. The first anchor met
    is refused, before anything is expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name) are not allowed in a policy: "
                "write the value out", event.start_mark)
        return super().compose_node(parent, index)


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: list[Any] = []
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        seen.append(key)
    try:
        return dict(loader.construct_pairs(node, deep=True))
    except TypeError:  # a list or mapping used as a key
        raise yaml.constructor.ConstructorError(
            None, None, "a key must be plain text", node.start_mark
        ) from None


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _parse_yaml(path: Path, raw: bytes) -> dict[Any, Any]:
    try:
        data = yaml.load(raw, Loader=_Loader)  # a SafeLoader: builds plain data only
    except RecursionError:
        raise PolicyFileError(
            [f"{path}: nested too deeply to be a policy; fix the YAML"]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        what = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark:
            what += f" ({exc.context}, line {exc.context_mark.line + 1})"
        raise PolicyFileError([f"{path}: {where}: {what}; fix the YAML there"]) from None
    except yaml.YAMLError as exc:
        raise PolicyFileError(
            [f"{path}: not readable as YAML ({exc}); save it as UTF-8 YAML"]
        ) from None
    if data is None:
        raise PolicyFileError(
            [f"{path}: the file is empty; write a policy (apiVersion, kind, metadata, spec)"]
        )
    if not isinstance(data, dict):
        raise PolicyFileError(
            [f"{path}: holds a {type(data).__name__}, not a mapping; start with 'apiVersion:'"]
        )
    return data


# -- turning pydantic's errors into one line each -------------------------------------------


def _explain(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        loc, ctx = list(error["loc"]), error.get("ctx") or {}
        if error["type"] == "policy_rule":  # cross-field rules: each broken one, one line
            for field, message in [(ctx["field"], ctx["message"]), *ctx.get("more", ())]:
                lines.append(f"{_dotted([*loc, *field.split('.')])}: {message}")
            continue
        lines.append(f"{_dotted(loc)}: {_describe(error, loc)}")
    return lines


def _dotted(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def _describe(error: Any, loc: Sequence[int | str]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "policy_rule":
        return str(ctx["message"])
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1]))
        return f"unknown key {loc[-1]!r} (allowed: {allowed}); remove it or fix its spelling"
    if kind == "missing":
        return "required key missing; add it"
    if kind in ("literal_error", "enum"):
        return f"{value!r} is not allowed; use {ctx['expected']}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping (key: value), got {_kind(value)}; write it as one"
    if kind in ("tuple_type", "list_type"):
        return f'expected a list, got {_kind(value)}; write it as one, e.g. ["payments-*"]'
    if kind == "too_short":
        return f"needs at least {ctx['min_length']} item; add one"
    if kind == "string_type":
        return f"expected text, got {_kind(value)}; quote it"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {value!r}; write e.g. 5"
    if kind == "greater_than_equal":
        return f"{value!r} is too small; use {ctx['ge']} or more"
    if kind == "less_than_equal":
        return f"{value!r} is too large; use {ctx['le']} or fewer"
    return f"{error['msg']}; fix this value"


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _allowed_keys(loc: Sequence[int | str]) -> list[str]:
    model: type[BaseModel] | None = Policy
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        model = _model_in(field.annotation) if field is not None else None
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, (_model_in(arg) for arg in get_args(annotation))), None)


# -- selectors that can claim the same application --------------------------------------------


def _conflicts(loaded: Sequence[LoadedPolicy]) -> tuple[list[PolicyError], set[Path]]:
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
