"""The router at matched compute: one regression test per mechanical cause of issue 11, and the
held-out evaluation's statistics (matched tokens, compute factor)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ttc_agents import ArithmeticStepVerifier, BestOfNSpec, Budget, ModelSpec, RevisionSpec, build_strategy_graph
from ttc_agents._apps.calibrate import run_grid, standalone_cost
from ttc_agents._apps.datasets import load_problems
from ttc_agents._core.budget import LedgerEntry, LedgerSnapshot, Usage
from ttc_agents._core.candidates import Candidate
from ttc_agents._core.matched import CurvePoint, compute_factor, interpolate_accuracy, matched_compute
from ttc_agents._routing.policy import Cost, Policy, PolicyAction, PolicyEntry
from ttc_agents.graphs.router import Router, routed_answer

MODEL = "scripted/arith"
HARD = "What is 48 * 17 - 23 * 9 + 310?"


def entry(
    strategy: BestOfNSpec | RevisionSpec, budget: int, accuracy: float, tokens: float, model: str = MODEL
) -> PolicyEntry:
    return PolicyEntry(
        bin=3,
        budget=budget,
        action=PolicyAction(model=model, strategy=strategy),
        accuracy=accuracy,
        cv_accuracy=accuracy,
        cost=Cost(samples=budget, tokens=tokens),
        questions=30,
    )


def one_bin_policy(entries: list[PolicyEntry], **fields: object) -> Policy:
    """Every question lands in bin 3 (the thresholds surround every probe statistic)."""
    data: dict[str, object] = {
        "models": [MODEL],
        "verifier": "arithmetic",
        "dataset": "synthetic",
        "thresholds": [-2.0, -1.0, 2.0, 3.0],
        "table": entries,
        "candidates": entries,
    }
    data.update(fields)
    return Policy.model_validate(data)


# --- cause 1: the rest of best-of-N are other samples than the probe's --------------------------------


async def test_best_of_n_after_the_probe_draws_new_samples_not_copies_of_the_probe() -> None:
    policy = one_bin_policy([entry(BestOfNSpec(n=8), 8, 0.8, 800)])
    router = Router(policy, verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")
    result = await router.graph.ainvoke({"question": HARD, "generation_budget": 8})
    texts = [c.text for c in result["candidates"]]
    assert len(texts) == 8 and result["trace"]["probe_reused"] == 4
    # On the deterministic double, the same (absent) seed gave the probe's 4 samples again.
    assert texts[4:] != texts[:4]
    assert result["trace"]["evidence"]["seed"] is not None


# --- cause 2: the probe is counted once in a token-budget lookup ---------------------------------------


def test_the_lookup_does_not_charge_best_of_n_for_the_probe_twice() -> None:
    # The example: best-of-8 costs 968 tokens alone; after a 484-token probe, a question with
    # max_tokens=1368 can afford it (its 4 probe samples are 4 of its 8).
    policy = one_bin_policy([entry(BestOfNSpec(n=4), 4, 0.6, 484), entry(BestOfNSpec(n=8), 8, 0.8, 968)])
    chosen = policy.choose(3, Budget(max_tokens=1368), probe_spent=Cost(samples=4, tokens=484))
    assert chosen.action.strategy == BestOfNSpec(n=8)
    # A strategy that does not reuse the probe pays the probe on top of its own cost.
    policy = one_bin_policy(
        [entry(BestOfNSpec(n=4), 4, 0.6, 484), entry(RevisionSpec(attempts=4), 4, 0.9, 968)],
        probe_cost=Cost(samples=4, tokens=484),
    )
    assert policy.choose(3, Budget(max_tokens=900), probe_spent=Cost(tokens=484)).action.strategy.strategy == (
        "best_of_n"
    )
    assert policy.choose(3, Budget(max_tokens=1000), probe_spent=Cost(tokens=484)).action.strategy == RevisionSpec(
        attempts=4
    )


# --- cause 3: requests sized from what calibration measured fit budgets near the mean cost -----------


async def test_a_budget_near_the_mean_cost_admits_the_chosen_best_of_n() -> None:
    verifier = ArithmeticStepVerifier()
    calibrated = ModelSpec(name=MODEL, max_tokens=128)  # what Policy.completion_caps gives the router
    graph = build_strategy_graph(BestOfNSpec(n=4, seed=1), model=calibrated, verifier=verifier)
    alone = await graph.ainvoke({"question": HARD})
    cost = alone["ledger"].total.total_tokens
    limited = await graph.ainvoke({"question": HARD, "budget": Budget(max_tokens=math.ceil(1.3 * cost))})
    # With the default 512-token cap and one request, no sample fitted at all. Now the first request
    # reserves the prompt's byte bound plus the calibrated cap per sample, and once it settles the
    # next wave reserves the prompt size the server reported.
    assert len(limited["candidates"]) >= 2
    assert limited["ledger"].total.total_tokens <= math.ceil(1.3 * cost)


def test_the_router_gives_its_model_the_calibrated_completion_cap() -> None:
    policy = one_bin_policy([entry(BestOfNSpec(n=4), 4, 0.6, 484)], completion_caps={MODEL: 96})
    assert Router(policy, verifier_name="none", force=True).models[MODEL].max_tokens == 96
    explicit = {MODEL: ModelSpec(name=MODEL, max_tokens=300)}
    assert Router(policy, models=explicit, verifier_name="none", force=True).models[MODEL].max_tokens == 300


# --- cause 4: the deployed answer rule is the calibrated one --------------------------------------------


async def test_a_revision_choice_answers_with_revisions_own_selection() -> None:
    spec = RevisionSpec(attempts=3, chains=1, seed=5)
    policy = one_bin_policy([entry(spec, 4, 0.9, 500)])
    router = Router(policy, verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")
    result = await router.graph.ainvoke({"question": HARD, "generation_budget": 4})
    alone = await build_strategy_graph(spec, model=MODEL, verifier=ArithmeticStepVerifier()).ainvoke({"question": HARD})
    assert result["answer"] == alone["answer"]
    assert result["trace"]["selection"] == "revision's own"


def test_routed_answer_keeps_the_strategys_answer_over_a_probe_majority() -> None:
    revision = one_bin_policy([entry(RevisionSpec(attempts=2), 4, 0.9, 500)])
    probes = [Candidate(steps=("x",), answer="7", finished=True, score=1.0) for _ in range(4)]
    mine = [Candidate(steps=("y",), answer="9", finished=True, score=0.1)]
    assert routed_answer(revision, revision.table[0], probes + mine, "9") == ("9", "revision's own")
    bon = one_bin_policy([entry(BestOfNSpec(n=5, selection="majority"), 5, 0.9, 500)])
    assert routed_answer(bon, bon.table[0], probes + mine, None) == ("7", "majority")


# --- cause 6: calibration's graph cells are independent of its pool (and of the probe) ---------------


async def test_calibration_graph_cells_do_not_replay_the_pools_samples() -> None:
    problems = load_problems("arith?size=40&seed=3")
    grid = await run_grid(
        problems,
        models=[MODEL],
        verifier=ArithmeticStepVerifier(),
        budgets=[1],
        strategies=["best_of_n", "revision"],
        probe_samples=1,
        progress=False,
    )
    answers: dict[str, dict[str, str | None]] = {}
    for cell in grid.cells:
        answers.setdefault(cell.outcome.question_id, {})[cell.outcome.action.strategy.strategy] = cell.answer
    # One revision attempt is one fresh sample: with the pool's seed it WAS the pool's first sample.
    differ = sum(a["revision"] != a["best_of_n"] for a in answers.values())
    assert differ > 0


# --- cause 7: a batched verifier call's prompt is shared by its candidates -----------------------------


def test_a_best_of_b_share_of_a_batched_verifier_call_pays_its_share_of_the_prompt() -> None:
    pool = LedgerSnapshot(
        entries=(
            LedgerEntry("generate", MODEL, Usage(calls=1, samples=8, prompt_tokens=100, completion_tokens=800)),
            LedgerEntry("verify", "reward", Usage(calls=1, samples=0, prompt_tokens=4000)),
        )
    )
    cost = standalone_cost(pool, 2 / 8)
    # generation: one request's prompt (100) + a quarter of the completions; verifier: a quarter.
    assert cost.tokens == pytest.approx(100 + 200 + 1000)


# --- the evaluation's statistics -----------------------------------------------------------------------


CURVE = [CurvePoint(1, 100, 0.5), CurvePoint(2, 200, 0.6), CurvePoint(4, 400, 0.7), CurvePoint(8, 800, 0.72)]


def test_interpolation_is_linear_in_log_tokens_and_monotone() -> None:
    assert interpolate_accuracy(CURVE, 200) == pytest.approx(0.6)
    assert interpolate_accuracy(CURVE, math.sqrt(200 * 400)) == pytest.approx(0.65)
    assert interpolate_accuracy(CURVE, 50) == 0.5 and interpolate_accuracy(CURVE, 5000) == 0.72
    dip = [CurvePoint(1, 100, 0.5), CurvePoint(2, 200, 0.4), CurvePoint(4, 400, 0.6)]
    assert interpolate_accuracy(dip, 200) == pytest.approx(0.5)  # more samples never hurt on average


def test_compute_factor_is_the_tokens_best_of_n_needs_over_the_routers() -> None:
    assert compute_factor(CURVE, 0.7, 100) == pytest.approx(4.0)
    assert compute_factor(CURVE, 0.6, 400) == pytest.approx(0.5)
    assert math.isinf(compute_factor(CURVE, 0.9, 100))


def test_matched_compute_intervals_cover_a_router_equal_to_best_of_n() -> None:
    rng = np.random.default_rng(0)
    right = rng.random((200, 4)) < np.array([0.5, 0.6, 0.7, 0.72])
    tokens = np.tile([100.0, 200.0, 400.0, 800.0], (200, 1))
    # The "router" is best-of-4 itself: no gain, factor 1, and the intervals say so.
    report = matched_compute(tokens, right.astype(float), tokens[:, 2], right[:, 2].astype(float))
    assert report["delta"] == pytest.approx(0.0, abs=1e-9)
    assert report["delta_ci"][0] <= 0.0 <= report["delta_ci"][1]
    assert report["compute_factor"] == pytest.approx(1.0)


# --- costs measured alone: no score cache shared between runs -----------------------------------------


async def test_a_calibration_cell_is_charged_what_it_costs_alone() -> None:
    from ttc_agents import BeamSearchSpec
    from ttc_agents._apps.calibrate import GRAPH_SEED_OFFSET
    from ttc_agents.verifiers import make_verifier

    problems = load_problems("arith?size=6&seed=2")
    verifier = make_verifier("prm:scripted/arith")
    grid = await run_grid(
        problems,
        models=[MODEL],
        verifier=verifier,
        budgets=[4],
        strategies=["best_of_n", "beam_search"],
        progress=False,
    )
    for problem in problems:
        cell = next(
            c.outcome
            for c in grid.cells
            if c.outcome.question_id == problem.id and c.outcome.action.strategy.strategy == "beam_search"
        )
        spec = BeamSearchSpec(n=4, width=4, seed=GRAPH_SEED_OFFSET)
        alone = await build_strategy_graph(spec, model=MODEL, verifier=make_verifier("prm:scripted/arith")).ainvoke(
            {"question": problem.question}
        )
        # The judge's cache held the pool's first-step scores: the cell used to get them for free.
        assert cell.cost.tokens == alone["ledger"].total.total_tokens, problem.id


async def test_the_router_fills_a_budget_near_its_own_cost() -> None:
    """The probe's request reserves the prompt's byte bound; the rest of best-of-N reserves the size the
    probe's answer reported (same messages) and the calibrated cap, so 1.3x the router's own cost buys
    all 8 samples."""
    policy = one_bin_policy(
        [entry(BestOfNSpec(n=4), 4, 0.6, 300), entry(BestOfNSpec(n=8), 8, 0.8, 600)], completion_caps={MODEL: 128}
    )
    router = Router(policy, verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")
    alone = await router.graph.ainvoke({"question": HARD, "generation_budget": 8})
    cost = alone["ledger"].total.total_tokens
    limited = await router.graph.ainvoke({"question": HARD, "budget": Budget(max_tokens=math.ceil(1.3 * cost))})
    assert limited["trace"]["choice"]["action"].endswith("best_of_n(n=8)")
    assert limited["ledger"].total.samples == 8
    assert limited["ledger"].total.total_tokens <= math.ceil(1.3 * cost)


async def test_under_a_hard_budget_best_of_n_spends_the_whole_budget_not_the_largest_size_that_fits() -> None:
    """Issue 11: in a hard bin, best-of-16's mean cost passed the budget, so the router ran best-of-8 and
    left a third of the budget unspent while plain best-of-16 under the same limit used it all."""
    caps = {MODEL: 128}
    probe = Router(
        one_bin_policy([entry(BestOfNSpec(n=8), 8, 0.6, 600)], completion_caps=caps),
        verifier_name="arithmetic",
        verifier=ArithmeticStepVerifier(),
    )
    eight = (await probe.graph.ainvoke({"question": HARD, "generation_budget": 8}))["ledger"].total.total_tokens
    # This bin's questions cost more than the budget's question: best-of-16 is measured above the limit.
    policy = one_bin_policy(
        [entry(BestOfNSpec(n=8), 8, 0.6, eight), entry(BestOfNSpec(n=16), 16, 0.7, 2.2 * eight)], completion_caps=caps
    )
    router = Router(policy, verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")
    limit = math.ceil(1.6 * eight)
    limited = await router.graph.ainvoke({"question": HARD, "budget": Budget(max_tokens=limit)})
    assert limited["trace"]["choice"]["action"].endswith("best_of_n(n=16)")
    assert 8 < limited["ledger"].total.samples < 16  # cut where the budget ran out
    assert limited["ledger"].total.total_tokens <= limit
    assert limited["answer"] is not None


# --- a probe that cannot change the choice is not drawn ---------------------------------------------


def every_bin_policy(strategy: BestOfNSpec, budget: int, model: str = MODEL) -> Policy:
    rows = [entry(strategy, budget, 0.8, 800, model).model_copy(update={"bin": b}) for b in range(1, 6)]
    return one_bin_policy(rows, models=[model])


@pytest.mark.parametrize("model", [MODEL, "scripted/pop-weakprm"])
async def test_best_of_n_in_every_bin_skips_the_probe_and_is_best_of_n_in_one_request(model: str) -> None:
    from ttc_agents.verifiers import make_verifier
    from ttc_agents.verifiers._base import fresh_verifier

    verifier = make_verifier(f"prm:{model}")
    policy = every_bin_policy(BestOfNSpec(n=8), 8, model).model_copy(update={"verifier": verifier.name})
    for problem in load_problems("arith?size=6&seed=3"):
        router = Router(policy, verifier=fresh_verifier(verifier), verifier_name=verifier.name, probe_seed=11)
        out = await router.graph.ainvoke({"question": problem.question, "generation_budget": 8})
        alone = await build_strategy_graph(
            BestOfNSpec(n=8, seed=11), model=router.models[model], verifier=fresh_verifier(verifier)
        ).ainvoke({"question": problem.question})
        assert out["trace"]["bin"] is None and out["ledger"].total.calls == alone["ledger"].total.calls
        assert [c.text for c in out["candidates"]] == [c.text for c in alone["candidates"]]
        assert out["answer"] == alone["answer"]
        assert out["ledger"].total.total_tokens == alone["ledger"].total.total_tokens
        probing = Router(
            policy, verifier=fresh_verifier(verifier), verifier_name=verifier.name, probe_seed=11, skip_idle_probe=False
        )
        probed = await probing.graph.ainvoke({"question": problem.question, "generation_budget": 8})
        assert probed["trace"]["bin"] is not None and probed["trace"]["probe_reused"] == 4
        # The probe's request and then the rest's: two generation requests where best-of-8 alone makes one.
        assert [e.node for e in out["ledger"].entries if e.node.endswith("generate") or e.node == "estimate"] == [
            "best_of_n/generate"
        ]
        assert {e.node for e in probed["ledger"].entries} >= {"estimate", "best_of_n/generate"}


async def test_a_setting_that_differs_by_bin_still_probes() -> None:
    rows = [entry(BestOfNSpec(n=8), 8, 0.8, 800).model_copy(update={"bin": b}) for b in range(1, 6)]
    rows[0] = entry(BestOfNSpec(n=8, selection="majority"), 8, 0.8, 800).model_copy(update={"bin": 1})
    router = Router(one_bin_policy(rows), verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")
    assert router.bin_free_choice(8) is None
    out = await router.graph.ainvoke({"question": HARD, "generation_budget": 8})
    assert out["trace"]["bin"] == 3 and out["trace"]["probe_reused"] == 4


async def test_under_a_hard_budget_the_router_still_probes() -> None:
    # A probe-less best-of-N of the next size up spends a hard budget on samples and leaves the
    # verifier short; under a budget the probe stays (pop-search at T(N=8) lost 7 points without it).
    rows = [
        entry(BestOfNSpec(n=n), n, 0.5 + n / 100, tokens).model_copy(update={"bin": b})
        for b in range(1, 6)
        for n, tokens in ((4, 300), (8, 600), (16, 1200))
    ]
    router = Router(one_bin_policy(rows), verifier=ArithmeticStepVerifier(), verifier_name="arithmetic", probe_seed=11)
    assert router.bin_free_choice(8) is not None
    out = await router.graph.ainvoke({"question": HARD, "budget": Budget(max_tokens=900)})
    assert out["trace"]["bin"] == 3 and out["ledger"].total.total_tokens <= 900
