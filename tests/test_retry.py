"""The retry rules shared by the gateway and the reward-model verifier (ttc_agents._llm.retry)."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from litellm.exceptions import APIConnectionError, RateLimitError

from ttc_agents import RetryPolicy
from ttc_agents._llm.retry import (
    OutOfTime,
    RetryableError,
    async_retrying,
    backoff_seconds,
    is_retryable,
    retry_after_seconds,
    status_of,
)


def _status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:1/pooling")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_transient_statuses_are_retried(status: int) -> None:
    assert is_retryable(_status_error(status))
    assert status_of(_status_error(status)) == status


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_client_errors_are_not(status: int) -> None:
    assert not is_retryable(_status_error(status))


def test_transport_timeouts_and_marked_errors_are_retried() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:1/")
    assert is_retryable(httpx.ConnectError("refused", request=request))
    assert is_retryable(httpx.ReadTimeout("slow", request=request))
    assert not is_retryable(httpx.UnsupportedProtocol("ftp", request=request))
    assert is_retryable(TimeoutError())
    assert is_retryable(RetryableError("no choices"))
    assert is_retryable(APIConnectionError(message="reset", llm_provider="openai", model="m"))
    assert not is_retryable(ValueError("no"))


def test_retry_after_seconds_and_http_dates() -> None:
    assert retry_after_seconds(_status_error(429, {"Retry-After": "2.5"})) == 2.5
    assert retry_after_seconds(_status_error(429, {"Retry-After": "-3"})) == 0.0
    assert retry_after_seconds(_status_error(429, {"Retry-After": "soon"})) is None
    assert retry_after_seconds(_status_error(429)) is None
    assert retry_after_seconds(None) is None
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    after = retry_after_seconds(_status_error(503, {"Retry-After": date}))
    assert after is not None and 25 <= after <= 31
    litellm_error = RateLimitError(message="slow down", llm_provider="openai", model="m")
    litellm_error.litellm_response_headers = httpx.Headers({"retry-after": "4"})
    assert retry_after_seconds(litellm_error) == 4.0


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_wait=0.5, max_wait=3.0, jitter=0.0)
    assert [backoff_seconds(policy, n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff_seconds(policy, 10_000) == 3.0


async def _failures(retrying: object, errors: list[BaseException]) -> list[float]:
    waits: list[float] = []
    retrying.sleep = lambda seconds: _record(waits, seconds)  # type: ignore[attr-defined]
    async for attempt in retrying:  # type: ignore[attr-defined]
        with attempt:
            if errors:
                raise errors.pop(0)
    return waits


async def _record(waits: list[float], seconds: float) -> None:
    waits.append(seconds)


async def test_retry_after_is_a_floor_or_replaces_the_backoff() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=1.0, jitter=0.0, max_retry_after=5.0)
    short = [_status_error(429, {"Retry-After": "0"}), _status_error(429, {"Retry-After": "9"})]
    assert await _failures(async_retrying(policy), list(short)) == [1.0, 5.0]
    assert await _failures(async_retrying(policy, retry_after="instead"), list(short)) == [0.0, 5.0]


async def test_attempts_are_bounded_and_the_last_failure_is_raised() -> None:
    policy = RetryPolicy(max_attempts=2, initial_wait=0.0, jitter=0.0)
    with pytest.raises(httpx.HTTPStatusError):
        await _failures(async_retrying(policy), [_status_error(500) for _ in range(3)])
    with pytest.raises(httpx.HTTPStatusError):  # not retried at all
        await _failures(async_retrying(policy, attempts=5), [_status_error(400), _status_error(500)])


async def test_a_wait_beyond_the_time_left_raises_out_of_time() -> None:
    policy = RetryPolicy(initial_wait=2.0, jitter=0.0)
    with pytest.raises(OutOfTime):
        await _failures(async_retrying(policy, seconds_left=lambda: 1.0), [_status_error(503)])
    assert await _failures(async_retrying(policy, seconds_left=lambda: None), [_status_error(503)]) == [2.0]
