"""Budgets under faults and concurrency, as properties over random budgets, specs and fault schedules.

For any budget (samples, tokens, USD, seconds), strategy spec and schedule of faults:

- spend never passes a limit: neither the ledger's count nor what the server billed for the answers
  the client got (an answer sent after the client timed out is billed by the server but unknown to
  the client: see ``test_faults.assert_accounts``);
- no request starts after the time limit;
- ``stopped_by`` is set exactly when a limit cut a request short, and names a limit that was set;
- the best answer so far is returned: an answer whenever a candidate has one, and one of theirs.

The fault server, its audit and the arithmetic text come from ``test_faults``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from suite_totals import count
from test_faults import (  # the fault server and its audit (record_received is an autouse fixture)
    IN_PRICE,
    OUT_PRICE,
    RECEIVED,
    RETRIES,
    AuditedServer,
    arithmetic_text,
    assert_accounts,
    model_spec,
    record_received,  # noqa: F401
)

from ttc_agents import (
    ArithmeticStepVerifier,
    BeamSearchSpec,
    BestOfNSpec,
    Budget,
    DVTSSpec,
    Gateway,
    HybridSpec,
    Ledger,
    RevisionSpec,
    SampleBatch,
    StrategySpec,
    Usage,
    build_strategy_graph,
)
from ttc_agents.testing import FakeServerConfig, Fault
from ttc_agents.verifiers import LLMJudgePRM

QUESTIONS = ("What is 12 * 7 + 5?", "What is (3 + 4) * 5 - 2?", "What is 81 / 9 + 17 * 3 - 40?")
TIMEOUT = 0.5
"""Per-request timeout of the model here; a hang lasts twice as long."""

FAULT_KINDS = (
    Fault.server_error(500),
    Fault.server_error(503),
    Fault.rate_limit(),
    Fault.rate_limit(retry_after=0.05),
    Fault.request_timeout(),
    Fault.connection_reset(),
    Fault.malformed_json(),
    Fault.empty_choices(),
    Fault.fewer_choices(1),
    Fault.truncated(2),
    Fault.hang(2 * TIMEOUT),
)
FAULTS = st.sampled_from(FAULT_KINDS)


@st.composite
def strategy_specs(draw: st.DrawFn) -> StrategySpec:
    kind = draw(st.sampled_from(["best_of_n", "beam_search", "dvts", "revision", "hybrid"]))
    seed = draw(st.integers(0, 1000))
    if kind == "best_of_n":
        selection = draw(st.sampled_from(["naive", "weighted", "majority"]))
        return BestOfNSpec(n=draw(st.integers(1, 12)), seed=seed, selection=selection)
    if kind in ("beam_search", "dvts"):
        width = draw(st.sampled_from([1, 2, 4]))
        n = width * draw(st.integers(1, 3))
        rounds = draw(st.integers(1, 5))
        if kind == "dvts":
            return DVTSSpec(n=n, width=width, max_rounds=rounds, seed=seed)
        return BeamSearchSpec(n=n, width=width, max_rounds=rounds, lookahead=draw(st.integers(0, 1)), seed=seed)
    if kind == "revision":
        return RevisionSpec(attempts=draw(st.integers(1, 4)), chains=draw(st.integers(1, 3)), seed=seed)
    return HybridSpec(n=draw(st.integers(1, 8)), sequential_ratio=draw(st.floats(0.25, 4.0)), seed=seed)


budgets = st.builds(
    Budget,
    max_samples=st.none() | st.integers(1, 30),
    max_tokens=st.none() | st.integers(1, 6000),
    max_usd=st.none() | st.floats(1e-6, 1e-3),
    max_seconds=st.none() | st.floats(0.05, 3.0),
)


@dataclass
class RecordingGateway(Gateway):
    """A gateway that remembers, per request, how many samples were asked for and how many came."""

    asked: list[tuple[int, int]] = field(default_factory=list)

    async def sample(self, model: Any, messages: Sequence[Any], k: int = 1, **params: Any) -> SampleBatch:
        batch = await Gateway.sample(self, model, messages, k, **params)
        self.asked.append((k, len(batch.samples)))
        return batch


SUITE = "budget faults"


def check_limits(budget: Budget, total: Usage) -> None:
    """Spend inside every limit: what was billed, plus the worst case of attempts nobody saw billed."""
    over = [
        name
        for name, spent, limit in (
            ("max_samples", total.samples, budget.max_samples),
            ("max_tokens", total.charged_tokens, budget.max_tokens),
            ("max_usd", total.charged_usd, None if budget.max_usd is None else budget.max_usd * (1 + 1e-9)),
        )
        if limit is not None and spent > limit
    ]
    count(SUITE, "overruns", len(over))
    assert not over, (over, budget, total)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=strategy_specs(),
    budget=budgets,
    question=st.sampled_from(QUESTIONS),
    judge=st.booleans(),
    schedule=st.lists(FAULTS, max_size=6),
    rate=st.sampled_from([0.0, 0.1, 0.3]),
    fault_seed=st.integers(0, 2**16),
)
def test_strategies_never_overspend_under_faults(
    spec: StrategySpec,
    budget: Budget,
    question: str,
    judge: bool,
    schedule: list[Fault],
    rate: float,
    fault_seed: int,
) -> None:
    count(SUITE, "strategy runs")
    count(SUITE, "faults scheduled", len(schedule))
    RECEIVED.clear()
    config = FakeServerConfig(
        text=arithmetic_text,
        faults=schedule,
        fault_rate=rate,
        fault_seed=fault_seed,
        random_faults=FAULT_KINDS,
    )
    with AuditedServer(config) as server:
        model = model_spec(server, timeout=TIMEOUT, max_tokens=64)
        gateway = RecordingGateway(retry=RETRIES)
        verifier = LLMJudgePRM(model, gateway=gateway) if judge else ArithmeticStepVerifier()
        graph = build_strategy_graph(spec, model=model, verifier=verifier, gateway=gateway)
        started = time.time()
        result = asyncio.run(graph.ainvoke({"question": question, "budget": budget}))  # type: ignore[arg-type]
        ledger = result["ledger"]
        total = ledger.total

        check_limits(budget, total)
        assert_accounts(server, total)  # the ledger is what the server billed for the answers received
        received = server.received_usage()
        check_limits(
            budget,
            Usage(
                samples=total.samples,
                prompt_tokens=received.prompt_tokens,
                completion_tokens=received.completion_tokens,
                usd=received.prompt_tokens * IN_PRICE + received.completion_tokens * OUT_PRICE,
            ),
        )
        if budget.max_seconds is not None:
            # No request starts after the deadline (the slack covers the hop from the check to the socket
            # on a busy machine; a request starting a whole second late would be a bug).
            deadline = max(started, ledger.started_at) + budget.max_seconds
            late = [r.received_at - deadline for r in server.records if r.received_at > deadline + 1.0]
            assert not late, late

        stopped = result["stopped_by"]
        cut_short = any(got < asked for asked, got in gateway.asked)
        count(SUITE, "runs cut short by a limit", int(cut_short))
        count(SUITE, "unconfirmed tokens booked", total.unconfirmed_tokens)
        if cut_short:
            assert stopped is not None
        if stopped is not None:
            assert getattr(budget, stopped) is not None

        answers = {c.answer for c in result["candidates"] if c.answer is not None}
        if answers:
            assert result["answer"] in answers
        else:
            assert result["answer"] is None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    budget=budgets,
    asks=st.lists(st.integers(1, 8), min_size=1, max_size=24),
    schedule=st.lists(FAULTS, max_size=RETRIES.max_attempts - 2),
    max_tokens=st.integers(1, 64),
)
def test_one_ledger_shared_by_concurrent_calls_never_overspends(
    budget: Budget, asks: list[int], schedule: list[Fault], max_tokens: int
) -> None:
    """Many concurrent gateway calls, one ledger: reservations keep the sum inside every limit."""
    count(SUITE, "shared-ledger runs")
    count(SUITE, "faults scheduled", len(schedule))
    RECEIVED.clear()
    config = FakeServerConfig(text=arithmetic_text, faults=schedule, completion_tokens=max_tokens)
    with AuditedServer(config) as server:
        model = model_spec(server, timeout=TIMEOUT)
        gateway = Gateway(retry=RETRIES)
        ledger = Ledger(budget)
        messages = [{"role": "user", "content": "Problem: What is 6 * 7?"}]

        async def run() -> list[SampleBatch]:
            calls = [
                gateway.sample(model, messages, k, ledger=ledger, max_tokens=max_tokens, seed=i)
                for i, k in enumerate(asks)
            ]
            return list(await asyncio.gather(*calls))

        batches = asyncio.run(run())
        total = ledger.total
        check_limits(budget, total)
        assert_accounts(server, total)
        assert total.samples == sum(len(b.samples) for b in batches)
        if any(len(b.samples) < k for b, k in zip(batches, asks, strict=True)):
            assert ledger.stopped_by is not None and getattr(budget, ledger.stopped_by) is not None
        if budget.unlimited:
            assert [len(b.samples) for b in batches] == asks


class IgnoresMaxTokens(AuditedServer):
    """Answers with its fixed completion length whatever ``max_tokens`` (and ``stop``) say: a step
    request cut at its stop string could otherwise come back shorter than its ``max_tokens``."""

    def _payload(self, body: Any, chat: bool, reply: Any) -> Any:
        reply.max_tokens = None
        return super()._payload({k: v for k, v in body.items() if k != "stop"}, chat, reply)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=strategy_specs(), max_tokens=st.integers(1, 16))
@example(spec=DVTSSpec(seed=0, n=1, width=1, max_rounds=1), max_tokens=1)  # one short step per request
@example(spec=BeamSearchSpec(seed=0, n=1, width=1, max_rounds=1), max_tokens=11)
def test_a_server_ignoring_max_tokens_is_booked_flagged_and_stops_the_run(spec: StrategySpec, max_tokens: int) -> None:
    """Every strategy (beam steps ask for 256 tokens at most): the excess is booked (it is billed), named,
    and the run stops."""
    count(SUITE, "ignoring-server runs")
    RECEIVED.clear()
    config = FakeServerConfig(text=arithmetic_text, completion_tokens=400)  # above every max_tokens
    with IgnoresMaxTokens(config) as server:
        model = model_spec(server, timeout=TIMEOUT, max_tokens=max_tokens)
        gateway = Gateway(retry=RETRIES)
        graph = build_strategy_graph(spec, model=model, verifier=ArithmeticStepVerifier(), gateway=gateway)
        result = asyncio.run(graph.ainvoke({"question": QUESTIONS[0]}))
        ledger = result["ledger"]
        assert result["stopped_by"] == "server_ignored_max_tokens"
        assert ledger.overrun_tokens > 0
        assert_accounts(server, ledger.total)  # booked to the token, excess included
        count(SUITE, "server overruns flagged")
