"""The router graph: estimate -> look up -> run -> answer, with a trace; batch allocation."""

from __future__ import annotations

import pytest

from ttc_agents import ArithmeticStepVerifier, BeamSearchSpec, BestOfNSpec, Budget, ModelSpec
from ttc_agents._routing.policy import Cost, Policy, PolicyAction, PolicyEntry, PolicyMismatchError
from ttc_agents.graphs.router import Router, build_router_graph

MODEL = "scripted/arith"
MODELS = {MODEL: ModelSpec(name=MODEL, max_tokens=128)}


def entry(
    bin_: int, budget: int, strategy: BestOfNSpec | BeamSearchSpec, accuracy: float, tokens: float
) -> PolicyEntry:
    return PolicyEntry(
        bin=bin_,
        budget=budget,
        action=PolicyAction(model=MODEL, strategy=strategy),
        accuracy=accuracy,
        cv_accuracy=accuracy,
        cost=Cost(samples=budget, tokens=tokens),
        questions=10,
    )


def make_policy() -> Policy:
    table = []
    for bin_ in range(1, 6):
        table.append(entry(bin_, 4, BestOfNSpec(n=4, seed=0), 0.9 - 0.15 * bin_, 400))
        table.append(entry(bin_, 8, BestOfNSpec(n=8, seed=0), 0.92 - 0.12 * bin_, 800))
        table.append(
            entry(bin_, 8, BeamSearchSpec(n=8, width=2, seed=0), 0.9 - (0.05 if bin_ in (3, 4) else 0.2) * bin_, 2500)
        )
    return Policy(
        models=[MODEL],
        verifier="arithmetic",
        dataset="synthetic",
        thresholds=[0.5, 0.7, 0.85, 0.95],
        table=table,
        candidates=table,
    )


async def test_router_traces_bin_choice_and_spend_and_reuses_the_probe() -> None:
    graph = build_router_graph(
        make_policy(), models=MODELS, verifier=ArithmeticStepVerifier(), verifier_name="arithmetic"
    )
    result = await graph.ainvoke({"question": "What is 12 * 7 + 5?", "budget": Budget(max_tokens=1400)})
    trace = result["trace"]
    assert 1 <= trace["bin"] <= 5 and trace["evidence"]["estimator"] == "probe"
    assert len(trace["evidence"]["scores"]) == 4
    assert trace["choice"]["strategy"]["strategy"] == "best_of_n"
    assert "fits its budget" in trace["why"]
    assert trace["estimate_spent"]["samples"] == 4
    # best-of-8 chosen: the 4 probe samples count towards N, so only 4 more are drawn.
    assert trace["probe_reused"] == 4
    assert result["ledger"].total.samples == 8
    assert len(result["candidates"]) == 8
    assert result["answer"] == "89"
    assert result["ledger"].total.total_tokens <= 1400


async def test_router_with_no_room_left_answers_from_the_probe() -> None:
    graph = build_router_graph(
        make_policy(), models=MODELS, verifier=ArithmeticStepVerifier(), verifier_name="arithmetic"
    )
    result = await graph.ainvoke({"question": "What is 3 + 4?", "budget": Budget(max_samples=4)})
    assert result["ledger"].total.samples == 4
    assert result["answer"] == "7"
    assert result["stopped_by"] == "max_samples"


def test_policy_for_another_model_or_verifier_is_refused() -> None:
    with pytest.raises(PolicyMismatchError, match="verifier"):
        Router(make_policy(), verifier=ArithmeticStepVerifier(), verifier_name="prm:openai/gpt-4o")
    with pytest.raises(PolicyMismatchError, match="models"):
        Router(make_policy(), models={"openai/other": "openai/other"}, verifier_name="arithmetic")
    Router(make_policy(), models={"openai/other": "openai/other"}, verifier_name="x", force=True)


async def test_batch_allocation_never_exceeds_the_total() -> None:
    router = Router(make_policy(), models=MODELS, verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")
    questions = [
        "What is 2 + 3?",
        "What is 48 * 17 - 23 * 9 + 310?",
        "What is 7 * 8?",
        "What is 91 * 13 - 456 + 78 * 3?",
    ]
    total = 6000
    results = await router.abatch(questions, total=total, unit="tokens", max_concurrency=2)
    spent = sum(r["ledger"].total.total_tokens for r in results)
    assert spent <= total
    assert all(r["trace"]["estimate_reused"] for r in results)
    assert all(r["answer"] is not None for r in results)
