"""Unobserved ainvoke runs a strategy graph's nodes directly (ttc_agents._routing.direct); observed runs
(callbacks, streams, checkpointers, parent graphs) go through LangGraph. Both give the same result."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel

from ttc_agents import (
    AdaptiveSpec,
    BeamSearchSpec,
    BestOfNSpec,
    Budget,
    DVTSSpec,
    RevisionSpec,
    StrategySpec,
    build_strategy_graph,
)
from ttc_agents._routing.direct import DirectStateGraph, compile_direct
from ttc_agents.verifiers import ArithmeticStepVerifier

MODEL = "scripted/arith"
QUESTIONS = ["What is 12 * 7 + 5?", "What is (3 + 4) * 6 - 2?", "What is 81 / 9 + 17 * 3?"]
SPECS: list[StrategySpec] = [
    BestOfNSpec(n=6, seed=1),
    BeamSearchSpec(n=8, width=2, max_rounds=6, seed=2),
    DVTSSpec(n=8, width=2, max_rounds=6, seed=3),
    RevisionSpec(attempts=3, chains=2, seed=4),
    AdaptiveSpec(max_n=12, wave=4, seed=5),
]


class NodeNames(AsyncCallbackHandler):
    """Records the runs LangGraph reports: an observer, so the run must go through LangGraph."""

    def __init__(self) -> None:
        self.names: list[str] = []

    async def on_chain_start(
        self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.names.append(str(kwargs.get("name")))


def outcome(result: dict[str, Any]) -> tuple[Any, ...]:
    # Concurrent chains book in any order, and a node's USD/FLOPs are float sums of its calls: summed in
    # another order they may differ in the last bit. Compare them to 12 significant digits.
    entries = sorted(
        (e.node, e.model, {k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in e.usage.as_dict().items()})
        for e in result["ledger"].entries
    )
    return result["answer"], result["candidates"], entries, result["stopped_by"], result["strategy"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.strategy)
async def test_a_direct_run_gives_what_langgraph_gives(spec: StrategySpec, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = build_strategy_graph(spec, model=MODEL, verifier=ArithmeticStepVerifier())
    pregel_runs = []
    real_astream = Pregel.astream

    def astream(self: Pregel[Any, Any, Any, Any], *args: Any, **kwargs: Any) -> Any:
        pregel_runs.append(self.name)
        return real_astream(self, *args, **kwargs)

    monkeypatch.setattr(Pregel, "astream", astream)
    for question in QUESTIONS:
        observer = NodeNames()
        direct = await graph.ainvoke({"question": question, "budget": Budget(max_samples=40)})
        assert pregel_runs == []  # nothing observed it: no Pregel loop ran
        observed = await graph.ainvoke(
            {"question": question, "budget": Budget(max_samples=40)}, {"callbacks": [observer]}
        )
        assert outcome(direct) == outcome(observed)
        assert set(direct) == set(observed)  # the same output keys
        assert "start" in observer.names and "select" in observer.names  # the observer saw every node
        assert pregel_runs and set(pregel_runs) == {graph.name}
        pregel_runs.clear()


async def test_streams_and_checkpointers_still_see_every_node() -> None:
    graph = build_strategy_graph(BestOfNSpec(n=4, seed=0), model=MODEL, verifier=ArithmeticStepVerifier())
    nodes = [next(iter(update)) async for update in graph.astream({"question": QUESTIONS[0]}, stream_mode="updates")]
    assert nodes == ["start", "generate", "verify", "select"]
    saver = InMemorySaver()
    saved = build_strategy_graph(BestOfNSpec(n=4, seed=0), model=MODEL).copy({"checkpointer": saver})
    await saved.ainvoke({"question": QUESTIONS[0]}, {"configurable": {"thread_id": "t"}})
    assert len(list(saver.list({"configurable": {"thread_id": "t"}}))) >= 4  # a checkpoint per step


async def test_the_recursion_limit_holds_in_a_direct_run() -> None:
    graph = build_strategy_graph(BeamSearchSpec(n=4, width=2, max_rounds=8, seed=0), model=MODEL)
    for config in ({"recursion_limit": 3}, {"recursion_limit": 3, "callbacks": [NodeNames()]}):
        with pytest.raises(GraphRecursionError):
            await graph.ainvoke({"question": QUESTIONS[0]}, config)


def test_graphs_with_reducers_or_fan_out_stay_plain_langgraph() -> None:
    class Listed(TypedDict, total=False):
        items: Annotated[list[int], operator.add]

    async def add(state: Listed) -> Listed:
        return {"items": [1]}

    graph = StateGraph(Listed)
    graph.add_node("add", add)
    graph.add_edge(START, "add")
    graph.add_edge("add", END)
    compiled = compile_direct(graph, name="listed")
    assert isinstance(compiled, CompiledStateGraph) and not isinstance(compiled, DirectStateGraph)
    strategy = build_strategy_graph(BestOfNSpec(n=2), model=MODEL)
    assert isinstance(strategy, DirectStateGraph)
