"""The modules of ttc_agents import each other without cycles.

Every import statement counts: module level, inside functions, and under ``TYPE_CHECKING`` (a
type-only import is still a dependency a reader has to follow). An import of ``a.b.c`` counts as an
edge to ``a.b.c`` only (not to the packages ``a`` and ``a.b`` Python loads first), and
``from a.b import c`` to ``a.b.c`` when ``c`` is a module, else to ``a.b``.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGES = ("ttc_agents", "ttc_agents.graphs", "ttc_agents.integrations", "ttc_agents.prompts")
"""The import namespace and the subpackages whose sources live outside ttc_agents/ (package-dir)."""


def _package_dirs() -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations, name
        dirs[name] = Path(next(iter(spec.submodule_search_locations)))
    return dirs


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, is a package), for every module of the namespace."""
    modules: dict[str, tuple[Path, bool]] = {}
    for package, directory in _package_dirs().items():
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules.setdefault(".".join([package, *parts]), (path, is_package))
    return modules


def _imports(name: str, path: Path, is_package: bool, known: Mapping[str, object]) -> Iterator[str]:
    """The modules of ``known`` that ``name`` imports, anywhere in its source."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                if f"{target}.{alias.name}" in known:
                    yield f"{target}.{alias.name}"
                elif target in known:
                    yield target


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ttc_agents it imports."""
    modules = _modules()
    return {
        name: set(_imports(name, path, is_package, modules)) - {name} for name, (path, is_package) in modules.items()
    }


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path = [root]
        stack = [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def test_the_graph_covers_the_namespace() -> None:
    graph = import_graph()
    for name in ("ttc_agents._llm.gateway", "ttc_agents.graphs.router", "ttc_agents.integrations.litellm_provider"):
        assert name in graph
    assert "ttc_agents._core.budget" in graph["ttc_agents._llm.gateway"]
    assert "ttc_agents._llm.custom_llm" in graph["ttc_agents.integrations.litellm_provider"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b", "c"}, "b": set(), "c": {"c2"}, "c2": {"c"}}, ["c", "c2", "c"]),
    ],
)
def test_find_cycle(graph: dict[str, set[str]], expected: list[str] | None) -> None:
    assert find_cycle(graph) == expected


def test_relative_and_function_level_imports_count(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from pkg import VALUE\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.typed import T\n"
        "def f():\n"
        "    import pkg.late\n"
    )
    known = dict.fromkeys(["pkg", "pkg.sibling", "pkg.typed", "pkg.late", "pkg.mod"])
    assert set(_imports("pkg.mod", source, False, known)) == {"pkg", "pkg.sibling", "pkg.typed", "pkg.late"}


LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("values", ("ttc_agents._core",)),
    ("model I/O", ("ttc_agents._llm",)),
    ("verifiers and prompts", ("ttc_agents.verifiers", "ttc_agents.prompts")),
    ("search and routing", ("ttc_agents._routing",)),
    ("graphs", ("ttc_agents.graphs",)),
    ("applications", ("ttc_agents._apps",)),
    (
        "entry points",
        ("ttc_agents.integrations", "ttc_agents.cli", "ttc_agents.bench", "ttc_agents.testing", "ttc_agents"),
    ),
)
"""The README's Architecture layers, bottom first: a module may import from its own layer and those below."""


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the most specific prefix that names ``module``."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            named = module == prefix or module.startswith(prefix + ".")
            if named and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    assert best is not None, module
    return best[1]


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = []
    for module, imported in import_graph().items():
        if module == "ttc_agents":
            continue  # the public API re-exports every layer
        for target in imported:
            if target != "ttc_agents" and layer_of(target) > layer_of(module):
                upward.append(
                    f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                )
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def test_layers_name_what_the_tree_holds() -> None:
    assert layer_of("ttc_agents._core.budget") < layer_of("ttc_agents._llm.gateway") < layer_of("ttc_agents.verifiers")
    assert layer_of("ttc_agents.verifiers._llm_judge") < layer_of("ttc_agents._routing.policy")
    assert layer_of("ttc_agents._routing.moves") < layer_of("ttc_agents.graphs.router") < layer_of("ttc_agents._apps")
    assert layer_of("ttc_agents._apps.calibrate") < layer_of("ttc_agents.integrations.batch") == layer_of("ttc_agents")
    graph = import_graph()
    assert "ttc_agents.graphs" in graph["ttc_agents._apps.calibrate"]  # applications build graphs from below
    assert "ttc_agents._routing.policy" in graph["ttc_agents.graphs.router"]
