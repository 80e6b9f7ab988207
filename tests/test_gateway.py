"""The gateway against a loopback OpenAI-compatible server: n, top-up, retries, ledger, budget."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from ttc_agents import Budget, Gateway, Ledger, ModelSpec, RetryPolicy
from ttc_agents._llm.gateway import prompt_token_bound
from ttc_agents._llm.litellm import litellm
from ttc_agents._llm.retry import is_retryable
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
    assert server.requests[0]["n"] == 3 and len(batch.samples) >= 3
    assert ledger.total.total_tokens <= bound + 60
    while (
        more := await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 8, ledger=ledger, max_tokens=20)
    ).samples:
        assert ledger.total.total_tokens <= bound + 60
    assert more.stopped_by == "max_tokens" and ledger.total.total_tokens <= bound + 60


async def test_waves_use_what_the_worst_case_held_back(server: FakeOpenAIServer) -> None:
    """The first request's n is cut to what fits the worst case; once it settles at what it really
    used, the next wave (one request with n, with the exact prompt size the server reported for
    these messages) draws more, and the total never passes the limit."""
    bound = prompt_token_bound(MESSAGES)
    limit = bound + 4 * 64
    ledger = Ledger(Budget(max_tokens=limit))
    batch = await Gateway(retry=FAST_RETRIES).sample(spec(server), MESSAGES, 16, ledger=ledger, max_tokens=64)
    assert server.requests[0]["n"] == 4
    assert len(batch.samples) > 4  # a single wave stops at 4
    assert server.request_count < len(batch.samples) - 1  # a server that honours n gets one request per wave
    assert ledger.total.total_tokens <= limit


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


# --- what is sent is what is bounded ----------------------------------------------------------------


def test_the_prompt_bound_counts_every_key_of_a_message() -> None:
    """A context message's other keys are sent too: a 1 MB ``name`` is 1 MB of prompt."""
    plain = [{"role": "user", "content": "hi"}]
    named = [{"role": "user", "content": "hi", "name": "n" * 1_000_000}]
    assert prompt_token_bound(named) >= 1_000_000 + prompt_token_bound(plain)
    parts = [{"role": "user", "content": [{"type": "text", "text": "é" * 1000}]}]
    assert prompt_token_bound(parts) >= 2000  # content parts, in UTF-8 bytes
    assert prompt_token_bound([{"role": "user", "content": "\ud800"}]) > 0  # a lone surrogate is no crash


async def test_a_huge_name_field_is_refused_under_a_small_token_budget(server: FakeOpenAIServer) -> None:
    messages = [{"role": "system", "content": "Be brief.", "name": "x" * 1_000_000}, *MESSAGES]
    ledger = Ledger(Budget(max_tokens=1500))
    batch = await Gateway(retry=FAST_RETRIES).sample(spec(server), messages, 1, ledger=ledger, max_tokens=16)
    assert batch.samples == () and batch.stopped_by == "max_tokens"
    assert server.request_count == 0


# --- a server that ignores max_tokens ----------------------------------------------------------------


class IgnoresMaxTokens(FakeOpenAIServer):
    """Answers with its fixed completion length whatever ``max_tokens`` says."""

    def _payload(self, body: Any, chat: bool, reply: Any) -> Any:
        reply.max_tokens = None
        return super()._payload(body, chat, reply)


async def test_completion_tokens_above_max_tokens_are_booked_flagged_and_stop_the_run() -> None:
    with IgnoresMaxTokens(FakeServerConfig(completion_tokens=40)) as server:
        ledger = Ledger(Budget(max_tokens=10_000))
        gateway = Gateway(retry=FAST_RETRIES)
        batch = await gateway.sample(spec(server), MESSAGES, 2, ledger=ledger, max_tokens=8)
        assert len(batch.samples) == 2  # the answers are real, and so is their bill
        assert ledger.total.completion_tokens == server.billed.completion_tokens == 80
        assert ledger.overrun_tokens == 80 - 2 * 8
        assert ledger.stopped_by == "server_ignored_max_tokens"
        snapshot = ledger.snapshot()
        assert snapshot.overrun_tokens == 64 and snapshot.as_dict()["overrun_tokens"] == 64
        assert Ledger.resume(snapshot).overrun_tokens == 64
        again = await gateway.sample(spec(server), MESSAGES, 2, ledger=ledger, max_tokens=8)
        assert again.samples == () and again.stopped_by == "server_ignored_max_tokens"
        assert server.request_count == 1


async def test_a_graph_stops_when_the_server_ignores_max_tokens() -> None:
    from ttc_agents import RevisionSpec, build_strategy_graph

    with IgnoresMaxTokens(FakeServerConfig(completion_tokens=40)) as server:
        model = spec(server, max_tokens=8)
        graph = build_strategy_graph(RevisionSpec(attempts=4, chains=1, seed=0), model=model, gateway=Gateway())
        result = await graph.ainvoke({"question": "What is 2 + 2?"})
        assert result["stopped_by"] == "server_ignored_max_tokens"
        assert result["ledger"].overrun_tokens > 0 and server.request_count == 1


# --- timed-out and cancelled attempts ---------------------------------------------------------------


async def test_a_timed_out_attempt_is_booked_at_its_worst_case(server: FakeOpenAIServer) -> None:
    server.add_faults(Fault.hang(3.0))
    ledger = Ledger()
    batch = await Gateway(retry=FAST_RETRIES).sample(
        spec(server, timeout=0.3), MESSAGES, 2, ledger=ledger, max_tokens=20
    )
    assert len(batch.samples) == 2 and server.request_count == 2
    worst_case = prompt_token_bound(MESSAGES) + 2 * 20
    total = ledger.total
    assert total.unconfirmed_tokens == worst_case
    assert total.charged_tokens == total.total_tokens + worst_case
    assert total.failed_calls == 1 and total.calls == 1


async def test_a_timed_out_attempt_uses_up_the_budget_it_reserved(server: FakeOpenAIServer) -> None:
    """Room for one attempt's worst case only: after a timeout, no retry can be paid for."""
    server.add_faults(Fault.hang(3.0))
    worst_case = prompt_token_bound(MESSAGES) + 20
    ledger = Ledger(Budget(max_tokens=worst_case + 10))
    batch = await Gateway(retry=FAST_RETRIES).sample(
        spec(server, timeout=0.3), MESSAGES, 1, ledger=ledger, max_tokens=20
    )
    assert batch.samples == () and batch.stopped_by == "max_tokens"
    assert server.request_count == 1
    assert ledger.total.charged_tokens == worst_case <= ledger.budget.max_tokens  # type: ignore[operator]


async def test_one_failing_top_up_cancels_its_siblings_which_are_booked_at_worst_case() -> None:
    from ttc_agents._core.budget import ledger_snapshot_of

    config = FakeServerConfig(honour_n=False, completion_tokens=5)
    with FakeOpenAIServer(config) as server:
        # The first request answers; of the two top-ups, one gets a 400 and the other hangs. The 400 comes
        # after 0.5 s, so that the other top-up is in flight when it is cancelled (an immediate 400 could
        # cancel it before it reached the server, on a loaded machine).
        server.add_faults(Fault.truncated(5), Fault.bad_request(after=0.5), Fault.hang(3.0))
        ledger = Ledger()
        with pytest.raises(litellm.BadRequestError) as info:
            await Gateway(retry=FAST_RETRIES).sample(spec(server, timeout=10.0), MESSAGES, 3, ledger=ledger, seed=1)
        total = ledger.total
        assert server.request_count == 3
        assert total.calls == 1 and total.failed_calls == 2
        # The hanging call was cancelled (not awaited for its 3 s) and its worst case booked before the
        # exception reached the caller, which carries the same ledger.
        # The worst case of the hung request: its prompt (the size the server reported for these very
        # messages in the first answer) plus max_tokens.
        assert total.unconfirmed_tokens == total.prompt_tokens + int(spec(server).max_tokens)
        carried = ledger_snapshot_of(info.value)
        assert carried is not None and carried.total == total


async def test_an_exception_out_of_a_graph_carries_the_spend_before_it(server: FakeOpenAIServer) -> None:
    from ttc_agents import RevisionSpec, build_strategy_graph
    from ttc_agents._core.budget import ledger_snapshot_of

    server.add_faults(Fault.truncated(3), Fault.http_error(401))
    graph = build_strategy_graph(RevisionSpec(attempts=3, chains=1, seed=0), model=spec(server), gateway=Gateway())
    with pytest.raises(litellm.AuthenticationError) as info:
        await graph.ainvoke({"question": "What is 2 + 2?"})
    carried = ledger_snapshot_of(info.value)
    assert carried is not None
    assert carried.total.calls == 1 and carried.total.failed_calls == 1
    assert carried.total.completion_tokens == server.billed.completion_tokens > 0


# --- the record store tells servers apart -----------------------------------------------------------


async def test_recordings_of_one_server_do_not_answer_another(tmp_path: Any) -> None:
    from ttc_agents._llm.store import ResponseStore

    with (
        FakeOpenAIServer(FakeServerConfig(text="one")) as first,
        FakeOpenAIServer(FakeServerConfig(text="two")) as second,
    ):
        async with ResponseStore(tmp_path / "store.sqlite") as store:
            gateway = Gateway(retry=FAST_RETRIES, store=store)
            recorded = await gateway.sample(spec(first), MESSAGES, 1, seed=3)
            other = await gateway.sample(spec(second), MESSAGES, 1, seed=3)
            replayed = await gateway.sample(spec(first), MESSAGES, 1, seed=3)
        assert recorded.texts == ["one"] and other.texts == ["two"] and replayed.texts == ["one"]
        assert first.request_count == 1 and second.request_count == 1
        assert replayed.usage.replayed == 1
