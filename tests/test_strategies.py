"""The paper's mechanics of each strategy graph, on the scripted offline provider."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from ttc_agents import (
    ArithmeticStepVerifier,
    BeamSearchSpec,
    BestOfNSpec,
    Budget,
    DVTSSpec,
    Gateway,
    HybridSpec,
    RevisionSpec,
    SampleBatch,
    build_strategy_graph,
)
from ttc_agents._llm.gateway import get_default_gateway

MODEL = "scripted/arith"
QUESTION = "What is 12 * 7 + 5 - 3 * 4?"


@dataclass
class RecordingGateway(Gateway):
    """A gateway that keeps every request it sent: (node, k, last user message)."""

    sent: list[tuple[str, int, str]] = field(default_factory=list)

    async def sample(self, model: Any, messages: Sequence[Any], k: int = 1, **params: Any) -> SampleBatch:
        self.sent.append((params.get("node", "sample"), k, str(messages[-1]["content"])))
        return await Gateway.sample(self, model, messages, k, **params)


def recording_gateway() -> RecordingGateway:
    base = get_default_gateway()
    return RecordingGateway(retry=base.retry, resolvers=base.resolvers)


class ScoreBySteps:
    """A verifier with known scores: a step scores higher the larger the number it ends with."""

    name = "by-steps"

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, ...]]] = []

    async def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, ledger: Any = None
    ) -> list[list[float]]:
        self.batches.append([tuple(c) for c in candidates])
        out = []
        for steps in candidates:
            scores = []
            for step in steps:
                numbers = re.findall(r"-?\d+", step)
                scores.append(min(1.0, abs(int(numbers[-1])) / 1000) if numbers else 0.5)
            out.append(scores)
        return out


async def test_best_of_n_sends_one_request_with_n() -> None:
    gateway = recording_gateway()
    graph = build_strategy_graph(
        BestOfNSpec(n=8, seed=1), model=MODEL, verifier=ArithmeticStepVerifier(), gateway=gateway
    )
    result = await graph.ainvoke({"question": QUESTION})
    total = result["ledger"].total
    assert [(node, k) for node, k, _ in gateway.sent] == [("generate", 8)]
    assert total.calls == 1 and total.samples == 8
    assert len(result["candidates"]) == 8
    assert all(c.score is not None for c in result["candidates"])
    assert result["answer"] is not None and result["stopped_by"] is None


@pytest.mark.parametrize("selection", ["naive", "weighted", "majority"])
async def test_best_of_n_answer_is_the_selection_over_its_candidates(selection: str) -> None:
    from ttc_agents import select_answer

    graph = build_strategy_graph(
        BestOfNSpec(n=12, seed=3, selection=selection),
        model="scripted/arith-hard",  # type: ignore[arg-type]
        verifier=ArithmeticStepVerifier(),
    )
    result = await graph.ainvoke({"question": QUESTION})
    assert result["answer"] == select_answer(result["candidates"], selection).answer  # type: ignore[arg-type]


async def test_beam_search_keeps_top_n_over_m_and_expands_each_by_m() -> None:
    gateway = recording_gateway()
    verifier = ScoreBySteps()
    spec = BeamSearchSpec(n=8, width=2, max_rounds=3, seed=0)
    graph = build_strategy_graph(spec, model=MODEL, verifier=verifier, gateway=gateway)
    await graph.ainvoke({"question": QUESTION})
    expand = [(k, text) for node, k, text in gateway.sent if node == "expand"]
    assert expand[0][0] == 8  # round 0: N first steps in one request
    later = expand[1:]
    assert later and all(k == 2 for k, _ in later)  # every kept beam expanded by M
    assert len(expand) - 1 <= 4 * (spec.max_rounds - 1)
    # Round 1's prefixes are exactly the 4 best-scored unfinished candidates of round 0.
    first_round = verifier.batches[0]
    scores = await ScoreBySteps().score(QUESTION, first_round)
    ranked = sorted(zip(first_round, scores, strict=True), key=lambda p: p[1][-1], reverse=True)
    top_steps = {steps[-1] for steps, _ in ranked[:4]}
    expanded_prefixes = {text.split("Steps so far:\n")[1].split("\n\n")[0] for _, text in later[:4]}
    assert expanded_prefixes <= top_steps


async def test_lookahead_spends_n_times_k_plus_one() -> None:
    spec = BeamSearchSpec(n=4, width=2, max_rounds=1, lookahead=2, seed=0)
    graph = build_strategy_graph(spec, model=MODEL, verifier=ArithmeticStepVerifier())
    result = await graph.ainvoke({"question": QUESTION})
    nodes = result["ledger"].by_node()
    assert nodes["expand"].samples == 4
    assert nodes["lookahead"].samples == 4 * 2
    assert result["ledger"].total.samples == 4 * (2 + 1)


async def test_dvts_runs_independent_subtrees() -> None:
    gateway = recording_gateway()
    spec = DVTSSpec(n=8, width=2, max_rounds=6, seed=0)
    result = await build_strategy_graph(spec, model=MODEL, verifier=ArithmeticStepVerifier(), gateway=gateway).ainvoke(
        {"question": QUESTION}
    )
    expand = [k for node, k, _ in gateway.sent if node == "expand"]
    assert expand[0] == 8 and all(k == 2 for k in expand[1:])
    groups = {c.group for c in result["candidates"]}
    assert groups <= set(range(4)) and len(groups) >= 2
    assert result["answer"] is not None


async def test_revision_context_holds_the_last_k_attempts() -> None:
    gateway = recording_gateway()
    spec = RevisionSpec(attempts=6, context=2, chains=1, seed=0)
    result = await build_strategy_graph(spec, model=MODEL, verifier=ArithmeticStepVerifier(), gateway=gateway).ainvoke(
        {"question": QUESTION}
    )
    revise = [text for node, _, text in gateway.sent if node == "revise"]
    assert len(revise) == 5
    last = revise[-1]
    assert "Attempt 4:" in last and "Attempt 5:" in last
    assert "Attempt 3:" not in last and "Attempt 1:" not in last
    assert [c.attempt for c in result["candidates"]] == list(range(6))


async def test_hybrid_runs_parallel_chains_of_revisions() -> None:
    spec = HybridSpec(n=8, sequential_ratio=2.0, seed=0)
    assert spec.shape == (2, 4)
    result = await build_strategy_graph(spec, model=MODEL, verifier=ArithmeticStepVerifier()).ainvoke(
        {"question": QUESTION}
    )
    chains = {(c.chain, c.attempt) for c in result["candidates"]}
    assert chains == {(chain, attempt) for chain in range(2) for attempt in range(4)}
    assert result["ledger"].by_node()["generate"].calls == 1  # first attempts of both chains in one request


async def test_budget_stop_returns_best_so_far_and_names_the_limit() -> None:
    graph = build_strategy_graph(BeamSearchSpec(n=8, width=2, seed=0), model=MODEL, verifier=ArithmeticStepVerifier())
    result = await graph.ainvoke({"question": QUESTION, "budget": Budget(max_samples=12)})
    assert result["stopped_by"] == "max_samples"
    assert result["ledger"].total.samples <= 12
    assert result["answer"] is not None


async def test_graph_works_as_a_runnable_batch_and_stream() -> None:
    graph = build_strategy_graph(BestOfNSpec(n=4, seed=2), model=MODEL, verifier=ArithmeticStepVerifier())
    results = await graph.abatch([{"question": "What is 2 + 3?"}, {"question": "What is 6 * 7?"}])
    assert [r["answer"] for r in results] == ["5", "42"]
    updates = [chunk async for chunk in graph.astream({"question": "What is 2 + 3?"}, stream_mode="updates")]
    assert [next(iter(u)) for u in updates] == ["start", "generate", "verify", "select"]
