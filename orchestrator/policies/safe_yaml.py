"""Safe YAML for resource files: plain data only, no anchors or aliases, no key given twice.

Every problem is one line naming the file and the line (``PolicyFileError``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.policies.loaded import PolicyFileError

__all__ = ["parse_yaml"]


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last), and
    every anchor and alias (``&a``, ``*a``, ``<<: *a``): a resource does not need them, and
    aliases nest into a "billion laughs" that takes gigabytes to build. The first anchor met
    is refused, before anything is expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name) are not allowed in a resource file: "
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


def parse_yaml(path: Path, raw: bytes) -> dict[Any, Any]:
    """The file's one YAML mapping; PolicyFileError (one line, naming the place) otherwise."""
    try:
        data = yaml.load(raw, Loader=_Loader)  # a SafeLoader: builds plain data only
    except RecursionError:
        raise PolicyFileError(
            [f"{path}: nested too deeply to be a resource; fix the YAML"]
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
            [f"{path}: the file is empty; write a resource (apiVersion, kind, metadata, spec)"]
        )
    if not isinstance(data, dict):
        raise PolicyFileError(
            [f"{path}: holds a {type(data).__name__}, not a mapping; start with 'apiVersion:'"]
        )
    return data
