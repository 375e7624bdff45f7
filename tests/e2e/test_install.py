"""The project as a user installs it: the wheel, without extras, in a virtual environment of its
own (``.ci/user-install``, the same commands as docker/Dockerfile). Nothing that only the
development tools bring in may be needed there: every import at run time is a declared
dependency, every module of the installed packages imports, and the wheel ships every module.

The modules are never listed here: the installed packages are walked (installed_probe.py), and
the sources are scanned, so modules can move between sub-packages freely.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests import helpers
from tests.e2e.installed_probe import runtime_imports

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("installed_probe.py")
DISTRIBUTION = "credential-orchestrator"
PACKAGES = ("events", "orchestrator")
# What `python -m venv` (ensurepip) puts in every environment, and the python image has too.
VENV_SEED = {"pip", "setuptools", "wheel"}


def canonical(name: str) -> str:
    """A distribution name normalised as PEP 503 does."""
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def installed(user_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The probe's report, run isolated (-I: no work tree, no PYTHONPATH) by the user's
    interpreter from an empty directory."""
    done = subprocess.run(
        [str(user_python), "-I", str(PROBE), *PACKAGES], cwd=tmp_path_factory.mktemp("probe"),
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _distributions(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {canonical(d["name"]): d for d in report["distributions"]}


def _declared(report: dict[str, Any]) -> list[Requirement]:
    """The runtime requirements of the installed distribution (those of no extra)."""
    ours = _distributions(report)[DISTRIBUTION]
    requirements = [Requirement(r) for r in ours["requires"]]
    environment = {**report["marker_environment"], "extra": ""}
    return [r for r in requirements if r.marker is None or r.marker.evaluate(environment)]


def _source_files() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path


# --- the installation --------------------------------------------------------------------------


def test_every_module_imports_with_only_the_declared_dependencies(
        installed: dict[str, Any]) -> None:
    """Every module of the installed ``events`` and ``orchestrator`` imports in the user's
    environment; a failure names the module, the missing import and the line that needs it."""
    prefix = Path(installed["prefix"])
    for package in PACKAGES:
        roots = installed["packages"].get(package, [])
        assert roots, f"{package} is not installed in {prefix}: {installed['failures']}"
        for root in roots:
            assert Path(root).is_relative_to(prefix), (
                f"{package} was imported from {root}, not from the installation in {prefix}")
    failures = [
        f"{f['module']}: {f['error']}"
        + (f" (the missing import: {f['missing']})" if f["missing"] else "")
        + (f", at {f['where']}" if f["where"] else "")
        for f in installed["failures"]
    ]
    assert not failures, (
        "modules that do not import with only the declared runtime dependencies installed:\n"
        + "\n".join(failures))
    assert set(PACKAGES) <= set(installed["imported"])


def test_the_wheel_ships_every_source_module(installed: dict[str, Any]) -> None:
    """The installed packages hold exactly the sources' Python files: none left out of the
    wheel (a folder the package finder skips), none stale (a module that has moved)."""
    source = {path.relative_to(ROOT).as_posix() for path in _source_files()}
    shipped = set(installed["files"])
    assert not source - shipped, f"not in the wheel: {sorted(source - shipped)}"
    assert not shipped - source, f"in the wheel, not in the sources: {sorted(shipped - source)}"


def test_the_environment_holds_only_the_declared_runtime_dependencies(
        installed: dict[str, Any]) -> None:
    """The user's environment is the wheel, its declared runtime requirements and theirs (with
    the extras asked for), and the venv's own installer: no development tool, no extra."""
    distributions = _distributions(installed)
    environment = installed["marker_environment"]
    needed: dict[str, set[str]] = {}
    missing: list[str] = []
    todo: list[tuple[str, frozenset[str], str]] = [(DISTRIBUTION, frozenset(), "the user")]
    while todo:
        name, extras, wanted_by = todo.pop()
        if name in needed and extras <= needed[name]:
            continue
        needed.setdefault(name, set()).update(extras)
        if name not in distributions:
            missing.append(f"{name} (required by {wanted_by})")
            continue
        for text in distributions[name]["requires"]:
            requirement = Requirement(text)
            if requirement.marker is not None and not any(
                    requirement.marker.evaluate({**environment, "extra": extra})
                    for extra in {"", *extras}):
                continue
            todo.append((canonical(requirement.name), frozenset(requirement.extras), name))
    assert not missing, f"required but not installed in {installed['prefix']}: {missing}"
    extra = set(distributions) - set(needed) - VENV_SEED
    assert not extra, f"installed but not required by {DISTRIBUTION}: {sorted(extra)}"


def test_the_installed_command_runs(user_python: Path) -> None:
    """The wheel's console script starts (its entry point resolves) and lists its commands."""
    done = subprocess.run([str(user_python.parent / "orchestrator"), "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


def test_the_end_to_end_tests_drive_the_user_installation() -> None:
    """Under .ci/run, the command every end-to-end test runs is the user installation's."""
    configured = os.environ.get("ORCHESTRATOR_USER_PYTHON")
    if not configured:
        pytest.skip("ORCHESTRATOR_USER_PYTHON is not set (only .ci/run sets it)")
    expected = Path(configured).absolute().parent / "orchestrator"
    assert expected == helpers.ORCHESTRATOR, (
        f"ORCHESTRATOR_BIN={os.environ.get('ORCHESTRATOR_BIN')} is not {expected}")


# --- the sources -------------------------------------------------------------------------------


def test_every_third_party_import_is_a_declared_runtime_dependency(
        installed: dict[str, Any]) -> None:
    """Each top-level import of the sources that is neither the standard library nor the
    project's own packages comes from a distribution in ``[project] dependencies``."""
    declared = {canonical(r.name) for r in _declared(installed)}
    # Import name -> distributions: the user's environment first, then this one (which has
    # what only a development tool brings in, so an undeclared import is still named).
    here = importlib.metadata.packages_distributions()
    problems = []
    for path in _source_files():
        relative = path.relative_to(ROOT).as_posix()
        for node in runtime_imports(ast.parse(path.read_text(encoding="utf-8"), relative)):
            if isinstance(node, ast.ImportFrom):
                if node.level or not node.module:
                    continue  # relative: the project's own
                names = [node.module]
            else:
                names = [alias.name for alias in node.names]
            for top in {n.split(".")[0] for n in names}:
                if top in sys.stdlib_module_names or top in PACKAGES:
                    continue
                providers = installed["import_names"].get(top) or here.get(top) or []
                if not {canonical(p) for p in providers} & declared:
                    problems.append(
                        f"{relative}:{node.lineno}: {ast.unparse(node)} -> "
                        + (f"{top} comes from {', '.join(sorted(set(providers)))}, which is not "
                           "in [project] dependencies" if providers
                           else f"no installed distribution provides {top}"))
    assert not problems, "undeclared runtime imports:\n" + "\n".join(problems)
