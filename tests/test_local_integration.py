"""Integration tests against the REAL embedded model: SmolLM2-135M behind llama.cpp's server.

Every test here is marked ``local_model`` and is skipped, with the install command as reason, when the
``local`` extra is missing. The server is started once for this module's session in a private state
directory (``local_server_fixture(private=True)``), so no other process sends it requests and the
request counts read from its log are this session's alone; it is stopped at the end.

What is checked, on real model output:

* the gateway asks the local server for one sample per request, since its ``usage`` counts one choice
  of ``n`` (ask 3, get 3, 3 requests, all tokens booked);
* seeds make samples repeatable;
* logprobs reach the LLM-judge (its scores come from the Yes/No logprobs, not the text fallback);
* a strategy graph runs end to end through the model name ``local/smollm2-135m``;
* with a record/replay store, a second run reproduces the first and sends the server no request;
* ``local/...`` resolution is cached per process, and a busy server is not replaced.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

from ttc_agents import ArithmeticStepVerifier, BestOfNSpec, Gateway, ModelSpec, build_strategy_graph
from ttc_agents._llm.local import LocalServerInfo, resolve_local_model
from ttc_agents._llm.providers import LocalResolver
from ttc_agents._llm.store import ResponseStore
from ttc_agents.testing import local_server_fixture
from ttc_agents.verifiers import _llm_judge
from ttc_agents.verifiers._llm_judge import LLMJudgePRM

pytestmark = pytest.mark.local_model

MODEL = "local/smollm2-135m"
QUESTION = "Calculate 6 * 7."
FEW_SHOT = [
    {"role": "user", "content": "Calculate 4 * 7."},
    {"role": "assistant", "content": "4 * 7 = 28\nThe answer is 28."},
]

private_server = local_server_fixture("smollm2-135m", scope="module", private=True)


def requests_in_log(info: LocalServerInfo) -> int:
    """Completion requests the server has taken so far, from its log (a request's first task is not a child:
    the ``n - 1`` further choices of one request are its children)."""
    return Path(info.log_path).read_text(errors="replace").count("processing task, is_child = 0")


@pytest.fixture
def gateway(private_server: LocalServerInfo) -> Gateway:
    """A gateway that maps ``local/...`` names to the private server (and never starts another)."""
    return Gateway(resolvers={"local": LocalResolver(start=False, state_dir=Path(private_server.log_path).parent)})


def spec(**changes: Any) -> ModelSpec:
    # api_key: LiteLLM's OpenAI-compatible route refuses to send a request without one.
    return ModelSpec(**{"name": MODEL, "api_key": "none", "max_tokens": 24, **changes})


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


async def test_gateway_sends_the_local_model_one_sample_per_request(
    private_server: LocalServerInfo, gateway: Gateway
) -> None:
    before = requests_in_log(private_server)
    batch = await gateway.sample(spec(), user("Name a colour."), 3, temperature=1.0, seed=11)
    assert len(batch.samples) == 3
    assert all(sample.text for sample in batch.samples)
    assert batch.usage.samples == 3
    assert batch.usage.calls == 3  # n=1 each: the server's usage counts one choice of n (LOCAL_SUPPORTS_N)
    assert requests_in_log(private_server) - before == 3


async def test_seeds_make_samples_repeatable(gateway: Gateway) -> None:
    messages = user("Write one sentence about the sea.")
    # llama.cpp evaluates a prompt it has not seen in one batch and reuses its cached prefix afterwards;
    # in a portable (non-native) build the two paths differ in the last bits of the logits, so the very
    # first completion of a prompt can differ from later ones with the same seed. Warm the prompt first.
    await gateway.sample(spec(), messages, 1, temperature=1.0, seed=1)
    first = await gateway.sample(spec(), messages, 3, temperature=1.0, seed=123)
    again = await gateway.sample(spec(), messages, 3, temperature=1.0, seed=123)
    other = await gateway.sample(spec(), messages, 3, temperature=1.0, seed=456)
    assert first.texts == again.texts
    assert first.texts != other.texts
    assert len(set(first.texts)) > 1  # the top-up calls use seeds seed+1, seed+2: distinct samples


async def test_logprobs_reach_the_llm_judge(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    from_logprobs: list[float | None] = []
    real = _llm_judge._from_logprobs

    def spy(logprobs: Any) -> float | None:
        value = real(logprobs)
        from_logprobs.append(value)
        return value

    def no_fallback(text: str) -> float | None:
        raise AssertionError(f"the judge fell back to parsing the text {text!r}")

    monkeypatch.setattr(_llm_judge, "_from_logprobs", spy)
    monkeypatch.setattr(_llm_judge, "_from_text", no_fallback)
    judge = LLMJudgePRM(spec(max_tokens=8), gateway=gateway)
    scores = await judge.score(QUESTION, [["6 * 7 = 42", "The answer is 42."], ["6 * 7 = 48"]])
    assert [len(s) for s in scores] == [2, 1]
    assert len(from_logprobs) == 3  # one judge call per distinct prefix
    assert all(value is not None for value in from_logprobs)
    flat = [score for per_candidate in scores for score in per_candidate]
    assert sorted(flat) == sorted(value for value in from_logprobs if value is not None)
    assert all(0.0 <= score <= 1.0 for score in flat)
    assert any(score not in (0.0, 0.5, 1.0) for score in flat)  # probabilities, not a parsed verdict


async def test_a_strategy_end_to_end_through_the_local_model_name(gateway: Gateway) -> None:
    graph = build_strategy_graph(
        BestOfNSpec(n=4, seed=0), model=spec(max_concurrency=2), verifier=ArithmeticStepVerifier(), gateway=gateway
    )
    result = await graph.ainvoke({"question": QUESTION, "context": FEW_SHOT})
    assert len(result["candidates"]) == 4
    assert all(c.text for c in result["candidates"])
    assert result["ledger"].total.samples == 4
    assert result["ledger"].by_model().keys() == {MODEL}
    assert result["stopped_by"] is None
    assert result["answer"] is None or isinstance(result["answer"], str)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResponseStore]:
    with ResponseStore(tmp_path / "responses.sqlite") as opened:
        yield opened


async def test_replay_calls_the_server_zero_times(
    private_server: LocalServerInfo, gateway: Gateway, store: ResponseStore
) -> None:
    recording = dataclasses.replace(gateway, store=store)
    graph = build_strategy_graph(
        BestOfNSpec(n=3, seed=7), model=spec(), verifier=ArithmeticStepVerifier(), gateway=recording
    )
    inputs = {"question": QUESTION, "context": FEW_SHOT}
    first = await graph.ainvoke(inputs)
    assert first["ledger"].total.replayed == 0
    before = requests_in_log(private_server)
    second = await graph.ainvoke(inputs)
    assert requests_in_log(private_server) == before
    assert second["ledger"].total.replayed == second["ledger"].total.samples == 3
    assert [c.text for c in second["candidates"]] == [c.text for c in first["candidates"]]
    assert second["answer"] == first["answer"]
    assert second["ledger"].total.completion_tokens == first["ledger"].total.completion_tokens


async def test_local_model_name_without_an_api_key(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """``local/smollm2-135m`` as a bare name, with no OPENAI_API_KEY in the environment."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    batch = await gateway.sample(MODEL, user("Name a colour."), 1, max_tokens=8, seed=1)
    assert batch.samples and batch.samples[0].text


def test_resolution_is_cached_and_a_busy_server_is_not_replaced(
    private_server: LocalServerInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ttc_agents._llm import local as _local

    state_dir = Path(private_server.log_path).parent
    assert resolve_local_model(MODEL, start=False, state_dir=state_dir)[1] == private_server.api_base
    probes: list[str] = []
    real_healthy = _local._healthy

    def unreachable(api_base: str, model: str, timeout: float = 2.0) -> bool:
        probes.append(api_base)
        return False

    monkeypatch.setattr(_local, "_healthy", unreachable)
    # Cached: no health request at all (the gateway resolves the name for every call).
    assert resolve_local_model(MODEL, start=True, state_dir=state_dir)[1] == private_server.api_base
    assert probes == []

    # A live server that misses a few health checks (busy with a queue of completions) is waited
    # for, not killed and replaced.
    answers = iter([False, False, True])

    def busy(api_base: str, model: str, timeout: float = 2.0) -> bool:
        return next(answers, True) and real_healthy(api_base, model, timeout)

    monkeypatch.setattr(_local, "_healthy", busy)
    monkeypatch.setattr(_local, "_RESOLVED", {})
    info = _local.start_local_server("smollm2-135m", state_dir=state_dir)
    assert info.reused and info.pid == private_server.pid
