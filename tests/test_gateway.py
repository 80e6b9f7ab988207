"""The gateway against a loopback OpenAI-compatible server: n, top-up, retries, ledger, budget."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ttc_agents import Budget, Gateway, Ledger, ModelSpec, RetryPolicy
from ttc_agents._gateway import is_retryable, prompt_token_bound
from ttc_agents._litellm import litellm
from ttc_agents.testing import FakeOpenAIServer, FakeServerConfig, Fault

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
FAST_RETRIES = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.01)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(FakeServerConfig(completion_tokens=12)) as running:
        yield running


def spec(server: FakeOpenAIServer, **fields: object) -> ModelSpec:
    options: dict[str, object] = {"timeout": 2.0, **fields}
    return ModelSpec(name="openai/fake", api_base=server.url, api_key="none", **options)  # type: ignore[arg-type]


async def test_k_samples_go_out_as_one_request_with_n(server: FakeOpenAIServer) -> None:
    ledger = Ledger()
    batch = await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 6, ledger=ledger, temperature=0.7)
    assert len(batch.samples) == 6
    assert server.request_count == 1 and server.requests[0]["n"] == 6
    assert batch.usage.calls == 1 and batch.usage.samples == 6
    assert batch.usage.completion_tokens == server.billed.completion_tokens
    assert ledger.total == batch.usage


async def test_tops_up_with_seeded_calls_when_the_server_ignores_n() -> None:
    config = FakeServerConfig(honour_n=False, completion_tokens=5)
    with FakeOpenAIServer(config) as server:
        batch = await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 4, seed=100)
        assert len(batch.samples) == 4
        bodies = server.requests
        assert bodies[0]["n"] == 4 and len(bodies) == 4
        seeds = sorted(b["seed"] for b in bodies[1:])
        assert seeds == [101, 102, 103] and all(b.get("n", 1) == 1 for b in bodies[1:])
        assert batch.usage.calls == 4
        assert batch.usage.prompt_tokens == server.billed.prompt_tokens
        assert batch.usage.completion_tokens == server.billed.completion_tokens


async def test_backend_without_n_support_gets_parallel_calls(server: FakeOpenAIServer) -> None:
    batch = await Gateway(retry=FAST_RETRIES).sample(spec(server, supports_n=False), MESSAGES, 3, seed=7)
    assert len(batch.samples) == 3 and server.request_count == 3


@pytest.mark.parametrize(
    "fault",
    [
        Fault.rate_limit(),
        Fault.server_error(500),
        Fault.server_error(502),
        Fault.server_error(503),
        Fault.request_timeout(),
        Fault.connection_reset(),
        Fault.empty_choices(),
    ],
    ids=lambda f: f.kind.value + str(f.status or ""),
)
async def test_transient_failures_are_retried(server: FakeOpenAIServer, fault: Fault) -> None:
    server.add_faults(fault, fault)
    ledger = Ledger()
    batch = await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 2, ledger=ledger)
    assert len(batch.samples) == 2
    assert server.request_count == 3
    assert ledger.total.failed_calls == 2 and ledger.total.calls == 1
    assert ledger.total.completion_tokens == server.billed.completion_tokens


async def test_a_hang_past_the_timeout_is_retried(server: FakeOpenAIServer) -> None:
    server.add_faults(Fault.hang(5.0))
    batch = await Gateway(retry=FAST_RETRIES).sample(spec(server, timeout=0.5), MESSAGES, 1)
    assert len(batch.samples) == 1 and server.request_count == 2


async def test_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    server.add_faults(Fault.rate_limit(retry_after=0.6))
    started = time.monotonic()
    await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 1)
    assert time.monotonic() - started >= 0.6  # the backoff alone would wait at most 0.05 s


async def test_client_errors_are_not_retried(server: FakeOpenAIServer) -> None:
    server.add_faults(Fault.bad_request())
    ledger = Ledger(Budget(max_samples=5))
    with pytest.raises(litellm.BadRequestError):
        await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 2, ledger=ledger)
    assert server.request_count == 1
    # The failed call's reservation was given back.
    assert ledger.reserve(5, prompt_tokens=1, max_completion_tokens=1) is not None


async def test_gives_up_after_max_attempts(server: FakeOpenAIServer) -> None:
    server.add_faults(*[Fault.server_error(503)] * 10)
    with pytest.raises(litellm.ServiceUnavailableError):
        await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 1)
    assert server.request_count == FAST_RETRIES.max_attempts


def test_retry_classification() -> None:
    assert is_retryable(TimeoutError())
    assert not is_retryable(ValueError("no"))


async def test_budget_shrinks_n_before_the_request(server: FakeOpenAIServer) -> None:
    bound = prompt_token_bound(MESSAGES)
    ledger = Ledger(Budget(max_tokens=bound + 3 * 20))
    batch = await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 8, ledger=ledger, max_tokens=20)
    assert server.requests[0]["n"] == 3 and len(batch.samples) == 3
    assert batch.stopped_by == "max_tokens"
    assert ledger.total.total_tokens <= bound + 60
    again = await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 8, ledger=ledger, max_tokens=20)
    assert again.samples == () and server.request_count == 1


async def test_usd_and_flops_are_booked(server: FakeOpenAIServer) -> None:
    model = spec(server, usd_per_input_token=1e-6, usd_per_output_token=2e-6, parameters=1e9)
    batch = await Gateway(retry=FAST_RETRIES).sample(model, MESSAGES, 2)
    usage = batch.usage
    assert usage.usd == pytest.approx(usage.prompt_tokens * 1e-6 + usage.completion_tokens * 2e-6)
    assert usage.flops == pytest.approx(2e9 * usage.total_tokens)


async def test_logprobs_come_back_when_asked(server: FakeOpenAIServer) -> None:
    batch = await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 1, logprobs=True, top_logprobs=3)
    logprobs = batch.samples[0].logprobs
    assert logprobs is not None and "top_logprobs" in logprobs[0]
    assert server.requests[0]["logprobs"] is True


async def test_scripted_provider_through_the_default_gateway() -> None:
    from ttc_agents import sample

    batch = await sample("scripted/arith", [{"role": "user", "content": "Problem: What is 3 * 4?"}], 4, seed=1)
    assert len(batch.samples) == 4 and batch.usage.calls == 1 and batch.usage.usd > 0


async def test_time_budget_caps_a_hanging_call_and_names_the_limit(server: FakeOpenAIServer) -> None:
    server.add_faults(Fault.hang(30.0))
    ledger = Ledger(Budget(max_seconds=0.5))
    batch = await Gateway(retry=FAST_RETRIES).sample(spec(server, timeout=20.0), MESSAGES, 2, ledger=ledger)
    assert batch.samples == () and batch.stopped_by == "max_seconds"
    assert ledger.total.samples == 0 and ledger.total.failed_calls == 1
