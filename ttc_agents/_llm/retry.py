"""Retry rules shared by every remote call of the library: what is retried and how long to wait.

Used by the gateway (LiteLLM calls, :mod:`ttc_agents._llm.gateway`) and the reward-model verifier (httpx
calls, :mod:`ttc_agents.verifiers._reward_model`):

* retried: rate limits (429), 408, 5xx, timeouts and connection errors, and a :class:`RetryableError`
  (an answer that carries no status but is worth another attempt); never any other 4xx, nor a
  :class:`~ttc_agents._llm.errors.ModelConfigError` (no key, no such provider, no server at
  ``api_base``: the gateway turns those into one, whatever status LiteLLM gave them);
* the wait before attempt ``k + 1`` is a jittered exponential backoff
  (``min(initial_wait * 2 ** (k - 1) + U(0, jitter), max_wait)``), combined with the server's
  Retry-After (delta-seconds or an HTTP date, capped at ``max_retry_after``);
* a caller with a time budget passes ``seconds_left``: a wait that would use up what is left raises
  :class:`OutOfTime` instead of sleeping.
"""

from __future__ import annotations

import email.utils
import random
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveInt
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ttc_agents._llm.errors import ModelConfigError

__all__ = [
    "OutOfTime",
    "RetryPolicy",
    "RetryableError",
    "async_retrying",
    "backoff_seconds",
    "is_retryable",
    "is_timeout",
    "retry_after_seconds",
    "status_of",
]


class RetryPolicy(BaseModel):
    """Retries on rate limits (honouring Retry-After), 5xx, 408, timeouts and connection errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: PositiveInt = 5
    initial_wait: NonNegativeFloat = 0.5
    max_wait: NonNegativeFloat = 20.0
    jitter: NonNegativeFloat = 0.5
    max_retry_after: NonNegativeFloat = 60.0


class RetryableError(Exception):
    """A failure without a status that another attempt may fix (e.g. an answer without any choice)."""


class OutOfTime(Exception):
    """The time budget runs out before (or while waiting for) the next attempt."""


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a failure: an httpx status error's, or a ``status_code`` attribute (LiteLLM)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _litellm_error_types(*names: str) -> tuple[type[BaseException], ...]:
    """LiteLLM's exception classes of these names, when LiteLLM is loaded (else none can exist yet:
    a process that never imports it, on the lean transport, cannot have raised one)."""
    exceptions = sys.modules.get("litellm.exceptions")
    return tuple(getattr(exceptions, name) for name in names) if exceptions is not None else ()


def is_timeout(exc: BaseException) -> bool:
    """A client-side timeout: :class:`TimeoutError` or LiteLLM's ``Timeout``."""
    return isinstance(exc, (TimeoutError, *_litellm_error_types("Timeout")))


def is_retryable(exc: BaseException) -> bool:
    """True for failures that another attempt may fix; never for other 4xx errors."""
    if isinstance(exc, ModelConfigError):
        return False
    if isinstance(exc, (RetryableError, TimeoutError, *_litellm_error_types("Timeout", "APIConnectionError"))):
        return True
    if isinstance(exc, httpx.TransportError):
        return not isinstance(exc, httpx.UnsupportedProtocol)
    status = status_of(exc)
    return status is not None and (status in (408, 429) or status >= 500)


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The server's Retry-After in seconds (delta-seconds or an HTTP date), if the failure carried one."""
    if exc is None:
        return None
    candidates: list[Any] = [getattr(exc, "headers", None), getattr(exc, "litellm_response_headers", None)]
    response = getattr(exc, "response", None)
    if response is not None:
        candidates.append(getattr(response, "headers", None))
    for headers in candidates:
        if not headers:
            continue
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
        except AttributeError:
            continue
        if value is not None:
            return _parse_retry_after(value)
    return None


def _parse_retry_after(value: Any) -> float | None:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_seconds(policy: RetryPolicy, attempt: int) -> float:
    """The jittered exponential backoff after failed attempt number ``attempt`` (1-based)."""
    try:
        backoff = policy.initial_wait * 2.0 ** (attempt - 1) + random.uniform(0, policy.jitter)
    except OverflowError:
        backoff = policy.max_wait
    return max(0.0, min(backoff, policy.max_wait))


RetryAfterRule = Literal["at_least", "instead"]
"""How a Retry-After combines with the backoff: wait ``at_least`` both, or the Retry-After ``instead``."""


def async_retrying(
    policy: RetryPolicy,
    *,
    attempts: int | None = None,
    seconds_left: Callable[[], float | None] | None = None,
    retry_after: RetryAfterRule = "at_least",
) -> AsyncRetrying:
    """A tenacity ``AsyncRetrying`` that retries :func:`is_retryable` failures, at most ``attempts``
    attempts (default ``policy.max_attempts``), re-raising the last failure.

    The wait is :func:`backoff_seconds` and the server's Retry-After (capped at
    ``policy.max_retry_after``) as ``retry_after`` says. With ``seconds_left``, a wait at least as
    long as what is left raises :class:`OutOfTime`.
    """

    def wait(state: RetryCallState) -> float:
        backoff = backoff_seconds(policy, state.attempt_number)
        after = retry_after_seconds(state.outcome.exception() if state.outcome else None)
        if after is not None:
            capped = min(after, policy.max_retry_after)
            backoff = max(backoff, capped) if retry_after == "at_least" else capped
        left = seconds_left() if seconds_left is not None else None
        if left is not None and backoff >= left:
            raise OutOfTime
        return backoff

    return AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        wait=wait,
        stop=stop_after_attempt(max(1, policy.max_attempts if attempts is None else attempts)),
        reraise=True,
    )
