"""Diverse verifier tree search (DVTS): N/M independent subtrees, each greedy on the verifier.

    START -> start -> expand -> verify -> prune --(subtrees open, rounds and budget left)--> expand
                                                \\-> select -> END

Round 0 samples N first steps in ONE request and deals them into N/M subtrees of M. Every later
round extends each open subtree's single kept beam by M next steps. ``prune`` keeps the best
candidate of each subtree; a subtree whose best candidate is finished is done. Independent
subtrees keep the search diverse, which is why DVTS beats beam search at large N. The answer is
best-of-N weighted over the subtrees' finished beams.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

from langgraph.graph.state import CompiledStateGraph

from ttc_agents._core.budget import Budget, Ledger
from ttc_agents._core.candidates import Candidate, select_answer
from ttc_agents._core.specs import DVTSSpec
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

__all__ = ["build_dvts_graph"]


def build_dvts_graph(
    spec: DVTSSpec,
    *,
    model: ModelSpec | str,
    verifier: Verifier | ScoreFunction | None = None,
    gateway: Gateway | None = None,
    prompts: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]:
    """Compile the DVTS graph for ``spec``."""
    ctx = SearchContext.create(model, verifier, gateway=gateway, prompts=prompts, budget=budget, thinking=spec.thinking)

    async def expand(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        fresh = await grow_tree(ctx, ledger, state, spec)
        if state["round"] == 0:  # deal the N first steps into N/M subtrees of M
            fresh = [replace(c, group=i // spec.width) for i, c in enumerate(fresh)]
        return {"fresh": fresh, "round": state["round"] + 1, "ledger": ledger.snapshot()}

    async def verify(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        return {"fresh": await score_fresh(ctx, ledger, state, spec), "ledger": ledger.snapshot()}

    def prune(state: StrategyState) -> StrategyState:
        # A subtree the budget did not extend this round keeps the beam it had.
        best: dict[int | None, Candidate] = {c.group: c for c in state["frontier"]}
        grown: set[int | None] = set()
        for candidate in state["fresh"]:
            if candidate.group not in grown:
                grown.add(candidate.group)
                best[candidate.group] = candidate
                continue
            current = best.get(candidate.group)
            if current is None or (candidate.score or 0.0) > (current.score or 0.0):
                best[candidate.group] = candidate
        finished = [c for c in best.values() if c.finished]
        return {
            "candidates": state["candidates"] + finished,
            "frontier": [c for c in best.values() if not c.finished],
            "fresh": [],
        }

    def route(state: StrategyState) -> Literal["expand", "select"]:
        done = not state["frontier"] or state["round"] >= spec.max_rounds or state["ledger"].stopped_by is not None
        return "select" if done else "expand"

    async def select(state: StrategyState) -> StrategyState:
        pool = state["candidates"] + best_so_far(state["frontier"])
        return finish(state, pool, select_answer(pool, "weighted"))

    return tree_search_graph("dvts", ctx, spec, expand=expand, verify=verify, prune=prune, route=route, select=select)
