"""The JSON Schemas in schemas/: generated from the models, current, named by every example
file's first line for editors, and agreeing with the loader on the examples."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from orchestrator.policies.schemas import FOLDER, KINDS, check, kind_named, main, render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted([*(ROOT / "policies").glob("*.yaml"), *(ROOT / "examples").rglob("*.yaml")])
MODELINE = re.compile(r"# yaml-language-server: \$schema=(\S+)")


def test_the_committed_schemas_are_what_the_models_say() -> None:
    assert check(ROOT / FOLDER) == [], "regenerate: python -m orchestrator.policies.schemas"


def test_the_check_names_a_stale_and_a_missing_schema(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(k.file for k in KINDS)
    first, second = (tmp_path / k.file for k in KINDS[:2])
    first.write_text(first.read_text().replace('"additionalProperties": false', "", 1))
    second.unlink()
    assert check(tmp_path) == [f"{first}: differs from the {KINDS[0].name} model",
                               f"{second}: missing"]
    assert main([str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_example_names_the_schema_of_its_kind_and_validates_against_it(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    named = MODELINE.fullmatch(first)
    assert named, f"{path}: the first line names no schema: {first!r}"
    document = yaml.safe_load(path.read_text())
    kind = kind_named(document["kind"])
    target = (path.parent / named.group(1)).resolve()
    assert target == (ROOT / FOLDER / kind.file).resolve()
    schema = json.loads(target.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)


def _policy_schema() -> dict[str, Any]:
    return json.loads(render(kind_named("RotationPolicy")))


def _errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(_policy_schema())
    return [e.message for e in validator.iter_errors(document)]


@pytest.fixture
def payments() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (ROOT / "policies" / "payments-private-key-jwt.yaml").read_text())
    return loaded


@pytest.mark.parametrize(("before", "valid"), [
    ("14d", True), ("33%", True), ("12.5%", True), ("P14D", True), ("1d12h", True),
    ("14 days", False), ("33", False), ("150%", False), ("33.333%", False)])
def test_an_editor_is_told_what_before_expiry_takes(payments: dict[str, Any], before: str,
                                                    valid: bool) -> None:
    document = copy.deepcopy(payments)
    document["spec"]["rotation"]["beforeExpiry"] = before
    assert (_errors(document) == []) is valid, _errors(document)


def test_an_editor_flags_a_misspelt_key_and_a_wrong_kind(payments: dict[str, Any]) -> None:
    misspelt = copy.deepcopy(payments)
    misspelt["spec"]["rotation"]["overlapp"] = misspelt["spec"]["rotation"].pop("overlap")
    assert any("'overlapp' was unexpected" in e for e in _errors(misspelt))
    assert any("'overlap' is a required property" in e for e in _errors(misspelt))
    assert _errors({**payments, "kind": "IdentityProvider"}) == [
        "'RotationPolicy' was expected"]
