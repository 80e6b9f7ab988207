"""A lean transport for OpenAI-compatible self-hosted servers: one aiohttp POST per request.

LiteLLM costs about 3.4 ms of client CPU per call (its request and response paths) and ~218 MB of RSS to
import. For a server the user runs (vLLM, llama.cpp, SGLang, Ollama, the embedded local model), reached as
``openai/NAME`` with an ``api_base``, the gateway sends the same request body straight to
``{api_base}/chat/completions`` with this module instead (:meth:`Gateway.sample` decides, see
:func:`lean_route`), behind the same reservations, ledger bookings and retries. The response is parsed into
objects with the attributes the gateway reads from LiteLLM's ``ModelResponse`` (``choices[i].message.content``,
``.tool_calls``, ``.finish_reason``, ``.logprobs``, ``usage.prompt_tokens``...): the same samples and usage.

What stays on LiteLLM: hosted providers, router groups, custom providers (``scripted/``), any other
provider prefix, a key set in LiteLLM's module (``litellm.api_key``), and requests with a parameter this
module does not pass through exactly as LiteLLM does (:data:`LEAN_PARAMS`; e.g. ``thinking``, which
LiteLLM drops for this route).

Errors: a failed request raises the exception LiteLLM raises for it (``litellm.RateLimitError`` for a 429,
``litellm.APIConnectionError`` for a refused connection...; built by LiteLLM's own mapping, so callers that
catch LiteLLM's types keep working), which imports LiteLLM on the first failure. A timeout raises
:class:`TimeoutError`, which the gateway handles before anything else sees it.

The HTTP session: one per event loop, closed when that loop shuts down its async generators
(``asyncio.run`` and ``asyncio.Runner`` do), or by :meth:`OpenAIHTTPTransport.aclose`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

from ttc_agents._llm.token_bounds import prompt_token_bound

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "LEAN_PARAMS",
    "ChatChoice",
    "ChatMessage",
    "ChatResponse",
    "ChatUsage",
    "OpenAIHTTPTransport",
    "in_cost_map",
    "lean_route",
]

LEAN_PARAMS: Final[frozenset[str]] = frozenset(
    {
        "n",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "typical_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "logit_bias",
        "stop",
        "seed",
        "logprobs",
        "top_logprobs",
        "response_format",
        "reasoning_effort",
        "chat_template_kwargs",
        "tools",
        "tool_choice",
    }
)
"""Request parameters LiteLLM's ``openai/`` route sends to an ``api_base`` unchanged (measured on LiteLLM
1.110 against the fake server: the recorded bodies are equal). A request with any other parameter goes
through LiteLLM."""

_PREFIX: Final = "openai/"
_FINISH_REASONS: Final[Mapping[str, str]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "function_call",
    "content_filter": "content_filter",
    "content_filtered": "content_filter",
    "eos": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "max_tokens": "length",
    "error": "stop",
}
"""What LiteLLM's ``map_finish_reason`` makes of the finish reasons OpenAI-compatible servers send (it
maps anything it does not know to ``stop``)."""


def lean_route(model: str, api_base: str | None, params: Mapping[str, Any]) -> str | None:
    """The model name to send to ``api_base`` when a request can take the lean transport, else None.

    It can when LiteLLM would send it to ``api_base`` through its OpenAI route (``openai/NAME``) with the
    body unchanged: every key of ``params`` in :data:`LEAN_PARAMS`, a name LiteLLM's cost map does not know
    (it rewrites requests for the models it knows, e.g. ``max_completion_tokens`` for reasoning models,
    which a proxy at ``api_base`` may pass on to OpenAI), and no key LiteLLM holds of its own that it would
    send instead (``litellm.api_key`` / ``litellm.openai_key``, set in code)."""
    if api_base is None or not model.startswith(_PREFIX) or len(model) == len(_PREFIX):
        return None
    if any(key not in LEAN_PARAMS for key in params):
        return None
    if in_cost_map(model):  # a name LiteLLM knows (gpt-5, o3...) it may send differently (max_completion_tokens)
        return None
    litellm = sys.modules.get("litellm")
    if litellm is not None and (getattr(litellm, "api_key", None) or getattr(litellm, "openai_key", None)):
        return None
    return model[len(_PREFIX) :]


@cache
def _cost_map_text() -> str | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def in_cost_map(model: str) -> bool:
    """Whether LiteLLM's cost map may know ``model``: some key of it equals the name or a part of it after
    a ``/``. Read from LiteLLM's map when LiteLLM is loaded (prices may have been registered in code), else
    from its bundled file without importing it; True (ask LiteLLM) when it fetches a remote map
    (``LITELLM_LOCAL_MODEL_COST_MAP`` not true) or the bundled map cannot be read."""
    parts = model.split("/")
    names = ["/".join(parts[i:]) for i in range(len(parts))]
    litellm = sys.modules.get("litellm")
    cost = getattr(litellm, "model_cost", None) if litellm is not None else None
    if isinstance(cost, Mapping):
        return any(name in cost for name in names)
    if os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP", "").lower() != "true":
        return True
    return _in_bundled_map(tuple(names))


@cache
def _in_bundled_map(names: tuple[str, ...]) -> bool:
    """Whether a key of LiteLLM's bundled cost map is one of ``names`` (a text search: ~10 ms, once per model)."""
    text = _cost_map_text()
    return text is None or any(json.dumps(name) + ":" in text for name in names)


@dataclass(frozen=True, slots=True)
class ChatUsage:
    """A response's ``usage``: what LiteLLM's ``Usage`` gives the gateway."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    completion_tokens_details: Any = None
    prompt_tokens_details: Any = None


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A choice's message."""

    content: str | None
    role: str = "assistant"
    tool_calls: list[Mapping[str, Any]] | None = None
    reasoning_content: str | None = None


@dataclass(frozen=True, slots=True)
class ChatChoice:
    """One choice: its message, finish reason (mapped as LiteLLM maps it) and logprobs (a dict)."""

    message: ChatMessage
    finish_reason: str | None
    logprobs: Mapping[str, Any] | None = None
    index: int = 0


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A chat completion, with the attributes the gateway reads from LiteLLM's ``ModelResponse``."""

    choices: list[ChatChoice]
    usage: ChatUsage
    model: str | None = None
    id: str | None = None
    _hidden_params: Mapping[str, Any] = field(default_factory=dict)


def _token_logprob(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"token": item.get("token"), "bytes": item.get("bytes"), "logprob": item.get("logprob")}


def _logprobs(raw: Any) -> Mapping[str, Any] | None:
    """A choice's logprobs as LiteLLM's ``ChoiceLogprobs.model_dump()`` gives them (same keys)."""
    if not isinstance(raw, Mapping):
        return None
    content = raw.get("content")
    if not isinstance(content, list):
        return {"content": None}
    items = []
    for item in content:
        if not isinstance(item, Mapping):
            continue
        top = item.get("top_logprobs") or []
        items.append(
            {**_token_logprob(item), "top_logprobs": [_token_logprob(t) for t in top if isinstance(t, Mapping)]}
        )
    return {"content": items}


def _tool_calls(raw: Any) -> list[Mapping[str, Any]] | None:
    if not isinstance(raw, list) or not raw:
        return None
    return [call for call in raw if isinstance(call, Mapping)]


def _details(raw: Any) -> Any:
    return _Details(raw) if isinstance(raw, Mapping) else None


class _Details:
    """``usage.*_tokens_details``: the dict's keys as attributes (absent ones read as None)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "_data").get(name)
        except AttributeError:
            raise AttributeError(name) from None

    def model_dump(self) -> dict[str, Any]:
        return dict(self._data)


def parse_chat_response(data: Any) -> ChatResponse:
    """A chat completion body (parsed JSON) as a :class:`ChatResponse`; ValueError when it is none."""
    if not isinstance(data, Mapping):
        raise ValueError("the response is not a JSON object")
    choices = []
    for i, raw in enumerate(data.get("choices") or ()):
        if not isinstance(raw, Mapping):
            continue
        message = raw.get("message") if isinstance(raw.get("message"), Mapping) else {}
        assert isinstance(message, Mapping)
        reason = raw.get("finish_reason")
        content = message.get("content")
        choices.append(
            ChatChoice(
                message=ChatMessage(
                    content=content if isinstance(content, str) or content is None else str(content),
                    role=str(message.get("role") or "assistant"),
                    tool_calls=_tool_calls(message.get("tool_calls")),
                    reasoning_content=message.get("reasoning_content"),
                ),
                finish_reason=None if reason is None else _FINISH_REASONS.get(str(reason), "stop"),
                logprobs=_logprobs(raw.get("logprobs")),
                index=int(raw.get("index", i) or 0),
            )
        )
    usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
    assert isinstance(usage, Mapping)
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return ChatResponse(
        choices=choices,
        usage=ChatUsage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=int(usage.get("total_tokens") or prompt + completion),
            completion_tokens_details=_details(usage.get("completion_tokens_details")),
            prompt_tokens_details=_details(usage.get("prompt_tokens_details")),
        ),
        model=data.get("model"),
        id=data.get("id"),
    )


async def _close_with_loop(session: aiohttp.ClientSession) -> AsyncIterator[None]:
    """Suspended once started; the loop's ``shutdown_asyncgens`` closes it, and with it the session."""
    try:
        yield
    finally:
        await session.close()


@dataclass(frozen=True, slots=True)
class _Session:
    session: aiohttp.ClientSession
    keeper: AsyncIterator[None]


class OpenAIHTTPTransport:
    """POSTs chat completions to OpenAI-compatible servers over one aiohttp session per event loop."""

    def __init__(self) -> None:
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Session] = weakref.WeakKeyDictionary()

    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        held = self._sessions.get(loop)
        if held is not None and not held.session.closed:
            return held.session
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            json_serialize=_dumps,
            skip_auto_headers=("User-Agent",),
        )
        keeper = _close_with_loop(session)
        await anext(keeper)
        self._sessions[loop] = _Session(session, keeper)
        return session

    async def aclose(self) -> None:
        """Close the session of the running event loop (a new one opens on the next request)."""
        held = self._sessions.pop(asyncio.get_running_loop(), None)
        if held is not None:
            await held.session.close()

    async def chat(
        self,
        *,
        api_base: str,
        api_key: str | None,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        timeout: float,
        params: Mapping[str, Any],
        litellm_model: str,
    ) -> ChatResponse:
        """One ``POST {api_base}/chat/completions``; ``litellm_model`` names the model in errors."""
        import aiohttp

        session = await self._session()
        url = api_base.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        body = {"model": model, "messages": list(messages), **params}
        try:
            async with session.post(
                url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                raw = await response.read()
                status = response.status
                response_headers = dict(response.headers)
        except TimeoutError:
            raise
        except aiohttp.ClientError as exc:
            _raise_litellm_error(litellm_model, 500, "Connection error.", None, None, cause=exc)
        if status >= 400:
            _raise_status_error(litellm_model, status, raw, response_headers)
        try:
            data = json.loads(raw)
            parsed = parse_chat_response(data)
        except ValueError as exc:
            _raise_litellm_error(litellm_model, 500, f"invalid JSON in the response ({exc})", None, None, cause=exc)
        if isinstance(data, Mapping) and not isinstance(data.get("usage"), Mapping):
            return _with_usage_bounds(parsed, messages)
        return parsed


def _with_usage_bounds(response: ChatResponse, messages: Sequence[Mapping[str, Any]]) -> ChatResponse:
    """A response from a server that reported no ``usage``, booked at upper bounds instead of nothing (a
    budget must not see it as free): the prompt's bound (:func:`~ttc_agents._llm.token_bounds.prompt_token_bound`)
    and each choice's UTF-8 size (every token of a byte-level tokenizer covers at least one byte)."""
    prompt = prompt_token_bound(messages)
    completion = sum(len((c.message.content or "").encode("utf-8", "surrogatepass")) for c in response.choices)
    usage = ChatUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
    return ChatResponse(response.choices, usage, response.model, response.id)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _raise_status_error(model: str, status: int, raw: bytes, headers: dict[str, str]) -> NoReturn:
    text = raw.decode("utf-8", "replace")
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    # The message the OpenAI SDK gives an error answer, which LiteLLM's OpenAI route passes on.
    message = f"Error code: {status} - {body if body is not None else text}"
    error = body.get("error", body) if isinstance(body, dict) else None
    _raise_litellm_error(model, status, message, headers, error if isinstance(error, dict) else None)


def _raise_litellm_error(
    model: str,
    status: int,
    message: str,
    headers: Mapping[str, str] | None,
    body: dict[str, Any] | None,
    *,
    cause: BaseException | None = None,
) -> NoReturn:
    """Raise what LiteLLM raises for this failure: its OpenAI route's error, through its own mapping."""
    # isort: off
    import ttc_agents._llm.litellm  # noqa: F401  # LiteLLM's offline switches, before it loads

    # isort: on
    from litellm.litellm_core_utils.exception_mapping_utils import exception_type
    from litellm.llms.openai.common_utils import OpenAIError

    try:
        raise OpenAIError(status_code=status, message=message, headers=dict(headers or {}), body=body) from cause
    except OpenAIError as error:
        mapped = exception_type(model=model, original_exception=error, custom_llm_provider="openai")  # type: ignore[no-untyped-call]
        raise mapped from error  # exception_type raises the mapped error itself; this is for the type checker
