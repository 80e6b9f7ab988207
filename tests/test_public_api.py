"""The public surface is what ``__all__`` says, and every name in it resolves."""

from __future__ import annotations

import importlib
import inspect

import pytest

import ttc_agents

PUBLIC_MODULES = [
    "ttc_agents",
    "ttc_agents.graphs",
    "ttc_agents.prompts",
    "ttc_agents.verifiers",
    "ttc_agents.testing",
    "ttc_agents.integrations",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_names_resolve_once(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported))
    for member in exported:
        assert hasattr(module, member), f"{name}.{member} is in __all__ but missing"


def test_public_objects_are_documented() -> None:
    for member in ttc_agents.__all__:
        obj = getattr(ttc_agents, member)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert (obj.__doc__ or "").strip(), f"ttc_agents.{member} has no docstring"


def test_private_modules_are_not_exported() -> None:
    assert not any(name.startswith("_") and name != "__version__" for name in ttc_agents.__all__)
