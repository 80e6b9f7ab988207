"""Particle filtering against a process reward model (Puri et al. 2025, inference scaling as
probabilistic inference).

    START -> start -> expand -> verify -> resample --(unfinished particles, rounds and budget left)--> expand
                                                 \\-> select -> END

Round 0 samples N first steps in one request. Every later round extends each unfinished particle by
one step (copies of one prefix share one request with n = copies), while finished particles stay as
they are. ``verify`` scores the new steps (the moves beam search uses). ``resample`` weights every
particle by softmax(logit(score) / ``weight_temperature``) (the PRM's P(correct) as odds: a step at
0.9 outweighs one at 0.1 81 to 1 at temperature 1) and draws N particles with replacement in
proportion (seeded per round), so that promising partial solutions multiply and poor ones die out
without being cut deterministically. The answer is the weighted vote over the final particles
(copies vote as often as they were drawn).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Literal

from langgraph.graph.state import CompiledStateGraph

from ttc_agents._core.budget import Budget, Ledger
from ttc_agents._core.candidates import Candidate, select_answer
from ttc_agents._core.specs import ParticleFilterSpec
from ttc_agents._llm.gateway import Gateway, gather_or_cancel
from ttc_agents._llm.models import ModelSpec
from ttc_agents._routing.moves import (
    SearchContext,
    StrategyInput,
    StrategyOutput,
    StrategyState,
    best_so_far,
    extend_by_one_step,
    finish,
    grow_tree,
    score_candidates,
    tree_search_graph,
)
from ttc_agents.verifiers._base import ScoreFunction, Verifier

__all__ = ["build_particle_filter_graph", "resample", "resampling_weights"]


_CLIP = 1e-6


def resampling_weights(particles: Sequence[Candidate], temperature: float) -> list[float]:
    """softmax(logit(score) / temperature) over the particles, scores clipped to [1e-6, 1 - 1e-6] (an
    unscored particle has log-odds 0: uniform weights without a verifier)."""
    if not particles:
        return []
    logits = [0.0 if p.score is None else _logit(p.score) / temperature for p in particles]
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = math.fsum(exps)
    return [e / total for e in exps]


def _logit(score: float) -> float:
    p = min(max(score, _CLIP), 1.0 - _CLIP)
    return math.log(p / (1.0 - p))


def resample(particles: Sequence[Candidate], weights: Sequence[float], k: int, rng: random.Random) -> list[Candidate]:
    """``k`` particles drawn with replacement, each with probability its weight (multinomial)."""
    if not particles:
        return []
    return rng.choices(list(particles), weights=list(weights), k=k)


def build_particle_filter_graph(
    spec: ParticleFilterSpec,
    *,
    model: ModelSpec | str,
    verifier: Verifier | ScoreFunction | None = None,
    gateway: Gateway | None = None,
    prompts: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]:
    """Compile the particle-filtering graph for ``spec``."""
    ctx = SearchContext.create(model, verifier, gateway=gateway, prompts=prompts, budget=budget, thinking=spec.thinking)

    async def expand(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        round_ = state["round"]
        if round_ == 0:
            fresh = await grow_tree(ctx, ledger, state, spec)
            return {"fresh": fresh, "frontier": [], "round": 1, "ledger": ledger.snapshot()}
        particles = state["frontier"]
        finished = [p for p in particles if p.finished]
        groups: dict[tuple[str, ...], list[Candidate]] = {}
        for particle in particles:
            if not particle.finished:
                groups.setdefault(particle.steps, []).append(particle)
        seed = None if spec.seed is None else spec.seed + round_
        extended = await gather_or_cancel(
            *(
                extend_by_one_step(
                    ctx,
                    ledger,
                    state,
                    [copies[0]],
                    len(copies),
                    temperature=spec.temperature,
                    delimiter=spec.step_delimiter,
                    max_tokens=spec.step_max_tokens,
                    seed=seed,
                )
                for copies in groups.values()
            )
        )
        fresh = [c for group in extended for c in group]
        return {"fresh": fresh, "frontier": finished, "round": round_ + 1, "ledger": ledger.snapshot()}

    async def verify(state: StrategyState) -> StrategyState:
        ledger = Ledger.resume(state["ledger"])
        scored = await score_candidates(ctx, ledger, state["question"], state["fresh"], spec.aggregation)
        return {"fresh": scored, "ledger": ledger.snapshot()}

    def resample_node(state: StrategyState) -> StrategyState:
        particles = state["frontier"] + state["fresh"]  # the finished ones, then the newly extended
        rng = random.Random(None if spec.seed is None else f"particle_filter:{spec.seed}:{state['round']}")
        drawn = resample(particles, resampling_weights(particles, spec.weight_temperature), spec.n, rng)
        return {"frontier": drawn, "fresh": []}

    def route(state: StrategyState) -> Literal["expand", "select"]:
        done = (
            all(p.finished for p in state["frontier"])
            or state["round"] >= spec.max_rounds
            or state["ledger"].stopped_by is not None
        )
        return "select" if done else "expand"

    async def select(state: StrategyState) -> StrategyState:
        pool = best_so_far(state["frontier"])
        return finish(state, pool, select_answer(pool, "weighted"))

    return tree_search_graph(
        "particle_filter", ctx, spec, expand=expand, verify=verify, prune=resample_node, route=route, select=select
    )
