"""Adaptive sampling: the Beta stopping rule on hand-built votes, wave sizes, budgets, the spec, the policy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from ttc_agents import (
    AdaptiveSpec,
    Budget,
    Candidate,
    Gateway,
    PolicyAction,
    SampleBatch,
    build_strategy_graph,
    parse_strategy,
)
from ttc_agents._apps.calibrate import actions_for
from ttc_agents._core.stopping import beta_sf_half, keep_probability, lead_probability, top_two
from ttc_agents._llm.gateway import get_default_gateway
from ttc_agents.graphs.adaptive import replay_stop, should_stop, vote_totals, wave_size

MODEL = "scripted/arith"
EASY = "What is 2 + 3?"
NEVER = 1 - 1e-9
"""A threshold no vote of at most 30 samples reaches (30 unanimous votes give 1 - 2^-31)."""


@dataclass
class RecordingGateway(Gateway):
    sent: list[tuple[str, int]] = field(default_factory=list)

    async def sample(self, model: Any, messages: Sequence[Any], k: int = 1, **params: Any) -> SampleBatch:
        self.sent.append((params.get("node", "sample"), k))
        return await Gateway.sample(self, model, messages, k, **params)


def recording_gateway() -> RecordingGateway:
    base = get_default_gateway()
    return RecordingGateway(retry=base.retry, resolvers=base.resolvers)


def votes(*answers: str | None, scores: Sequence[float] | None = None) -> list[Candidate]:
    return [
        Candidate(steps=(f"The answer is {a}.",), answer=a, finished=True, score=None if scores is None else scores[i])
        for i, a in enumerate(answers)
    ]


# --- the stopping rule on hand-built vote counts -------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, 0.5),  # nothing known
        ({"5": 1}, 0.75),  # Beta(2, 1): P(x > 1/2) = 3/4
        ({"5": 4}, 31 / 32),  # four unanimous votes: 1 - 2^-5, past 0.95
        ({"5": 3}, 15 / 16),  # three are not enough at 0.95
        ({"5": 3, "6": 1}, 13 / 16),  # P(Binomial(5, 1/2) <= 3)
        ({"5": 2, "6": 2}, 0.5),  # a tie
        ({"5": 7, "6": 1}, 1 - 10 / 512),
        ({"5": 3, "6": 1, "7": 1, "8": 1}, 13 / 16),  # only the two largest totals enter
    ],
)
def test_lead_probability_of_vote_counts(counts: dict[str, float], expected: float) -> None:
    assert lead_probability(counts) == pytest.approx(expected, abs=1e-12)


def test_lead_probability_is_the_binomial_tail_and_the_continued_fraction_agrees() -> None:
    for v1 in range(0, 25):
        for v2 in range(0, v1 + 1):
            exact = sum(math.comb(v1 + v2 + 1, k) for k in range(v1 + 1)) / 2 ** (v1 + v2 + 1)
            assert lead_probability({"a": v1, "b": v2}) == pytest.approx(exact, abs=1e-12)
            # real-valued totals (weighted votes) go through the continued fraction: continuous there
            assert beta_sf_half(v1 + 1 + 1e-9, v2 + 1) == pytest.approx(exact, abs=1e-7)


def test_weighted_totals_are_monotone_and_symmetric() -> None:
    previous = 0.0
    for lead in [0.1 * i for i in range(7, 60)]:  # from the runner-up (0.7) up
        p = lead_probability({"a": lead, "b": 0.7})
        assert p >= previous - 1e-12
        previous = p
        assert beta_sf_half(lead + 1, 1.7) + beta_sf_half(1.7, lead + 1) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="non-negative"):
        lead_probability({"a": -1.0})


def test_keep_probability_against_a_fixed_maximum() -> None:
    # no samples left: a strict lead is kept for sure, a tie is not
    assert keep_probability({"5": 3, "6": 2}, 0) == pytest.approx(1.0)
    assert keep_probability({"5": 2, "6": 2}, 0) == 0.0
    # two samples cannot overturn a lead of three
    assert keep_probability({"5": 6, "6": 3}, 2) == pytest.approx(1.0)
    # 1 against 1, one left: a strict lead only if it goes to the leader, P = 1/2 under Beta(2, 2)
    assert keep_probability({"5": 1, "6": 1}, 1) == pytest.approx(0.5)
    # 1 against 0, one left: the runner-up ties with P = 1/3 under Beta(2, 1)
    assert keep_probability({"5": 1}, 1) == pytest.approx(2 / 3)
    # 6 against 2, four left: only 0-4 or 1-3 splits fail
    assert keep_probability({"5": 6, "6": 2}, 4) == pytest.approx(0.97902, abs=1e-5)
    # it tends to the Beta rule as the samples left grow, and is above it for few
    for counts in ({"5": 4}, {"5": 3, "6": 1}, {"5": 6, "6": 2}):
        assert keep_probability(counts, 2000) == pytest.approx(lead_probability(counts), abs=2e-3)
        assert keep_probability(counts, 4) >= lead_probability(counts)
    with pytest.raises(ValueError, match="remaining"):
        keep_probability({"5": 1}, -1)


def test_the_predictive_rule_stops_sooner_near_max_n() -> None:
    stream = votes(*"55565556" + "5556")
    beta = AdaptiveSpec(max_n=12, wave=4)
    predictive = AdaptiveSpec(max_n=12, wave=4, rule="predictive")
    assert replay_stop(beta, stream) == 12  # (6, 2) after 8: 0.910 < 0.95
    assert replay_stop(predictive, stream) == 8  # (6, 2) with 4 left: 0.979


def test_top_two_and_vote_totals() -> None:
    assert top_two({}) == (0.0, 0.0)
    assert top_two({"a": 2.0, "b": 5.0, "c": 1.0}) == (5.0, 2.0)
    pool = votes("5", "5", "6", None, scores=[0.9, 0.2, 0.8, 1.0])
    assert vote_totals(pool, "majority") == {"5": 2.0, "6": 1.0}  # no answer, no vote
    assert vote_totals(pool, "weighted") == pytest.approx({"5": 1.1, "6": 0.8})


def test_wave_sizes_and_replayed_stop_points() -> None:
    spec = AdaptiveSpec(max_n=10, wave=4)
    assert [wave_size(spec, drawn) for drawn in (0, 4, 8, 10)] == [4, 4, 2, 0]
    assert replay_stop(spec, votes(*"5555" + "666666")) == 4  # unanimous first wave
    assert replay_stop(spec, votes(*"5556" + "5555" + "55")) == 8  # (7, 1) after the second wave
    assert replay_stop(spec, votes(*"5656" + "5656" + "56")) == 10  # never confident: max_n
    assert replay_stop(spec, votes(*"56")) == 2  # a short stream: all of it
    assert not should_stop(spec, [])
    assert should_stop(spec, votes(*"5656565656"))  # max_n reached
    # weighted: low scores on the leader's samples need more evidence than counts do
    weighted = AdaptiveSpec(max_n=10, wave=4, selection="weighted")
    assert should_stop(weighted, votes(*"5555", scores=[1.0] * 4))
    assert not should_stop(weighted, votes(*"5555", scores=[0.5] * 4))


# --- the graph --------------------------------------------------------------------------------------


async def test_an_easy_question_stops_after_one_wave() -> None:
    gateway = recording_gateway()
    graph = build_strategy_graph(AdaptiveSpec(max_n=16, wave=4, seed=1), model="scripted/arith-easy", gateway=gateway)
    result = await graph.ainvoke({"question": EASY})
    assert gateway.sent == [("generate", 4)]
    total = result["ledger"].total
    assert (total.calls, total.samples) == (1, 4)
    assert result["answer"] == "5" and result["stopped_by"] is None
    assert result["strategy"]["strategy"] == "adaptive"


async def test_waves_are_one_request_each_up_to_max_n() -> None:
    gateway = recording_gateway()
    spec = AdaptiveSpec(max_n=10, wave=4, threshold=NEVER, seed=1)
    result = await build_strategy_graph(spec, model=MODEL, gateway=gateway).ainvoke({"question": EASY})
    assert gateway.sent == [("generate", 4), ("generate", 4), ("generate", 2)]
    total = result["ledger"].total
    assert (total.calls, total.samples, len(result["candidates"])) == (3, 10, 10)
    assert result["answer"] == "5"


async def test_the_graph_stops_where_the_rule_says_on_its_own_samples() -> None:
    spec = AdaptiveSpec(max_n=24, wave=3, seed=5)
    question = "What is 81 / 9 + 17 * 3 - 40?"
    result = await build_strategy_graph(spec, model="scripted/arith-hard").ainvoke({"question": question})
    drawn = result["candidates"]
    assert replay_stop(spec, drawn) == len(drawn) == result["ledger"].total.samples


async def test_weighted_selection_scores_every_wave_with_the_verifier() -> None:
    seen: list[int] = []

    def verifier(question: str, candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        seen.append(len(candidates))
        return [[0.9] * len(steps) for steps in candidates]

    spec = AdaptiveSpec(max_n=8, wave=4, threshold=NEVER, selection="weighted", seed=2)
    result = await build_strategy_graph(spec, model=MODEL, verifier=verifier).ainvoke({"question": EASY})
    assert seen == [4, 4]
    assert all(c.score == pytest.approx(0.9) for c in result["candidates"])


async def test_a_sample_budget_cuts_the_waves_short() -> None:
    spec = AdaptiveSpec(max_n=16, wave=4, threshold=NEVER, seed=3)
    result = await build_strategy_graph(spec, model=MODEL).ainvoke({"question": EASY, "budget": Budget(max_samples=6)})
    assert result["ledger"].total.samples == 6
    assert result["stopped_by"] == "max_samples"
    assert result["answer"] == "5"


def test_the_sync_api_runs_it() -> None:
    graph = build_strategy_graph(AdaptiveSpec(max_n=8, wave=4, seed=1), model="scripted/arith-easy")
    assert graph.invoke({"question": EASY})["answer"] == "5"


# --- the spec and the policy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"threshold": 0.5}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"max_n": 0}, "max_n"),
        ({"wave": 0}, "wave"),
        ({"selection": "naive"}, "selection"),
        ({"max_n": 4, "wave": 8}, "wave"),
        ({"waves": 4}, "waves"),
    ],
)
def test_the_spec_names_the_bad_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_strategy({"strategy": "adaptive", **fields})
    assert named in str(info.value)


def test_the_policy_can_hold_it_and_the_grid_offers_it() -> None:
    (action,) = actions_for("adaptive", "scripted/arith", 16)
    assert action.strategy == AdaptiveSpec(max_n=16, wave=4, selection="weighted")
    assert actions_for("adaptive", "scripted/arith", 2)[0].strategy == AdaptiveSpec(
        max_n=2, wave=2, selection="weighted"
    )
    again = PolicyAction.model_validate_json(action.model_dump_json())
    assert again == action and isinstance(again.strategy, AdaptiveSpec)
    assert action.key == "scripted/arith:adaptive(max_n=16,selection=weighted,wave=4)"
