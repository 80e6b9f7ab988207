"""A verifier backed by a process reward model served over HTTP in vLLM's pooling format.

Supported server: vLLM's ``/pooling`` endpoint serving a process reward model, e.g.
``vllm serve Qwen/Qwen2.5-Math-PRM-7B`` (the ``Qwen2ForProcessRewardModel`` architecture; older
vLLM versions want ``--task reward``). vLLM pools such a model with its STEP pooler: one row per
occurrence of the step tag token in the input, and for Qwen2.5-Math-PRM it sets the step tag to
``<extra_0>`` (token id 151651) by default; other PRMs need
``--pooler-config '{"step_tag_id": ID}'`` (``--override-pooler-config`` in older versions).

Request (one per batch of ``batch_size`` candidates)::

    POST {url}   {"model": MODEL, "input": [text, ...]}

where each text is the conversation in the Qwen2.5 chat template, as the model card builds it: a
system prompt, the question as the user turn, and the steps joined by the step separator, and
ending with it, as the assistant turn. Response::

    {"data": [{"index": i, "object": "pooling", "data": ROWS}, ...], ...}

with one row per step separator: ``[p_negative, p_positive]`` (the step score is ``p_positive``;
rows that are not probabilities are treated as the two logits and softmaxed), ``[score]``, or a
flat list of scores (used as is, clipped to [0, 1]). A number of rows other than the number of
steps is an error: the server is not pooling at the separator.

Sources: vLLM ``vllm/entrypoints/openai/protocol.py``, later ``vllm/entrypoints/pooling/``
(``PoolingResponse``, ``PoolingResponseData.data: list[list[float]] | list[float] | str``),
``vllm/model_executor/models/qwen2_rm.py`` (``Qwen2ForProcessRewardModel``, STEP pooling,
``num_labels = 2``), ``vllm/model_executor/models/config.py``
(``Qwen2ForProcessRewardModelConfig`` sets ``step_tag_id = 151651``), the STEP pooler (keeps the
rows whose token is ``step_tag_id``), vLLM's pooling client example
(https://docs.vllm.ai/en/v0.18.1/examples/pooling/pooling/: ``/pooling`` at the server root), and
the Qwen2.5-Math-PRM-7B model card (input format, ``<extra_0>`` after every step, positive-class
probability as the step reward).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import SecretStr

from ttc_agents._core.budget import Ledger, Usage
from ttc_agents._core.candidates import UNJUDGED
from ttc_agents._llm.retry import RetryPolicy, async_retrying

__all__ = ["QWEN_MATH_SYSTEM_PROMPT", "RewardModelError", "RewardModelVerifier"]

QWEN_MATH_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
"""The system prompt of the Qwen2.5-Math-PRM model card."""


class RewardModelError(RuntimeError):
    """The reward endpoint failed for good or answered in a format this verifier does not read."""


def pooling_url(url: str) -> str:
    """``url`` itself, or its server root plus ``/pooling`` when it names no path (or just ``/v1``)."""
    parts = urlsplit(url)
    if parts.path.rstrip("/") in ("", "/v1"):
        return urlunsplit(parts._replace(path="/pooling"))
    return url


def _number(value: Any) -> float | None:
    """A finite-or-infinite float from a pooled value; None for anything else (NaN, text, bool, null)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        number = math.inf if value > 0 else -math.inf
    return None if math.isnan(number) else number


def _row_score(row: Any) -> float:
    """The step score of one pooled row: positive-class probability, or the single value."""
    if (value := _number(row)) is not None:
        return min(1.0, max(0.0, value))
    if isinstance(row, list) and len(row) == 1:
        return _row_score(row[0])
    if isinstance(row, list) and len(row) == 2:
        negative, positive = _number(row[0]), _number(row[1])
        if negative is not None and positive is not None:
            if 0 <= negative <= 1 and 0 <= positive <= 1 and abs(negative + positive - 1) < 1e-3:
                return positive
            difference = negative - positive
            if not math.isnan(difference):  # (inf - inf is not comparable)
                return 1.0 / (1.0 + math.exp(min(difference, 700.0)))
    raise RewardModelError(f"unsupported pooled row {row!r}: expected [p_no, p_yes], [score] or a score")


class RewardModelVerifier:
    """Scores steps with a process reward model served by vLLM's pooling API (see the module doc).

    ``url`` is the pooling endpoint (a bare server address or ``.../v1`` gets ``/pooling`` at the
    root); ``model`` is the served model name. Candidates go ``batch_size`` texts per request,
    batches concurrently (at most ``max_concurrency`` at a time), each request with up to
    ``max_attempts`` attempts: 408/429/5xx, timeouts and connection errors are retried after the
    server's Retry-After or a jittered exponential backoff, other 4xx are not. A request that
    fails for good raises :class:`RewardModelError`.

    The endpoint spends no LLM tokens; every HTTP attempt is booked in the ledger under node
    ``"verify"`` and model ``reward:<model>`` (``calls=1``, or ``failed_calls=1``). When the
    ledger's time budget has run out, batches not yet sent get the neutral score 0.5.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str,
        api_key: SecretStr | str | None = None,
        batch_size: int = 16,
        timeout: float = 30,
        max_attempts: int = 4,
        step_separator: str = "<extra_0>",
        system_prompt: str = QWEN_MATH_SYSTEM_PROMPT,
        max_concurrency: int = 4,
    ) -> None:
        if batch_size < 1 or max_attempts < 1 or max_concurrency < 1:
            raise ValueError("batch_size, max_attempts and max_concurrency must be at least 1")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if not step_separator:
            raise ValueError("step_separator must not be empty")
        self.url = pooling_url(url)
        self.model = model
        self.name = f"reward:{model}"
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.max_attempts = max_attempts
        self.step_separator = step_separator
        self.system_prompt = system_prompt
        self.max_concurrency = max_concurrency
        self._api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key

    def __repr__(self) -> str:
        return f"RewardModelVerifier({self.url!r}, model={self.model!r})"

    def format_input(self, question: str, steps: Sequence[str]) -> str:
        """The text the reward model reads: Qwen2.5's chat template with a separator after each step.

        A separator inside a step's own text is removed, so the server finds one per step.
        Override this for a model with another template.
        """
        sep = self.step_separator
        answer = "".join(step.replace(sep, "") + sep for step in steps)
        return (
            f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n"
            f"<|im_start|>user\n{question}<|im_end|>\n"
            f"<|im_start|>assistant\n{answer}<|im_end|>\n"
        )

    async def score(
        self,
        question: str,
        candidates: Sequence[Sequence[str]],
        *,
        ledger: Ledger | None = None,
    ) -> list[list[float]]:
        """One score in [0, 1] per step of each candidate (``[]`` for a candidate without steps)."""
        ledger = ledger if ledger is not None else Ledger()
        todo = [i for i, steps in enumerate(candidates) if steps]
        batches = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        out: list[list[float]] = [[] for _ in candidates]
        if not batches:
            return out
        gate = asyncio.Semaphore(self.max_concurrency)
        headers = {"Authorization": f"Bearer {self._api_key.get_secret_value()}"} if self._api_key else {}
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as client:

            async def run(batch: list[int]) -> None:
                async with gate:
                    texts = [self.format_input(question, candidates[i]) for i in batch]
                    rows = await self._request(client, texts, ledger)
                for i, item in zip(batch, rows, strict=True):
                    steps = len(candidates[i])
                    out[i] = [UNJUDGED] * steps if item is None else self._step_scores(item, steps)

            await _gather_or_cancel([run(batch) for batch in batches])
        return out

    def _step_scores(self, data: Any, steps: int) -> list[float]:
        if not isinstance(data, list):
            kind = type(data).__name__
            raise RewardModelError(f"{self.name}: pooled data is {kind}, expected a list of floats")
        scores = [_row_score(row) for row in data]
        if len(scores) != steps:
            raise RewardModelError(
                f"{self.name} returned {len(scores)} scores for {steps} steps: the server must pool one "
                f"row per step separator {self.step_separator!r} (vLLM STEP pooling with step_tag_id, "
                "e.g. --pooler-config '{\"step_tag_id\": 151651}' for Qwen2.5-Math-PRM)"
            )
        return scores

    async def _request(self, client: httpx.AsyncClient, texts: list[str], ledger: Ledger) -> list[Any]:
        """The pooled data of each text in order, or ``None`` each when the time budget ran out."""
        # The server's Retry-After replaces the backoff (a Retry-After of 0 retries at once).
        retrying = async_retrying(RetryPolicy(max_attempts=self.max_attempts), retry_after="instead")
        try:
            async for attempt in retrying:
                with attempt:
                    left = ledger.seconds_left()
                    if left is not None and left <= 0:
                        ledger.stop("max_seconds")
                        return [None] * len(texts)
                    timeout = self.timeout if left is None else min(self.timeout, left)
                    payload = await self._post(client, texts, ledger, timeout)
        except httpx.HTTPStatusError as exc:
            body = exc.response.text[:300]
            raise RewardModelError(f"{self.name}: HTTP {exc.response.status_code} from {self.url}: {body}") from exc
        except httpx.HTTPError as exc:
            raise RewardModelError(f"{self.name}: {type(exc).__name__} talking to {self.url}: {exc}") from exc
        except ValueError as exc:
            raise RewardModelError(f"{self.name}: {self.url} did not answer with JSON") from exc
        return self._pooled_data(payload, len(texts))

    async def _post(self, client: httpx.AsyncClient, texts: list[str], ledger: Ledger, timeout: float) -> Any:
        """One attempt, booked in the ledger as a call or a failed call."""
        try:
            response = await client.post(self.url, json={"model": self.model, "input": texts}, timeout=timeout)
            response.raise_for_status()
            payload = response.json()
        except (httpx.HTTPError, ValueError):
            ledger.settle(None, Usage(failed_calls=1), node="verify", model=self.name)
            raise
        ledger.settle(None, Usage(calls=1), node="verify", model=self.name)
        return payload

    def _pooled_data(self, payload: Any, count: int) -> list[Any]:
        items = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(items, list) or len(items) != count:
            raise RewardModelError(f"{self.name}: expected {count} items in the response's 'data'")
        by_index = {item.get("index", n): item.get("data") for n, item in enumerate(items) if isinstance(item, dict)}
        if sorted(by_index) != list(range(count)):
            raise RewardModelError(f"{self.name}: response indices do not cover 0..{count - 1}")
        return [by_index[i] for i in range(count)]


async def _gather_or_cancel(coroutines: list[Any]) -> None:
    """Run ``coroutines`` concurrently; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
