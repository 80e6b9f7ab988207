"""The old module paths of the checkpointed classes, importable as aliases of the new modules, lazily.

A checkpoint stores a class by its module path, and checkpoints written before the layer packages name
the old flat modules (``ttc_agents._budget`` ...). :func:`install` (run by :mod:`ttc_agents` at import)
adds a finder to :data:`sys.meta_path` that answers ``import ttc_agents._budget`` with the module
``ttc_agents._core.budget`` itself (the same object, registered under both names in :data:`sys.modules`),
imported only when an old path is asked for. Imports nothing but the standard library.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.abc import Loader as _Loader
else:
    _Loader = object

__all__ = ["LEGACY_MODULES", "install"]

LEGACY_MODULES: dict[str, str] = {
    "ttc_agents._budget": "ttc_agents._core.budget",
    "ttc_agents._candidates": "ttc_agents._core.candidates",
    "ttc_agents._difficulty": "ttc_agents._routing.difficulty",
    "ttc_agents._policy": "ttc_agents._routing.policy",
    "ttc_agents._specs": "ttc_agents._core.specs",
}
"""Where the checkpointed classes lived before the layer packages (old path -> current module)."""


# The finder and the loader follow importlib's protocols; importlib.abc is only for the type checker (it
# imports importlib.resources: tens of milliseconds at every `import ttc_agents`).


class _AliasLoader(_Loader):
    """Loads an old path as the current module object (no new module is made)."""

    def __init__(self, current: str) -> None:
        self._current = current
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self._current)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system stamped the alias's spec on the module: give it back its own.
        module.__spec__ = self._spec


class _AliasFinder:
    """Finds the names of :data:`LEGACY_MODULES` (and nothing else)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        current = LEGACY_MODULES.get(fullname)
        if current is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(current))


def install() -> None:
    """Make the old paths importable (once; later calls do nothing)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
