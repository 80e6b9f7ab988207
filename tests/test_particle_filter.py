"""Particle filtering against a PRM: softmax weights, resampling in proportion, one request per prefix."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from ttc_agents import (
    ArithmeticStepVerifier,
    Budget,
    Candidate,
    Gateway,
    ParticleFilterSpec,
    SampleBatch,
    build_strategy_graph,
    parse_strategy,
)
from ttc_agents._apps.calibrate import actions_for
from ttc_agents._llm.gateway import get_default_gateway
from ttc_agents.graphs.particle_filter import resample, resampling_weights

QUESTION = "What is 12 * 7 + 5 - 3 * 4?"


@dataclass
class RecordingGateway(Gateway):
    sent: list[tuple[str, int, str]] = field(default_factory=list)

    async def sample(self, model: Any, messages: Sequence[Any], k: int = 1, **params: Any) -> SampleBatch:
        self.sent.append((params.get("node", "sample"), k, str(messages[-1]["content"])))
        return await Gateway.sample(self, model, messages, k, **params)


def particle(score: float | None, name: str) -> Candidate:
    return Candidate(steps=(name,), score=score)


def test_weights_are_a_softmax_of_the_scores_log_odds() -> None:
    particles = [particle(0.9, "a"), particle(0.1, "b"), particle(None, "c")]
    weights = resampling_weights(particles, 0.5)
    expected = [math.exp(math.log(9) / 0.5), math.exp(-math.log(9) / 0.5), 1.0]
    assert weights == pytest.approx([e / sum(expected) for e in expected])
    assert resampling_weights(particles[:2], 1.0)[0] == pytest.approx(81 / 82)
    assert resampling_weights([particle(1.0, "a"), particle(0.0, "b")], 1.0)[1] > 0  # clipped, never 0
    assert resampling_weights([particle(None, "a"), particle(None, "b")], 1.0) == [0.5, 0.5]
    cold = resampling_weights(particles[:2], 0.01)
    assert cold[0] > 0.999  # a low temperature is nearly greedy
    assert resampling_weights([], 1.0) == []


def test_resampling_draws_in_proportion_to_the_weights() -> None:
    particles = [particle(None, "a"), particle(None, "b"), particle(None, "c"), particle(None, "d")]
    weights = [0.5, 0.3, 0.2, 0.0]
    drawn = resample(particles, weights, 20000, random.Random(7))
    counts = Counter(p.steps[0] for p in drawn)
    assert counts["d"] == 0
    for name, weight in zip("abc", weights, strict=False):
        assert counts[name] / len(drawn) == pytest.approx(weight, abs=0.015)
    again = resample(particles, weights, 8, random.Random(7))
    assert again == resample(particles, weights, 8, random.Random(7))  # seeded: repeatable


async def test_round_zero_is_one_request_and_copies_of_a_prefix_share_one() -> None:
    base = get_default_gateway()
    gateway = RecordingGateway(retry=base.retry, resolvers=base.resolvers)
    spec = ParticleFilterSpec(n=8, max_rounds=6, seed=1)
    result = await build_strategy_graph(
        spec, model="scripted/arith", verifier=ArithmeticStepVerifier(), gateway=gateway
    ).ainvoke({"question": QUESTION})
    assert gateway.sent[0][:2] == ("expand", 8)
    prefixes = [prompt for _, _, prompt in gateway.sent[1:]]
    assert all(k >= 1 for _, k, _ in gateway.sent)
    total = result["ledger"].total
    assert total.samples == sum(k for _, k, _ in gateway.sent) and total.calls == len(gateway.sent)
    assert len(prefixes) < total.samples - 8  # some requests carried several copies (n > 1)
    assert len(result["candidates"]) == 8 and result["answer"] == "77"


async def test_a_budget_stops_it_with_an_answer() -> None:
    spec = ParticleFilterSpec(n=8, seed=2)
    graph = build_strategy_graph(spec, model="scripted/arith", verifier=ArithmeticStepVerifier())
    result = await graph.ainvoke({"question": QUESTION, "budget": Budget(max_samples=12)})
    assert result["ledger"].total.samples <= 12
    assert result["stopped_by"] == "max_samples"


@pytest.mark.parametrize(
    ("fields", "named"), [({"width": 2}, "width"), ({"weight_temperature": 0}, "weight_temperature"), ({"n": 0}, "n")]
)
def test_the_spec_names_the_bad_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_strategy({"strategy": "particle_filter", **fields})
    assert named in str(info.value)


def test_the_grid_offers_it() -> None:
    (action,) = actions_for("particle_filter", "scripted/arith", 8)
    assert action.strategy == ParticleFilterSpec(n=8)
