"""Thinking settings (effort levels, thinking budgets) as part of an action: booking, reservation,
truncation, the scripted double's reasoning, calibration that chooses among levels per bin."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from ttc_agents import BestOfNSpec, Budget, Gateway, Ledger, ModelSpec, build_strategy_graph
from ttc_agents._apps.bench_runner import setting_of
from ttc_agents._apps.calibrate import calibrate
from ttc_agents._apps.datasets import Problem, arithmetic_problems, grade
from ttc_agents._core.answers import extract_answer
from ttc_agents._core.candidates import Candidate, select_answer
from ttc_agents._core.thinking import EFFORT_ALLOWANCE, Thinking, parse_thinking, thinking_params
from ttc_agents._llm.litellm import litellm
from ttc_agents._llm.scripted import register_scripted_provider, scripted_respond, scripted_token_count
from ttc_agents._routing.moves import SearchContext, extend_by_one_step
from ttc_agents._routing.policy import PolicyAction
from ttc_agents.cli.calibrate import parse_thinking_levels
from ttc_agents.graphs.router import Router
from ttc_agents.prompts import render_prompt
from ttc_agents.testing import FakeOpenAIServer, FakeServerConfig
from ttc_agents.verifiers._factory import make_verifier

register_scripted_provider()

QUESTION = "What is (17 * 23 + 48) * 3 - 19?"
MESSAGES = [{"role": "user", "content": render_prompt("generate", question=QUESTION)}]


def arith(**fields: object) -> ModelSpec:
    return ModelSpec(name="scripted/arith", **fields)  # type: ignore[arg-type]


# --- booking ------------------------------------------------------------------------------------


async def test_reasoning_tokens_are_booked_apart_and_in_the_totals() -> None:
    ledger = Ledger()
    batch = await Gateway().sample(arith(thinking="high"), MESSAGES, 6, ledger=ledger, temperature=0.8, seed=3)
    total = ledger.total
    visible = sum(scripted_token_count(text) for text in batch.texts)
    assert total.reasoning_tokens > 0
    assert total.completion_tokens == visible + total.reasoning_tokens  # hidden, yet in the totals
    assert total.total_tokens == total.prompt_tokens + visible + total.reasoning_tokens
    assert total.thinking_samples == 6
    assert total.requested_reasoning_tokens == 6 * EFFORT_ALLOWANCE["high"]
    plain = Ledger()
    await Gateway().sample(arith(), MESSAGES, 6, ledger=plain, temperature=0.8, seed=3)
    assert plain.total.reasoning_tokens == plain.total.thinking_samples == 0


async def test_reasoning_tokens_are_priced_at_the_reasoning_price() -> None:
    prices = {"usd_per_input_token": 1e-6, "usd_per_output_token": 2e-6, "usd_per_reasoning_token": 8e-6}
    ledger = Ledger()
    await Gateway().sample(arith(thinking="medium", **prices), MESSAGES, 4, ledger=ledger, seed=1)
    t = ledger.total
    expected = t.prompt_tokens * 1e-6 + (t.completion_tokens - t.reasoning_tokens) * 2e-6 + t.reasoning_tokens * 8e-6
    assert t.reasoning_tokens > 0
    assert t.usd == pytest.approx(expected)


async def test_the_reasoning_price_comes_from_litellms_cost_map(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {**litellm.model_cost["scripted/arith-hard"], "output_cost_per_reasoning_token": 1e-5}
    monkeypatch.setitem(litellm.model_cost, "scripted/arith-hard", entry)
    gateway, ledger = Gateway(), Ledger()
    spec = ModelSpec(name="scripted/arith-hard", thinking="low")
    assert gateway.reasoning_price(spec) == 1e-5
    await gateway.sample(spec, MESSAGES, 2, ledger=ledger, seed=0)
    t = ledger.total
    in_price, out_price = gateway.prices(spec)
    assert in_price is not None and out_price is not None
    expected = t.prompt_tokens * in_price + (t.completion_tokens - t.reasoning_tokens) * out_price
    assert t.usd == pytest.approx(expected + t.reasoning_tokens * 1e-5)


# --- reservation --------------------------------------------------------------------------------


async def test_a_request_asks_for_the_answer_cap_plus_the_allowance_and_a_server_that_ignores_it_works() -> None:
    with FakeOpenAIServer(FakeServerConfig(completion_tokens=12)) as server:
        spec = ModelSpec(
            name="openai/fake",
            api_base=server.url,
            api_key=SecretStr("none"),
            thinking="high",
            thinking_tokens={"high": 1000},
        )
        ledger = Ledger()
        batch = await Gateway().sample(spec, MESSAGES, 2, ledger=ledger, max_tokens=64)
        body = server.requests[0]
    assert body["reasoning_effort"] == "high" and body["max_tokens"] == 64 + 1000
    assert len(batch.samples) == 2 and not any(s.truncated for s in batch.samples)
    assert ledger.total.reasoning_tokens == 0 and ledger.total.thinking_samples == 2  # asked, not delivered


async def test_the_reservation_holds_the_thinking_allowance_so_a_budget_is_never_passed() -> None:
    spec = arith(thinking="high", thinking_tokens={"high": 600}, max_tokens=64)
    for limit in (700, 1400, 3000, 6000):
        ledger = Ledger(budget=Budget(max_tokens=limit))
        batch = await Gateway().sample(spec, MESSAGES, 8, ledger=ledger, seed=limit)
        assert ledger.total.charged_tokens <= limit
        if len(batch.samples) < 8:
            assert batch.stopped_by == "max_tokens"
    # A sample's worst case is its answer cap plus the allowance: 64 tokens would fit in 700, 664 do not.
    ledger = Ledger(budget=Budget(max_tokens=700))
    assert not (await Gateway().sample(spec, MESSAGES, 8, ledger=ledger)).samples
    assert ledger.stopped_by == "max_tokens" and ledger.total.calls == 0


async def test_the_answer_keeps_its_cap_beside_the_reasoning() -> None:
    ledger = Ledger()
    batch = await Gateway().sample(arith(thinking="high", max_tokens=64), MESSAGES, 8, ledger=ledger, seed=5)
    assert ledger.total.reasoning_tokens > 64 * 8  # it thought more than the answer's cap...
    assert not any(s.truncated for s in batch.samples)  # ...and every answer still came


# --- truncation ---------------------------------------------------------------------------------


async def test_samples_whose_reasoning_used_max_tokens_are_booked_truncated_and_never_win() -> None:
    spec = arith(thinking="medium", thinking_tokens={"medium": 100}, max_tokens=40)
    graph = build_strategy_graph(BestOfNSpec(n=16, seed=2), model=spec)
    result = await graph.ainvoke({"question": QUESTION})
    total = result["ledger"].total
    truncated = [c for c in result["candidates"] if c.meta.get("truncated")]
    assert 0 < len(truncated) < 16 and total.truncated == len(truncated)
    assert all(c.answer is None for c in truncated)
    assert total.completion_tokens >= total.reasoning_tokens >= 140 * len(truncated)  # billed in full
    kept = [c for c in result["candidates"] if not c.meta.get("truncated")]
    assert result["answer"] == select_answer(kept, "weighted").answer


async def test_every_sample_truncated_gives_no_answer_but_is_paid_for() -> None:
    spec = arith(thinking="high", thinking_tokens={"high": 8}, max_tokens=8)
    graph = build_strategy_graph(BestOfNSpec(n=4, seed=0), model=spec)
    result = await graph.ainvoke({"question": QUESTION, "budget": Budget(max_tokens=10_000)})
    total = result["ledger"].total
    assert result["answer"] is None
    assert total.truncated == 4 and total.completion_tokens == 4 * 16 == total.reasoning_tokens


async def test_a_search_step_cut_by_its_reasoning_ends_the_beam_without_an_answer() -> None:
    spec = arith(thinking="high", thinking_tokens={"high": 8}, max_tokens=8)
    ctx = SearchContext.create(spec)
    prefix = Candidate(steps=("17 * 23 = 391",))
    [extended] = await extend_by_one_step(
        ctx, Ledger(), {"question": QUESTION}, [prefix], 1, temperature=0.8, delimiter="\n", max_tokens=8, seed=1
    )
    assert extended.finished and extended.answer is None  # not the prefix's last number, 391


# --- the scripted double --------------------------------------------------------------------------


def _texts(response: Any) -> list[str]:
    return [choice.message.content or "" for choice in response.choices]


def _pass_at_1(level: Thinking | None, problems: list[Problem]) -> float:
    params = {"n": 8, "temperature": 0.8, "seed": 0, **thinking_params(level), "max_tokens": 4096}
    right = total = 0
    for problem in problems:
        messages = [{"role": "user", "content": render_prompt("generate", question=problem.question)}]
        for text in _texts(scripted_respond("scripted/arith", messages, params)):
            right += grade(problem, extract_answer(text))
            total += 1
    return right / total


def test_more_hidden_reasoning_raises_accuracy_with_diminishing_returns() -> None:
    problems = arithmetic_problems(60, seed=11, levels=(3, 4, 5))
    levels: tuple[Thinking | None, ...] = (None, "low", "medium", "high")
    acc = {level: _pass_at_1(level, problems) for level in levels}
    assert acc[None] < acc["low"] < acc["medium"] < acc["high"]
    per_token_low = (acc["low"] - acc[None]) / 48
    per_token_high = (acc["high"] - acc["medium"]) / (320 - 128)
    assert per_token_high < per_token_low


def test_the_double_reports_reasoning_as_openai_compatible_servers_do() -> None:
    params = {"n": 3, "seed": 1, "thinking": {"type": "enabled", "budget_tokens": 200}}
    response = scripted_respond("scripted/arith", MESSAGES, params)
    usage = response.usage  # type: ignore[attr-defined]
    reasoning = usage.completion_tokens_details.reasoning_tokens
    visible = sum(scripted_token_count(text) for text in _texts(response))
    assert 3 * 100 <= reasoning <= 3 * 200  # it uses most of its budget
    assert usage.completion_tokens == visible + reasoning
    assert all(_texts(response))  # the reasoning is hidden: none of it in the text


async def test_a_model_that_ignores_thinking_reports_none() -> None:
    ledger = Ledger()
    batch = await Gateway().sample(ModelSpec(name="scripted/pop-mathlike", thinking="high"), MESSAGES, 4, ledger=ledger)
    assert len(batch.samples) == 4
    assert ledger.total.reasoning_tokens == 0 and ledger.total.thinking_samples == 4


# --- settings, specs, calibration -------------------------------------------------------------------


def test_thinking_settings_validate_and_name_the_field() -> None:
    assert parse_thinking("HIGH") == "high" and parse_thinking("1024") == 1024 and parse_thinking("default") is None
    assert parse_thinking_levels("default,low,1024") == [None, "low", 1024]
    with pytest.raises(ValueError, match="--thinking: 'extreme'"):
        parse_thinking_levels("low,extreme")
    with pytest.raises(ValidationError, match="thinking"):
        BestOfNSpec(thinking="extreme")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="thinking"):
        ModelSpec(name="m", thinking=0)
    action = PolicyAction(model="m", strategy=BestOfNSpec(n=4, thinking="high"))
    assert "thinking=high" in action.key and setting_of(action) == "best_of_n_weighted@high"


async def test_a_calibrated_policy_chooses_among_effort_levels_per_bin_and_the_router_deploys_it() -> None:
    # 60 questions: a plan that moves compute between bins must beat best-of-N held out by more than
    # its noise (at 30, effort's gain here is 2 questions, +0.067 +- 0.046, and best-of-N is kept).
    problems = arithmetic_problems(60, seed=5)
    verifier = make_verifier("arithmetic")
    result = await calibrate(
        problems,
        models=["scripted/arith"],
        verifier=verifier,
        budgets=[4, 16],
        strategies=["best_of_n"],
        thinking=[None, "high"],
        progress=False,
    )
    policy = result.policy
    report = policy.diagnostics["thinking"]["scripted/arith"]
    assert report["high"]["honoured"] and report["high"]["reasoning_tokens_per_sample"] > 200
    assert policy.probe_thinking is None
    chosen = {(e.bin, e.budget): e.action for e in policy.table}
    assert {a.strategy.thinking for a in chosen.values()} == {None, "high"}
    assert chosen[(1, 16)].strategy.thinking is None  # the easiest bin stays at the default
    assert chosen[(5, 16)].strategy.thinking == "high"  # the hardest buys effort
    # The router deploys what was calibrated, booked reasoning and all, with the allowance it measured.
    router = Router(policy, verifier=verifier)
    cap = policy.thinking_caps["scripted/arith"]["high"]
    assert 480 <= cap < EFFORT_ALLOWANCE["high"] and router.models["scripted/arith"].thinking_tokens == {"high": cap}
    sized = router.models["scripted/arith"].model_copy(update={"thinking": "high"})
    ledger = Ledger(budget=Budget(max_tokens=3000))  # the default allowance (32768 per sample) never fits
    batch = await Gateway().sample(sized, MESSAGES, 2, ledger=ledger, seed=0)
    assert len(batch.samples) == 2 and not any(s.truncated for s in batch.samples)
    at_16 = {a.key for (_, n), a in chosen.items() if n == 16}
    thought = 0
    for problem in [p for p in problems if p.difficulty == 5][:4]:
        output = await router.graph.ainvoke({"question": problem.question, "generation_budget": 16})
        choice = output["trace"]["choice"]
        assert choice["action"] in at_16
        if choice["strategy"]["thinking"] == "high":
            thought += 1
            assert output["ledger"].total.reasoning_tokens > 0
    assert thought > 0


async def test_the_policy_never_buys_effort_a_model_does_not_deliver() -> None:
    result = await calibrate(
        arithmetic_problems(15, seed=2),
        models=["scripted/pop-mathlike"],
        verifier=make_verifier("orm:scripted/arith"),
        budgets=[1, 4],
        strategies=["best_of_n"],
        thinking=[None, "low", "high"],
        progress=False,
    )
    report = result.policy.diagnostics["thinking"]["scripted/pop-mathlike"]
    assert not report["low"]["honoured"] and not report["high"]["honoured"]
    assert report["high"]["samples"] > 0 and report["high"]["reasoning_tokens_per_sample"] == 0
    entries = [*result.policy.table, *result.policy.candidates]
    assert entries and all(e.action.strategy.thinking is None for e in entries)
