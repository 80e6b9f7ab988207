"""The model gateway: every model call of the library goes through :meth:`Gateway.sample`.

One call asks for ``k`` completions of one prompt. The gateway sends ONE request with ``n=k`` when
the backend honours ``n``, checks how many choices came back and tops up with parallel seeded
calls when fewer came (llama.cpp's server silently returns one). Before any request starts, the
ledger reserves its worst case and may shrink ``n`` or refuse; after it, the real usage (tokens,
USD, FLOPs) is booked. Transient failures are retried with tenacity; answers can be recorded to and
replayed from a :class:`~ttc_agents.ResponseStore`.

What the ledger books when a call does not simply succeed:

* an error answer (4xx, 5xx, a reset connection) is a failed call, billed nothing;
* an attempt the client timed out on, or that was cancelled while in flight (a sibling call failed,
  or the caller gave up), may still be billed by the provider: its reservation, the worst case, is
  booked as *unconfirmed* spend (:attr:`Usage.unconfirmed_tokens`), and a retry takes a reservation of
  its own;
* a response with more completion tokens than ``max_tokens x n`` (a server that ignores
  ``max_tokens``) is booked as it came, flagged (:meth:`Ledger.flag_overrun`: ``overrun_tokens``,
  ``stopped_by == "server_ignored_max_tokens"``) and ends the run: the ledger grants nothing more.

Every exception a call raises leaves with the configured secrets masked in its text
(:func:`~ttc_agents._llm.secrets.mask_exception`) and carries the run's ledger
(:func:`~ttc_agents._core.budget.ledger_snapshot_of`). Sibling calls of one request (top-ups) are
cancelled when one fails (:func:`gather_or_cancel`).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import weakref
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ttc_agents._core.budget import BudgetLimit, Ledger, Reservation, Usage, attach_ledger
from ttc_agents._core.thinking import thinking_allowance, thinking_params
from ttc_agents._llm.errors import (
    ModelConfigError,
    add_status_hint,
    check_model_config,
    config_error_of,
    openai_key_missing,
)
from ttc_agents._llm.models import ModelSpec
from ttc_agents._llm.openai_http import OpenAIHTTPTransport, in_cost_map, lean_route
from ttc_agents._llm.providers import ModelResolver, default_resolvers, register_providers
from ttc_agents._llm.retry import (
    OutOfTime,
    RetryableError,
    RetryPolicy,
    async_retrying,
    backoff_seconds,
    is_timeout,
)
from ttc_agents._llm.router_group import RouterGroups, failed_deployment_key, worst_case_prices
from ttc_agents._llm.secrets import mask_exception, mask_secrets, register_secret
from ttc_agents._llm.token_bounds import prompt_token_bound, tools_token_bound

if TYPE_CHECKING:
    from ttc_agents._llm.store import ResponseStore

__all__ = [
    "Gateway",
    "Message",
    "ModelResolver",
    "RetryPolicy",
    "Sample",
    "SampleBatch",
    "gather_or_cancel",
    "get_default_gateway",
    "mask_secrets",
    "prompt_token_bound",
    "sample",
    "set_default_gateway",
    "tools_token_bound",
]

Message = Mapping[str, Any]

_T = TypeVar("_T")


async def gather_or_cancel(*aws: Awaitable[_T]) -> list[_T]:
    """Like :func:`asyncio.gather`, but the first failure cancels the others, and is raised (itself,
    not in a group) only once they have finished: calls cancelled in flight have booked their worst
    case by then, so the ledger the exception carries is complete."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@dataclass(frozen=True, slots=True)
class Sample:
    """One completion: its text, why it ended, token logprobs when they were asked for, and the tool
    calls it made when the request carried ``tools`` (OpenAI format: ``{"id", "type": "function",
    "function": {"name", "arguments"}}``, the arguments as the raw text the model wrote)."""

    text: str
    finish_reason: str | None = None
    logprobs: tuple[Mapping[str, Any], ...] | None = None
    tool_calls: tuple[Mapping[str, Any], ...] | None = None

    @property
    def truncated(self) -> bool:
        """Cut at ``max_tokens`` with nothing left to read: the (hidden) reasoning used the whole cap. Such a
        sample is billed like any other, and carries no answer, so it never wins a selection."""
        return self.finish_reason == "length" and not self.text.strip() and not self.tool_calls


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """What :meth:`Gateway.sample` returns. ``stopped_by`` names the limit when fewer than asked came."""

    samples: tuple[Sample, ...]
    usage: Usage
    requested: int
    stopped_by: BudgetLimit | None = None

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.samples]


class _EmptyResponseError(RetryableError):
    """The backend answered without any choice; worth another attempt."""


def _choice_logprobs(choice: Any) -> tuple[Mapping[str, Any], ...] | None:
    logprobs = getattr(choice, "logprobs", None)
    if logprobs is None:
        return None
    content = logprobs.get("content") if isinstance(logprobs, dict) else getattr(logprobs, "content", None)
    if not content:
        return None
    return tuple(item if isinstance(item, dict) else item.model_dump() for item in content)


def _choice_tool_calls(choice: Any) -> tuple[Mapping[str, Any], ...] | None:
    """A choice's tool calls as plain OpenAI-format dicts (None when it made none)."""
    calls = getattr(getattr(choice, "message", None), "tool_calls", None)
    if not calls:
        return None
    out = []
    for call in calls:
        data = call if isinstance(call, Mapping) else call.model_dump()
        function = data.get("function") or {}
        out.append(
            {
                "id": data.get("id"),
                "type": data.get("type") or "function",
                "function": {"name": function.get("name"), "arguments": function.get("arguments")},
            }
        )
    return tuple(out)


@dataclass(slots=True)
class Gateway:
    """Sends every model request of the library and books it in a ledger.

    ``store`` enables record/replay; ``resolvers`` map name prefixes such as ``local`` to a server.
    A model with a ``group`` of deployments goes through that group's LiteLLM Router (one per event
    loop, in ``_groups``), and its calls are booked per deployment. With ``lean_transport`` (the
    default), a request for ``openai/NAME`` at an ``api_base`` (a self-hosted server, or a resolver's)
    goes straight over HTTP (:mod:`ttc_agents._llm.openai_http`: the same body, samples, usage and
    bookings, without LiteLLM's per-call cost or import); everything else goes through LiteLLM.
    """

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    store: ResponseStore | None = None
    resolvers: dict[str, ModelResolver] = field(default_factory=dict)
    _prices: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    _limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    """Per event loop (a semaphore is bound to the loop it first waits on; sync runs use the library's
    own loop, async ones the caller's), per model name. Keyed by the loop itself, not its ``id``: a
    closed loop's entry goes with it, and a new loop at the same address never gets its semaphore."""
    _groups: RouterGroups = field(default_factory=RouterGroups)
    _reached: set[str] = field(default_factory=set)
    """The api_bases a call has succeeded at: a refused connection there is a restart, and retried."""
    lean_transport: bool = True
    _http: OpenAIHTTPTransport = field(default_factory=OpenAIHTTPTransport)
    _passthrough: dict[tuple[str, bool | None], frozenset[str]] = field(default_factory=dict)
    """Per (model, supports_thinking): the thinking parameters LiteLLM would drop on that route but the
    model takes (sent with ``allowed_openai_params``)."""

    async def sample(
        self,
        model: ModelSpec | str,
        messages: Sequence[Message],
        k: int = 1,
        *,
        ledger: Ledger | None = None,
        node: str = "sample",
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        stop: Sequence[str] | None = None,
        prompt_tokens: int | None = None,
        **params: Any,
    ) -> SampleBatch:
        """Up to ``k`` completions of one prompt; fewer only when the budget says so (or the run was
        stopped: see the module docstring).

        ``prompt_tokens`` is what a server reported for these very messages in an earlier call (the
        router's probe asked the same prompt): the first request reserves that instead of the UTF-8
        bound. Later waves of this call reserve what the first request's answer reported.

        An exception out of here has its secrets masked and carries ``ledger``
        (:func:`~ttc_agents._core.budget.ledger_snapshot_of`), which holds every spend booked before it.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        spec = ModelSpec.of(model)
        ledger = ledger if ledger is not None else Ledger()
        request: dict[str, Any] = {**spec.extra_params, **params, "max_tokens": max_tokens or spec.max_tokens}
        self._add_thinking(spec, request)
        if temperature is not None:
            request["temperature"] = temperature
        if stop:
            request["stop"] = list(stop)
        if logprobs and spec.supports_logprobs:
            request["logprobs"] = True
            if top_logprobs is not None:
                request["top_logprobs"] = top_logprobs
        try:
            samples, usage = await self._sample(spec, list(messages), k, seed, request, ledger, node, prompt_tokens)
        except BaseException as exc:
            if isinstance(exc, Exception):
                attach_ledger(exc, ledger)
            raise
        stopped = ledger.stopped_by if len(samples) < k else None
        return SampleBatch(tuple(samples), usage, k, stopped)

    async def _sample(
        self,
        spec: ModelSpec,
        messages: list[Message],
        k: int,
        seed: int | None,
        request: dict[str, Any],
        ledger: Ledger,
        node: str,
        prompt_tokens: int | None = None,
    ) -> tuple[list[Sample], Usage]:
        store_key = None
        # The store keeps no tool calls and no reasoning counts: such requests are always sampled.
        if self.store is not None and "tools" not in request and spec.thinking is None:
            # The server is part of the key: one server's recordings never answer another's requests.
            store_key = self.store.request_key(spec.name, messages, {**request, "seed": seed}, api_base=spec.api_base)
            replayed = await self._replay(spec, messages, store_key, k, request, ledger, node)
            if replayed is not None:
                return replayed
        results: list[_CallResult] = []
        honours_n = self.sends_n(spec) or k == 1
        base = seed if seed is not None else random.randrange(2**31)
        if honours_n:
            first = await self._call(spec, messages, k, seed, request, ledger, node, prompt_tokens)
            if first is None:
                return [], Usage()
            results.append(first)
            honours_n = len(first.samples) >= first.granted
        have = sum(len(r.samples) for r in results)
        # Waves until k: the budget may have granted fewer than asked while the worst case was held;
        # once settled, what calls really used leaves room for more. A server that honours n gets one
        # request per wave; one that does not, parallel single-sample calls.
        while have < k and not ledger.overrun_tokens:
            # The server counted these very messages already: later waves reserve that, not the bound.
            counted = [r.usage.prompt_tokens // max(r.usage.calls, 1) for r in results if r.usage.prompt_tokens]
            prompt = min(counted, default=prompt_tokens)
            if honours_n:
                wave = [self._call(spec, messages, k - have, base + have, request, ledger, node, prompt)]
            else:
                wave = [self._call(spec, messages, 1, base + i, request, ledger, node, prompt) for i in range(have, k)]
            fresh = [r for r in await gather_or_cancel(*wave) if r is not None and r.samples]
            if not fresh:
                break
            results.extend(fresh)
            have = sum(len(r.samples) for r in results)
        samples = [s for r in results for s in r.samples]
        if store_key is not None and samples:
            await self._record(store_key, results, spec.name)
        return samples, Usage.total(r.usage for r in results)

    async def _call(
        self,
        spec: ModelSpec,
        messages: list[Message],
        n: int,
        seed: int | None,
        request: dict[str, Any],
        ledger: Ledger,
        node: str,
        prompt_tokens: int | None = None,
    ) -> _CallResult | None:
        """One request (with retries) under a reservation; None when the budget refused it.

        ``prompt_tokens`` is the prompt size to reserve: the UTF-8 bound of ``messages`` by default,
        or the count the server reported for these very messages earlier in the same sampling.

        An answer without any choice may still have been billed (its prompt at least): it is booked
        as a failed call with what it billed, and the next attempt takes a reservation of its own, so
        that what was billed and the next attempt's worst case both stay inside the budget. The same
        goes for an attempt the client timed out on: the provider may bill it, so its whole
        reservation is booked as unconfirmed spend before the next attempt reserves again. A call
        cancelled in flight is booked the same way. All attempts together are at most
        ``retry.max_attempts``.
        """
        in_price, out_price = self.prices(spec)
        reasoning_price = self.reasoning_price(spec)
        if out_price is not None and reasoning_price is not None:
            out_price = max(out_price, reasoning_price)  # the worst case: every completion token a reasoning one
        max_tokens = int(request["max_tokens"])
        prompt_bound = (
            prompt_token_bound(messages) + tools_token_bound(request.get("tools"), request.get("tool_choice"))
            if prompt_tokens is None
            else prompt_tokens
        )
        tries = _Tries(left=self.retry.max_attempts)
        attempt = 0
        while True:
            attempt += 1
            reservation = await ledger.reserve_waiting(
                n,
                prompt_tokens=prompt_bound,
                max_completion_tokens=max_tokens,
                usd_per_prompt_token=in_price,
                usd_per_completion_token=out_price,
                flops_per_token=None if spec.parameters is None else 2.0 * spec.parameters,
            )
            if reservation is None:
                return None
            kwargs = {**request, "n": reservation.n}
            if seed is not None:
                kwargs["seed"] = seed
            tries.in_flight = False
            try:
                response = await self._complete_with_retries(spec, messages, kwargs, ledger, node, tries)
            except OutOfTime:
                self._close_unanswered(ledger, reservation, tries, spec, node)
                ledger.stop("max_seconds")
                return None
            except _ClientTimeout as timeout:
                self._close_unanswered(ledger, reservation, tries, spec, node)
                if tries.left <= 0:
                    raise timeout.error from None
                if not await self._wait_before_retry(attempt, ledger):
                    ledger.stop("max_seconds")
                    return None
                continue
            except BaseException:
                self._close_unanswered(ledger, reservation, tries, spec, node)
                raise
            prompt_tokens = int(getattr(response.usage, "prompt_tokens", 0) or 0)
            completion_tokens = int(getattr(response.usage, "completion_tokens", 0) or 0)
            reasoning = _reasoning_tokens(response.usage)
            if reasoning > completion_tokens:  # a server that counts reasoning apart from the completion
                completion_tokens += reasoning
            book_as, priced = self._booking(spec, response)
            choices = list(response.choices or ())[: reservation.n]
            if not choices:
                failed = self._usage(priced, prompt_tokens, completion_tokens, failed_calls=1)
                ledger.settle(reservation, failed, node=node, model=book_as)
                self._check_overrun(ledger, completion_tokens, max_tokens * reservation.n)
                if tries.left <= 0:
                    raise _EmptyResponseError(f"{spec.name} returned no choices in {attempt} attempts")
                if ledger.overrun_tokens:
                    return None
                if not await self._wait_before_retry(attempt, ledger):
                    ledger.stop("max_seconds")
                    return None
                continue
            want_logprobs = "logprobs" in kwargs
            samples = [
                Sample(
                    c.message.content or "",
                    c.finish_reason,
                    _choice_logprobs(c) if want_logprobs else None,
                    _choice_tool_calls(c) if "tools" in kwargs else None,
                )
                for c in choices
            ]
            thinking: dict[str, int] = {}
            if spec.thinking is not None and spec.supports_thinking is not False:
                allowance = thinking_allowance(spec.thinking, spec.thinking_tokens)
                thinking = {"thinking_samples": len(samples), "requested_reasoning_tokens": len(samples) * allowance}
            usage = self._usage(
                priced,
                prompt_tokens,
                completion_tokens,
                samples=len(choices),
                calls=1,
                reasoning_tokens=reasoning,
                truncated=sum(s.truncated for s in samples),
                **thinking,
            )
            ledger.settle(reservation, usage, node=node, model=book_as)
            self._check_overrun(ledger, completion_tokens, max_tokens * reservation.n)
            return _CallResult(samples, usage, granted=reservation.n)

    @staticmethod
    def _close_unanswered(ledger: Ledger, reservation: Reservation, tries: _Tries, spec: ModelSpec, node: str) -> None:
        """Settle the reservation of a call that got no answer: its worst case when the last attempt
        was sent (the provider may bill it), nothing when it never left."""
        if tries.in_flight:
            ledger.settle_unconfirmed(reservation, node=node, model=spec.name)
        else:
            ledger.release(reservation)

    @staticmethod
    def _check_overrun(ledger: Ledger, completion_tokens: int, bound: int) -> None:
        """Flag a response with more completion tokens than ``max_tokens x n`` (the run stops)."""
        if completion_tokens > bound:
            ledger.flag_overrun(completion_tokens - bound)

    async def _wait_before_retry(self, attempt: int, ledger: Ledger) -> bool:
        """Back off before another attempt; False when the time budget would run out first."""
        backoff = backoff_seconds(self.retry, attempt)
        left = ledger.seconds_left()
        if left is not None and backoff >= left:
            return False
        await asyncio.sleep(backoff)
        return True

    def _booking(self, spec: ModelSpec, response: Any) -> tuple[str, ModelSpec]:
        """Where a call's usage is booked and the spec it is priced with: for a group, the deployment's."""
        return (spec.name, spec) if spec.group is None else self._groups.booking(spec, response)

    def _usage(self, spec: ModelSpec, prompt: int, completion: int, **counts: int) -> Usage:
        """The usage of one answer, priced: reasoning tokens (part of ``completion``) at the reasoning price."""
        in_price, out_price = self.prices(spec)
        reasoning = min(counts.get("reasoning_tokens", 0), completion)
        reasoning_price = self.reasoning_price(spec)
        usd = prompt * (in_price or 0.0) + (completion - reasoning) * (out_price or 0.0)
        usd += reasoning * (reasoning_price if reasoning_price is not None else out_price or 0.0)
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, usd=usd, flops=spec.flops(prompt + completion), **counts
        )

    def _add_thinking(self, spec: ModelSpec, request: dict[str, Any]) -> None:
        """Put ``spec.thinking`` into ``request``: its LiteLLM parameters, and ``max_tokens`` grown by its
        allowance (so that the answer keeps its cap and the reservation covers the reasoning)."""
        params = thinking_params(spec.thinking) if spec.supports_thinking is not False else {}
        if not params:
            return
        request.update(params)
        request["max_tokens"] = int(request["max_tokens"]) + thinking_allowance(spec.thinking, spec.thinking_tokens)
        passthrough = self._thinking_passthrough(spec) & set(params)
        if passthrough:
            request["allowed_openai_params"] = sorted({*request.get("allowed_openai_params", ()), *passthrough})

    def _thinking_passthrough(self, spec: ModelSpec) -> frozenset[str]:
        """The thinking parameters to send although LiteLLM's route for ``spec`` would drop them: none unless
        the model takes them (``spec.supports_thinking``, else LiteLLM's ``supports_reasoning``)."""
        key = (spec.name, spec.supports_thinking)
        if key not in self._passthrough:
            names = frozenset({"reasoning_effort", "thinking"})
            if spec.supports_thinking is None and not self._model_info(spec):
                self._passthrough[key] = frozenset()  # LiteLLM knows nothing of it (a server of the user's own)
                return self._passthrough[key]
            try:
                takes = spec.supports_thinking or bool(litellm.supports_reasoning(model=spec.name))
                supported = set(litellm.get_supported_openai_params(model=spec.name) or ()) if takes else set(names)
            except Exception:
                takes, supported = bool(spec.supports_thinking), set()
            self._passthrough[key] = names - supported if takes else frozenset()
        return self._passthrough[key]

    async def _complete_with_retries(
        self,
        spec: ModelSpec,
        messages: list[Message],
        kwargs: dict[str, Any],
        ledger: Ledger,
        node: str,
        tries: _Tries,
    ) -> Any:
        """The request, retried on errors that billed nothing. A client-side timeout of a sent request
        leaves as :class:`_ClientTimeout` (the caller books it and reserves again); ``tries`` counts the
        attempts left and says whether the last one was sent. Every exception is masked."""
        _register_secrets(spec)
        self._check_config(spec)
        model, api_base = await self.litellm_route(spec)
        # A server a resolver mapped (local/...) needs no key, but LiteLLM's OpenAI route refuses None; so
        # does it for an explicit api_base when no OpenAI key is set anywhere (it would fail in-process).
        resolved = api_base is not None and spec.api_base is None
        keyless = resolved or (api_base is not None and spec.api_key is None and openai_key_missing(model))
        api_key = spec.api_key.get_secret_value() if spec.api_key else ("none" if keyless else None)
        lean = lean_route(model, api_base, kwargs) if self.lean_transport and spec.group is None else None
        retrying = async_retrying(self.retry, attempts=tries.left, seconds_left=ledger.seconds_left)
        async for attempt in retrying:
            with attempt:
                tries.in_flight = False
                left = ledger.seconds_left()
                if left is not None and left <= 0:
                    raise OutOfTime
                tries.left -= 1
                timeout = spec.timeout if left is None else min(spec.timeout, left)
                try:
                    async with self._limit(spec):
                        tries.in_flight = True
                        response = await asyncio.wait_for(
                            self._groups.acompletion(
                                spec, messages, ledger=ledger, node=node, timeout=timeout, **kwargs
                            )
                            if spec.group is not None
                            else self._http.chat(
                                api_base=str(api_base),
                                api_key=api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"),
                                model=lean,
                                messages=messages,
                                timeout=timeout,
                                params=kwargs,
                                litellm_model=model,
                            )
                            if lean is not None
                            else _litellm_acompletion(
                                model=model,
                                messages=messages,
                                api_base=api_base,
                                api_key=api_key,
                                timeout=timeout,
                                **kwargs,
                            ),
                            timeout=timeout + 1.0,
                        )
                except BaseException as exc:
                    if not tries.in_flight:  # cancelled while waiting for a slot: nothing was sent
                        raise
                    ledger.settle(None, Usage(failed_calls=1), node=node, model=failed_deployment_key(spec, exc))
                    if isinstance(exc, Exception):
                        mask_exception(exc)
                    if is_timeout(exc):
                        if (ledger.seconds_left() or 1.0) <= 0:
                            raise OutOfTime from exc
                        raise _ClientTimeout(exc) from exc
                    if isinstance(exc, Exception):  # an error answer: the provider billed nothing
                        tries.in_flight = False
                        config = self._config_error(spec, api_base, exc)
                        if config is not None:  # not retried: another attempt cannot fix it
                            raise config from None
                    raise  # cancelled in flight: the caller books the worst case
                if api_base is not None:
                    self._reached.add(api_base)
                return response
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    def _check_config(self, spec: ModelSpec) -> None:
        """Fail before the call, without retries, when a hosted model cannot work as configured (no
        provider, no key: :func:`~ttc_agents._llm.errors.check_model_config`). Specs with their own
        ``api_base`` or ``api_key``, router groups and resolver names (``local/...``) are not checked."""
        explicit = spec.group is not None or spec.api_base is not None or spec.api_key is not None
        if not explicit and spec.name.partition("/")[0] not in self.resolvers:
            check_model_config(spec.name)

    def _config_error(self, spec: ModelSpec, api_base: str | None, exc: BaseException) -> ModelConfigError | None:
        """What a failed attempt means when it is a configuration error (see :mod:`ttc_agents._llm.errors`):
        a refused connection counts only while nothing has answered at ``api_base`` in this gateway."""
        if spec.group is not None:
            return None  # the group's Router has tried its deployments and fallbacks already
        reached = api_base is not None and api_base in self._reached
        has_key = spec.api_key is not None
        config = config_error_of(exc, model=spec.name, api_base=api_base, has_key=has_key, reached=reached)
        if config is None:  # a 401 or 404 keeps its type, with the model and what to check in its message
            add_status_hint(exc, model=spec.name, api_base=api_base, has_key=has_key)
        return config

    def _limit(self, spec: ModelSpec) -> asyncio.Semaphore | _NoLimit:
        if spec.max_concurrency is None:
            return _NO_LIMIT
        limits = self._limits.setdefault(asyncio.get_running_loop(), {})
        if spec.name not in limits:
            limits[spec.name] = asyncio.Semaphore(spec.max_concurrency)
        return limits[spec.name]

    def sends_n(self, spec: ModelSpec) -> bool:
        """Whether one request may carry ``n`` samples: the spec allows it and no resolver maps the name to
        a server that miscounts them (the local llama.cpp server's ``usage`` counts one choice of ``n``)."""
        resolver = self.resolvers.get(spec.name.partition("/")[0]) if spec.group is None else None
        if resolver is None or spec.api_base is not None:
            return spec.supports_n
        return spec.supports_n and bool(getattr(resolver, "supports_n", True))

    async def litellm_route(self, spec: ModelSpec) -> tuple[str, str | None]:
        """The LiteLLM model string and api_base for ``spec`` (resolving ``local/...`` names).

        A resolver may start a server, so it runs in a worker thread, off the event loop.
        """
        prefix, _, _ = spec.name.partition("/")
        resolver = self.resolvers.get(prefix) if spec.group is None else None
        if resolver is not None and spec.api_base is None:
            return await asyncio.to_thread(resolver, spec.name)
        return spec.name, spec.api_base

    def prices(self, spec: ModelSpec) -> tuple[float | None, float | None]:
        """USD per prompt and per completion token: the spec's, else LiteLLM's cost map, else None.

        For a group of deployments: the highest price of any deployment (a reservation's worst case).
        """
        if spec.group is not None:
            return worst_case_prices(self.prices(priced) for priced in self._groups.priced_specs(spec).values())
        if spec.usd_per_input_token is not None and spec.usd_per_output_token is not None:
            return spec.usd_per_input_token, spec.usd_per_output_token
        if spec.name not in self._prices:
            info = self._model_info(spec)
            self._prices[spec.name] = (info.get("input_cost_per_token"), info.get("output_cost_per_token"))
        known_in, known_out = self._prices[spec.name]
        return (
            spec.usd_per_input_token if spec.usd_per_input_token is not None else known_in,
            spec.usd_per_output_token if spec.usd_per_output_token is not None else known_out,
        )

    def reasoning_price(self, spec: ModelSpec) -> float | None:
        """USD per reasoning token: the spec's, else LiteLLM's ``output_cost_per_reasoning_token``, else None
        (reasoning is then priced as output)."""
        if spec.usd_per_reasoning_token is not None:
            return spec.usd_per_reasoning_token
        if spec.group is not None:
            return None
        key = f"{spec.name}#reasoning"
        if key not in self._prices:
            price = self._model_info(spec).get("output_cost_per_reasoning_token")
            self._prices[key] = (price, price)
        return self._prices[key][0]

    def _model_info(self, spec: ModelSpec) -> Mapping[str, Any]:
        """LiteLLM's cost-map entry for ``spec.name`` ({} when it has none). For a server of the user's own
        that no key of the map can match, {} without loading LiteLLM."""
        if self._self_hosted(spec) and not in_cost_map(spec.name):
            return {}
        try:
            return dict(litellm.get_model_info(spec.name))
        except Exception:
            return {}

    def _self_hosted(self, spec: ModelSpec) -> bool:
        """A server of the user's own: ``openai/NAME`` at an ``api_base``, or a name a resolver maps."""
        if spec.group is not None:
            return False
        return (spec.api_base is not None and spec.name.startswith("openai/")) or (
            spec.api_base is None and spec.name.partition("/")[0] in self.resolvers
        )

    async def _replay(
        self,
        spec: ModelSpec,
        messages: list[Message],
        key: str,
        k: int,
        request: dict[str, Any],
        ledger: Ledger,
        node: str,
    ) -> tuple[list[Sample], Usage] | None:
        """Answer from the store when the samples are stored, booking them as the call would."""
        assert self.store is not None
        in_price, out_price = self.prices(spec)
        reservation = ledger.reserve(
            k,
            prompt_tokens=prompt_token_bound(messages),
            max_completion_tokens=int(request["max_tokens"]),
            usd_per_prompt_token=in_price,
            usd_per_completion_token=out_price,
            flops_per_token=None if spec.parameters is None else 2.0 * spec.parameters,
        )
        if reservation is None:
            return [], Usage()
        stored = await self.store.get_many(key, range(reservation.n))
        if len(stored) < reservation.n:
            ledger.release(reservation)
            return None
        items = [stored[i] for i in range(reservation.n)]
        usage = self._usage(
            spec,
            sum(item.prompt_tokens for item in items),
            sum(item.completion_tokens for item in items),
            calls=sum(1 for item in items if item.prompt_tokens > 0),
            samples=len(items),
            replayed=len(items),
        )
        ledger.settle(reservation, usage, node=node, model=spec.name)
        # A recording of a server that ignored max_tokens replays as what it was.
        self._check_overrun(ledger, usage.completion_tokens, int(request["max_tokens"]) * reservation.n)
        samples = [
            Sample(item.text, item.finish_reason, tuple(item.logprobs) if item.logprobs is not None else None)
            for item in items
        ]
        return samples, usage

    async def _record(self, key: str, results: list[_CallResult], model: str) -> None:
        """Store each sample with its share of its call's usage (the prompt on the call's first)."""
        from ttc_agents._llm.store import StoredSample

        assert self.store is not None
        stored: dict[int, StoredSample] = {}
        for result in results:
            count = len(result.samples)
            share, extra = divmod(result.usage.completion_tokens, max(count, 1))
            for j, s in enumerate(result.samples):
                stored[len(stored)] = StoredSample(
                    text=s.text,
                    finish_reason=s.finish_reason,
                    logprobs=[dict(x) for x in s.logprobs] if s.logprobs else None,
                    prompt_tokens=result.usage.prompt_tokens if j == 0 else 0,
                    completion_tokens=share + (extra if j == 0 else 0),
                )
        await self.store.put_many(key, stored, model=model)


@dataclass(frozen=True, slots=True)
class _CallResult:
    samples: list[Sample]
    usage: Usage
    granted: int = 0
    """The ``n`` the budget granted (a server that ignores ``n`` answers fewer)."""


@dataclass(slots=True)
class _Tries:
    """Attempts left for one call, and whether the current attempt's request was sent."""

    left: int
    in_flight: bool = False


class _ClientTimeout(Exception):
    """The client timed out on a sent request (``error``); the provider may still bill it."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _reasoning_tokens(usage: Any) -> int:
    """``usage.completion_tokens_details.reasoning_tokens`` (0 when the server reports none)."""
    details = getattr(usage, "completion_tokens_details", None)
    value = details.get("reasoning_tokens") if isinstance(details, Mapping) else getattr(details, "reasoning_tokens", 0)
    return int(value or 0)


class _LazyLiteLLM:
    """The ``litellm`` module, imported (through :mod:`ttc_agents._llm.litellm`, with the library's
    ``scripted`` provider registered) on first attribute access: a process that only talks to
    OpenAI-compatible servers over the lean transport never loads it."""

    _module: Any = None

    def __getattr__(self, name: str) -> Any:
        module = _LazyLiteLLM._module
        if module is None:
            from ttc_agents._llm.litellm import litellm as module

            register_providers()
            _LazyLiteLLM._module = module
        return getattr(module, name)


litellm: Any = _LazyLiteLLM()


async def _litellm_acompletion(**kwargs: Any) -> Any:
    """One call through LiteLLM, with its own retries and caching off."""
    return await litellm.acompletion(num_retries=0, max_retries=0, drop_params=True, caching=False, **kwargs)


def _register_secrets(spec: ModelSpec) -> None:
    """Mask ``spec``'s keys (its own, its group deployments') in every message from now on."""
    register_secret(spec.api_key)
    if spec.group is not None:
        for deployments in (spec.group.deployments, spec.group.fallbacks):
            for deployment in deployments:
                register_secret(deployment.api_key)
                key = deployment.litellm_params.get("api_key")
                if isinstance(key, str):
                    register_secret(key)


class _NoLimit:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_LIMIT = _NoLimit()
_default_gateway: Gateway | None = None


def get_default_gateway() -> Gateway:
    """The process-wide gateway used when none is passed."""
    global _default_gateway
    if _default_gateway is None:
        if "litellm" in sys.modules:  # else importing LiteLLM through the gateway registers them
            register_providers()
        _default_gateway = Gateway(resolvers=default_resolvers())
    return _default_gateway


def set_default_gateway(gateway: Gateway) -> None:
    """Replace the process-wide gateway (for example to add a record/replay store)."""
    global _default_gateway
    _default_gateway = gateway


async def sample(model: ModelSpec | str, messages: Sequence[Message], k: int = 1, **params: Any) -> SampleBatch:
    """``k`` completions of one prompt through the default gateway (see :meth:`Gateway.sample`)."""
    return await get_default_gateway().sample(model, messages, k, **params)
