"""Beam search against a process reward model (PRM).

    START -> start -> expand -> verify -> prune --(beams left, rounds left, budget left)--> expand
                                       \\-> select -> END

Round 0 samples N first steps in one request. Every later round extends each of the N/M kept beams
by M next steps (one request with n=M per beam). ``verify`` scores the new steps; with lookahead k,
each new candidate is first rolled out k steps at temperature 0 and scored at the rollout's end
(N x (k+1) samples per round). ``prune`` sets finished beams aside and keeps the top N/M of the
rest. The answer is best-of-N weighted over the finished beams.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from langgraph.graph.state import CompiledStateGraph

from ttc_agents._core.budget import Budget, Ledger
from ttc_agents._core.candidates import select_answer
from ttc_agents._core.specs import BeamSearchSpec
from ttc_agents._llm.gateway import Gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents._routing.moves import (
    SearchContext,
    StrategyInput,
    StrategyOutput,
    StrategyState,
    best_so_far,
    finish,
    grow_tree,
    score_fresh,
    tree_search_graph,
)
from ttc_agents.verifiers._base import ScoreFunction, Verifier

__all__ = ["build_beam_search_graph"]


def build_beam_search_graph(
    spec: BeamSearchSpec,
    *,
    model: ModelSpec | str,
    verifier: Verifier | ScoreFunction | None = None,
    gateway: Gateway | None = None,
    prompts: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]:
    """Compile the beam-search graph for ``spec``."""
    ctx = SearchContext.create(model, verifier, gateway=gateway, prompts=prompts, budget=budget, thinking=spec.thinking)
    keep = spec.n // spec.width

    async def expand(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        fresh = await grow_tree(ctx, ledger, state, spec)
        return {"fresh": fresh, "round": state["round"] + 1, "ledger": ledger.snapshot()}

    async def verify(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        scored = await score_fresh(ctx, ledger, state, spec, lookahead=spec.lookahead)
        return {"fresh": scored, "ledger": ledger.snapshot()}

    def prune(state: StrategyState) -> StrategyState:
        fresh = state["fresh"]
        finished = [c for c in fresh if c.finished]
        active = sorted((c for c in fresh if not c.finished), key=lambda c: c.score or 0.0, reverse=True)
        return {"candidates": state["candidates"] + finished, "frontier": active[:keep], "fresh": []}

    def route(state: StrategyState) -> Literal["expand", "select"]:
        done = (
            not state["frontier"]
            or state["round"] >= spec.max_rounds
            or len(state["candidates"]) >= spec.n
            or state["ledger"].stopped_by is not None
        )
        return "select" if done else "expand"

    async def select(state: StrategyState) -> StrategyState:
        pool = state["candidates"] or best_so_far(state["frontier"])
        return finish(state, pool, select_answer(pool, "weighted"))

    return tree_search_graph(
        "beam_search", ctx, spec, expand=expand, verify=verify, prune=prune, route=route, select=select
    )
