"""The fake OpenAI-compatible server, seen through LiteLLM's ``openai/`` route (no LiteLLM retries)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

import litellm
import openai
import pytest
from litellm.exceptions import (
    APIConnectionError,
    BadGatewayError,
    BadRequestError,
    InternalServerError,
    RateLimitError,
    ServiceUnavailableError,
    Timeout,
)

from ttc_agents._llm.scripted import scripted_token_count
from ttc_agents.testing import FakeOpenAIServer, FakeServerConfig, Fault, FaultKind

litellm.suppress_debug_info = True

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
TEXT = "The answer is \\boxed{42}."
NO_RETRIES: dict[str, Any] = {"num_retries": 0, "max_retries": 0}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


async def chat(server: FakeOpenAIServer, timeout: float = 5.0, **params: Any) -> Any:
    return await litellm.acompletion(
        model="openai/fake",
        api_base=server.url,
        api_key="none",
        messages=params.pop("messages", MESSAGES),
        timeout=timeout,
        **NO_RETRIES,
        **params,
    )


def usage_of(response: Any) -> tuple[int, int, int]:
    usage = response.usage
    return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


# -- answers ----------------------------------------------------------------------------------------


async def test_n_choices_come_back_with_exact_usage(server: FakeOpenAIServer) -> None:
    response = await chat(server, n=3, seed=7, temperature=0.5, max_tokens=64)
    assert [choice.message.content for choice in response.choices] == [TEXT] * 3
    prompt_tokens = scripted_token_count(MESSAGES[0]["content"])
    completion_tokens = 3 * scripted_token_count(TEXT)
    assert usage_of(response) == (prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)
    body = server.requests[-1]
    assert (body["n"], body["seed"], body["temperature"], body["max_tokens"]) == (3, 7, 0.5, 64)
    assert server.request_count == 1
    assert server.records[-1].path == "/v1/chat/completions"


async def test_honour_n_false_returns_one_choice() -> None:
    async with FakeOpenAIServer(FakeServerConfig(honour_n=False)) as server:
        response = await chat(server, n=4)
        assert len(response.choices) == 1
        assert response.usage.completion_tokens == scripted_token_count(TEXT)
        assert server.requests[-1]["n"] == 4


async def test_fixed_size_completions_and_text_from_the_request() -> None:
    def text(body: dict[str, Any]) -> str:
        return f"model {body['model']} says 7 * 6 = 42."

    config = FakeServerConfig(text=text, completion_tokens=50)
    async with FakeOpenAIServer(config) as server:
        response = await chat(server, n=2)
        for choice in response.choices:
            assert choice.message.content.startswith("model fake says 7 * 6 = 42.")
            assert scripted_token_count(choice.message.content) == 50
        assert response.usage.completion_tokens == 100


async def test_max_tokens_and_stop_are_honoured(server: FakeOpenAIServer) -> None:
    short = await chat(server, max_tokens=3)
    assert short.choices[0].message.content == "The answer"
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 3
    stopped = await chat(server, stop=["\\"])
    assert stopped.choices[0].message.content == "The answer is "
    assert stopped.choices[0].finish_reason == "stop"


async def test_chat_logprobs_when_asked(server: FakeOpenAIServer) -> None:
    response = await chat(server, n=2, logprobs=True, top_logprobs=3)
    for choice in response.choices:
        content = choice.logprobs.content
        assert "".join(entry.token for entry in content) == TEXT
        assert all(len(entry.top_logprobs) == 3 for entry in content)
        assert all(entry.top_logprobs[0].token == entry.token for entry in content)
    plain = await chat(server)
    assert getattr(plain.choices[0], "logprobs", None) is None


async def test_text_completions_endpoint_with_legacy_logprobs(server: FakeOpenAIServer) -> None:
    response = await litellm.atext_completion(
        model="text-completion-openai/fake",
        api_base=server.url,
        api_key="none",
        prompt="Q: 6 * 7\nA:",
        n=2,
        max_tokens=5,
        logprobs=2,
        **NO_RETRIES,
    )
    assert [choice.text for choice in response.choices] == ["The answer is"] * 2
    assert all(choice.finish_reason == "length" for choice in response.choices)
    assert response.choices[0].logprobs.tokens == ["The", " ", "answer", " ", "is"]
    assert response.usage.prompt_tokens == scripted_token_count("Q: 6 * 7\nA:")
    assert response.usage.completion_tokens == 10
    assert server.records[-1].path == "/v1/completions"


def test_models_and_health_endpoints(server: FakeOpenAIServer) -> None:
    assert get_json(f"http://127.0.0.1:{server.port}/health") == {"status": "ok"}
    assert [model["id"] for model in get_json(f"{server.url}/models")["data"]] == ["fake"]
    assert server.request_count == 0  # only completion requests are recorded


def test_sync_use_and_shutdown_closes_the_port() -> None:
    with FakeOpenAIServer() as server:
        response = litellm.completion(
            model="openai/fake", api_base=server.url, api_key="none", messages=MESSAGES, **NO_RETRIES
        )
        assert response.choices[0].message.content == TEXT
        port = server.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


async def test_billed_usage_matches_a_client_ledger_across_failures() -> None:
    faults = [Fault.server_error(503), Fault.rate_limit(), Fault.truncated(2), Fault.fewer_choices(1)]
    async with FakeOpenAIServer(FakeServerConfig(faults=faults)) as server:
        ledger = [0, 0, 0]
        for _ in range(6):
            try:
                response = await chat(server, n=3)
            except (ServiceUnavailableError, RateLimitError):
                continue
            ledger = [a + b for a, b in zip(ledger, usage_of(response), strict=True)]
        billed = server.billed
        assert (billed.prompt_tokens, billed.completion_tokens, billed.total_tokens) == tuple(ledger)
        assert billed.responses == 4 and server.request_count == 6


async def test_concurrent_requests() -> None:
    async with FakeOpenAIServer() as server:
        responses = await asyncio.gather(*(chat(server, n=2) for _ in range(128)))
        assert all(len(response.choices) == 2 for response in responses)
        assert server.request_count == 128 and server.billed.responses == 128


# -- faults -----------------------------------------------------------------------------------------


async def test_rate_limit_with_and_without_retry_after() -> None:
    async with FakeOpenAIServer(FakeServerConfig(faults=[Fault.rate_limit(2), Fault.rate_limit()])) as server:
        with pytest.raises(RateLimitError) as first:
            await chat(server)
        assert first.value.response.headers["retry-after"] == "2"
        with pytest.raises(RateLimitError) as second:
            await chat(server)
        assert "retry-after" not in second.value.response.headers
        assert server.request_count == 2  # nothing was retried


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.server_error(500), InternalServerError),
        (Fault.server_error(502), BadGatewayError),
        (Fault.server_error(503), ServiceUnavailableError),
        (Fault.bad_request(), BadRequestError),
        (Fault.request_timeout(), Timeout),
    ],
)
async def test_http_errors_map_to_litellm_errors(fault: Fault, error: type[Exception]) -> None:
    async with FakeOpenAIServer(FakeServerConfig(faults=[fault])) as server:
        with pytest.raises(error) as info:
            await chat(server)
        assert getattr(info.value, "status_code", None) == fault.status
        assert (await chat(server)).choices[0].message.content == TEXT  # the schedule is used up
        assert server.billed.responses == 1


async def test_hang_times_out_and_is_billed_when_the_server_answers() -> None:
    async with FakeOpenAIServer(FakeServerConfig(faults=[Fault.hang(0.6)])) as server:
        with pytest.raises(Timeout):
            await chat(server, timeout=0.2)
        assert server.billed.responses == 0
        assert await asyncio.to_thread(server.wait_idle, 3.0)
        assert server.billed.responses == 1  # what real providers do with abandoned requests


async def test_connection_reset_is_a_connection_error() -> None:
    async with FakeOpenAIServer(FakeServerConfig(faults=[Fault.connection_reset()])) as server:
        with pytest.raises((APIConnectionError, InternalServerError), match="Connection error"):
            await chat(server)
        assert server.billed.responses == 0
        assert (await chat(server)).choices[0].message.content == TEXT


async def test_malformed_json_is_an_error() -> None:
    async with FakeOpenAIServer(FakeServerConfig(faults=[Fault.malformed_json()])) as server:
        with pytest.raises(InternalServerError, match="Unterminated string"):
            await chat(server)
        assert server.billed.responses == 0


async def test_empty_fewer_and_truncated_choices() -> None:
    faults = [Fault.empty_choices(), Fault.fewer_choices(1), Fault.truncated(2)]
    async with FakeOpenAIServer(FakeServerConfig(faults=faults)) as server:
        empty = await chat(server, n=3)
        assert empty.choices == [] and empty.usage.completion_tokens == 0
        fewer = await chat(server, n=3)
        assert len(fewer.choices) == 1 and fewer.usage.completion_tokens == scripted_token_count(TEXT)
        cut = await chat(server, n=3)
        assert [choice.message.content for choice in cut.choices] == ["The "] * 3
        assert all(choice.finish_reason == "length" for choice in cut.choices)
        assert cut.usage.completion_tokens == 6
        assert [record.fault.kind for record in server.records if record.fault] == [
            FaultKind.EMPTY_CHOICES,
            FaultKind.FEWER_CHOICES,
            FaultKind.TRUNCATE,
        ]


async def test_faults_added_at_run_time_apply_in_order(server: FakeOpenAIServer) -> None:
    server.add_faults(Fault.bad_request(), Fault.server_error(500))
    assert server.pending_faults == 2
    with pytest.raises(BadRequestError):
        await chat(server)
    with pytest.raises(InternalServerError):
        await chat(server)
    assert server.pending_faults == 0
    assert len((await chat(server, n=2)).choices) == 2


async def outcomes(config: FakeServerConfig, count: int) -> list[str]:
    result = []
    async with FakeOpenAIServer(config) as server:
        for _ in range(count):
            try:
                await chat(server)
                result.append("ok")
            except openai.APIError as error:  # the common base of LiteLLM's errors
                result.append(type(error).__name__)
    return result


async def test_random_faults_are_seeded() -> None:
    config = FakeServerConfig(fault_rate=0.5, fault_seed=3)
    first = await outcomes(config, 20)
    assert first == await outcomes(config, 20)
    assert 3 <= first.count("ok") <= 17
    assert {"InternalServerError", "ServiceUnavailableError", "RateLimitError"} >= set(first) - {"ok"}
    assert await outcomes(FakeServerConfig(fault_rate=0.5, fault_seed=4), 20) != first
