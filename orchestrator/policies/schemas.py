"""The JSON Schema of every resource kind, generated from its pydantic model.

Editors read them (the first line of a resource file: ``# yaml-language-server:
$schema=../schemas/rotation-policy.json``) to complete keys and flag mistakes while ops type;
the loader stays the judge (cross-field rules, windows, secrets are beyond a schema). The
files in ``schemas/`` are committed and a test keeps them equal to what the models say.
Regenerate them after a model change::

    python -m orchestrator.policies.schemas            # writes schemas/*.json
    python -m orchestrator.policies.schemas --check    # exit 1 when one is stale

A new kind is one line of ``KINDS``: its ``kind`` value, its file name, its model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from orchestrator.policies.identity_providers import IdentityProvider
from orchestrator.policies.models import Policy
from orchestrator.policies.notifiers import Notifier

__all__ = ["DIALECT", "KINDS", "Kind", "check", "kind_named", "main", "render", "schema", "write"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
FOLDER = Path("schemas")


class Kind:
    """One resource kind: what ``kind:`` says, its schema's file name, its model."""

    def __init__(self, name: str, file: str, model: type[BaseModel], description: str) -> None:
        self.name, self.file, self.model, self.description = name, file, model, description


KINDS: tuple[Kind, ...] = (
    Kind("RotationPolicy", "rotation-policy.json", Policy,
         "How the orchestrator rotates the credentials of the applications it selects."),
    Kind("IdentityProvider", "identity-provider.json", IdentityProvider,
         "An identity provider the applications belong to (auth0 or oidc)."),
    Kind("Notifier", "notifier.json", Notifier,
         "A webhook told, signed, of expiries, rotations, parked rotations and drift."),
)


def kind_named(name: str) -> Kind:
    """The kind called ``name`` (its ``kind:`` value or its file's stem), or ValueError."""
    for kind in KINDS:
        if name in (kind.name, kind.file.removesuffix(".json")):
            return kind
    raise ValueError(f"no resource kind {name!r}; the kinds are "
                     f"{', '.join(k.name for k in KINDS)}")


def schema(kind: Kind) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``kind``, keys as written in YAML (camelCase)."""
    body = kind.model.model_json_schema(by_alias=True, mode="validation")
    body.update(title=kind.name, description=kind.description)
    return {"$schema": DIALECT, **body}


def render(kind: Kind) -> str:
    return json.dumps(schema(kind), indent=2, ensure_ascii=False) + "\n"


def write(folder: Path = FOLDER) -> list[Path]:
    """Write every kind's schema into ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = folder / kind.file
        path.write_text(render(kind), encoding="utf-8")
        written.append(path)
    return written


def check(folder: Path = FOLDER) -> list[str]:
    """One line per schema file of ``folder`` missing or different from its model's."""
    stale = []
    for kind in KINDS:
        path = folder / kind.file
        if not path.is_file():
            stale.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != render(kind):
            stale.append(f"{path}: differs from the {kind.name} model")
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.policies.schemas",
                                     description="Write (or check) the resource kinds' JSON "
                                                 "Schemas.")
    parser.add_argument("folder", nargs="?", type=Path, default=FOLDER,
                        help="where the schemas go (default: schemas)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a schema is missing or stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.folder)
        for line in stale:
            print(f"error: {line}; regenerate with python -m orchestrator.policies.schemas",
                  file=sys.stderr)
        return 1 if stale else 0
    for path in write(args.folder):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
