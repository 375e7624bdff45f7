"""``orchestrator.adapters.crypto`` resolves each public name on first use (a module
``__getattr__`` over ``_HOME``), and names them three times (the type checker's imports,
``__all__``, ``_HOME``): the lists agree, and every name it offers is the object its home
module defines."""

from __future__ import annotations

import importlib

import pytest

from orchestrator.adapters import crypto


def test_the_public_names_are_the_ones_resolved() -> None:
    assert sorted(crypto.__all__) == sorted(crypto._HOME)


@pytest.mark.parametrize("name", crypto.__all__)
def test_each_public_name_is_its_home_modules(name: str) -> None:
    home = importlib.import_module(f"{crypto.__name__}.{crypto._HOME[name]}")
    assert getattr(crypto, name) is getattr(home, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        crypto.nothing_here  # noqa: B018
