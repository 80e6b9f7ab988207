"""Selection rules: naive, weighted (sum per distinct answer), majority, hierarchical."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ttc_agents import (
    BestOfNSpec,
    Candidate,
    aggregate_scores,
    build_strategy_graph,
    select_answer,
    select_hierarchical,
)
from ttc_agents._core.candidates import UNJUDGED


def cand(answer: str | None, score: float | None, chain: int | None = None) -> Candidate:
    return Candidate(steps=("x",), answer=answer, finished=True, score=score, chain=chain)


POOL = [cand("7", 0.9), cand("12", 0.5), cand("12.0", 0.45), cand("12", 0.4), cand("3", 0.6)]


def test_weighted_picks_the_answer_with_the_largest_summed_score() -> None:
    choice = select_answer(POOL, "weighted")
    assert choice.answer in {"12", "12.0"}
    assert choice.weights["12"] == pytest.approx(1.35)
    assert choice.index == 1  # the best-scored candidate of the winning group


def test_naive_picks_the_single_best_candidate() -> None:
    assert select_answer(POOL, "naive").answer == "7"


def test_majority_counts_equivalent_answers_together() -> None:
    pool = [cand("1/2", 0.1), cand("0.5", 0.1), cand("9", 0.99)]
    assert select_answer(pool, "majority").answer in {"1/2", "0.5"}
    assert select_answer(pool, "naive").answer == "9"


def test_unscored_candidates_weigh_one_each() -> None:
    pool = [cand("4", None), cand("5", None), cand("5", None)]
    assert select_answer(pool, "weighted").answer == "5"


def unjudged(answer: str) -> Candidate:
    return Candidate(steps=("x",), answer=answer, finished=True, score=UNJUDGED, meta={"unjudged": True})


def test_samples_the_verifier_never_judged_do_not_outvote_judged_ones() -> None:
    # The budget ran out while the verifier scored: three samples kept the neutral 0.5. Counted, they
    # would win the weighted vote (1.5 > 1.3) and the naive pick (0.5 > 0.45) with an answer no
    # verifier ever looked at.
    pool = [cand("7", 0.7), cand("7", 0.6), cand("9", 0.45), *(unjudged("12") for _ in range(3))]
    assert select_answer(pool, "weighted").answer == "7"
    assert select_answer(pool, "naive").answer == "7"
    assert select_answer(pool, "majority").answer == "12"  # majority reads no scores
    assert select_answer([unjudged("12"), unjudged("12"), unjudged("5")], "weighted").answer == "12"  # all there is


async def test_score_candidates_marks_the_unjudged_and_best_of_n_ignores_them() -> None:
    calls: list[int] = []

    def verifier(question: str, candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        calls.append(len(candidates))  # the first candidate judged poorly, the budget refused the rest
        return [[0.01] * len(steps) if i == 0 else [UNJUDGED] * len(steps) for i, steps in enumerate(candidates)]

    spec = BestOfNSpec(n=8, seed=4, selection="weighted")
    graph = build_strategy_graph(spec, model="scripted/arith-hard", verifier=verifier)
    result = await graph.ainvoke({"question": "What is 81 / 9 + 17 * 3 - 40 * 2 + 7?"})
    first, *rest = result["candidates"]
    assert calls == [8]
    assert "unjudged" not in first.meta and all(c.meta.get("unjudged") for c in rest)
    assert all(type(s) is float for c in result["candidates"] for s in c.step_scores)  # plain floats stored
    assert first.answer is not None and result["answer"] == first.answer


@pytest.mark.parametrize("method", ["naive", "weighted", "majority"])
def test_candidates_without_an_answer_never_win(method: str) -> None:
    pool = [cand(None, 0.99), cand(None, 0.98), cand("2", 0.01)]
    choice = select_answer(pool, method)  # type: ignore[arg-type]
    assert choice.answer == "2" and choice.index == 2


def test_no_candidates_and_no_answers() -> None:
    assert select_answer([], "weighted").answer is None
    assert select_answer([cand(None, 0.3)], "weighted").answer is None


@pytest.mark.parametrize(
    ("how", "expected"), [("last", 0.5), ("min", 0.2), ("prod", 0.9 * 0.2 * 0.5), ("mean", 1.6 / 3)]
)
def test_aggregate_scores(how: str, expected: float) -> None:
    assert aggregate_scores([0.9, 0.2, 0.5], how) == pytest.approx(expected)  # type: ignore[arg-type]


def test_hierarchical_selects_within_chains_then_across() -> None:
    # Chain 0 ends on a confident wrong revision but its weighted winner is "10";
    # chain 1 agrees on "10". Across chains "10" wins although "99" has the top single score.
    pool = [
        cand("10", 0.6, chain=0),
        cand("10", 0.5, chain=0),
        cand("99", 0.95, chain=0),
        cand("10", 0.7, chain=1),
        cand("4", 0.2, chain=1),
        cand("4", 0.3, chain=2),
    ]
    choice = select_hierarchical(pool)
    assert choice.answer == "10"
    assert pool[choice.index or 0].chain in (0, 1)
