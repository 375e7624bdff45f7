"""Every module states its public surface in a sorted ``__all__``, and the surface is true.

As httpx guards its exports: a module's public classes and functions (defined in it, not
imported) are listed in ``__all__``; everything listed exists; the list is sorted. A new public
name that nobody meant to export fails here, and so does a stale entry.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import events
import orchestrator

SKIP = {"orchestrator.__main__"}  # runs the command line when imported


def _modules() -> list[str]:
    names = []
    for package in (events, orchestrator):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            if ".migrations" in info.name or info.name in SKIP:
                continue
            names.append(info.name)
    return sorted(names)


def _defined_here(module: ModuleType) -> set[str]:
    return {
        name for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    }


def _isort_style(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then everything else."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


MODULES = _modules()


def test_the_walk_finds_every_layer() -> None:
    for layer in ("events.store", "orchestrator.domain.rules", "orchestrator.app.ports",
                  "orchestrator.adapters.crypto", "orchestrator.entrypoints.cli",
                  "orchestrator.bootstrap", "orchestrator.policies.models"):
        assert layer in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_every_module_states_a_sorted_true_public_surface(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        assert not _defined_here(module), f"{name} defines public names but has no __all__"
        return
    assert list(exported) == sorted(exported, key=_isort_style), f"{name}.__all__ is not sorted"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not have: {missing}"
    unlisted = sorted(_defined_here(module) - set(exported))
    assert not unlisted, f"{name} defines public names missing from __all__: {unlisted}"
