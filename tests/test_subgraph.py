"""ttc-agents graphs inside a parent StateGraph that has its own ``operator.add`` list keys.

Two ways to mount: the compiled graph directly as a node, and through ``as_node``. Neither may
duplicate the parent's lists (see STACK.md: a subgraph sharing an ``operator.add`` key duplicates it).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.errors import InvalidUpdateError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from ttc_agents import ArithmeticStepVerifier, BeamSearchSpec, BestOfNSpec, Budget, Candidate, build_strategy_graph
from ttc_agents.graphs.router import build_router_graph
from ttc_agents.integrations import as_node, example_policy

QUESTION = "What is 12 * 7 + 5?"
OLD = Candidate(steps=("an earlier candidate",), answer="1")


def strategy_graph() -> Any:
    return build_strategy_graph(
        BeamSearchSpec(n=4, width=2, seed=0), model="scripted/arith", verifier=ArithmeticStepVerifier()
    )


def router_graph() -> Any:
    return build_router_graph(example_policy(), verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")


class Parent(TypedDict, total=False):
    """A parent whose list keys collide with the subgraph's names and use ``operator.add``."""

    question: str
    budget: Budget | None
    messages: Annotated[list[Any], operator.add]
    candidates: Annotated[list[Any], operator.add]
    context: Annotated[list[Any], operator.add]
    answer: str | None
    ledger: Any
    stopped_by: Any
    strategy: Any
    trace: Any


def seed(state: Parent) -> Parent:
    """A node that adds to every list before the subgraph runs."""
    return {
        "messages": [{"role": "user", "content": state["question"]}],
        "candidates": [OLD],
        "context": [{"role": "user", "content": "Earlier turn."}],
    }


@pytest.mark.parametrize("make", [strategy_graph, router_graph], ids=["beam_search", "router"])
async def test_a_compiled_graph_mounted_directly_duplicates_nothing(make: Any) -> None:
    sub = make()
    builder = StateGraph(Parent)
    builder.add_node("seed", seed)
    builder.add_node("ttc", sub)
    builder.add_edge(START, "seed")
    builder.add_edge("seed", "ttc")
    builder.add_edge("ttc", END)
    parent = builder.compile()

    result = await parent.ainvoke({"question": QUESTION, "budget": Budget(max_tokens=6000)})
    alone = await sub.ainvoke({"question": QUESTION, "budget": Budget(max_tokens=6000)})
    assert result["answer"] == alone["answer"] == "89"
    assert len(result["messages"]) == 1  # the parent's own message, not copied back
    assert len(result["context"]) == 1
    assert result["candidates"][0] is OLD
    assert len(result["candidates"]) == 1 + len(alone["candidates"])  # each new candidate exactly once
    assert result["ledger"].total.samples == alone["ledger"].total.samples


async def test_two_direct_mounts_cannot_run_in_parallel_branches() -> None:
    builder = StateGraph(Parent)
    builder.add_node("a", strategy_graph())
    builder.add_node("b", router_graph())
    builder.add_edge(START, "a")
    builder.add_edge(START, "b")
    builder.add_edge("a", END)
    builder.add_edge("b", END)
    with pytest.raises(InvalidUpdateError):  # both write `answer`, `ledger`, ...: use as_node instead
        await builder.compile().ainvoke({"question": QUESTION})


class Chat(TypedDict, total=False):
    """A message-based parent with its own lists."""

    messages: Annotated[list[AnyMessage], add_messages]
    candidates: Annotated[list[Any], operator.add]
    notes: Annotated[list[str], operator.add]
    search: dict[str, Any]
    routed: dict[str, Any]


async def test_as_node_in_parallel_branches_of_a_message_graph() -> None:
    builder = StateGraph(Chat)
    builder.add_node("note", lambda state: {"notes": ["started"], "candidates": [OLD]})
    builder.add_node(
        "search", as_node(strategy_graph(), messages_key="messages", output_key="search", candidates_key="candidates")
    )
    builder.add_node(
        "route", as_node(router_graph(), messages_key="messages", output_key="routed", candidates_key="candidates")
    )
    builder.add_edge(START, "note")
    builder.add_edge("note", "search")
    builder.add_edge("note", "route")
    builder.add_edge(["search", "route"], END)
    parent = builder.compile()

    result = await parent.ainvoke({"messages": [HumanMessage("Hi"), AIMessage("Hello"), HumanMessage(QUESTION)]})
    messages = result["messages"]
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "HumanMessage",
        "AIMessage",
        "AIMessage",
    ]
    assert {m.content for m in messages[3:]} == {"89"}
    graphs = {m.response_metadata["graph"] for m in messages[3:]}
    assert graphs == {"beam_search", "router"}
    assert all(m.usage_metadata and m.usage_metadata["total_tokens"] > 0 for m in messages[3:])
    search, routed = result["search"], result["routed"]
    assert search["answer"] == routed["answer"] == "89"
    assert 1 <= routed["trace"]["bin"] <= 5
    assert result["notes"] == ["started"]
    assert result["candidates"][0] is OLD
    assert len(result["candidates"]) == 1 + len(search["candidates"]) + len(routed["candidates"])


async def test_as_node_with_plain_keys_and_a_budget() -> None:
    class Plain(TypedDict, total=False):
        query: str
        limits: Budget
        history: list[dict[str, Any]]
        result: dict[str, Any]

    graph = build_strategy_graph(BestOfNSpec(n=8, seed=0), model="scripted/arith", verifier=ArithmeticStepVerifier())
    builder = StateGraph(Plain)
    builder.add_node(
        "ttc", as_node(graph, input_key="query", budget_key="limits", context_key="history", output_key="result")
    )
    builder.add_edge(START, "ttc")
    builder.add_edge("ttc", END)
    result = await builder.compile().ainvoke(
        {"query": "What is 7 * 8?", "limits": Budget(max_samples=3), "history": [{"role": "user", "content": "Hi"}]}
    )
    assert result["result"]["answer"] == "56"
    assert result["result"]["ledger"].total.samples == 3
    assert result["result"]["stopped_by"] == "max_samples"


async def test_subgraph_progress_streams_through_the_parent() -> None:
    builder = StateGraph(Parent)
    builder.add_node("ttc", strategy_graph())
    builder.add_edge(START, "ttc")
    builder.add_edge("ttc", END)
    seen = [
        (namespace, list(chunk))
        async for namespace, chunk in builder.compile().astream(
            {"question": QUESTION}, stream_mode="updates", subgraphs=True
        )
    ]
    nested = [nodes for namespace, nodes in seen if namespace and namespace[0].startswith("ttc:")]
    assert ["start"] in nested and ["select"] in nested
