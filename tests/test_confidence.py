"""Confidence from the model's own tokens (DeepConf): computed from given logprobs, used as a verifier."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ttc_agents import AdaptiveSpec, BestOfNSpec, Candidate, ModelSpec, build_strategy_graph
from ttc_agents._apps.datasets import arithmetic_problems, grade
from ttc_agents.verifiers import CandidateVerifier, MissingLogprobsError, TokenConfidenceVerifier, make_verifier
from ttc_agents.verifiers._confidence import TOKENS_META_KEY, group_confidences, token_confidences, token_trace


def entry(token: str, p: float, *alternatives: float) -> dict[str, Any]:
    top = [{"token": token, "logprob": math.log(p)}] + [
        {"token": f"alt{i}", "logprob": math.log(q)} for i, q in enumerate(alternatives)
    ]
    return {"token": token, "logprob": math.log(p), "top_logprobs": top}


def test_token_trace_and_token_confidences_from_given_logprobs() -> None:
    trace = token_trace([entry("1", 0.9, 0.05), entry("+", 0.5, 0.4), {"token": "x", "logprob": -0.1}])
    assert trace[0] == ("1", pytest.approx(math.log(0.9)), pytest.approx((math.log(0.9) + math.log(0.05)) / 2))
    assert trace[2] == ("x", -0.1, None)  # no alternatives returned
    assert token_confidences(trace[:2]) == pytest.approx(
        [-(math.log(0.9) + math.log(0.05)) / 2, -(math.log(0.5) + math.log(0.4)) / 2]
    )
    assert token_confidences(trace, "chosen") == pytest.approx([math.log(0.9), math.log(0.5), -0.1])
    with pytest.raises(MissingLogprobsError, match="top logprobs"):
        token_confidences(trace)


def test_group_confidences_slide_a_window() -> None:
    assert group_confidences([1.0, 2.0, 3.0, 4.0, 5.0], 2) == pytest.approx([1.5, 2.5, 3.5, 4.5])
    assert group_confidences([1.0, 2.0, 3.0], 3) == pytest.approx([2.0])
    assert group_confidences([1.0, 3.0], 8) == pytest.approx([2.0])  # shorter than the window: one group
    assert group_confidences([], 4) == []
    with pytest.raises(ValueError, match="window"):
        group_confidences([1.0], 0)


def trace_of(*ps: float) -> tuple[tuple[str, float, float | None], ...]:
    """A trace of one-character tokens, each with its own p and one alternative at (1 - p) / 4."""
    return token_trace([entry(str(i % 10), p, (1 - p) / 4) for i, p in enumerate(ps)])


def test_lowest_mean_and_tail_statistics() -> None:
    ps = [0.99] * 6 + [0.5, 0.5] + [0.99] * 6
    trace = trace_of(*ps)
    confidences = token_confidences(trace)
    lowest = TokenConfidenceVerifier(window=2, statistic="lowest")
    assert lowest.confidence(trace) == pytest.approx(min(group_confidences(confidences, 2)))
    assert lowest.confidence(trace) == pytest.approx(confidences[6])  # the confused stretch
    mean = TokenConfidenceVerifier(window=2, statistic="mean")
    assert mean.confidence(trace) == pytest.approx(sum(confidences) / len(confidences))
    tail = TokenConfidenceVerifier(window=2, statistic="tail")
    assert tail.confidence(trace) == pytest.approx(confidences[-1])
    assert lowest.to_score(lowest.confidence(trace)) == pytest.approx(1 - math.exp(-confidences[6]))
    chosen = TokenConfidenceVerifier(window=4, measure="chosen")
    assert chosen.to_score(chosen.confidence(trace)) == pytest.approx(math.exp(math.log(0.5) / 2 + math.log(0.99) / 2))
    assert chosen.top_logprobs == 0 and lowest.top_logprobs == 5


async def test_each_step_is_scored_by_its_prefix_and_keep_filters_the_batch() -> None:
    verifier = TokenConfidenceVerifier(window=2)
    sure = Candidate(steps=("012", "345"), meta={TOKENS_META_KEY: trace_of(0.99, 0.99, 0.99, 0.99, 0.99, 0.99)})
    late = Candidate(steps=("012", "345"), meta={TOKENS_META_KEY: trace_of(0.99, 0.99, 0.99, 0.99, 0.4, 0.4)})
    scores = await verifier.score_candidates("q", [sure, late])
    assert scores[0][0] == pytest.approx(scores[0][1]) and scores[1][0] == pytest.approx(scores[0][0])
    assert scores[1][1] < scores[1][0]  # the confusion is in the second step
    assert all(0.0 <= s <= 1.0 for row in scores for s in row)
    keep_half = TokenConfidenceVerifier(window=2, keep=0.5)
    filtered = await keep_half.score_candidates("q", [late, sure])
    assert filtered[0] == [0.0, 0.0] and filtered[1] == pytest.approx(scores[0])
    assert isinstance(verifier, CandidateVerifier)


async def test_text_alone_or_a_backend_without_logprobs_is_a_clear_error() -> None:
    verifier = TokenConfidenceVerifier()
    with pytest.raises(MissingLogprobsError, match="text only"):
        await verifier.score("q", [["1 + 1 = 2"]])
    with pytest.raises(MissingLogprobsError, match="no token logprobs"):
        await verifier.score_candidates("q", [Candidate(steps=("1 + 1 = 2",))])
    mute = ModelSpec(name="scripted/arith", supports_logprobs=False)
    graph = build_strategy_graph(BestOfNSpec(n=2, seed=0), model=mute, verifier=verifier)
    with pytest.raises(MissingLogprobsError, match="supports_logprobs=False"):
        await graph.ainvoke({"question": "What is 2 + 3?"})
    for kwargs in ({"window": 0}, {"keep": 0.0}, {"statistic": "max"}, {"measure": "entropy"}, {"top_logprobs": 0}):
        with pytest.raises(ValueError):
            TokenConfidenceVerifier(**kwargs)


async def test_on_the_scripted_double_wrong_samples_are_less_confident() -> None:
    verifier = make_verifier("confidence")
    assert isinstance(verifier, TokenConfidenceVerifier)
    right: list[float] = []
    wrong: list[float] = []
    for problem in arithmetic_problems(10, seed=3, levels=(3, 4, 5)):
        graph = build_strategy_graph(BestOfNSpec(n=8, seed=1), model="scripted/arith", verifier=verifier)
        result = await graph.ainvoke({"question": problem.question})
        for c in result["candidates"]:
            assert c.meta[TOKENS_META_KEY] and c.score is not None
            (right if grade(problem, c.answer) else wrong).append(c.score)
    assert right and wrong
    auc = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong) / (len(right) * len(wrong))
    assert auc > 0.8


async def test_it_weights_adaptive_sampling_too() -> None:
    spec = AdaptiveSpec(max_n=8, wave=4, selection="weighted", seed=1)
    graph = build_strategy_graph(spec, model="scripted/arith", verifier=TokenConfidenceVerifier())
    result = await graph.ainvoke({"question": "What is 12 * 7 + 5 - 3 * 4?"})
    assert result["answer"] == "77"
    assert all(c.score is not None and 0 < c.score <= 1 for c in result["candidates"])
