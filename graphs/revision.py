"""Sequential revisions: chains of attempts, each attempt seeing the last few before it.

    START -> start -> generate -> verify --(attempts, budget left)--> revise -> verify ...
                                          \\-> select -> END

``generate`` samples the first attempt of every chain in ONE request (n = chains). ``revise``
writes the next attempt of each chain from the revise prompt holding that chain's last
``context`` attempts. Revisions can turn right answers wrong, so the answer is SELECTED:
hierarchically with the verifier (best-of-N weighted within each chain, then across chains), or
by majority over every attempt of every chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from ttc_agents._core.budget import Budget, Ledger
from ttc_agents._core.candidates import Candidate, select_answer, select_hierarchical
from ttc_agents._core.specs import RevisionSpec
from ttc_agents._llm.gateway import Gateway, gather_or_cancel
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

__all__ = ["build_revision_graph", "format_attempts"]


def format_attempts(attempts: list[Candidate]) -> str:
    """The earlier attempts as the revise prompt shows them."""
    return "\n\n".join(
        f"Attempt {c.attempt + 1 if c.attempt is not None else i + 1}:\n{c.text}" for i, c in enumerate(attempts)
    )


def build_revision_graph(
    spec: RevisionSpec,
    *,
    model: ModelSpec | str,
    verifier: Verifier | ScoreFunction | None = None,
    gateway: Gateway | None = None,
    prompts: Mapping[str, str] | None = None,
    budget: Budget | None = None,
    name: str = "revision",
) -> CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]:
    """Compile the sequential-revision graph for ``spec``."""
    ctx = SearchContext.create(model, verifier, gateway=gateway, prompts=prompts, budget=budget, thinking=spec.thinking)

    async def generate(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        first = await sample_solutions(
            ctx,
            ledger,
            ctx.messages(state, "generate"),
            spec.chains,
            seed=spec.seed,
            node="generate",
            attempt=0,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
        )
        fresh = [replace(c, chain=i) for i, c in enumerate(first)]
        return {"fresh": fresh, "round": 1, "ledger": ledger.snapshot()}

    async def revise(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        attempt = state["round"]
        chains = sorted({c.chain for c in state["candidates"] if c.chain is not None})

        async def next_attempt(chain: int) -> list[Candidate]:
            history = [c for c in state["candidates"] if c.chain == chain][-spec.context :]
            messages = ctx.messages(state, "revise", attempts=format_attempts(history))
            seed = None if spec.seed is None else spec.seed + 1000 * attempt + chain
            samples = await sample_solutions(
                ctx,
                ledger,
                messages,
                1,
                seed=seed,
                node="revise",
                attempt=attempt,
                temperature=spec.temperature,
                max_tokens=spec.max_tokens,
            )
            return [replace(c, chain=chain) for c in samples]

        results = await gather_or_cancel(*(next_attempt(chain) for chain in chains))  # a failure cancels the others
        fresh = [c for result in results for c in result]
        return {"fresh": fresh, "round": attempt + 1, "ledger": ledger.snapshot()}

    async def verify(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        scored = await score_candidates(ctx, ledger, state["question"], state["fresh"], spec.aggregation)
        return {"candidates": state["candidates"] + scored, "fresh": [], "ledger": ledger.snapshot()}

    def route(state: StrategyState) -> Literal["revise", "select"]:
        done = state["round"] >= spec.attempts or not state["candidates"] or state["ledger"].stopped_by is not None
        return "select" if done else "revise"

    async def select(state: StrategyState) -> StrategyState:
        candidates = state["candidates"]
        if spec.selection == "majority":
            choice = select_answer(candidates, "majority")
        else:
            choice = select_hierarchical(candidates)
        return finish(state, candidates, choice)

    graph = StateGraph(StrategyState, input_schema=StrategyInput, output_schema=StrategyOutput)
    graph.add_node("start", start_run(ctx, spec))
    graph.add_node("generate", dual_node(generate))
    graph.add_node("revise", dual_node(revise))
    graph.add_node("verify", dual_node(verify))
    graph.add_node("select", dual_node(select))
    graph.add_edge(START, "start")
    graph.add_edge("start", "generate")
    graph.add_edge("generate", "verify")
    graph.add_edge("revise", "verify")
    graph.add_conditional_edges("verify", route)
    graph.add_edge("select", END)
    return compile_direct(graph, name=name).with_config(recursion_limit=2 * spec.attempts + 10)
