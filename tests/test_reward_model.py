"""Tests of the vLLM pooling reward-model verifier (ttc_agents/verifiers/_reward_model.py)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ttc_agents._core.budget import Budget, Ledger
from ttc_agents._core.candidates import UnjudgedScore
from ttc_agents.verifiers._reward_model import RewardModelError, RewardModelVerifier, pooling_url

SEP = "<extra_0>"
MODEL = "Qwen/Qwen2.5-Math-PRM-7B"


def step_p(step: str) -> float:
    """The fake PRM's P(correct) of one step: 0.9 for steps that say "good", else 0.2."""
    return 0.9 if "good" in step else 0.2


@dataclass
class FakePoolingServer:
    """A loopback vLLM ``/pooling`` endpoint for a PRM, served from a thread (any event loop works).

    ``failures`` are (status, headers) answered, in order, before the real answers; ``mode`` picks the
    row format: ``pairs`` ([p_no, p_yes]), ``single`` ([p]), ``flat`` (p), ``logits`` (two logits)
    or ``tokens`` (a row per token, as vLLM without a step tag id).
    """

    mode: str = "pairs"
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0
    slow_first: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rows(self, text: str) -> list[Any]:
        answer = text.split("<|im_start|>assistant\n", 1)[1]
        steps = answer.split(SEP)[:-1]
        ps = [step_p(s) for s in steps]
        if self.mode == "pairs":
            return [[1 - p, p] for p in ps]
        if self.mode == "single":
            return [[p] for p in ps]
        if self.mode == "flat":
            return ps
        if self.mode == "logits":
            return [[0.0, math.log(p / (1 - p))] for p in ps]
        return [[0.5, 0.5] for _ in range(len(text) // 4)]

    def answer(self, body: dict[str, Any], index: int) -> tuple[int, dict[str, str], dict[str, Any]]:
        if index < len(self.failures):
            status, headers = self.failures[index]
            return status, headers, {"object": "error", "message": f"status {status}"}
        if index == 0 and self.slow_first:
            time.sleep(self.slow_first)
        data = [{"index": i, "object": "pooling", "data": self.rows(t)} for i, t in enumerate(body["input"])]
        data.reverse()  # the order of the items must not matter, their index does
        usage = {"prompt_tokens": 10, "total_tokens": 10, "completion_tokens": 0}
        return (
            200,
            {},
            {"id": "pool-1", "object": "list", "model": body["model"], "data": data, "usage": usage},
        )


@pytest.fixture
def server() -> Iterator[FakePoolingServer]:
    fake = FakePoolingServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with fake.lock:
                index = len(fake.requests)
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            try:
                headers: dict[str, str] = {}
                if self.path != "/pooling":
                    status, payload = 404, {"message": "not found"}
                else:
                    if fake.delay:
                        time.sleep(fake.delay)
                    status, headers, payload = fake.answer(body, index)
            finally:
                with fake.lock:
                    fake.in_flight -= 1
            raw = json.dumps(payload).encode()
            try:
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and hung up

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    fake.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()


QUESTION = "What is 2 + 3 * 4?"


async def score(verifier: RewardModelVerifier, candidates: list[list[str]], **kw: Any) -> list[list[float]]:
    return await asyncio.wait_for(verifier.score(QUESTION, candidates, **kw), 30)


# -- input format and endpoint -----------------------------------------------------------------------


def test_input_is_the_model_cards_conversation() -> None:
    verifier = RewardModelVerifier("http://127.0.0.1:1", model=MODEL)
    text = verifier.format_input("Q?", ["step one", f"step {SEP}two"])
    assert text == (
        "<|im_start|>system\n"
        "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\nQ?<|im_end|>\n"
        f"<|im_start|>assistant\nstep one{SEP}step two{SEP}<|im_end|>\n"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:8000", "http://h:8000/pooling"),
        ("http://h:8000/", "http://h:8000/pooling"),
        ("http://h:8000/v1", "http://h:8000/pooling"),
        ("http://h:8000/pooling", "http://h:8000/pooling"),
        ("https://h/prm/pool", "https://h/prm/pool"),
    ],
)
def test_pooling_url(url: str, expected: str) -> None:
    assert pooling_url(url) == expected


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        RewardModelVerifier("http://h", model="m", batch_size=0)
    with pytest.raises(ValueError):
        RewardModelVerifier("http://h", model="m", step_separator="")


# -- scoring and batching -----------------------------------------------------------------------------


async def test_scores_map_to_steps_and_are_booked(server: FakePoolingServer) -> None:
    verifier = RewardModelVerifier(server.url, model=MODEL)
    ledger = Ledger()
    scores = await score(verifier, [["a good", "b bad", "c good"], [], ["d bad"]], ledger=ledger)
    assert scores == [pytest.approx([0.9, 0.2, 0.9]), [], pytest.approx([0.2])]
    assert len(server.requests) == 1
    body = server.requests[0]
    assert body["model"] == MODEL and len(body["input"]) == 2
    assert all(text.endswith(f"{SEP}<|im_end|>\n") for text in body["input"])
    snapshot = ledger.snapshot()
    assert snapshot.by_node()["verify"].calls == 1
    assert list(snapshot.by_model()) == [f"reward:{MODEL}"]
    assert ledger.total.total_tokens == 0 and ledger.total.samples == 0
    assert verifier.name == f"reward:{MODEL}"


async def test_batches_of_batch_size(server: FakePoolingServer) -> None:
    verifier = RewardModelVerifier(server.url, model=MODEL, batch_size=3)
    candidates = [[f"s{i} {'good' if i % 2 else 'bad'}"] for i in range(7)]
    ledger = Ledger()
    scores = await score(verifier, candidates, ledger=ledger)
    assert scores == [[pytest.approx(0.9 if i % 2 else 0.2)] for i in range(7)]
    assert len(server.requests) == math.ceil(7 / 3)
    assert sorted(len(r["input"]) for r in server.requests) == [1, 3, 3]
    assert ledger.total.calls == 3


async def test_batches_run_concurrently(server: FakePoolingServer) -> None:
    server.delay = 0.2
    verifier = RewardModelVerifier(server.url, model=MODEL, batch_size=1, max_concurrency=4)
    await score(verifier, [[f"s{i} good"] for i in range(4)])
    assert server.max_in_flight > 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("single", [0.9, 0.2]), ("flat", [0.9, 0.2]), ("logits", [0.9, 0.2])],
)
async def test_row_formats(server: FakePoolingServer, mode: str, expected: list[float]) -> None:
    server.mode = mode
    verifier = RewardModelVerifier(server.url, model=MODEL)
    assert await score(verifier, [["a good", "b bad"]]) == [pytest.approx(expected)]


async def test_rows_per_token_are_an_error_naming_the_fix(server: FakePoolingServer) -> None:
    server.mode = "tokens"
    verifier = RewardModelVerifier(server.url, model=MODEL)
    with pytest.raises(RewardModelError, match="step_tag_id"):
        await score(verifier, [["a good", "b bad"]])


# -- retries ------------------------------------------------------------------------------------------


async def test_503_is_retried_then_succeeds(server: FakePoolingServer) -> None:
    server.failures = [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})]
    verifier = RewardModelVerifier(server.url, model=MODEL)
    ledger = Ledger()
    assert await score(verifier, [["a good"]], ledger=ledger) == [[pytest.approx(0.9)]]
    assert len(server.requests) == 3
    assert ledger.total.calls == 1 and ledger.total.failed_calls == 2


async def test_retry_after_is_honoured(server: FakePoolingServer) -> None:
    server.failures = [(503, {"Retry-After": "1"})]
    verifier = RewardModelVerifier(server.url, model=MODEL)
    started = time.monotonic()
    await score(verifier, [["a good"]])
    assert time.monotonic() - started >= 0.95


async def test_400_is_not_retried(server: FakePoolingServer) -> None:
    server.failures = [(400, {}), (400, {})]
    verifier = RewardModelVerifier(server.url, model=MODEL)
    ledger = Ledger()
    with pytest.raises(RewardModelError, match="HTTP 400"):
        await score(verifier, [["a good"]], ledger=ledger)
    assert len(server.requests) == 1
    assert ledger.total.failed_calls == 1 and ledger.total.calls == 0


async def test_attempts_are_bounded(server: FakePoolingServer) -> None:
    server.failures = [(500, {"Retry-After": "0"})] * 5
    verifier = RewardModelVerifier(server.url, model=MODEL, max_attempts=3)
    with pytest.raises(RewardModelError, match="HTTP 500"):
        await score(verifier, [["a good"]])
    assert len(server.requests) == 3


async def test_timeouts_are_retried(server: FakePoolingServer) -> None:
    server.slow_first = 1.0
    verifier = RewardModelVerifier(server.url, model=MODEL, timeout=0.3)
    ledger = Ledger()
    assert await score(verifier, [["a good"]], ledger=ledger) == [[pytest.approx(0.9)]]
    assert len(server.requests) == 2
    assert ledger.total.failed_calls == 1


async def test_connection_errors_are_retried_then_raised() -> None:
    verifier = RewardModelVerifier("http://127.0.0.1:9", model=MODEL, max_attempts=2)
    ledger = Ledger()
    with pytest.raises(RewardModelError, match="ConnectError"):
        await score(verifier, [["a good"]], ledger=ledger)
    assert ledger.total.failed_calls == 2


# -- keys, budgets, event loops -----------------------------------------------------------------------


async def test_api_key_is_sent_but_never_shown(server: FakePoolingServer) -> None:
    server.failures = [(401, {})]
    verifier = RewardModelVerifier(server.url, model=MODEL, api_key="sk-secret-123")
    with pytest.raises(RewardModelError) as raised:
        await score(verifier, [["a good"]])
    assert server.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in str(raised.value)
    assert "sk-secret" not in repr(verifier) and "sk-secret" not in str(vars(verifier))


async def test_no_steps_no_requests(server: FakePoolingServer) -> None:
    verifier = RewardModelVerifier(server.url, model=MODEL)
    assert await score(verifier, [[], []]) == [[], []]
    assert await score(verifier, []) == []
    assert server.requests == []


async def test_spent_time_budget_gives_neutral_scores(server: FakePoolingServer) -> None:
    verifier = RewardModelVerifier(server.url, model=MODEL)
    ledger = Ledger(Budget(max_seconds=1), started_at=time.time() - 5)
    scores = await score(verifier, [["a good", "b good"]], ledger=ledger)
    assert scores == [[0.5, 0.5]] and all(isinstance(s, UnjudgedScore) for s in scores[0])
    assert server.requests == []
    assert ledger.stopped_by == "max_seconds"


def test_works_across_event_loops(server: FakePoolingServer) -> None:
    verifier = RewardModelVerifier(server.url, model=MODEL)
    for _ in range(2):
        assert asyncio.run(score(verifier, [["a good"]])) == [[pytest.approx(0.9)]]
    assert len(server.requests) == 2
