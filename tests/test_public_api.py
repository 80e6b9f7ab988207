"""The public surface is exactly what ``__all__`` says (in the manner of httpx's export test).

- ``ttc_agents``: ``__all__`` equals every public (non-underscore) name of the package, minus modules
  (its subpackages) and ``from __future__`` features: a name is public only if it is exported.
- The public subpackages (``graphs``, ``verifiers``, ``integrations``, ``testing``, ``prompts``,
  ``bench``, ``cli``): ``__all__`` equals their own public names. A name there that is not in
  ``__all__`` must be a helper imported for the package's code: a module, a third-party object, or
  an object whose public home is another namespace's ``__all__`` (``Budget`` in ``graphs``).
- Every ``__all__`` name resolves, appears once and the list is sorted (ruff's RUF022 order).
- Every public submodule (``ttc_agents.integrations.batch``, ...) has an ``__all__`` that resolves.
- The docs (README.md, examples/, the public namespaces' docstrings) cite no private path: every
  ``ttc_agents.a.b`` they name resolves through public modules only.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path

import pytest

import ttc_agents

ROOT = Path(__file__).resolve().parents[1]

PACKAGE = "ttc_agents"
SUBPACKAGES = [
    "ttc_agents.bench",
    "ttc_agents.cli",
    "ttc_agents.graphs",
    "ttc_agents.integrations",
    "ttc_agents.prompts",
    "ttc_agents.testing",
    "ttc_agents.verifiers",
]
NAMESPACES = [PACKAGE, *SUBPACKAGES]
EXPORTED_DUNDERS = {"__version__"}
FUTURE_FEATURE = type(annotations)  # what `from __future__ import annotations` binds: not a name of the API


def _module(name: str) -> types.ModuleType:
    return importlib.import_module(name)


def _public_names(module: types.ModuleType) -> set[str]:
    """Non-underscore names of ``module`` that are neither modules nor ``__future__`` features.

    ``dir()`` and ``getattr`` rather than ``vars()``: a package that loads its names on first use
    (PEP 562 ``__getattr__`` and ``__dir__``, as ``ttc_agents`` does) lists them before they are bound."""
    return {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType | FUTURE_FEATURE)
    }


def _ruff_order(name: str) -> tuple[int, list[int | str]]:
    """ruff's RUF022 ("isort-style") key: SCREAMING_CASE, then CamelCase, then the rest; natural order."""
    if len(name) > 1 and name.upper() == name and any(c.isalpha() for c in name):
        kind = 0
    elif name[:1].isupper():
        kind = 1
    else:
        kind = 2
    return kind, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _exported_elsewhere(obj: object, here: str) -> bool:
    for name in NAMESPACES:
        if name == here:
            continue
        module = _module(name)
        if any(getattr(module, member, None) is obj for member in module.__all__):
            return True
    return False


def _is_project_object(obj: object) -> bool:
    module = getattr(obj, "__module__", None)
    return not isinstance(module, str) or module == PACKAGE or module.startswith(PACKAGE + ".")


@pytest.mark.parametrize("name", NAMESPACES)
def test_all_is_sorted_unique_and_resolves(name: str) -> None:
    module = _module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    assert exported == sorted(exported, key=_ruff_order), f"{name}.__all__ is not sorted"
    for member in exported:
        assert hasattr(module, member), f"{name}.{member} is in __all__ but missing"
        assert not member.startswith("_") or member in EXPORTED_DUNDERS, f"{name}.{member}: private name exported"
        assert not isinstance(getattr(module, member), types.ModuleType), f"{name}.{member}: a module in __all__"


def test_package_exports_exactly_its_public_names() -> None:
    exported = set(ttc_agents.__all__) - EXPORTED_DUNDERS
    public = _public_names(ttc_agents)
    assert public - exported == set(), "public names of ttc_agents missing from __all__"
    assert exported - public == set(), "names in ttc_agents.__all__ that are not bound"


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_exports_exactly_its_own_public_names(name: str) -> None:
    module = _module(name)
    exported = set(module.__all__)
    assert exported <= _public_names(module), f"{name}.__all__ names something that is not a public object"
    unexported = {
        member
        for member in _public_names(module) - exported
        if _is_project_object(getattr(module, member)) and not _exported_elsewhere(getattr(module, member), name)
    }
    assert unexported == set(), (
        f"{name} defines public names that are in no __all__: export them or give them an underscore"
    )


def _public_submodules() -> list[str]:
    found = []
    for name in NAMESPACES:
        package = _module(name)
        for info in pkgutil.iter_modules(package.__path__, prefix=name + "."):
            if not info.name.rsplit(".", 1)[1].startswith("_") and info.name not in NAMESPACES:
                found.append(info.name)
    return sorted(found)


def test_public_submodules_are_found() -> None:
    assert "ttc_agents.graphs.router" in _public_submodules()
    assert "ttc_agents.integrations.batch" in _public_submodules()


@pytest.mark.parametrize("name", _public_submodules())
def test_public_submodule_has_a_resolving_all(name: str) -> None:
    module = _module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} is a public module without __all__"
    for member in exported:
        assert hasattr(module, member), f"{name}.{member} is in __all__ but missing"


def test_public_objects_are_documented() -> None:
    for name in NAMESPACES:
        module = _module(name)
        assert (module.__doc__ or "").strip(), f"{name} has no docstring"
        for member in module.__all__:
            obj = getattr(module, member)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert (obj.__doc__ or "").strip(), f"{name}.{member} has no docstring"


def test_package_docstring_names_every_export() -> None:
    doc = ttc_agents.__doc__ or ""
    missing = [m for m in ttc_agents.__all__ if m not in EXPORTED_DUNDERS and not re.search(rf"\b{m}\b", doc)]
    assert missing == [], "ttc_agents.__doc__ should say what each export is for"


# -- docs cite public paths only ---------------------------------------------------------------------

_DOTTED = re.compile(r"\bttc_agents(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _doc_texts() -> list[tuple[str, str]]:
    texts = [("README.md", (ROOT / "README.md").read_text(encoding="utf-8"))]
    for path in sorted((ROOT / "examples").iterdir()):
        if path.suffix in {".py", ".yaml", ".yml", ".md"}:
            texts.append((f"examples/{path.name}", path.read_text(encoding="utf-8")))
    for name in NAMESPACES:
        texts.append((f"{name}.__doc__", _module(name).__doc__ or ""))
    return texts


def _public_home(obj: object) -> str | None:
    for name in NAMESPACES:
        module = _module(name)
        for member in module.__all__:
            if getattr(module, member) is obj:
                return f"{name}.{member}"
    return None


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and get the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_docs_cite_no_private_path() -> None:
    problems = []
    for where, text in _doc_texts():
        for dotted in sorted(set(_DOTTED.findall(text))):
            if any(part.startswith("_") for part in dotted.split(".")):
                try:
                    home = _public_home(_resolve(dotted))
                except (AttributeError, ImportError):
                    home = None
                problems.append(f"{where}: {dotted} (public: {home or 'none: export it'})")
    assert problems == []


def test_docs_cite_paths_that_resolve() -> None:
    problems = []
    for where, text in _doc_texts():
        for dotted in sorted(set(_DOTTED.findall(text))):
            try:
                _resolve(dotted)
            except (AttributeError, ImportError) as exc:
                problems.append(f"{where}: {dotted} ({exc})")
    assert problems == []
