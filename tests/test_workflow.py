"""Workflow YAML: validation that names the workflow and field, and running one from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ttc_agents._apps.workflow import WorkflowConfigError, load_workflow, load_workflows
from ttc_agents._llm.gateway import Gateway
from ttc_agents._llm.models import SAMPLING_PARAMS, ModelSpec, sampling_params
from ttc_agents.cli import main
from ttc_agents.prompts import render_prompt

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


# --- extra_params: sampling parameters only (issue 12, Security 9) ---------------------------------

HOSTILE_EXTRA_PARAMS = [
    ("success_callback", ["langsmith"]),
    ("callbacks", ["langfuse"]),
    ("failure_callback", ["langsmith"]),
    ("logger_fn", "print"),
    ("langsmith_base_url", "http://127.0.0.1:9/"),
    ("api_base", "http://127.0.0.1:9/v1"),
    ("base_url", "http://127.0.0.1:9/v1"),
    ("custom_llm_provider", "openai"),
    ("extra_headers", {"X-Forward": "1"}),
    ("headers", {"X-Forward": "1"}),
    ("metadata", {"langsmith_project": "x"}),
    ("extra_body", {"anything": 1}),
    ("mock_response", "1"),
    ("n", 64),
    ("max_tokens", 100000),
    ("max_completion_tokens", 100000),
    ("logprobs", True),
    ("num_retries", 50),
]


@pytest.mark.parametrize(("key", "value"), HOSTILE_EXTRA_PARAMS, ids=[k for k, _ in HOSTILE_EXTRA_PARAMS])
def test_extra_params_refuse_what_is_not_a_sampling_parameter(key: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        ModelSpec(name="scripted/arith", extra_params={"temperature": 0.5, key: value})
    message = str(info.value)
    assert "extra_params" in message and repr(key) in message


def test_a_workflow_cannot_ship_prompts_to_a_logger(tmp_path: Path) -> None:
    """The reported config: a LangSmith callback and a base URL in a workflow's extra_params."""
    path = tmp_path / "w.yaml"
    path.write_text(
        "workflows:\n  leak:\n    models:\n      main:\n        name: scripted/arith\n"
        "        extra_params:\n          success_callback: [langsmith]\n"
        "          langsmith_base_url: http://127.0.0.1:9/\n"
        "    strategy: {strategy: best_of_n, n: 2}\n"
    )
    with pytest.raises(WorkflowConfigError) as info:
        load_workflow(path, "leak")
    message = str(info.value)
    assert (
        str(path) in message
        and "models.main.extra_params" in message
        and "'success_callback', 'langsmith_base_url'" in message
    )
    assert "\n" not in message


def test_router_group_deployments_take_sampling_parameters_only() -> None:
    deployment = {"api_base": "http://127.0.0.1:8000/v1", "litellm_params": {"success_callback": ["langsmith"]}}
    with pytest.raises(ValidationError, match=r"group\.deployments\.0\.litellm_params: key 'success_callback' not"):
        ModelSpec(name="openai/m", group={"deployments": [deployment]})
    fallback = {"model": "openai/x", "litellm_params": {"api_base": "http://127.0.0.1:9"}}
    with pytest.raises(ValidationError, match=r"group\.fallbacks\.0\.litellm_params: key 'api_base' not"):
        ModelSpec(
            name="openai/m", group={"deployments": [{"api_base": "http://127.0.0.1:8000/v1"}], "fallbacks": [fallback]}
        )
    ok = {"api_base": "http://127.0.0.1:8000/v1", "litellm_params": {"timeout": 5, "temperature": 0.2}}
    assert ModelSpec(name="openai/m", group={"deployments": [ok]}).group is not None


def test_every_documented_sampling_parameter_is_accepted() -> None:
    params = {name: 1 for name in SAMPLING_PARAMS}
    assert ModelSpec(name="scripted/arith", extra_params=params).extra_params == params
    assert sampling_params({**params, "success_callback": ["x"], "api_base": "h"}) == params


async def test_sampling_parameters_reach_the_model(tmp_path: Path) -> None:
    """An allowed parameter still goes out with the request (the allow-list removes nothing it names)."""
    import litellm

    seen: list[dict[str, object]] = []

    class Capture(litellm.CustomLLM):
        async def acompletion(self, *args: object, **kwargs: object) -> litellm.ModelResponse:
            seen.append(dict(kwargs.get("optional_params") or {}))
            return litellm.ModelResponse(
                choices=[{"message": {"role": "assistant", "content": "The answer is 56."}}],
                usage={"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
            )

    previous = list(litellm.custom_provider_map)
    litellm.custom_provider_map = [*previous, {"provider": "ttccapture", "custom_handler": Capture()}]
    try:
        spec = ModelSpec(name="ttccapture/m", extra_params={"top_k": 7}, supports_logprobs=False)
        batch = await Gateway().sample(spec, [{"role": "user", "content": "7 * 8?"}], 1, temperature=0.3)
    finally:
        litellm.custom_provider_map = previous
    assert batch.samples and seen and seen[0].get("top_k") == 7


def test_yaml_alias_bombs_in_sampling_parameters_load_in_bounded_time(tmp_path: Path) -> None:
    """Nine levels of nine aliases (387 million leaves if expanded) under an allowed key."""
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = "workflows:\n  w:\n    models:\n      main:\n        name: scripted/arith\n        extra_params:\n"
    text += "          logit_bias:\n" + "".join(f"            {line}\n" for line in levels)
    text += "    strategy: {strategy: best_of_n}\n"
    path = tmp_path / "w.yaml"
    path.write_text(text)
    workflow = load_workflow(path, "w")
    assert set(workflow.main_model.extra_params["logit_bias"]) == {f"l{i}" for i in range(9)}


# --- clear errors: prompt names and duplicate keys (issue 12, Clear errors) ------------------------


def _one(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(
        "workflows:\n  a:\n    models: {m: scripted/arith}\n    strategy: {strategy: best_of_n, n: 2}\n" + body
    )
    return path


def test_an_unknown_prompt_name_is_an_error_naming_file_field_and_name(tmp_path: Path) -> None:
    path = _one(tmp_path, "    prompts: {genrate: 'Q: $question'}\n")
    with pytest.raises(WorkflowConfigError) as info:
        load_workflow(path, "a")
    message = str(info.value)
    assert str(path) in message and "field prompts" in message and "'genrate'" in message and "\n" not in message


def test_an_unknown_placeholder_in_a_prompt_is_an_error(tmp_path: Path) -> None:
    path = _one(tmp_path, "    prompts: {revise: 'Fix $atempts for $question'}\n")
    with pytest.raises(WorkflowConfigError, match=r"field prompts: .*'revise'.*\$atempts"):
        load_workflow(path, "a")


def test_a_hyphenated_prompt_name_is_used_not_dropped(tmp_path: Path) -> None:
    path = _one(tmp_path, "    prompts: {step-generate: '$question / $steps'}\n")
    assert load_workflow(path, "a").prompts == {"step_generate": "$question / $steps"}
    assert render_prompt("step_generate", {"step-generate": "[$steps]"}, question="q", steps="s") == "[s]"


def test_render_prompt_refuses_an_override_for_no_prompt() -> None:
    with pytest.raises(ValueError, match="unknown prompt 'genrate'"):
        render_prompt("generate", {"genrate": "x $question"}, question="q")


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        (
            "workflows:\n  a:\n    models: {m: scripted/arith}\n    verifier: arithmetic\n    verifier: none\n"
            "    strategy: {strategy: best_of_n}\n",
            "verifier",
            5,
            4,
        ),
        (
            "workflows:\n  a:\n    models: {m: scripted/arith}\n    strategy: {strategy: best_of_n, n: 2, n: 64}\n",
            "n",
            4,
            4,
        ),
        (
            "workflows:\n  a:\n    models: {m: scripted/arith}\n    strategy: {strategy: best_of_n}\n"
            "  a:\n    models: {m: scripted/arith}\n    strategy: {strategy: best_of_n}\n",
            "a",
            5,
            2,
        ),
    ],
    ids=["field", "flow-mapping", "workflow-name"],
)
def test_a_duplicate_key_is_an_error_naming_key_and_lines(
    tmp_path: Path, text: str, key: str, line: int, first: int
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    with pytest.raises(WorkflowConfigError) as info:
        load_workflows(path)
    message = str(info.value)
    assert message == f"{path}: line {line}: duplicate key {key!r} (first given at line {first})"


def test_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "base: &base {models: {m: scripted/arith}, strategy: {strategy: best_of_n, n: 2}}\n"
        "workflows:\n  a:\n    <<: *base\n    strategy: {strategy: best_of_n, n: 3}\n"
    )
    with pytest.raises(WorkflowConfigError, match="one key `workflows"):  # the top level is still checked
        load_workflow(path, "a")
    path.write_text(
        "workflows:\n  base: &base {models: {m: scripted/arith}, strategy: {strategy: best_of_n, n: 2}}\n"
        "  a:\n    <<: *base\n    strategy: {strategy: best_of_n, n: 3}\n"
    )
    assert load_workflow(path, "a").strategy.n == 3  # type: ignore[union-attr]


def test_a_relative_policy_path_starts_at_the_yaml_file_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ttc_agents import load_workflow

    examples = Path(__file__).resolve().parent.parent / "examples"
    monkeypatch.chdir(tmp_path)  # examples/policy.json is not reachable from here
    graph = load_workflow(examples / "workflows.yaml", "math").build()
    assert graph is not None
