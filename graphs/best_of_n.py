"""Best-of-N: N full solutions in ONE request, scored by the verifier, one answer selected.

    START -> start -> generate -> verify -> select -> END

Selection is naive (highest score), weighted (sum of scores per distinct answer; the paper's best
choice with a decent verifier) or majority vote.
"""

from __future__ import annotations

from collections.abc import Mapping

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from ttc_agents._core.budget import Budget, Ledger
from ttc_agents._core.candidates import select_answer
from ttc_agents._core.specs import BestOfNSpec
from ttc_agents._llm.gateway import Gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents._routing.direct import compile_direct
from ttc_agents._routing.moves import (
    SearchContext,
    StrategyInput,
    StrategyOutput,
    StrategyState,
    dual_node,
    finish,
    sample_solutions,
    score_candidates,
    start_run,
)
from ttc_agents.verifiers._base import ScoreFunction, Verifier

__all__ = ["build_best_of_n_graph"]


def build_best_of_n_graph(
    spec: BestOfNSpec,
    *,
    model: ModelSpec | str,
    verifier: Verifier | ScoreFunction | None = None,
    gateway: Gateway | None = None,
    prompts: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]:
    """Compile the best-of-N graph for ``spec``."""
    ctx = SearchContext.create(model, verifier, gateway=gateway, prompts=prompts, budget=budget, thinking=spec.thinking)

    async def generate(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        candidates = await sample_solutions(
            ctx,
            ledger,
            ctx.messages(state, "generate"),
            spec.n,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            seed=spec.seed,
            node="generate",
        )
        return {"candidates": candidates, "ledger": ledger.snapshot()}

    async def verify(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        scored = await score_candidates(ctx, ledger, state["question"], state["candidates"], spec.aggregation)
        return {"candidates": scored, "ledger": ledger.snapshot()}

    async def select(state: StrategyState) -> StrategyState:
        candidates = state["candidates"]
        return finish(state, candidates, select_answer(candidates, spec.selection))

    graph = StateGraph(StrategyState, input_schema=StrategyInput, output_schema=StrategyOutput)
    graph.add_node("start", start_run(ctx, spec))
    graph.add_node("generate", dual_node(generate))
    graph.add_node("verify", dual_node(verify))
    graph.add_node("select", dual_node(select))
    graph.add_edge(START, "start")
    graph.add_edge("start", "generate")
    graph.add_edge("generate", "verify")
    graph.add_edge("verify", "select")
    graph.add_edge("select", END)
    return compile_direct(graph, name="best_of_n")
