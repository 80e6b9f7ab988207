"""Budgets are hard limits: over many random strategies and budgets the ledger never passes one."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttc_agents import (
    AdaptiveSpec,
    ArithmeticStepVerifier,
    BeamSearchSpec,
    BestOfNSpec,
    Budget,
    DVTSSpec,
    HybridSpec,
    ParticleFilterSpec,
    RevisionSpec,
    StrategySpec,
    build_strategy_graph,
)
from ttc_agents.verifiers import LLMJudgePRM

questions = st.sampled_from(
    ["What is 12 * 7 + 5?", "What is (3 + 4) * 5 - 2?", "What is 81 / 9 + 17 * 3 - 40?", "What is 2 + 2?"]
)
widths = st.sampled_from([1, 2, 4])


@st.composite
def strategy_specs(draw: st.DrawFn) -> StrategySpec:
    kind = draw(
        st.sampled_from(["best_of_n", "beam_search", "dvts", "revision", "hybrid", "adaptive", "particle_filter"])
    )
    seed = draw(st.integers(0, 1000))
    if kind == "particle_filter":
        return ParticleFilterSpec(
            n=draw(st.integers(1, 8)),
            max_rounds=draw(st.integers(1, 8)),
            weight_temperature=draw(st.sampled_from([0.1, 1.0])),
            seed=seed,
        )
    if kind == "adaptive":
        max_n = draw(st.integers(1, 16))
        return AdaptiveSpec(
            max_n=max_n,
            wave=draw(st.integers(1, max_n)),
            threshold=draw(st.sampled_from([0.8, 0.95, 0.999])),
            selection=draw(st.sampled_from(["majority", "weighted"])),
            seed=seed,
        )
    if kind == "best_of_n":
        return BestOfNSpec(
            n=draw(st.integers(1, 16)), seed=seed, selection=draw(st.sampled_from(["naive", "weighted", "majority"]))
        )
    if kind in ("beam_search", "dvts"):
        width = draw(widths)
        n = width * draw(st.integers(1, 4))
        if kind == "dvts":
            return DVTSSpec(n=n, width=width, max_rounds=draw(st.integers(1, 8)), seed=seed)
        return BeamSearchSpec(
            n=n, width=width, max_rounds=draw(st.integers(1, 8)), lookahead=draw(st.integers(0, 2)), seed=seed
        )
    if kind == "revision":
        return RevisionSpec(
            attempts=draw(st.integers(1, 5)), chains=draw(st.integers(1, 3)), context=draw(st.integers(1, 4)), seed=seed
        )
    return HybridSpec(n=draw(st.integers(1, 12)), sequential_ratio=draw(st.floats(0.25, 4.0)), seed=seed)


budgets = st.builds(
    Budget,
    max_samples=st.none() | st.integers(1, 40),
    max_tokens=st.none() | st.integers(1, 4000),
    max_usd=st.none() | st.floats(1e-6, 2e-3),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=strategy_specs(), budget=budgets, question=questions, judge=st.booleans())
def test_spend_never_exceeds_the_budget(spec: StrategySpec, budget: Budget, question: str, judge: bool) -> None:
    verifier = LLMJudgePRM("scripted/arith") if judge else ArithmeticStepVerifier()
    graph = build_strategy_graph(spec, model="scripted/arith", verifier=verifier)
    result = asyncio.run(graph.ainvoke({"question": question, "budget": budget}))
    total = result["ledger"].total
    if budget.max_samples is not None:
        assert total.samples <= budget.max_samples
    if budget.max_tokens is not None:
        assert total.total_tokens <= budget.max_tokens
    if budget.max_usd is not None:
        assert total.usd <= budget.max_usd + 1e-12
    stopped = result["stopped_by"]
    assert stopped is None or getattr(budget, stopped) is not None
    if stopped is None:
        assert budget.unlimited or result["ledger"].total.samples > 0 or not result["candidates"]
    if result["candidates"] and any(c.answer is not None for c in result["candidates"]):
        assert result["answer"] is not None
