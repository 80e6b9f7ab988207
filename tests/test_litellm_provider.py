"""The LiteLLM provider ``ttc``: ``litellm.(a)completion(model="ttc/<workflow>")`` runs a workflow, offline."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litellm.exceptions import BadRequestError, InternalServerError, NotFoundError

import ttc_agents._llm.scripted.provider as scripted
from ttc_agents import ArithmeticStepVerifier
from ttc_agents._llm.litellm import litellm
from ttc_agents.graphs.router import build_router_graph
from ttc_agents.integrations import example_policy
from ttc_agents.integrations.litellm_provider import TTCProvider, register_ttc_provider, ttc_provider

QUESTION = "What is 12 * 7 + 5?"
WORKFLOWS = """
workflows:
  offline:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: beam_search, n: 4, width: 2, seed: 0}
    budget: {max_samples: 40}
  judged:
    models: {main: scripted/arith}
    verifier: prm:scripted/arith
    strategy: {strategy: best_of_n, n: 4, seed: 0}
"""


@pytest.fixture
def workflows(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "workflows.yaml"
    path.write_text(WORKFLOWS)
    register_ttc_provider(path)
    yield path
    ttc_provider.configure(None)  # back to reading TTC_WORKFLOWS


@pytest.fixture
def scripted_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The usage of every request the scripted provider answers (an independent count of all calls)."""
    seen: list[Any] = []
    respond = scripted.scripted_respond

    def spy(*args: Any, **kwargs: Any) -> Any:
        response: Any = respond(*args, **kwargs)
        seen.append(response.usage)
        return response

    monkeypatch.setattr(scripted, "scripted_respond", spy)
    return seen


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_acompletion_runs_the_workflow(workflows: Path) -> None:
    response = await litellm.acompletion(model="ttc/offline", messages=user(QUESTION))
    assert response.choices[0].message.content == "89"
    assert response.model == "ttc/offline"
    facts = response._hidden_params["ttc"]
    assert facts["strategy"]["strategy"] == "beam_search"
    total = facts["ledger"]["total"]
    assert response.usage.prompt_tokens == total["prompt_tokens"]
    assert response.usage.completion_tokens == total["completion_tokens"]
    assert response._hidden_params["response_cost"] == pytest.approx(total["usd"])


def test_sync_completion_usage_sums_every_call(workflows: Path, scripted_calls: list[Any]) -> None:
    response = litellm.completion(
        model="ttc/judged", messages=[{"role": "system", "content": "Be exact."}, *user(QUESTION)]
    )
    assert response.choices[0].message.content == "89"
    assert len(scripted_calls) >= 2  # samples, then the judge's requests
    nodes = {entry["node"] for entry in response._hidden_params["ttc"]["ledger"]["entries"]}
    assert {"generate", "verify"} <= nodes
    assert response.usage.prompt_tokens == sum(u.prompt_tokens for u in scripted_calls)
    assert response.usage.completion_tokens == sum(u.completion_tokens for u in scripted_calls)
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


async def test_sync_completion_inside_a_running_loop(workflows: Path) -> None:
    response = litellm.completion(model="ttc/offline", messages=user("What is 7 * 8?"))
    assert response.choices[0].message.content == "56"


async def test_budget_in_the_request(workflows: Path) -> None:
    response = await litellm.acompletion(model="ttc/judged", messages=user(QUESTION), budget={"max_samples": 3})
    assert response._hidden_params["ttc"]["ledger"]["total"]["samples"] == 3
    assert response._hidden_params["ttc"]["stopped_by"] == "max_samples"
    response = await litellm.acompletion(
        model="ttc/judged", messages=user(QUESTION), extra_body={"budget": {"max_samples": 2}}
    )
    assert response._hidden_params["ttc"]["ledger"]["total"]["samples"] == 2


async def test_streaming_gives_the_answer_and_usage(workflows: Path) -> None:
    stream = await litellm.acompletion(
        model="ttc/offline", messages=user(QUESTION), stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = getattr(chunk, "usage", None) or usage
    assert text == "89"
    assert usage is not None and usage.total_tokens > 0
    pieces = [
        c.choices[0].delta.content or ""
        for c in litellm.completion(model="ttc/offline", messages=user(QUESTION), stream=True)
        if c.choices
    ]
    assert "".join(pieces) == "89"


async def test_errors_map_to_litellm_exceptions(workflows: Path) -> None:
    with pytest.raises(NotFoundError, match="no workflow 'nope'"):
        await litellm.acompletion(model="ttc/nope", messages=user(QUESTION))
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}]
    with pytest.raises(BadRequestError, match="does not call tools"):
        await litellm.acompletion(model="ttc/offline", messages=user(QUESTION), tools=tools)
    with pytest.raises(BadRequestError, match="user turn"):
        await litellm.acompletion(model="ttc/offline", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(BadRequestError, match="invalid budget"):
        await litellm.acompletion(model="ttc/offline", messages=user(QUESTION), budget={"max_samples": -1})


async def test_graphs_registered_in_code_under_another_prefix() -> None:
    router = build_router_graph(example_policy(), verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")
    handler = register_ttc_provider({"math": router}, provider="ttc-test")
    try:
        assert isinstance(handler, TTCProvider) and handler.names() == ["math"]
        response = await litellm.acompletion(
            model="ttc-test/math", messages=user(QUESTION), budget={"max_tokens": 4000}
        )
        assert response.choices[0].message.content == "89"
        assert 1 <= response._hidden_params["ttc"]["bin"] <= 5
    finally:
        litellm.custom_provider_map[:] = [p for p in litellm.custom_provider_map if p["provider"] != "ttc-test"]


async def test_workflows_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(WORKFLOWS)
    monkeypatch.setenv("TTC_WORKFLOWS", str(path))
    register_ttc_provider()
    try:
        assert ttc_provider.names() == ["judged", "offline"]
        response = await litellm.acompletion(model="ttc/offline", messages=user("What is 6 * 7 + 1?"))
        assert response.choices[0].message.content == "43"
    finally:
        ttc_provider.configure(None)
    monkeypatch.delenv("TTC_WORKFLOWS")
    with pytest.raises(InternalServerError, match="TTC_WORKFLOWS"):
        await litellm.acompletion(model="ttc/offline", messages=user(QUESTION))


def test_the_proxy_config_path_resolves_to_the_handler() -> None:
    from litellm.proxy.types_utils.utils import get_instance_fn

    assert get_instance_fn("ttc_agents.integrations.litellm_provider.ttc_provider") is ttc_provider


async def test_no_connection_without_langsmith_settings(workflows: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    attempts: list[Any] = []
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        attempts.append(address)
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    response = await litellm.acompletion(model="ttc/offline", messages=user(QUESTION))
    assert response.choices[0].message.content == "89"
    assert attempts == []
