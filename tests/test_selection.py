"""Selection rules: naive, weighted (sum per distinct answer), majority, hierarchical."""

from __future__ import annotations

import pytest

from ttc_agents import Candidate, aggregate_scores, select_answer, select_hierarchical


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
