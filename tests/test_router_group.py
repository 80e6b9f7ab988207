"""Router groups: one LiteLLM Router per group of deployments, booked per deployment in the ledger.

Three loopback deployments: a fast one, a slow one (latency) and a dead one (a closed port).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ttc_agents import BestOfNSpec, Budget, ModelSpec, build_strategy_graph
from ttc_agents._apps.workflow import WorkflowConfigError, load_workflow
from ttc_agents._core.budget import Ledger, Usage
from ttc_agents._llm.gateway import Gateway, RetryPolicy
from ttc_agents._llm.providers import register_providers
from ttc_agents.cli import main
from ttc_agents.integrations.batch import abatch
from ttc_agents.testing import FakeOpenAIServer, FakeServerConfig, closed_port

NAME = "openai/fake"
QUICK = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.02, jitter=0.0)


@pytest.fixture
def fast() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def slow() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(FakeServerConfig(latency=0.05)) as server:
        yield server


@pytest.fixture
def dead() -> str:
    return f"http://127.0.0.1:{closed_port()}/v1"


def group(deployments: list[dict[str, Any]], **settings: Any) -> ModelSpec:
    return ModelSpec.model_validate(
        {"name": NAME, "api_key": "none", "max_tokens": 16, "group": {"deployments": deployments, **settings}}
    )


def per_deployment(results: list[dict[str, Any]]) -> dict[str, Usage]:
    total: dict[str, Usage] = {}
    for result in results:
        for model, usage in result["ledger"].by_model().items():
            total[model] = total.get(model, Usage()) + usage
    return total


# -- the YAML format ---------------------------------------------------------------------------------

CONFIG = """
workflows:
  math:
    models:
      main:
        name: openai/qwen2.5-math-7b
        api_key: none
        usd_per_input_token: 1.0e-7
        usd_per_output_token: 2.0e-7
        group:
          deployments:
            - {api_base: "http://127.0.0.1:8001/v1", weight: 2}
            - {api_base: "http://127.0.0.1:8002/v1", id: gpu-2}
            - model: openai/other
              api_base: "http://127.0.0.1:8003/v1"
              usd_per_input_token: 0
              usd_per_output_token: 1.0e-6
          routing_strategy: least-busy
          cooldown_time: 30
          allowed_fails: 1
          fallbacks: ["scripted/arith"]
    verifier: arithmetic
    strategy: {strategy: best_of_n, n: 4}
"""


def test_the_yaml_format(tmp_path: Path) -> None:
    register_providers()  # the scripted fallback's price
    path = tmp_path / "workflows.yaml"
    path.write_text(CONFIG)
    spec = load_workflow(path, "math").main_model
    assert spec.group is not None
    assert spec.group.routing_strategy == "least-busy"
    assert (spec.group.cooldown_time, spec.group.allowed_fails) == (30, 1)
    resolved = spec.group.resolve(spec.name, spec.api_key)
    assert [d.id for d in resolved] == [
        "http://127.0.0.1:8001/v1",
        "gpu-2",
        "http://127.0.0.1:8003/v1",
        "scripted/arith",
    ]
    assert [d.model for d in resolved] == [spec.name, spec.name, "openai/other", "scripted/arith"]
    assert [d.group for d in resolved] == [spec.name] * 3 + [f"{spec.name}#fallback-1"]
    entry = resolved[0].router_entry()
    assert entry["litellm_params"]["weight"] == 2 and entry["litellm_params"]["api_key"] == "none"
    assert entry["model_info"] == {"id": "http://127.0.0.1:8001/v1"}
    # A reservation pays the dearest deployment's price per token (the scripted fallback's come from
    # LiteLLM's cost map: 1e-7 and 2e-7); a deployment of another model does not take the spec's prices.
    assert Gateway().prices(spec) == (1e-7, 1e-6)
    other = spec.model_copy(update={"usd_per_input_token": 5e-7})
    assert Gateway().prices(other) == (5e-7, 1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("weight: 2}", "field models.main.group.deployments.0.weight: Input should be greater than 0"),
        ("id: gpu-2}", "field models.main.group.deployments.1.idd: Extra inputs are not permitted"),
        ("least-busy", "field models.main.group.routing_strategy: Input should be"),
        ("gpu-2", "group.deployments.1: deployment id 'http://127.0.0.1:8001/v1' repeats group.deployments.0"),
        ("api_key: none", "api_base: a model with a `group` has one api_base per deployment"),
        ("cooldown_time: 30", "field models.main.group.cooldown_time: Input should be greater than or equal to 0"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, change: str, message: str) -> None:
    replacements = {
        "weight: 2}": "weight: 0}",
        "id: gpu-2}": "idd: gpu-2}",
        "least-busy": "fastest-first",
        "gpu-2": '"http://127.0.0.1:8001/v1"',
        "api_key: none": "api_key: none\n        api_base: http://127.0.0.1:9/v1",
        "cooldown_time: 30": "cooldown_time: -1",
    }
    path = tmp_path / "workflows.yaml"
    path.write_text(CONFIG.replace(change, replacements[change], 1))
    with pytest.raises(WorkflowConfigError) as raised:
        load_workflow(path, "math")
    assert "workflow 'math'" in str(raised.value)
    assert message in str(raised.value)


def test_a_group_needs_deployments() -> None:
    with pytest.raises(ValueError, match=r"group\.deployments"):
        ModelSpec.model_validate({"name": NAME, "group": {"deployments": []}})


# -- routing through the group -------------------------------------------------------------------------


async def test_load_spreads_over_live_deployments_and_the_dead_one_cools_down(
    fast: FakeOpenAIServer, slow: FakeOpenAIServer, dead: str
) -> None:
    spec = group(
        [{"api_base": fast.url, "id": "fast"}, {"api_base": slow.url, "id": "slow"}, {"api_base": dead, "id": "dead"}],
        cooldown_time=600,
        allowed_fails=1,
    )
    gateway = Gateway(retry=QUICK)
    graph = build_strategy_graph(BestOfNSpec(n=4, seed=0), model=spec, gateway=gateway)
    limit = asyncio.Semaphore(8)

    async def answer(i: int) -> dict[str, Any]:
        async with limit:
            result: dict[str, Any] = await graph.ainvoke({"question": f"What is {i} + 1?"})
            return result

    first = await asyncio.gather(*(answer(i) for i in range(60)))
    assert all(r["answer"] == "42" for r in first)  # every item answered (the fake server's canned answer)
    used = per_deployment(first)
    assert set(used) <= {f"{NAME}@fast", f"{NAME}@slow", f"{NAME}@dead"}
    calls = {name: usage.calls for name, usage in used.items()}
    assert calls[f"{NAME}@fast"] + calls[f"{NAME}@slow"] == 60
    assert min(calls[f"{NAME}@fast"], calls[f"{NAME}@slow"]) >= 12  # both live ones carry load
    # The dead one was tried, and cooled down after allowed_fails + 1 failures (plus what was in flight).
    dead_failures = used[f"{NAME}@dead"].failed_calls
    assert 1 <= dead_failures <= 2 + 8
    assert used[f"{NAME}@dead"].calls == 0
    # Every call is booked under the deployment that answered it, with what that server billed.
    for server, key in ((fast, "fast"), (slow, "slow")):
        assert server.request_count == calls[f"{NAME}@{key}"]
        assert server.billed.prompt_tokens == used[f"{NAME}@{key}"].prompt_tokens
        assert server.billed.completion_tokens == used[f"{NAME}@{key}"].completion_tokens

    # Cooled down: no more attempts on the dead deployment, whatever comes next.
    second = await asyncio.gather(*(answer(i) for i in range(60, 100)))
    assert all(r["answer"] == "42" for r in second)
    assert f"{NAME}@dead" not in per_deployment(second)


async def test_weights_steer_the_load(fast: FakeOpenAIServer, slow: FakeOpenAIServer) -> None:
    spec = group([{"api_base": fast.url, "weight": 9}, {"api_base": slow.url, "weight": 1}])
    gateway = Gateway(retry=QUICK)
    for i in range(60):
        await gateway.sample(spec, [{"role": "user", "content": f"q{i}"}])
    assert fast.request_count > 3 * slow.request_count


async def test_a_fallback_answers_when_the_group_is_down(fast: FakeOpenAIServer, dead: str) -> None:
    spec = group(
        [{"api_base": dead, "id": "dead"}],
        fallbacks=[{"api_base": fast.url, "id": "backup", "usd_per_input_token": 1e-6, "usd_per_output_token": 2e-6}],
    )
    ledger = Ledger(budget=Budget(max_usd=1.0))
    gateway = Gateway(retry=QUICK)
    batch = await gateway.sample(spec, [{"role": "user", "content": "hello"}], 3, ledger=ledger)
    assert len(batch.samples) == 3
    used = ledger.snapshot().by_model()
    backup = used[f"{NAME}@backup"]
    assert backup.calls == 1 and backup.samples == 3
    assert backup.usd == pytest.approx(backup.prompt_tokens * 1e-6 + backup.completion_tokens * 2e-6)
    assert used[f"{NAME}@dead"].failed_calls == 1  # the attempt the Router gave up on is booked too


async def test_a_group_that_is_down_fails_after_the_gateways_retries(dead: str) -> None:
    spec = group([{"api_base": dead, "id": "a"}, {"api_base": f"http://127.0.0.1:{closed_port()}/v1", "id": "b"}])
    ledger = Ledger()
    with pytest.raises(Exception, match=r"Connection error|No deployments available"):
        await Gateway(retry=QUICK).sample(spec, [{"role": "user", "content": "hello"}], ledger=ledger)
    entries = ledger.snapshot().by_model()
    assert sum(usage.failed_calls for usage in entries.values()) == QUICK.max_attempts  # one per attempt
    assert sum(usage.calls for usage in entries.values()) == 0
    assert set(entries) <= {f"{NAME}@a", f"{NAME}@b", NAME}  # NAME: every deployment was cooling down


async def test_prices_reserve_the_dearest_and_book_each_deployments_own(
    fast: FakeOpenAIServer, slow: FakeOpenAIServer
) -> None:
    spec = group(
        [
            {"api_base": fast.url, "id": "cheap", "usd_per_input_token": 1e-6, "usd_per_output_token": 1e-6},
            {"api_base": slow.url, "id": "dear", "usd_per_input_token": 3e-6, "usd_per_output_token": 5e-6},
        ]
    )
    gateway = Gateway(retry=QUICK)
    assert gateway.prices(spec) == (3e-6, 5e-6)
    ledger = Ledger(budget=Budget(max_usd=1.0))
    await asyncio.gather(
        *(gateway.sample(spec, [{"role": "user", "content": f"q{i}"}], 2, ledger=ledger) for i in range(20))
    )
    used = ledger.snapshot().by_model()
    for key, (p_in, p_out) in {"cheap": (1e-6, 1e-6), "dear": (3e-6, 5e-6)}.items():
        usage = used[f"{NAME}@{key}"]
        assert usage.usd == pytest.approx(usage.prompt_tokens * p_in + usage.completion_tokens * p_out)


async def test_a_usd_budget_holds_through_a_group(fast: FakeOpenAIServer, slow: FakeOpenAIServer) -> None:
    spec = ModelSpec.model_validate(
        {
            "name": NAME,
            "api_key": "none",
            "max_tokens": 8,
            "usd_per_input_token": 1e-5,
            "usd_per_output_token": 1e-5,
            "group": {"deployments": [{"api_base": fast.url}, {"api_base": slow.url, "usd_per_output_token": 1e-3}]},
        }
    )
    ledger = Ledger(budget=Budget(max_usd=0.05))
    gateway = Gateway(retry=QUICK)
    for i in range(30):
        await gateway.sample(spec, [{"role": "user", "content": f"q{i}"}], 4, ledger=ledger)
    assert ledger.total.usd <= 0.05
    assert ledger.stopped_by == "max_usd"


def test_one_router_per_group_and_event_loop(fast: FakeOpenAIServer) -> None:
    spec = group([{"api_base": fast.url}])
    gateway = Gateway(retry=QUICK)

    async def routers() -> tuple[Any, Any]:
        await gateway.sample(spec, [{"role": "user", "content": "hi"}])
        return gateway._groups.router(spec), gateway._groups.router(spec)

    first, again = asyncio.run(routers())
    assert first is again
    other, _ = asyncio.run(routers())  # a new loop gets its own Router (LiteLLM's clients belong to a loop)
    assert other is not first
    assert fast.request_count == 2


async def test_a_workflow_batch_through_a_group(tmp_path: Path, fast: FakeOpenAIServer, slow: FakeOpenAIServer) -> None:
    path = tmp_path / "workflows.yaml"
    path.write_text(
        f"""
workflows:
  spread:
    models:
      main:
        name: {NAME}
        api_key: none
        group: {{deployments: [{{api_base: "{fast.url}"}}, {{api_base: "{slow.url}"}}]}}
    verifier: arithmetic
    strategy: {{strategy: best_of_n, n: 4, seed: 0}}
"""
    )
    records = await abatch([f"What is {i} + 2?" for i in range(20)], load_workflow(path, "spread"), max_concurrency=4)
    assert [r.get("answer") for r in records] == ["42"] * 20
    assert fast.request_count + slow.request_count == 20


def test_the_cli_refuses_ray_options_without_the_ray_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "workflows.yaml"
    path.write_text(CONFIG)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"question": "What is 1 + 1?"}\n')
    args = ["batch", str(inputs), str(tmp_path / "out.jsonl"), "--workflow", "math", "--config", str(path)]
    assert main([*args, "--address", "auto"]) == 2  # a usage error (ttc batch --help: exit status)
    assert "--address and --workers need --engine ray" in capsys.readouterr().err
    assert main([*args, "--engine", "ray", "--record", str(tmp_path / "r.sqlite")]) == 2
    assert "--record needs --engine local" in capsys.readouterr().err
