"""Tests of the LLM-judge verifiers (ttc_agents/verifiers/_llm_judge.py) and the verifier factory."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from ttc_agents import ArithmeticStepVerifier, ModelConfigError
from ttc_agents._core.budget import Budget, Ledger
from ttc_agents._core.candidates import UnjudgedScore
from ttc_agents._llm.gateway import Gateway, RetryPolicy, Sample
from ttc_agents._llm.models import ModelSpec
from ttc_agents._llm.scripted import register_scripted_provider
from ttc_agents.verifiers._factory import make_verifier
from ttc_agents.verifiers._llm_judge import NEUTRAL_SCORE, LLMJudgeORM, LLMJudgePRM, judge_probability
from ttc_agents.verifiers._reward_model import RewardModelVerifier

PROMPT_TOKENS = 40
COMPLETION_TOKENS = 5


def position(token: str, logprob: float, top: dict[str, float]) -> dict[str, Any]:
    """One OpenAI chat logprob entry."""
    return {
        "token": token,
        "logprob": logprob,
        "bytes": None,
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()],
    }


def verdict(p_yes: float, *, first: str = "Yes", extra: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Logprobs of a first token whose top list holds Yes/No with P(Yes) = p_yes (plus ``extra``)."""
    top = {"Yes": math.log(p_yes), "No": math.log(1 - p_yes), **(extra or {})}
    return [position(first, top.get(first, -0.1), top), position("\n", -0.01, {"\n": -0.01})]


# -- P(correct) from one answer ----------------------------------------------------------------------


def test_probability_from_yes_no_logprobs() -> None:
    assert judge_probability(Sample("Yes\nRating: 2", logprobs=tuple(verdict(0.8)))) == pytest.approx(0.8)
    # The logprobs win over the text's rating.
    assert judge_probability(Sample("No\nRating: 9", logprobs=tuple(verdict(0.3, first="No")))) == pytest.approx(0.3)


def test_probability_renormalises_over_yes_and_no_only() -> None:
    # P(Yes)=0.4, P(No)=0.2, the rest on other tokens: 0.4 / 0.6.
    top = {"Yes": math.log(0.4), "No": math.log(0.2), "Maybe": math.log(0.3)}
    sample = Sample("Yes", logprobs=(position("Yes", math.log(0.4), top),))
    assert judge_probability(sample) == pytest.approx(2 / 3)


def test_probability_when_only_no_is_listed() -> None:
    top = {"No": math.log(0.7), "The": math.log(0.2)}
    assert judge_probability(Sample("No", logprobs=(position("No", math.log(0.7), top),))) == 0.0
    top = {"Yes": math.log(0.9), "Sure": math.log(0.05)}
    assert judge_probability(Sample("Yes", logprobs=(position("Yes", math.log(0.9), top),))) == 1.0


def test_probability_tokens_with_spaces_and_case_are_merged() -> None:
    top = {" yes": math.log(0.3), "Yes": math.log(0.3), " NO": math.log(0.2), "no": math.log(0.1)}
    sample = Sample(" yes", logprobs=(position(" yes", math.log(0.3), top),))
    assert judge_probability(sample) == pytest.approx(0.6 / 0.9)


def test_probability_skips_a_leading_whitespace_token() -> None:
    logprobs = (position("\n", -0.1, {"\n": -0.1}), *verdict(0.25, first="No"))
    assert judge_probability(Sample("\nNo", logprobs=logprobs)) == pytest.approx(0.25)


def test_probability_uses_the_chosen_token_when_the_top_list_is_empty() -> None:
    sample = Sample("No", logprobs=({"token": "No", "logprob": -0.05, "top_logprobs": []},))
    assert judge_probability(sample) == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes\nRating: 7", 0.7),
        ("No\nrating:3", 0.3),
        ("Rating: 10", 1.0),
        ("Yes\nRating: 7.5", 0.75),
        ("Yes\nRating: 42", 1.0),  # out of range: ignored, the verdict decides
        ("yes.", 1.0),
        ("**No**, the sum is wrong", 0.0),
        ("Not sure", NEUTRAL_SCORE),
        ("", NEUTRAL_SCORE),
    ],
)
def test_probability_falls_back_to_the_text(text: str, expected: float) -> None:
    assert judge_probability(Sample(text)) == pytest.approx(expected)


def test_probability_falls_back_when_the_first_token_is_no_verdict() -> None:
    logprobs = (position("The", -0.2, {"The": -0.2, "It": -2.0}),)
    assert judge_probability(Sample("The step\nRating: 4", logprobs=logprobs)) == pytest.approx(0.4)


# -- a loopback OpenAI-compatible server -------------------------------------------------------------

Responder = Callable[[str], tuple[str, list[dict[str, Any]] | None]]


@dataclass
class FakeJudgeServer:
    """Answers /v1/chat/completions with ``respond(prompt) -> (text, logprobs or None)``."""

    respond: Responder
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0

    @property
    def prompts(self) -> list[str]:
        return [r["messages"][-1]["content"] for r in self.requests]

    def spec(self) -> ModelSpec:
        return ModelSpec(
            name="openai/x",
            api_base=f"http://127.0.0.1:{self.port}/v1",
            api_key=SecretStr("none"),
            timeout=10,
        )

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            text, logprobs = self.respond(body["messages"][-1]["content"])
        finally:
            self.in_flight -= 1
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
            "logprobs": {"content": logprobs} if logprobs is not None and body.get("logprobs") else None,
        }
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "x"),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": COMPLETION_TOKENS,
                    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                },
            }
        )


async def start(server: FakeJudgeServer) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    return runner


def by_last_step(prompt: str) -> tuple[str, list[dict[str, Any]] | None]:
    """P(Yes) = 0.9 when the judged (last) line says "ok", else 0.2."""
    body = prompt.split("Steps:\n", 1)[-1].split("Solution:\n", 1)[-1]
    last = body.split("\n\n", 1)[0].splitlines()[-1]
    p = 0.9 if "ok" in last else 0.2
    return ("Yes" if p > 0.5 else "No"), verdict(p, first="Yes" if p > 0.5 else "No")


@pytest.fixture
async def judge_server() -> AsyncIterator[FakeJudgeServer]:
    server = FakeJudgeServer(by_last_step)
    runner = await start(server)
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
def gateway() -> Gateway:
    return Gateway(retry=RetryPolicy(max_attempts=1))


QUESTION = "What is 2 + 3 * 4?"


# -- the PRM ------------------------------------------------------------------------------------------


async def test_prm_scores_every_prefix_from_logprobs(judge_server: FakeJudgeServer, gateway: Gateway) -> None:
    prm = LLMJudgePRM(judge_server.spec(), gateway=gateway)
    scores = await asyncio.wait_for(
        prm.score(QUESTION, [["3 * 4 = 12 ok", "2 + 12 = 15 bad", "answer 15 bad"], ["s1 ok"]]), 30
    )
    assert scores[0] == pytest.approx([0.9, 0.2, 0.2])
    assert scores[1] == pytest.approx([0.9])
    assert len(judge_server.requests) == 4
    request = judge_server.requests[0]
    assert request["temperature"] == 0
    assert request["logprobs"] is True and request["top_logprobs"] == 10
    assert request["max_tokens"] <= 16
    # Step i is judged with steps 1..i, one per line, and nothing after it.
    second = next(p for p in judge_server.prompts if "15 bad" in p and "answer" not in p)
    assert f"Problem: {QUESTION}" in second
    assert "Steps:\n3 * 4 = 12 ok\n2 + 12 = 15 bad\n" in second


async def test_prm_rating_fallback_without_logprobs(gateway: Gateway) -> None:
    server = FakeJudgeServer(lambda prompt: ("Yes\nRating: 7", None))
    runner = await start(server)
    try:
        prm = LLMJudgePRM(server.spec(), gateway=gateway)
        scores = await asyncio.wait_for(prm.score(QUESTION, [["a", "b"]]), 30)
    finally:
        await runner.cleanup()
    assert scores == [[pytest.approx(0.7), pytest.approx(0.7)]]


async def test_prm_cache_rescoring_is_free_and_extension_costs_one_call(
    judge_server: FakeJudgeServer, gateway: Gateway
) -> None:
    prm = LLMJudgePRM(judge_server.spec(), gateway=gateway)
    beams = [["x ok", "y ok"], ["x ok", "z bad"], ["w bad"]]
    first = await asyncio.wait_for(prm.score(QUESTION, beams), 30)
    # Shared prefixes are judged once: x, x|y, x|z, w.
    assert len(judge_server.requests) == 4
    ledger = Ledger()
    again = await asyncio.wait_for(prm.score(QUESTION, beams, ledger=ledger), 30)
    assert again == first
    assert len(judge_server.requests) == 4
    assert ledger.total.calls == 0
    extended = await asyncio.wait_for(prm.score(QUESTION, [[*beams[0], "v bad"], beams[2]]), 30)
    assert len(judge_server.requests) == 5
    assert extended == [[*first[0], pytest.approx(0.2)], first[2]]
    # Another question is another cache entry.
    await asyncio.wait_for(prm.score("Another question?", [["x ok"]]), 30)
    assert len(judge_server.requests) == 6


async def test_prm_cache_is_bounded(judge_server: FakeJudgeServer, gateway: Gateway) -> None:
    prm = LLMJudgePRM(judge_server.spec(), gateway=gateway, cache_size=2)
    await asyncio.wait_for(prm.score(QUESTION, [["a ok"], ["b ok"], ["c ok"]]), 30)
    assert len(judge_server.requests) == 3
    await asyncio.wait_for(prm.score(QUESTION, [["c ok"]]), 30)  # most recent: cached
    assert len(judge_server.requests) == 3
    await asyncio.wait_for(prm.score(QUESTION, [["a ok"]]), 30)  # evicted: judged again
    assert len(judge_server.requests) == 4


async def test_prm_books_every_call_in_the_ledger(judge_server: FakeJudgeServer, gateway: Gateway) -> None:
    prm = LLMJudgePRM(judge_server.spec(), gateway=gateway)
    ledger = Ledger()
    await asyncio.wait_for(prm.score(QUESTION, [["a ok", "b bad", "c ok"]], ledger=ledger), 30)
    usage = ledger.snapshot().by_node()["verify"]
    assert usage.calls == 3 and usage.samples == 3
    assert usage.prompt_tokens == 3 * PROMPT_TOKENS
    assert usage.completion_tokens == 3 * COMPLETION_TOKENS
    assert set(ledger.snapshot().by_model()) == {"openai/x"}


async def test_prm_calls_run_concurrently_within_the_bound(gateway: Gateway) -> None:
    server = FakeJudgeServer(by_last_step, delay=0.05)
    runner = await start(server)
    try:
        prm = LLMJudgePRM(server.spec(), gateway=gateway, max_concurrency=3)
        await asyncio.wait_for(prm.score(QUESTION, [[f"s{i} ok" for i in range(10)]]), 30)
    finally:
        await runner.cleanup()
    assert len(server.requests) == 10
    assert 1 < server.max_in_flight <= 3


class CountingGateway(Gateway):
    """A gateway that counts the calls made to :meth:`sample`."""

    calls: int = 0

    async def sample(self, *args: Any, **kwargs: Any) -> Any:
        type(self).calls += 1
        return await super().sample(*args, **kwargs)


async def test_prm_budget_refusal_gives_neutral_scores_and_stops(judge_server: FakeJudgeServer) -> None:
    CountingGateway.calls = 0
    gateway = CountingGateway(retry=RetryPolicy(max_attempts=1))
    prm = LLMJudgePRM(judge_server.spec(), gateway=gateway, max_concurrency=1)
    ledger = Ledger(Budget(max_samples=2))
    steps = ["a ok", "b bad", "c ok", "d ok", "e ok"]
    scores = await asyncio.wait_for(prm.score(QUESTION, [steps], ledger=ledger), 30)
    assert scores == [[pytest.approx(0.9), pytest.approx(0.2), NEUTRAL_SCORE, NEUTRAL_SCORE, NEUTRAL_SCORE]]
    assert [isinstance(s, UnjudgedScore) for s in scores[0]] == [False, False, True, True, True]  # never outvote
    assert len(judge_server.requests) == 2
    assert CountingGateway.calls == 3  # two judged, one refused, then no more
    assert ledger.stopped_by == "max_samples"
    assert ledger.total.calls == 2
    # Neutral scores are not cached: with budget again, the missing steps are judged.
    rescored = await asyncio.wait_for(prm.score(QUESTION, [steps], ledger=Ledger()), 30)
    assert rescored == [[pytest.approx(p) for p in (0.9, 0.2, 0.9, 0.9, 0.9)]]
    assert len(judge_server.requests) == 5


async def test_prm_prompt_override_and_empty_candidates(judge_server: FakeJudgeServer, gateway: Gateway) -> None:
    prm = LLMJudgePRM(judge_server.spec(), gateway=gateway, prompt="Q: $question\nSteps:\n$steps\n\nOK?")
    scores = await asyncio.wait_for(prm.score(QUESTION, [[], ["a ok"]]), 30)
    assert scores == [[], [pytest.approx(0.9)]]
    assert judge_server.prompts == [f"Q: {QUESTION}\nSteps:\na ok\n\nOK?"]
    assert await prm.score(QUESTION, []) == []
    assert prm.name == "prm:openai/x"


async def test_prm_raises_when_the_backend_fails(gateway: Gateway) -> None:
    prm = LLMJudgePRM(
        ModelSpec(name="openai/x", api_base="http://127.0.0.1:9/v1", api_key=SecretStr("none"), timeout=5),
        gateway=gateway,
    )
    # A failing judge is an error, not a neutral score: here no server listens at its api_base (a
    # configuration error, raised at the first attempt); once it has answered, LiteLLM's 500 (retried).
    with pytest.raises(ModelConfigError, match=r"nothing accepts connections at http://127\.0\.0\.1:9/v1"):
        await asyncio.wait_for(prm.score(QUESTION, [["a"]]), 30)


# -- the ORM ------------------------------------------------------------------------------------------


async def test_orm_judges_the_whole_solution_once(judge_server: FakeJudgeServer, gateway: Gateway) -> None:
    orm = LLMJudgeORM(judge_server.spec(), gateway=gateway)
    ledger = Ledger()
    candidates = [["a bad", "b bad", "answer ok"], ["a ok", "answer bad"], []]
    scores = await asyncio.wait_for(orm.score(QUESTION, candidates, ledger=ledger), 30)
    assert scores == [[pytest.approx(0.9)] * 3, [pytest.approx(0.2)] * 2, []]
    assert len(judge_server.requests) == 2
    assert ledger.total.calls == 2
    assert "Solution:\na bad\nb bad\nanswer ok\n" in judge_server.prompts[0]
    assert "Is the final answer correct?" in judge_server.prompts[0]
    await asyncio.wait_for(orm.score(QUESTION, candidates[:2]), 30)
    assert len(judge_server.requests) == 2
    assert orm.name == "orm:openai/x"


# -- the scripted provider as a judge ---------------------------------------------------------------


def auc(positives: list[float], negatives: list[float]) -> float:
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


async def test_prm_on_the_scripted_judge_beats_chance() -> None:
    register_scripted_provider()
    prm = LLMJudgePRM("scripted/arith", gateway=Gateway())
    right: list[float] = []
    wrong: list[float] = []
    for a in range(2, 14):
        b = a + 5
        question = f"What is {a} * {b} + 3?"
        good, bad = f"{a} * {b} = {a * b}", f"{a} * {b} = {a * b + 10}"
        scores = await asyncio.wait_for(prm.score(question, [[good], [bad]]), 30)
        right.append(scores[0][0])
        wrong.append(scores[1][0])
        follow = await asyncio.wait_for(prm.score(question, [[good, f"{a * b} + 3 = {a * b + 3}"]]), 30)
        right.append(follow[0][1])
    assert len(right) + len(wrong) >= 36
    assert auc(right, wrong) > 0.6


# -- the factory --------------------------------------------------------------------------------------


def test_factory_parses_the_cli_forms(gateway: Gateway) -> None:
    assert make_verifier(None) is None
    assert make_verifier("none") is None
    prm = make_verifier("prm:openai/gpt-4o-mini", gateway=gateway)
    assert isinstance(prm, LLMJudgePRM) and prm.model.name == "openai/gpt-4o-mini" and prm.gateway is gateway
    orm = make_verifier("orm:scripted/arith")
    assert isinstance(orm, LLMJudgeORM) and orm.model.name == "scripted/arith"
    reward = make_verifier("reward:http://127.0.0.1:8000#Qwen/Qwen2.5-Math-PRM-7B")
    assert isinstance(reward, RewardModelVerifier)
    assert reward.url == "http://127.0.0.1:8000/pooling" and reward.model == "Qwen/Qwen2.5-Math-PRM-7B"


def test_factory_builds_the_arithmetic_verifier() -> None:
    assert isinstance(make_verifier("arithmetic"), ArithmeticStepVerifier)


@pytest.mark.parametrize("spec", ["", "bogus", "prm:", "prm", "orm: ", "reward:http://x", "reward:#m", "nonee"])
def test_factory_rejects_unknown_specs(spec: str) -> None:
    with pytest.raises(
        ValueError, match=r"accepted forms: none, arithmetic, confidence, prm:MODEL, orm:MODEL, reward:URL#MODEL"
    ):
        make_verifier(spec)
