"""The lean transport (ttc_agents._llm.openai_http) against LiteLLM's route for the same server.

A request for ``openai/NAME`` at an ``api_base`` goes straight over HTTP unless the gateway is built with
``lean_transport=False``. Both paths must send the same body and give the same samples, usage, ledger
bookings and error types; a process that only uses such servers never imports LiteLLM.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from pydantic import SecretStr

from ttc_agents import BeamSearchSpec, BestOfNSpec, Budget, Gateway, Ledger, ModelSpec, build_strategy_graph
from ttc_agents._llm.litellm import litellm
from ttc_agents._llm.openai_http import OpenAIHTTPTransport, lean_route
from ttc_agents._llm.retry import RetryPolicy
from ttc_agents.testing import FakeOpenAIServer, FakeServerConfig, Fault

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 12 * 7 + 5?"}]
FAST = RetryPolicy(max_attempts=3, initial_wait=0.0, max_wait=0.0, jitter=0.0)
STEPS = "12 * 7 = 84\n84 + 5 = 89\nThe answer is \\boxed{89}."


def spec(server: FakeOpenAIServer, **fields: Any) -> ModelSpec:
    options: dict[str, Any] = {"api_key": SecretStr("none"), "max_tokens": 32, "parameters": 1e8}
    return ModelSpec(name="openai/fake", api_base=server.url, **{**options, **fields})


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True)


def gateways() -> tuple[Gateway, Gateway]:
    """(lean, LiteLLM) gateways that differ only in the transport."""
    return Gateway(retry=FAST), Gateway(retry=FAST, lean_transport=False)


async def sample_both(server: FakeOpenAIServer, model: ModelSpec, k: int, **params: Any) -> list[Any]:
    """For each path: (samples, usage, ledger entries, request bodies the server got)."""
    out = []
    for gateway in gateways():
        before = server.request_count
        ledger = Ledger(Budget(max_samples=100))
        batch = await gateway.sample(model, MESSAGES, k, ledger=ledger, **params)
        bodies = server.requests[before:]
        out.append((batch.samples, batch.usage, ledger.snapshot().entries, bodies))
    return out


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0.7, "seed": 3},
        {"temperature": 0.0, "stop": ["\n"], "seed": 1, "top_p": 0.9, "top_k": 20, "min_p": 0.05},
        {"logprobs": True, "top_logprobs": 3, "temperature": 1.0},
        {"presence_penalty": 0.1, "frequency_penalty": 0.2, "repetition_penalty": 1.1},
    ],
    ids=["plain", "stop-and-sampling", "logprobs", "penalties"],
)
async def test_both_paths_send_the_same_body_and_book_the_same(params: dict[str, Any]) -> None:
    with FakeOpenAIServer(FakeServerConfig(text=STEPS)) as server:
        lean, via_litellm = await sample_both(server, spec(server), 3, **params)
    assert lean[0] == via_litellm[0] and len(lean[0]) == 3  # samples: text, finish reason, logprobs
    assert lean[1] == via_litellm[1]  # usage: tokens, USD, FLOPs, calls
    assert lean[2] == via_litellm[2]  # ledger entries per node and model
    assert lean[3] == via_litellm[3]  # the request bodies, key for key
    if "logprobs" in params:
        assert lean[0][0].logprobs and len(lean[0][0].logprobs[0]["top_logprobs"]) == 3


async def test_a_server_that_ignores_n_is_topped_up_the_same_way() -> None:
    with FakeOpenAIServer(FakeServerConfig(text=STEPS, honour_n=False)) as server:
        lean, via_litellm = await sample_both(server, spec(server), 4, seed=5)
    assert lean[0] == via_litellm[0] and len(lean[0]) == 4
    assert lean[1] == via_litellm[1] and lean[1].calls == 4
    assert sorted(map(canonical, lean[3])) == sorted(map(canonical, via_litellm[3]))


async def test_truncated_samples_and_prices_are_booked_the_same() -> None:
    priced = {"usd_per_input_token": 1e-6, "usd_per_output_token": 3e-6}
    with FakeOpenAIServer(FakeServerConfig(text=STEPS, faults=[Fault.truncated(2), Fault.truncated(2)])) as server:
        lean, via_litellm = await sample_both(server, spec(server, **priced), 2)
    assert [s.finish_reason for s in lean[0]] == ["length", "length"]
    assert lean[0] == via_litellm[0] and lean[1] == via_litellm[1] and lean[1].usd > 0


async def test_tool_calls_come_back_the_same() -> None:
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}]
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}

    class ToolServer(FakeOpenAIServer):
        def _choice(self, index: int, completion: Any, body: dict[str, Any], chat: bool) -> dict[str, Any]:
            choice = super()._choice(index, completion, body, chat)
            choice["message"] = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice["finish_reason"] = "tool_calls"
            return choice

    with ToolServer(FakeServerConfig(text="x")) as server:
        lean, via_litellm = await sample_both(server, spec(server), 2, tools=tools, tool_choice="auto")
    assert lean[0] == via_litellm[0]
    assert lean[0][0].tool_calls == (call,) and lean[0][0].finish_reason == "tool_calls" and lean[0][0].text == ""
    assert lean[1] == via_litellm[1] and lean[3] == via_litellm[3]


async def test_graphs_give_the_same_answers_candidates_and_ledgers() -> None:
    with FakeOpenAIServer(FakeServerConfig(text=STEPS)) as server:
        results = []
        for gateway in gateways():
            for strategy in (BestOfNSpec(n=4, seed=0), BeamSearchSpec(n=8, width=2, max_rounds=4, seed=0)):
                graph = build_strategy_graph(strategy, model=spec(server, max_tokens=128), gateway=gateway)
                result = await graph.ainvoke({"question": "What is 12 * 7 + 5?"})
                results.append((result["answer"], result["candidates"], result["ledger"].entries))
    assert results[:2] == results[2:]
    assert results[0][0] == "89" and results[1][1] and len(results[1][2]) >= 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.bad_request(), litellm.BadRequestError),
        (Fault.http_error(401), litellm.AuthenticationError),
        (Fault.http_error(404), litellm.NotFoundError),
    ],
    ids=["400", "401", "404"],
)
async def test_errors_keep_litellms_types_and_messages(fault: Fault, error: type[Exception]) -> None:
    caught = []
    with FakeOpenAIServer(FakeServerConfig(text=STEPS)) as server:
        for gateway in gateways():
            server.add_faults(fault)
            ledger = Ledger()
            with pytest.raises(error) as info:
                await gateway.sample(spec(server), MESSAGES, 2, ledger=ledger)
            caught.append((type(info.value), str(info.value), ledger.total))
        assert server.request_count == 2  # never retried, on either path
    assert caught[0] == caught[1]
    assert caught[0][2].failed_calls == 1 and caught[0][2].calls == 0


async def test_retryable_faults_are_retried_and_booked_the_same() -> None:
    faults = [Fault.rate_limit(retry_after=0), Fault.server_error(503), Fault.connection_reset()]
    totals = []
    with FakeOpenAIServer(FakeServerConfig(text=STEPS)) as server:
        for gateway in gateways():
            for fault in faults:
                server.add_faults(fault)
                ledger = Ledger()
                batch = await gateway.sample(spec(server), MESSAGES, 2, ledger=ledger, seed=2)
                assert len(batch.samples) == 2
                totals.append(ledger.total)
    assert totals[:3] == totals[3:]
    assert all(t.failed_calls == 1 and t.calls == 1 for t in totals)


async def test_exhausted_retries_raise_litellms_error_on_the_lean_path() -> None:
    with FakeOpenAIServer(FakeServerConfig(faults=[Fault.server_error(503)] * FAST.max_attempts)) as server:
        with pytest.raises(litellm.ServiceUnavailableError):
            await Gateway(retry=FAST).sample(spec(server), MESSAGES, 1)
        assert server.request_count == FAST.max_attempts


def test_what_takes_the_lean_path() -> None:
    base = "http://127.0.0.1:8000/v1"
    assert lean_route("openai/Qwen/Qwen2.5-7B", base, {"n": 4, "max_tokens": 8}) == "Qwen/Qwen2.5-7B"
    assert lean_route("openai/fake", None, {}) is None  # the provider's own host: LiteLLM
    assert lean_route("hosted_vllm/fake", base, {}) is None  # another provider route: LiteLLM
    assert lean_route("openai/fake", base, {"thinking": {"type": "enabled"}}) is None  # LiteLLM drops it there
    # A model LiteLLM knows may be rewritten on its way (max_completion_tokens for reasoning models): LiteLLM.
    assert lean_route("openai/o3-mini", base, {"max_tokens": 8}) is None
    assert lean_route("openai/gpt-4o-mini", base, {}) is None


async def test_a_parameter_litellm_treats_its_own_way_goes_through_litellm() -> None:
    with FakeOpenAIServer(FakeServerConfig(text=STEPS)) as server:
        await Gateway(retry=FAST).sample(spec(server), MESSAGES, 1, thinking={"type": "enabled", "budget_tokens": 8})
        assert "thinking" not in server.requests[-1]  # LiteLLM's openai route dropped it, as before


def test_the_session_closes_with_its_event_loop() -> None:
    transport = OpenAIHTTPTransport()
    with FakeOpenAIServer(FakeServerConfig(text=STEPS)) as server:
        gateway = Gateway(retry=FAST, _http=transport)

        async def run() -> Any:
            await gateway.sample(spec(server), MESSAGES, 1)
            return transport._sessions[asyncio.get_running_loop()].session

        session = asyncio.run(run())
        assert session.closed
        assert asyncio.run(run()) is not session  # a new loop gets a session of its own


@pytest.mark.slow
def test_a_process_that_only_uses_openai_compatible_servers_never_imports_litellm() -> None:
    with FakeOpenAIServer(FakeServerConfig(text=STEPS)) as server:
        code = textwrap.dedent(
            f"""
            import asyncio, sys
            from pydantic import SecretStr
            from ttc_agents import BeamSearchSpec, BestOfNSpec, ModelSpec, build_strategy_graph
            model = ModelSpec(name="openai/fake", api_base={server.url!r}, api_key=SecretStr("none"))
            async def main():
                for strategy in (BestOfNSpec(n=4, seed=0), BeamSearchSpec(n=4, width=2, max_rounds=3, seed=0)):
                    result = await build_strategy_graph(strategy, model=model).ainvoke({{"question": "What is 2+2?"}})
                    assert result["ledger"].total.calls >= 1, result
            asyncio.run(main())
            print("litellm" in sys.modules)
            """
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


async def test_a_response_without_usage_is_booked_at_upper_bounds_not_as_free() -> None:
    from aiohttp import web

    from ttc_agents._llm.gateway import prompt_token_bound

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        choice = {"message": {"role": "assistant", "content": "The answer is 89."}, "finish_reason": "stop"}
        return web.json_response({"id": "x", "choices": [choice] * int(body.get("n", 1))})  # no usage

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        model = ModelSpec(name="openai/quiet", api_base=f"http://127.0.0.1:{port}/v1", api_key=SecretStr("none"))
        ledger = Ledger()
        batch = await Gateway(retry=FAST).sample(model, MESSAGES, 2, ledger=ledger)
    finally:
        await runner.cleanup()
    assert batch.texts == ["The answer is 89."] * 2
    assert ledger.total.prompt_tokens == prompt_token_bound(MESSAGES)
    assert ledger.total.completion_tokens == 2 * len("The answer is 89.")
