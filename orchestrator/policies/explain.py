"""Pydantic's validation errors as the one-line refusals a resource file gets.

Each line is ``<field.path as spelt in YAML>: <what is wrong>; <what to do>`` (the loader puts
the file's path in front). A value is repeated in a line only where it helps to see it (a
misspelt enum, a number out of range), never a whole mapping or list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

__all__ = ["explain"]


def explain(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem, ``<field.path as spelt in YAML>: <what is wrong>; <what to do>``;
    a cross-field rule (``policy_rule``) reports each rule it broke. ``root`` is the model
    validated (it names the keys an unknown key could have been)."""
    lines = []
    for error in exc.errors(include_url=False):
        loc, ctx = list(error["loc"]), error.get("ctx") or {}
        if error["type"] == "policy_rule":  # cross-field rules: each broken one, one line
            for field, message in [(ctx["field"], ctx["message"]), *ctx.get("more", ())]:
                lines.append(f"{_dotted([*loc, *filter(None, field.split('.'))])}: {message}")
            continue
        lines.append(f"{_dotted(loc)}: {_describe(error, loc, root)}")
    return lines


def _dotted(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def _describe(error: Any, loc: Sequence[int | str], root: type[BaseModel]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "policy_rule":
        return str(ctx["message"])
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(root, loc[:-1]))
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
    if kind == "string_too_short":
        return "is empty; write a value" if ctx["min_length"] == 1 else (
            f"shorter than {ctx['min_length']} characters; write the whole value")
    if kind == "string_too_long":
        return f"longer than {ctx['max_length']} characters; check the value"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_kind(value)}; write true or false"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {_kind(value)}; write e.g. 16"
    if kind == "greater_than":
        return f"{value!r} is too small; use more than {ctx['gt']}"
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


def _allowed_keys(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    model: type[BaseModel] | None = root
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
