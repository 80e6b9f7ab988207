"""Adaptive (early-stopping) sampling: Adaptive-Consistency's Beta stopping rule over waves of samples.

    START -> start -> generate -> verify --(not confident, samples and budget left)--> generate
                                        \\-> select -> END

Each round draws one wave of ``wave`` full solutions in ONE request (the last wave only what is left
of ``max_n``), scores them with the verifier (when there is one) and adds them to the vote. Sampling
stops as soon as the leading answer's posterior probability of leading the vote,
:func:`~ttc_agents._core.stopping.lead_probability` over the vote totals (counts for ``majority``,
summed verifier scores for ``weighted``), reaches ``threshold``; or at ``max_n`` samples; or when the
budget refuses a wave. Easy questions stop after the first wave, hard ones spend up to ``max_n``:
the cost is variable, and the ledger books what was really drawn. The answer is selected over all
samples drawn with ``selection``. Wave ``r`` is seeded ``seed + r``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from ttc_agents._core.budget import Budget, Ledger
from ttc_agents._core.candidates import Candidate, select_answer
from ttc_agents._core.specs import AdaptiveSpec
from ttc_agents._core.stopping import keep_probability, lead_probability
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

__all__ = ["build_adaptive_graph", "replay_stop", "should_stop", "vote_totals", "wave_size"]


def wave_size(spec: AdaptiveSpec, drawn: int) -> int:
    """How many samples the next wave asks for after ``drawn``: ``wave``, or what is left of ``max_n``."""
    return max(0, min(spec.wave, spec.max_n - drawn))


def vote_totals(candidates: Sequence[Candidate], selection: Literal["majority", "weighted"]) -> dict[str, float]:
    """Each distinct answer's vote total: its count (``majority``) or its summed scores (``weighted``;
    an unscored candidate counts 1). Candidates without an answer do not vote."""
    voters = list(candidates) if selection == "weighted" else [replace(c, score=None) for c in candidates]
    return select_answer(voters, "weighted").weights


def should_stop(spec: AdaptiveSpec, candidates: Sequence[Candidate]) -> bool:
    """The stopping rule on the samples drawn so far: ``max_n`` reached, or the leader's
    :func:`~ttc_agents._core.stopping.lead_probability` (``rule="beta"``) or
    :func:`~ttc_agents._core.stopping.keep_probability` over the samples left (``predictive``) at least
    ``threshold``."""
    if wave_size(spec, len(candidates)) == 0:
        return True
    votes = vote_totals(candidates, spec.selection)
    if spec.rule == "predictive":
        return keep_probability(votes, spec.max_n - len(candidates)) >= spec.threshold
    return lead_probability(votes) >= spec.threshold


def replay_stop(spec: AdaptiveSpec, stream: Sequence[Candidate]) -> int:
    """How many samples of ``stream`` (scored samples in drawing order) the graph would draw before
    stopping, were its waves the stream's consecutive slices: for paired measurements against
    majority over the same samples (``ttc_agents.bench.adaptive``). At most ``len(stream)``."""
    drawn = 0
    while drawn < len(stream):
        drawn = min(drawn + wave_size(spec, drawn), len(stream))
        if should_stop(spec, stream[:drawn]):
            break
    return drawn


def build_adaptive_graph(
    spec: AdaptiveSpec,
    *,
    model: ModelSpec | str,
    verifier: Verifier | ScoreFunction | None = None,
    gateway: Gateway | None = None,
    prompts: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]:
    """Compile the adaptive-sampling graph for ``spec``."""
    ctx = SearchContext.create(model, verifier, gateway=gateway, prompts=prompts, budget=budget, thinking=spec.thinking)

    async def generate(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        round_ = state["round"]
        fresh = await sample_solutions(
            ctx,
            ledger,
            ctx.messages(state, "generate"),
            wave_size(spec, len(state["candidates"])),
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            seed=None if spec.seed is None else spec.seed + round_,
            node="generate",
        )
        return {"fresh": fresh, "round": round_ + 1, "ledger": ledger.snapshot()}

    async def verify(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        scored = await score_candidates(ctx, ledger, state["question"], state["fresh"], spec.aggregation)
        return {"candidates": state["candidates"] + scored, "fresh": scored, "ledger": ledger.snapshot()}

    def route(state: StrategyState) -> Literal["generate", "select"]:
        done = (
            not state["fresh"]  # the budget granted nothing: no progress is possible
            or state["ledger"].stopped_by is not None
            or should_stop(spec, state["candidates"])
        )
        return "select" if done else "generate"

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
    graph.add_conditional_edges("verify", route)
    graph.add_edge("select", END)
    rounds = math.ceil(spec.max_n / spec.wave)
    return compile_direct(graph, name="adaptive").with_config(recursion_limit=2 * rounds + 10)
