"""Sync pipelines (issue 18): every strategy graph and the router run under LangGraph's sync API.

Each graph is mounted as a node of a SYNC parent graph (a plain ``def`` node after it), the way most
LangGraph pipelines are written, and run with ``invoke``, ``batch`` and ``stream``: from plain sync
code, from inside a running event loop (an ``async def`` calling the sync API, as in a notebook), and
from several threads at once. What a user relies on is checked against ``ainvoke`` of the same graph
with the same seeds: the same answers, the same candidates and the same ledger bookings (per node and
model), and a budget that still holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import MessagesState
from langgraph.graph.state import CompiledStateGraph
from pydantic import SecretStr

from ttc_agents import (
    AdaptiveSpec,
    ArithmeticStepVerifier,
    BeamSearchSpec,
    BestOfNSpec,
    Budget,
    DVTSSpec,
    Gateway,
    HybridSpec,
    ModelSpec,
    ParticleFilterSpec,
    RevisionSpec,
    build_strategy_graph,
)
from ttc_agents._core.budget import LedgerSnapshot, Usage
from ttc_agents._llm.gateway import get_default_gateway
from ttc_agents._llm.sync import run_sync
from ttc_agents._routing.policy import Cost, Policy, PolicyAction, PolicyEntry
from ttc_agents.graphs.router import Router
from ttc_agents.integrations import as_node
from ttc_agents.testing import FakeOpenAIServer
from ttc_agents.verifiers import LLMJudgePRM

MODEL = "scripted/arith"
QUESTIONS = ["What is 12 * 7 + 5?", "What is 3 + 4 * 2?", "What is 9 * 9 - 10?", "What is 6 * 7 + 1?"]
"""Distinct questions: the LLM judge keeps the scores it computed, so a graph that meets a question
again books no judge calls for it. Every comparison below runs on freshly built graphs."""


class Pipeline(TypedDict, total=False):
    """A user's sync pipeline state: the keys it shares with the mounted graph, and its own."""

    question: str
    budget: Budget | None
    answer: str | None
    candidates: list[Any]
    ledger: LedgerSnapshot
    stopped_by: str | None
    strategy: dict[str, Any] | None
    trace: dict[str, Any]
    report: str


def gateway() -> Gateway:
    """A fresh gateway per graph (its per-loop semaphores see both the caller's loop and the sync one)."""
    base = get_default_gateway()
    return Gateway(retry=base.retry, resolvers=base.resolvers)


# A concurrency limit makes the gateway hold a semaphore per event loop: sync and async runs share it.
SPEC = ModelSpec(name=MODEL, max_tokens=128, max_concurrency=2)


def strategy(spec: Any) -> Callable[[], CompiledStateGraph[Any, None, Any, Any]]:
    def build() -> CompiledStateGraph[Any, None, Any, Any]:
        gw = gateway()
        return build_strategy_graph(spec, model=SPEC, verifier=LLMJudgePRM(MODEL, gateway=gw), gateway=gw)

    return build


def policy(action: BestOfNSpec | BeamSearchSpec) -> Policy:
    table = [
        PolicyEntry(
            bin=bin_,
            budget=8,
            action=PolicyAction(model=MODEL, strategy=action),
            accuracy=0.9 - 0.1 * bin_,
            cv_accuracy=0.9 - 0.1 * bin_,
            cost=Cost(samples=8, tokens=800),
            questions=10,
        )
        for bin_ in range(1, 6)
    ]
    return Policy(
        models=[MODEL],
        verifier="arithmetic",
        dataset="synthetic",
        thresholds=[0.5, 0.7, 0.85, 0.95],
        table=table,
        candidates=table,
    )


def router(action: BestOfNSpec | BeamSearchSpec) -> Callable[[], CompiledStateGraph[Any, None, Any, Any]]:
    def build() -> CompiledStateGraph[Any, None, Any, Any]:
        return Router(
            policy(action),
            models={MODEL: SPEC},
            verifier=ArithmeticStepVerifier(),
            verifier_name="arithmetic",
            gateway=gateway(),
            probe_seed=0,
        ).graph

    return build


GRAPHS: dict[str, Callable[[], CompiledStateGraph[Any, None, Any, Any]]] = {
    "best_of_n": strategy(BestOfNSpec(n=4, seed=0)),
    "beam_search": strategy(BeamSearchSpec(n=4, width=2, max_rounds=5, seed=0)),
    "dvts": strategy(DVTSSpec(n=4, width=2, max_rounds=5, seed=0)),
    "revision": strategy(RevisionSpec(attempts=3, chains=2, seed=0)),
    "hybrid": strategy(HybridSpec(n=4, sequential_ratio=1.0, seed=0)),
    "adaptive": strategy(AdaptiveSpec(max_n=8, wave=4, seed=0)),
    "particle_filter": strategy(ParticleFilterSpec(n=4, max_rounds=5, seed=0)),
    # best-of-N reusing the probe (the router's own nodes call the model) ...
    "router_best_of_n": router(BestOfNSpec(n=8, seed=0)),
    # ... and a strategy graph run inside the router's ``run`` node.
    "router_beam_search": router(BeamSearchSpec(n=4, width=2, max_rounds=5, seed=0)),
}

TIGHT = Budget(max_tokens=700)
"""Small enough to stop every graph early (the budget-holds check)."""


def pipeline(name: str) -> CompiledStateGraph[Pipeline, None, Pipeline, Pipeline]:
    """A sync parent graph: the ttc-agents graph mounted as a node, then a plain sync node."""

    def report(state: Pipeline) -> Pipeline:
        return {"report": f"{state['answer']} ({state['ledger'].total.samples} samples)"}

    graph = StateGraph(Pipeline)
    graph.add_node("ttc", GRAPHS[name]())
    graph.add_node("report", report)
    graph.add_edge(START, "ttc")
    graph.add_edge("ttc", "report")
    graph.add_edge("report", END)
    return graph.compile()


def inputs(question: str, budget: Budget | None = None) -> Pipeline:
    return {"question": question, "budget": budget}


def facts(result: Mapping[str, Any]) -> dict[str, Any]:
    """What a user relies on: answer, stop reason, candidates, and every booking by node and model."""
    ledger = result["ledger"]
    return {
        "answer": result["answer"],
        "stopped_by": result["stopped_by"],
        "report": result["report"],
        "candidates": [(c.text, c.answer, c.score) for c in result["candidates"]],
        "bookings": sorted(((e.node, e.model), booked(e.usage)) for e in ledger.entries),
        "strategy": result.get("strategy"),
        "bin": result.get("trace", {}).get("bin"),
    }


def booked(usage: Usage) -> dict[str, float]:
    """A booking, its USD to 12 significant digits: concurrent runs add the same prices in another order."""
    return {key: float(f"{value:.12g}") for key, value in usage.as_dict().items()}


def assert_within(result: Mapping[str, Any], budget: Budget) -> None:
    assert budget.max_tokens is not None
    assert result["ledger"].total.charged_tokens <= budget.max_tokens
    assert result["stopped_by"] == "max_tokens"


def reference(graph: CompiledStateGraph[Pipeline, None, Pipeline, Pipeline], *runs: Pipeline) -> list[dict[str, Any]]:
    """The async API's results (``ainvoke``, one run at a time, on a loop of its own)."""

    async def run_all() -> list[dict[str, Any]]:
        return [facts(await graph.ainvoke(run)) for run in runs]

    return asyncio.run(run_all())


RUNS = [inputs(QUESTIONS[0]), inputs(QUESTIONS[1]), inputs(QUESTIONS[2], TIGHT)]


def last_value(graph: CompiledStateGraph[Pipeline, None, Pipeline, Pipeline], run: Pipeline) -> Pipeline:
    values = list(graph.stream(run, stream_mode="values"))
    result: Pipeline = values[-1]
    return result


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_sync_invoke_batch_and_stream_match_ainvoke(name: str) -> None:
    expected = reference(pipeline(name), *RUNS)
    assert [e["answer"] for e in expected[:2]] == ["89", "11"]
    assert expected[2]["stopped_by"] == "max_tokens"  # the budget cut this run short

    invoked = pipeline(name)
    assert [facts(invoked.invoke(run)) for run in RUNS] == expected
    assert [facts(result) for result in pipeline(name).batch(RUNS)] == expected
    streamed = pipeline(name)
    assert [facts(last_value(streamed, run)) for run in RUNS] == expected
    assert_within(invoked.invoke(inputs(QUESTIONS[3], TIGHT)), TIGHT)


@pytest.mark.parametrize("name", ["best_of_n", "revision"])
def test_stream_with_subgraphs_shows_the_inner_nodes(name: str) -> None:
    graph = pipeline(name)
    updates = list(graph.stream(inputs(QUESTIONS[0]), stream_mode="updates", subgraphs=True))
    inner = {node for namespace, update in updates if namespace for node in update}
    outer = {node for namespace, update in updates if not namespace for node in update}
    assert {"start", "generate", "verify", "select"} <= inner
    assert outer == {"ttc", "report"}


@pytest.mark.parametrize("name", sorted(GRAPHS))
async def test_sync_api_inside_a_running_event_loop(name: str) -> None:
    """A sync pipeline called from async code (a notebook cell, an async web handler): the sync path
    must neither call ``asyncio.run`` on the running loop nor deadlock it."""
    awaited = pipeline(name)
    expected = [facts(await awaited.ainvoke(run)) for run in RUNS]
    invoked = pipeline(name)
    assert [facts(invoked.invoke(run)) for run in RUNS] == expected
    assert [facts(result) for result in pipeline(name).batch(RUNS)] == expected
    streamed = pipeline(name)
    assert [facts(last_value(streamed, run)) for run in RUNS] == expected
    assert_within(invoked.invoke(inputs(QUESTIONS[3], TIGHT)), TIGHT)
    # The async API still works on this loop after sync runs of the same graph and gateway: the
    # same result as a graph that made the same runs through the async API.
    await awaited.ainvoke(inputs(QUESTIONS[3], TIGHT))
    assert facts(await invoked.ainvoke(inputs(QUESTIONS[3]))) == facts(await awaited.ainvoke(inputs(QUESTIONS[3])))


@pytest.mark.parametrize("name", ["beam_search", "router_best_of_n", "router_beam_search"])
def test_sync_pipelines_in_threads(name: str) -> None:
    """Several threads invoke one compiled sync pipeline (one graph, one gateway) at once."""
    runs = [inputs(q) for q in QUESTIONS[:3]] + [inputs(QUESTIONS[3], TIGHT)]
    expected = reference(pipeline(name), *runs)
    shared = pipeline(name)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda run: facts(shared.invoke(run)), runs))
    assert got == expected


def test_sync_api_nested_in_the_background_loop() -> None:
    """A sync call made from a coroutine that already runs on the library's sync loop (a sync
    pipeline inside an async node run by ChatTTC, say) runs on a fresh loop in a worker thread: no
    deadlock, the same result, and the gateway works on that fresh loop (and then on the next one)."""
    (expected,) = reference(pipeline("beam_search"), inputs(QUESTIONS[0]))

    async def nested() -> dict[str, Any]:
        return facts(pipeline("beam_search").invoke(inputs(QUESTIONS[0])))

    assert run_sync(nested()) == expected
    assert run_sync(nested()) == expected


def test_every_model_node_has_both_paths() -> None:
    """No node of any graph is async-only (which is what makes a sync parent graph fail)."""
    for name, build in GRAPHS.items():
        graph = build()
        for node, spec in graph.builder.nodes.items():
            runnable: Any = spec.runnable
            assert getattr(runnable, "func", None) is not None, f"{name}.{node} has no sync path"
            assert getattr(runnable, "afunc", None) is not None, f"{name}.{node} has no async path"


def test_the_gateway_over_http_from_fresh_loops_and_threads() -> None:
    """The gateway and LiteLLM's HTTP clients behind it (aiohttp, cached per event loop) through every
    way a sync or async caller can drive them: the library's sync loop, a fresh loop per call
    (``asyncio.run``), and threads doing either, under a concurrency limit."""
    with FakeOpenAIServer() as server:
        spec = ModelSpec(
            name="openai/fake", api_base=server.url, api_key=SecretStr("none"), max_tokens=32, max_concurrency=1
        )
        gw = gateway()
        verifier = ArithmeticStepVerifier()
        graph = build_strategy_graph(BestOfNSpec(n=4, seed=0), model=spec, verifier=verifier, gateway=gw)
        question = {"question": "What is 2 + 3?"}

        def sync_run(_: object = None) -> tuple[Any, ...]:
            return bookings(graph.invoke(question))

        def async_run(_: object = None) -> tuple[Any, ...]:
            return bookings(asyncio.run(graph.ainvoke(question)))

        expected = sync_run()
        assert expected[1][0][1]["samples"] == 4
        for _ in range(3):
            assert async_run() == expected
            assert sync_run() == expected
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            assert list(pool.map(sync_run, range(6))) == [expected] * 6
            assert list(pool.map(async_run, range(6))) == [expected] * 6


def bookings(result: Any) -> tuple[Any, ...]:
    return result["answer"], sorted(((e.node, e.model), booked(e.usage)) for e in result["ledger"].entries)


@pytest.mark.parametrize("name", ["best_of_n", "router_beam_search"])
def test_as_node_in_a_sync_message_graph(name: str) -> None:
    """``as_node`` in a sync chat pipeline: the same answer message and spend as its async run."""

    class Chat(MessagesState, total=False):
        ttc: dict[str, Any]

    def chat() -> CompiledStateGraph[Chat, None, Chat, Chat]:
        graph = StateGraph(Chat)
        graph.add_node("solve", as_node(GRAPHS[name](), messages_key="messages", output_key="ttc"))
        graph.add_edge(START, "solve")
        graph.add_edge("solve", END)
        return graph.compile()

    turn: Chat = {"messages": [HumanMessage(QUESTIONS[0])]}
    expected = asyncio.run(chat().ainvoke(turn))
    for result in (chat().invoke(turn), chat().batch([turn])[0], list(chat().stream(turn, stream_mode="values"))[-1]):
        message = result["messages"][-1]
        assert isinstance(message, AIMessage) and message.content == "89"
        assert message.usage_metadata == expected["messages"][-1].usage_metadata
        assert bookings(result["ttc"]) == bookings(expected["ttc"])


@pytest.mark.parametrize("name", ["beam_search", "router_beam_search", "router_best_of_n"])
def test_a_sync_parent_with_a_sync_only_checkpointer(name: str) -> None:
    """A sync parent checkpointed by ``SqliteSaver`` (which refuses async calls): every graph below it,
    the strategy graph the router runs included, stays on the sync API and is checkpointed."""
    with contextlib.closing(sqlite3.connect(":memory:", check_same_thread=False)) as connection:
        saver = SqliteSaver(connection)
        graph = StateGraph(Pipeline)
        graph.add_node("ttc", GRAPHS[name]())
        graph.add_edge(START, "ttc")
        graph.add_edge("ttc", END)
        parent = graph.compile(checkpointer=saver)
        thread: RunnableConfig = {"configurable": {"thread_id": "sync"}}
        result = parent.invoke(inputs(QUESTIONS[0]), thread)
        assert result["answer"] == "89"
        assert bookings(result) == bookings(asyncio.run(pipeline(name).ainvoke(inputs(QUESTIONS[0]))))
        assert parent.get_state(thread).values["answer"] == "89"


def test_router_batch_under_one_total_budget_matches_abatch() -> None:
    """``Router.batch``: the sync twin of ``abatch`` (estimate all, split one total budget, run)."""

    def fresh() -> Router:
        return Router(
            policy(BestOfNSpec(n=8, seed=0)),
            models={MODEL: SPEC},
            verifier=ArithmeticStepVerifier(),
            verifier_name="arithmetic",
            gateway=gateway(),
            probe_seed=0,
        )

    total = 3000
    expected = asyncio.run(fresh().abatch(QUESTIONS, total=total, max_concurrency=2))
    results = fresh().batch(QUESTIONS, total=total, max_concurrency=2)
    assert [r["answer"] for r in results] == [r["answer"] for r in expected]
    assert [bookings(r) for r in results] == [bookings(r) for r in expected]
    assert sum(r["ledger"].total.charged_tokens for r in results) <= total
