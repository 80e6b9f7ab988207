"""Workflow YAML: validation that names the workflow and field, and running one from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttc_agents._workflow import WorkflowConfigError, load_workflow, load_workflows
from ttc_agents.cli import main

YAML = """
workflows:
  offline:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: beam_search, n: 8, width: 2, seed: 0}
    budget: {max_samples: 40}
  broken:
    models: {main: scripted/arith}
    strategy: {strategy: best_of_n, n: 4}
    budget: {max_samples: -3}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "workflows.yaml"
    path.write_text(YAML)
    return path


def test_errors_name_the_workflow_and_the_field(config: Path) -> None:
    with pytest.raises(WorkflowConfigError) as info:
        load_workflow(config, "broken")
    message = str(info.value)
    assert "workflow 'broken'" in message and "budget.max_samples" in message
    with pytest.raises(WorkflowConfigError, match="broken"):
        load_workflows(config)
    with pytest.raises(WorkflowConfigError, match="no workflow 'nope'"):
        load_workflow(config, "nope")


def test_strategy_or_policy_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("workflows:\n  a:\n    models: {m: scripted/arith}\n")
    with pytest.raises(WorkflowConfigError, match="exactly one of"):
        load_workflow(path, "a")


async def test_a_valid_workflow_builds_and_answers(config: Path) -> None:
    workflow = load_workflow(config, "offline")
    result = await workflow.build().ainvoke({"question": "What is 6 * 7 + 1?"})
    assert result["answer"] == "43"
    assert result["ledger"].total.samples <= 40


def test_cli_solve_with_a_workflow(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", "What is 6 * 7 + 1?", "--workflow", "offline", "--config", str(config), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "43" and out["strategy"]["strategy"] == "beam_search"


def test_cli_errors_are_one_line_and_nonzero(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", "x", "--workflow", "broken", "--config", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ttc solve: error:") and "\n" not in err and "Traceback" not in err
