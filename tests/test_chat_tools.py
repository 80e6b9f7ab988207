"""ChatTTC with tools (issue 16): a real ``create_agent`` loop and a LangGraph ToolNode loop, offline on the
scripted double; voting over normalised tool calls; one budget per agent run."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import BaseModel

import ttc_agents._llm.scripted.provider as scripted
from ttc_agents import BestOfNSpec, Budget
from ttc_agents._core.safe_math import try_evaluate
from ttc_agents._llm.gateway import Sample
from ttc_agents.integrations import ChatTTC
from ttc_agents.integrations._tool_turns import bind_tool_specs, canonical_calls, parse_sample, vote_turn

QUESTION = "What is 12 * 7 + 5?"


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as 12 * 7 + 5."""
    value = try_evaluate(expression)
    if value is None:
        return "error: not an arithmetic expression"
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


class Answer(BaseModel):
    """The final answer."""

    value: int


def questions(count: int = 50, seed: int = 16) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        a, b, c = rng.randint(2, 40), rng.randint(2, 12), rng.randint(1, 99)
        out.append((f"What is {a} * {b} + {c}?", str(a * b + c)))
    return out


@pytest.fixture
def scripted_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every request the scripted provider answers: (n, usage, had tools)."""
    seen: list[Any] = []
    respond = scripted.scripted_respond

    def spy(model: str, messages: Any, optional_params: Any, model_response: Any = None) -> Any:
        response: Any = respond(model, messages, optional_params, model_response)
        seen.append((optional_params.get("n"), response.usage, bool(optional_params.get("tools"))))
        return response

    monkeypatch.setattr(scripted, "scripted_respond", spy)
    return seen


def agent_accuracy(n: int, seed: int = 0) -> tuple[float, int]:
    """Final-answer accuracy of a create_agent loop over 50 seeded questions, and the invalid samples seen."""
    llm = ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=n, seed=seed), run_budget=Budget(max_usd=0.001))
    agent = create_agent(model=llm, tools=[calculator])
    right = invalid = 0
    for i, (question, answer) in enumerate(questions()):
        state = agent.invoke({"messages": [HumanMessage(question)]}, {"configurable": {"thread_id": f"q{i}"}})
        right += state["messages"][-1].content == answer
        for message in state["messages"]:
            if isinstance(message, AIMessage):
                invalid += message.response_metadata["ttc_turn"]["invalid"]
            if isinstance(message, ToolMessage):
                assert message.status == "success"  # no malformed call ever reached the tool
    return right / 50, invalid


# -- the agent loops ---------------------------------------------------------------------------------


async def test_create_agent_runs_with_tools_under_one_run_budget(scripted_calls: list[Any]) -> None:
    # a turn reserves its worst case first: 8 x 64 completion tokens x 2e-7 USD, about 1e-4 USD
    budget = Budget(max_usd=0.0003, max_samples=40)
    spec = BestOfNSpec(n=8, seed=0, max_tokens=64)
    llm = ChatTTC(model="scripted/arith", strategy=spec, verifier="arithmetic", run_budget=budget)
    agent = create_agent(model=llm, tools=[calculator])
    config: Any = {"configurable": {"thread_id": "run-1"}}
    state = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]}, config)
    kinds = [type(m).__name__ for m in state["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    call = state["messages"][1].tool_calls[0]
    assert call["name"] == "calculator" and call["args"] == {"expression": "12 * 7 + 5"}
    assert state["messages"][2].content == "89" and state["messages"][-1].content == "89"
    # one request with n=8 per turn, tools passed through LiteLLM
    assert [(n, tools) for n, _, tools in scripted_calls] == [(8, True), (8, True)]
    ledger = llm.run_ledger("run-1")
    assert ledger is not None
    total = ledger.total
    assert budget.max_usd is not None and total.samples == 16 and total.charged_usd <= budget.max_usd
    assert total.total_tokens == sum(u.total_tokens for _, u, _ in scripted_calls)
    # usage_metadata per message adds up to the run's ledger
    per_message = [m.usage_metadata for m in state["messages"] if isinstance(m, AIMessage)]
    assert sum(u["total_tokens"] for u in per_message if u) == total.total_tokens
    final = state["messages"][-1].response_metadata
    assert final["ttc_run"]["turns"] == 2 and final["ttc_run"]["spent"]["samples"] == 16
    assert final["ttc_turn"]["kind"] == "text" and "ttc_fallback" not in final


def test_toolnode_loop_end_to_end_and_the_budget_holds_across_turns() -> None:
    budget = Budget(max_samples=26)
    llm = ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=8, seed=1), run_budget=budget)
    bound = llm.bind_tools([calculator])

    def model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode([calculator]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    graph = builder.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "toolnode"}}
    state = graph.invoke({"messages": [HumanMessage(QUESTION)]}, config)
    assert state["messages"][-1].content == "89"
    # the second question on the same thread: 16 samples are spent, 10 left -> full turn (8), then 2 left
    # -> the next turn falls back to one sample and says so
    state = graph.invoke({"messages": [HumanMessage("What is 7 * 8 + 3?")]}, config)
    answers = [m for m in state["messages"] if isinstance(m, AIMessage)]
    assert [m.response_metadata["ttc_turn"]["samples"] for m in answers] == [8, 8, 8, 1]
    assert "nearly spent (max_samples)" in answers[-1].response_metadata["ttc_fallback"]
    assert answers[-1].content == "59"
    assert answers[-1].response_metadata["ttc_run"]["fallbacks"] == 1
    # a third question: one sample is left, then none; the run never overspends
    state = graph.invoke({"messages": [HumanMessage("What is 2 + 3?")]}, config)
    last = state["messages"][-1]
    ledger = llm.run_ledger("toolnode")
    assert ledger is not None and ledger.total.samples <= 26
    assert last.content == "" and last.response_metadata["stopped_by"] == "max_samples"
    assert "spent" in last.response_metadata["ttc_fallback"]


def test_voting_over_tool_calls_beats_a_single_sample() -> None:
    single, _ = agent_accuracy(n=1)
    voted, invalid = agent_accuracy(n=8)
    assert invalid > 0  # malformed and invalid calls were sampled ...
    assert voted >= 0.9 and voted - single >= 0.2, (single, voted)  # ... and never won (tool statuses)


# -- selection ---------------------------------------------------------------------------------------


def _call(name: str, arguments: str) -> Sample:
    return Sample(
        "", "tool_calls", None, ({"id": "c", "type": "function", "function": {"name": name, "arguments": arguments}},)
    )


def test_malformed_calls_cannot_win_even_as_the_plurality() -> None:
    binding = bind_tool_specs([calculator])
    broken = '{"expression": "12 * 7 + 5"'
    samples = [_call("calculator", broken)] * 3 + [
        _call("calculator", '{"expression": "12 * 7 + 5"}'),
        _call("calculator", '{ "expression" : "12 * 7 + 5" }'),
        _call("calculator", '{"expression": "13 * 7 + 5"}'),
        _call("other", '{"expression": "12 * 7 + 5"}'),  # not a bound tool
        _call("calculator", '{"expr": "12 * 7 + 5"}'),  # misses the required argument
        _call("calculator", '["12 * 7 + 5"]'),  # not an object
    ]
    vote = vote_turn(samples, binding)
    assert vote.kind == "tool_calls" and vote.calls[0].args == {"expression": "12 * 7 + 5"}
    assert vote.invalid == 6 and vote.votes == {
        'calculator({"expression":"12 * 7 + 5"})': 2,
        'calculator({"expression":"13 * 7 + 5"})': 1,
    }
    assert vote_turn([_call("calculator", broken)] * 4, binding).kind == "none"


def test_calls_are_normalised_and_text_competes_with_calls() -> None:
    binding = bind_tool_specs([calculator, Answer])
    a = parse_sample(_call("Answer", '{"value": 89}'), binding)
    b = parse_sample(_call("Answer", '{\n  "value":89 }'), binding)
    assert a is not None and b is not None and canonical_calls(a) == canonical_calls(b)
    assert parse_sample(_call("Answer", '{"value": "eighty-nine"}'), binding) is None  # pydantic says no
    text = [Sample("The answer is \\boxed{89}.")] * 3
    assert vote_turn([*text, _call("Answer", '{"value": 89}')], binding).kind == "text"
    assert vote_turn([*text, _call("Answer", '{"value": 89}')], binding, require_call=True).kind == "tool_calls"


async def test_structured_output_votes_over_validated_objects() -> None:
    llm = ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=8, seed=0))
    structured = llm.with_structured_output(Answer, include_raw=True)
    right = 0
    for question, answer in questions(20):
        result: Any = await structured.ainvoke(question)
        raw = result["raw"]
        assert raw.response_metadata["ttc_turn"]["kind"] == "tool_calls"
        assert result["parsing_error"] is None and isinstance(result["parsed"], Answer)
        right += str(result["parsed"].value) == answer
    assert right >= 17


# -- streaming, run keys, bounded memory -------------------------------------------------------------


async def test_astream_emits_tool_call_chunks_and_text_chunks() -> None:
    llm = ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=4, seed=0), output="solution")
    bound = llm.bind_tools([calculator])
    chunks = [c async for c in bound.astream(QUESTION)]
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    invoked = await bound.ainvoke(QUESTION)
    assert merged.tool_calls == invoked.tool_calls and merged.tool_call_chunks[0]["index"] == 0
    assert json.loads(merged.tool_call_chunks[0]["args"] or "{}") == {"expression": "12 * 7 + 5"}
    assert merged.usage_metadata == invoked.usage_metadata and chunks[-1].chunk_position == "last"
    conversation = [HumanMessage(QUESTION), invoked, ToolMessage("89", tool_call_id=invoked.tool_calls[0]["id"])]
    text = [c async for c in bound.astream(conversation)]
    assert len(text) > 2 and "".join(str(c.content) for c in text) == "The answer is \\boxed{89}."


def test_runs_are_keyed_by_thread_and_their_ledgers_are_bounded() -> None:
    llm = ChatTTC(
        model="scripted/arith", strategy=BestOfNSpec(n=2, seed=0), run_budget=Budget(max_samples=100), max_runs=3
    )
    bound = llm.bind_tools([calculator])
    for i in range(5):
        bound.invoke(QUESTION, {"configurable": {"thread_id": f"t{i}"}})
    bound.invoke(QUESTION, {"configurable": {"thread_id": "t4"}})
    assert llm.run_ledger("t0") is None and llm.run_ledger("t1") is None
    t4 = llm.run_ledger("t4")
    assert t4 is not None and t4.total.samples == 4
    assert len(llm._runs) == 3
    bound.invoke(QUESTION, {"metadata": {"ttc_run_id": "explicit"}})
    assert llm.run_ledger("explicit") is not None
    llm.reset_runs()
    assert len(llm._runs) == 0


async def test_a_workflow_agent_reports_progress_per_turn() -> None:
    llm = ChatTTC(workflow="beam", config="examples/workflows.yaml", run_budget=Budget(max_samples=40))
    agent = create_agent(model=llm, tools=[calculator])
    config: Any = {"configurable": {"thread_id": "wf"}}
    events = [e async for e in agent.astream_events({"messages": [HumanMessage(QUESTION)]}, config, version="v2")]
    stages = [e["data"]["stage"] for e in events if e["event"] == "on_custom_event" and e["name"] == "ttc_progress"]
    assert stages == ["tools/sample", "tools/select"] * 2
    assert events[-1]["data"]["output"]["messages"][-1].content == "89"


@pytest.mark.parametrize(
    "budget",
    [Budget(max_samples=19), Budget(max_tokens=1200), Budget(max_usd=0.00012), Budget(max_samples=3)],
    ids=["samples", "tokens", "usd", "tiny"],
)
def test_a_run_never_overspends_its_budget(budget: Budget, scripted_calls: list[Any]) -> None:
    llm = ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=8, seed=2, max_tokens=64), run_budget=budget)
    agent = create_agent(model=llm, tools=[calculator])
    config: Any = {"configurable": {"thread_id": "tight"}}
    for question, _ in questions(4):
        agent.invoke({"messages": [HumanMessage(question)]}, config)
    ledger = llm.run_ledger("tight")
    assert ledger is not None
    spent = ledger.total
    assert spent.samples == sum(n for n, _, _ in scripted_calls)  # every request is in the run's ledger
    assert spent.total_tokens == sum(u.total_tokens for _, u, _ in scripted_calls)
    for unit, limit in budget.limits().items():
        assert spent.in_units()[unit] <= limit
    assert ledger.stopped_by is not None  # the budget did bind


async def test_the_gateway_returns_tool_calls_booked_like_any_sample() -> None:
    from ttc_agents import Ledger, get_default_gateway

    binding = bind_tool_specs([calculator])
    ledger = Ledger(budget=Budget(max_samples=4))
    batch = await get_default_gateway().sample(
        "scripted/arith", [{"role": "user", "content": QUESTION}], 4, ledger=ledger, seed=0, tools=list(binding.tools)
    )
    assert len(batch.samples) == 4 and all(s.tool_calls for s in batch.samples)
    call = batch.samples[0].tool_calls[0]  # type: ignore[index]
    assert call["type"] == "function" and call["function"]["name"] == "calculator"
    assert ledger.total.samples == 4 and ledger.total.calls == 1


def test_without_a_thread_one_agent_invocation_is_one_run() -> None:
    llm = ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=4, seed=0), run_budget=Budget(max_samples=40))
    agent = create_agent(model=llm, tools=[calculator])
    keys = []
    for _ in range(2):
        state = agent.invoke({"messages": [HumanMessage(QUESTION)]})
        runs = [m.response_metadata["ttc_run"] for m in state["messages"] if isinstance(m, AIMessage)]
        assert [r["turns"] for r in runs] == [1, 2] and runs[0]["key"] == runs[1]["key"]
        keys.append(runs[0]["key"])
        ledger = llm.run_ledger(runs[0]["key"])
        assert ledger is not None and ledger.total.samples == 8
    assert keys[0] != keys[1] and keys[0].startswith("langgraph_run:")


# -- the scripted double's tool calls -----------------------------------------------------------------


def _respond(question: str, n: int, **params: Any) -> Any:
    tools = list(bind_tool_specs([calculator]).tools)
    request = {"n": n, "tools": tools, "seed": 0, **params}
    return scripted.scripted_respond("scripted/arith", [{"role": "user", "content": question}], request)


def test_the_double_calls_the_calculator_with_a_seeded_per_question_error_rate() -> None:
    wrong = malformed = total = 0
    for question, _ in questions(100, seed=3):
        response = _respond(question, 8)
        for choice in response.choices:
            assert choice.finish_reason == "tool_calls"
            arguments = choice.message.tool_calls[0].function.arguments
            total += 1
            try:
                expression = json.loads(arguments)["expression"]
            except json.JSONDecodeError:
                malformed += 1
                continue
            wrong += expression != question.removeprefix("What is ").removesuffix("?")
        assert _respond(question, 8).choices[3].message.tool_calls[0].function.arguments == (
            response.choices[3].message.tool_calls[0].function.arguments
        )  # seeded: the same request, the same calls
    rate = (wrong + malformed) / total
    assert 0.25 < rate < 0.5 and 0.2 < malformed / (wrong + malformed) < 0.5
    greedy = _respond(QUESTION, 4, temperature=0)
    assert len({c.message.tool_calls[0].function.arguments for c in greedy.choices}) == 1
    text = _respond(QUESTION, 2, tool_choice="none")
    assert text.choices[0].message.tool_calls is None and "\\boxed{89}" in text.choices[0].message.content


def test_agent_streams_messages_as_tool_call_chunks_then_text_chunks() -> None:
    llm = ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=4, seed=0), output="solution")
    agent = create_agent(model=llm, tools=[calculator])
    streamed = [m for m, _ in agent.stream({"messages": [HumanMessage(QUESTION)]}, stream_mode="messages")]
    kinds = [type(m).__name__ for m in streamed]
    assert kinds[:2] == ["AIMessageChunk", "ToolMessage"] and set(kinds[2:]) == {"AIMessageChunk"}
    first = streamed[0]
    assert isinstance(first, AIMessageChunk) and first.tool_call_chunks[0]["name"] == "calculator"
    assert "".join(str(m.content) for m in streamed[2:]) == "The answer is \\boxed{89}."
    assert len({m.id for m in streamed[2:]}) == 1  # one message, no duplicate final copy
