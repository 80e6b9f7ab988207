"""ChatTTC: a LangChain chat model over ttc-agents graphs, offline on the scripted test double."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_core.tracers.context import collect_runs

import ttc_agents._llm.scripted.provider as scripted
from ttc_agents import ArithmeticStepVerifier, BeamSearchSpec, BestOfNSpec, Budget, build_strategy_graph
from ttc_agents.graphs.router import build_router_graph
from ttc_agents.integrations import example_policy
from ttc_agents.integrations._common import split_conversation
from ttc_agents.integrations.chat_model import ChatTTC, ToolCallingNotSupportedError

QUESTION = "What is 12 * 7 + 5?"


@pytest.fixture
def llm() -> ChatTTC:
    return ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=4, seed=0), verifier="arithmetic")


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


def recording_graph(seen: list[dict[str, Any]]) -> Any:
    """A stand-in graph that records its input and answers from the real best-of-N graph."""
    real = build_strategy_graph(BestOfNSpec(n=2, seed=0), model="scripted/arith", verifier=ArithmeticStepVerifier())

    async def run(inputs: dict[str, Any]) -> dict[str, Any]:
        seen.append(inputs)
        return dict(await real.ainvoke(inputs))

    return RunnableLambda(run, name="recording")


# -- construction -----------------------------------------------------------------------------------


def test_exactly_one_way_to_build() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        ChatTTC()
    graph = build_strategy_graph(BestOfNSpec(n=2), model="scripted/arith")
    with pytest.raises(ValueError, match="exactly one of"):
        ChatTTC(graph=graph, model="scripted/arith", strategy=BestOfNSpec(n=2))
    with pytest.raises(ValueError, match="go together"):
        ChatTTC(model="scripted/arith")
    with pytest.raises(ValueError, match="extra"):
        ChatTTC(graph=graph, temprature=0.3)  # typos are not silently ignored


def test_from_a_workflow_file(tmp_path: Path) -> None:
    path = tmp_path / "workflows.yaml"
    path.write_text(
        "workflows:\n  offline:\n    models: {main: scripted/arith}\n    verifier: arithmetic\n"
        "    strategy: {strategy: beam_search, n: 4, width: 2, seed: 0}\n"
    )
    llm = ChatTTC(workflow="offline", config=path)
    message = llm.invoke("What is 6 * 7 + 1?")
    assert message.content == "43"
    assert message.response_metadata["strategy"]["strategy"] == "beam_search"
    assert llm._get_ls_params()["ls_model_name"] == "offline"


def test_strategy_as_a_dict() -> None:
    llm = ChatTTC(
        model="scripted/arith", strategy={"strategy": "beam_search", "n": 4, "width": 2}, verifier="arithmetic"
    )
    assert isinstance(llm.strategy, BeamSearchSpec) and llm.label == "beam_search"


# -- calling it -------------------------------------------------------------------------------------


def test_invoke_returns_the_answer_usage_and_metadata(llm: ChatTTC) -> None:
    message = llm.invoke(QUESTION)
    assert isinstance(message, AIMessage) and message.content == "89"
    meta = message.response_metadata
    assert meta["strategy"]["strategy"] == "best_of_n" and meta["strategy"]["n"] == 4
    assert meta["stopped_by"] is None and meta["bin"] is None
    total = meta["ledger"]["total"]
    assert message.usage_metadata == {
        "input_tokens": total["prompt_tokens"],
        "output_tokens": total["completion_tokens"],
        "total_tokens": total["prompt_tokens"] + total["completion_tokens"],
    }
    assert total["samples"] == 4


def test_usage_counts_every_call_including_the_verifier(scripted_calls: list[Any]) -> None:
    llm = ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=4, seed=0), verifier="prm:scripted/arith")
    message = llm.invoke(QUESTION)
    assert len(scripted_calls) >= 2  # the samples, then the judge's step-scoring requests
    nodes = {entry["node"] for entry in message.response_metadata["ledger"]["entries"]}
    assert {"generate", "verify"} <= nodes
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == sum(u.prompt_tokens for u in scripted_calls)
    assert message.usage_metadata["output_tokens"] == sum(u.completion_tokens for u in scripted_calls)


def test_budget_per_call_and_stop_sequences(llm: ChatTTC) -> None:
    message = llm.invoke(QUESTION, budget=Budget(max_samples=2))
    assert message.response_metadata["ledger"]["total"]["samples"] == 2
    assert message.response_metadata["stopped_by"] == "max_samples"
    assert llm.invoke(QUESTION, stop=["9"]).content == "8"
    with pytest.raises(TypeError, match="temperature"):
        llm.invoke(QUESTION, temperature=0.1)


def test_solution_output_is_the_chosen_samples_text() -> None:
    llm = ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=4, seed=0), verifier="arithmetic", output="solution")
    text = llm.invoke(QUESTION).text
    assert "12 * 7 = 84" in text and "\\boxed{89}" in text


async def test_sync_invoke_inside_a_running_event_loop(llm: ChatTTC) -> None:
    assert llm.invoke(QUESTION).content == "89"  # would raise "asyncio.run() cannot be called..." if naive


async def test_ainvoke_batch_abatch(llm: ChatTTC) -> None:
    questions = ["What is 2 + 3?", "What is 7 * 8?", QUESTION]
    assert (await llm.ainvoke(questions[0])).content == "5"
    assert [m.content for m in llm.batch(questions)] == ["5", "56", "89"]
    assert [m.content for m in await llm.abatch(questions)] == ["5", "56", "89"]


async def test_astream_gives_the_answer_and_astream_events_the_progress(llm: ChatTTC) -> None:
    chunks = [chunk async for chunk in llm.astream(QUESTION)]
    assert "".join(str(c.content) for c in chunks) == "89"
    events = [event async for event in llm.astream_events(QUESTION, version="v2")]
    stages = [e["data"]["stage"] for e in events if e["event"] == "on_custom_event" and e["name"] == "ttc_progress"]
    assert stages == ["start", "generate", "verify", "select"]
    result = next(e for e in events if e["event"] == "on_custom_event" and e["name"] == "ttc_result")
    assert result["data"]["answer"] == "89" and result["data"]["ledger"]["total"]["samples"] == 4
    nodes = {e["name"] for e in events if e["event"] == "on_chain_start"}
    assert {"ttc:best_of_n", "generate", "verify", "select"} <= nodes
    assert events[-1]["event"] == "on_chat_model_end"


async def test_router_reports_its_bin_and_choice() -> None:
    router = build_router_graph(example_policy(), verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")
    llm = ChatTTC(graph=router, budget=Budget(max_tokens=5000))
    events = [e async for e in llm.astream_events(QUESTION, version="v2")]
    message = events[-1]["data"]["output"]
    meta = message.response_metadata
    assert message.content == "89"
    assert 1 <= meta["bin"] <= 5 and meta["graph"] == "router"
    assert meta["strategy"]["strategy"] in ("best_of_n", "beam_search")
    assert meta["trace"]["choice"]["action"]
    stages = [e["data"]["stage"] for e in events if e["event"] == "on_custom_event" and e["name"] == "ttc_progress"]
    assert stages[:3] == ["start", "estimate", "lookup"] and "run" in stages
    if meta["strategy"]["strategy"] != "best_of_n":  # best-of-N after its probe is drawn in the router itself
        assert any(stage.startswith("run/") for stage in stages)  # the nested strategy's stages too


def test_earlier_turns_become_context() -> None:
    seen: list[dict[str, Any]] = []
    llm = ChatTTC(graph=recording_graph(seen))
    answer = llm.invoke(
        [SystemMessage("Be exact."), HumanMessage("Hi"), AIMessage("Hello!"), HumanMessage("What is 6 * 7?")]
    )
    assert answer.content == "42"
    assert seen[0]["question"] == "What is 6 * 7?"
    assert seen[0]["context"] == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]


def test_a_conversation_must_end_with_a_user_turn(llm: ChatTTC) -> None:
    with pytest.raises(ValueError, match="must end with a user turn"):
        llm.invoke([HumanMessage("Hi"), AIMessage("Hello!")])
    question, context = split_conversation(
        [
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "1", "content": "42"},
            {"role": "user", "content": [{"type": "text", "text": "And so?"}]},
        ]
    )
    assert question == "And so?"
    assert context == [
        {"role": "assistant", "content": "[called tools: f({})]"},
        {"role": "user", "content": "Tool result (1): 42"},
    ]


# -- composition --------------------------------------------------------------------------------------


def test_with_retry_retries_a_failing_graph() -> None:
    attempts: list[int] = []
    real = build_strategy_graph(BestOfNSpec(n=2, seed=0), model="scripted/arith", verifier=ArithmeticStepVerifier())

    async def flaky(inputs: dict[str, Any]) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("transient")
        return dict(await real.ainvoke(inputs))

    llm = ChatTTC(graph=RunnableLambda(flaky)).with_retry(
        retry_if_exception_type=(ConnectionError,), stop_after_attempt=2, wait_exponential_jitter=False
    )
    assert llm.invoke(QUESTION).content == "89"
    assert len(attempts) == 2


async def test_with_fallbacks(llm: ChatTTC) -> None:
    async def broken(inputs: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("model down")

    chain = ChatTTC(graph=RunnableLambda(broken)).with_fallbacks([llm])
    assert (await chain.ainvoke(QUESTION)).content == "89"
    assert chain.invoke(QUESTION).content == "89"


async def test_in_an_lcel_chain(llm: ChatTTC) -> None:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer with a number."), ("human", "What is {a} * {b} + 5?")]
    )
    chain = prompt | llm | StrOutputParser()
    assert chain.invoke({"a": 12, "b": 7}) == "89"
    assert await chain.ainvoke({"a": 12, "b": 7}) == "89"
    assert "".join([piece async for piece in chain.astream({"a": 12, "b": 7})]) == "89"


async def test_in_a_prebuilt_agent_without_tools(llm: ChatTTC) -> None:
    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver

    agent = create_agent(model=llm, tools=[], system_prompt="You solve arithmetic.", checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}
    state = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]}, config)
    answer = state["messages"][-1]
    assert isinstance(answer, AIMessage) and answer.content == "89"
    assert answer.usage_metadata is not None and answer.usage_metadata["total_tokens"] > 0
    assert answer.response_metadata["strategy"]["strategy"] == "best_of_n"
    # a second turn on the same thread (sync), then progress through the agent's event stream
    state = agent.invoke({"messages": [HumanMessage("What is 2 + 3?")]}, config)
    assert [m.content for m in state["messages"]] == [QUESTION, "89", "What is 2 + 3?", "5"]
    events: list[Any] = [e async for e in agent.astream_events({"messages": [HumanMessage("What is 7 * 8?")]}, config)]
    stages = [e["data"]["stage"] for e in events if e["event"] == "on_custom_event" and e["name"] == "ttc_progress"]
    assert stages == ["start", "generate", "verify", "select"]


def test_tools_need_a_model_to_sample_calls_from(llm: ChatTTC) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    graph_only = ChatTTC(graph=build_strategy_graph(BestOfNSpec(n=2), model="scripted/arith"))
    with pytest.raises(ToolCallingNotSupportedError, match="needs a model") as info:
        graph_only.bind_tools([add])
    assert isinstance(info.value, NotImplementedError)
    with pytest.raises(NotImplementedError):
        graph_only.with_structured_output(
            {"title": "Answer", "type": "object", "properties": {"x": {"type": "number"}}}
        )
    assert graph_only.bind_tools([]) is graph_only
    assert llm.bind_tools([]) is llm
    assert llm.bind_tools([add]) is not llm  # tools: tests/test_chat_tools.py


# -- observability ------------------------------------------------------------------------------------


def test_runs_are_named_tagged_and_carry_metadata(llm: ChatTTC) -> None:
    with collect_runs() as collector:
        llm.invoke(QUESTION, budget=Budget(max_samples=8))
    runs = list(_walk(collector.traced_runs))
    graph_run = next(r for r in runs if r.name == "ttc:best_of_n")
    assert {"ttc-agents", "best_of_n"} <= set(graph_run.tags or [])
    metadata = (graph_run.extra or {}).get("metadata", {})
    assert metadata["ttc_strategy"] == "best_of_n" and metadata["ttc_budget"] == {"max_samples": 8}
    chat_run = next(r for r in runs if r.run_type == "llm")
    outputs = chat_run.outputs or {}
    assert outputs["llm_output"]["ledger"]["total"]["samples"] == 4  # spend on the model run


def _walk(runs: list[Any]) -> Iterator[Any]:
    for run in runs:
        yield run
        yield from _walk(run.child_runs)


def test_no_connection_without_langsmith_settings(llm: ChatTTC, monkeypatch: pytest.MonkeyPatch) -> None:
    import langsmith.utils

    for variable in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    assert not langsmith.utils.tracing_is_enabled()
    attempts: list[Any] = []
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        attempts.append(address)
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("no connections in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert llm.invoke(QUESTION).content == "89"
    assert attempts == []
