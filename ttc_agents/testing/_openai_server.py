"""A fake OpenAI-compatible HTTP server on 127.0.0.1, for tests and overhead benchmarks.

It speaks enough of the OpenAI API for LiteLLM's ``openai/<name>`` route (``api_base=server.url``,
``api_key="none"``):

- ``POST /v1/chat/completions`` and ``POST /v1/completions`` (non-streaming), honouring ``n``,
  ``max_tokens`` / ``max_completion_tokens``, ``stop`` and ``logprobs``;
- ``GET /v1/models`` and ``GET /health``.

Completions are canned (:attr:`FakeServerConfig.text`), and every response's ``usage`` counts exactly
what it returns with the scripted provider's tokenizer (:func:`ttc_agents._llm.scripted.scripted_tokenize`):
prompt tokens are the tokens of all message contents (or of the prompt), counted once per request;
completion tokens are summed over the returned choices. The server records every request body and what
it billed, and applies a schedule of :class:`Fault` s to the next completion requests, in order, then
random faults at :attr:`FakeServerConfig.fault_rate`.

The aiohttp server runs on its own event loop in a background thread, so sync and async tests can use
it (it shares the GIL with the client: about 1,300 requests/s with an aiohttp client at concurrency 128
on two cores)::

    with FakeOpenAIServer(FakeServerConfig(faults=[Fault.rate_limit(retry_after=1)])) as server:
        litellm.completion(model="openai/fake", api_base=server.url, api_key="none", messages=...)

A new fault kind is a :class:`FaultKind` member, a constructor on :class:`Fault` and an entry in
``FakeOpenAIServer._FAULT_HANDLERS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import math
import random
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Self

from aiohttp import web

from ttc_agents._llm.scripted import scripted_prompt_tokens, scripted_token_count, scripted_tokenize

__all__ = [
    "BilledUsage",
    "FakeOpenAIServer",
    "FakeServerConfig",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "TextSource",
]

DEFAULT_TEXT: Final = "The answer is \\boxed{42}."

TextSource = str | Callable[[dict[str, Any]], str]
"""A canned completion, or a function of the request body that returns one."""


class FaultKind(enum.StrEnum):
    """What goes wrong with one request."""

    HTTP_ERROR = "http_error"
    """An error status with an OpenAI-style error body (and ``Retry-After`` when set)."""
    HANG = "hang"
    """Sleep :attr:`Fault.seconds`, then answer normally."""
    CONNECTION_RESET = "connection_reset"
    """Close the connection (RST) without a response."""
    MALFORMED_JSON = "malformed_json"
    """Status 200 with a body that is not valid JSON."""
    EMPTY_CHOICES = "empty_choices"
    """Status 200 with ``choices: []``."""
    FEWER_CHOICES = "fewer_choices"
    """Status 200 with fewer choices than ``n`` (:attr:`Fault.choices`, at most ``n - 1``)."""
    TRUNCATE = "truncate"
    """Status 200, completions cut to :attr:`Fault.tokens` tokens with ``finish_reason: "length"``."""


_ERROR_TYPES: Final[Mapping[int, tuple[str, str]]] = {
    400: ("invalid_request_error", "Bad request (injected fault)"),
    401: ("authentication_error", "Invalid API key (injected fault)"),
    404: ("not_found_error", "Not found (injected fault)"),
    408: ("timeout", "Request timed out (injected fault)"),
    429: ("rate_limit_exceeded", "Rate limit reached (injected fault)"),
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault; build it with the class methods, e.g. ``Fault.rate_limit(retry_after=2)``."""

    kind: FaultKind
    status: int | None = None
    """HTTP status of an :attr:`FaultKind.HTTP_ERROR`."""
    retry_after: float | None = None
    """Seconds for the ``Retry-After`` header of an HTTP error (no header when None)."""
    seconds: float = 0.0
    """How long a :attr:`FaultKind.HANG` sleeps before answering (an HTTP error: before its error)."""
    choices: int = 1
    """How many choices a :attr:`FaultKind.FEWER_CHOICES` response has (capped at ``n - 1``)."""
    tokens: int = 1
    """How many completion tokens a :attr:`FaultKind.TRUNCATE` response keeps per choice."""

    @classmethod
    def http_error(cls, status: int, retry_after: float | None = None, after: float = 0.0) -> Fault:
        """Any error status, e.g. 500, 502, 503, 400 or 408, sent ``after`` seconds."""
        return cls(FaultKind.HTTP_ERROR, status=status, retry_after=retry_after, seconds=after)

    @classmethod
    def rate_limit(cls, retry_after: float | None = None) -> Fault:
        """A 429, with a ``Retry-After: <seconds>`` header when ``retry_after`` is given."""
        return cls.http_error(429, retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """A 5xx (500, 502, 503...)."""
        return cls.http_error(status)

    @classmethod
    def bad_request(cls, after: float = 0.0) -> Fault:
        """A 400, which clients must not retry, sent ``after`` seconds."""
        return cls.http_error(400, after=after)

    @classmethod
    def request_timeout(cls) -> Fault:
        """A 408 Request Timeout."""
        return cls.http_error(408)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Answer only after ``seconds`` (longer than the client's timeout, to test timeouts)."""
        return cls(FaultKind.HANG, seconds=seconds)

    @classmethod
    def connection_reset(cls) -> Fault:
        """Reset the connection without sending a response."""
        return cls(FaultKind.CONNECTION_RESET)

    @classmethod
    def malformed_json(cls) -> Fault:
        """A 200 whose body is not JSON."""
        return cls(FaultKind.MALFORMED_JSON)

    @classmethod
    def empty_choices(cls) -> Fault:
        """A 200 with no choices."""
        return cls(FaultKind.EMPTY_CHOICES)

    @classmethod
    def fewer_choices(cls, choices: int = 1) -> Fault:
        """A 200 with ``min(choices, n - 1)`` choices."""
        return cls(FaultKind.FEWER_CHOICES, choices=choices)

    @classmethod
    def truncated(cls, tokens: int = 1) -> Fault:
        """A 200 whose completions stop after ``tokens`` tokens with ``finish_reason: "length"``."""
        return cls(FaultKind.TRUNCATE, tokens=tokens)


@dataclass(frozen=True, slots=True)
class FakeServerConfig:
    """How a :class:`FakeOpenAIServer` answers."""

    text: TextSource = DEFAULT_TEXT
    """The completion, or a function of the request body returning it; all ``n`` choices are equal."""
    completion_tokens: int | None = None
    """When set, every completion has exactly this many tokens: the text's tokens, cycled and cut."""
    honour_n: bool = True
    """False returns one choice whatever ``n`` is, like llama.cpp's server."""
    logprobs: bool = True
    """Return logprobs when a request asks for them."""
    faults: Sequence[Fault] = ()
    """Applied to the next completion requests, one each, in order."""
    fault_rate: float = 0.0
    """After the schedule, the probability that a request gets one of :attr:`random_faults`."""
    fault_seed: int = 0
    random_faults: Sequence[Fault] = (Fault.server_error(500), Fault.server_error(503), Fault.rate_limit(0))
    latency: float = 0.0
    """Seconds every completion request waits before answering."""
    models: Sequence[str] = ("fake",)
    """What ``GET /v1/models`` lists."""
    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A completion request the server received, and the fault it got (None: answered normally)."""

    path: str
    body: dict[str, Any]
    fault: Fault | None
    received_at: float


@dataclass(frozen=True, slots=True)
class BilledUsage:
    """Sum of ``usage`` over the successful (status 200, JSON) completion responses the server sent."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    responses: int = 0

    def __add__(self, usage: Mapping[str, int]) -> BilledUsage:
        return BilledUsage(
            self.prompt_tokens + usage["prompt_tokens"],
            self.completion_tokens + usage["completion_tokens"],
            self.total_tokens + usage["total_tokens"],
            self.responses + 1,
        )


@dataclass(slots=True)
class _Reply:
    """The shape of a normal answer, which faults may change."""

    choices: int
    max_tokens: int | None
    truncated_to: int | None = None
    delay: float = 0.0


@dataclass(slots=True)
class _Completion:
    text: str
    tokens: list[str]
    finish_reason: str


_FaultHandler = Callable[["FakeOpenAIServer", web.Request, Fault, _Reply], Awaitable[web.StreamResponse | None]]


def _prompt_tokens(body: Mapping[str, Any], chat: bool) -> int:
    if chat:
        messages = body.get("messages") or []
        return scripted_prompt_tokens([m for m in messages if isinstance(m, dict)])
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        if all(isinstance(item, int) for item in prompt):  # token ids
            return len(prompt)
        return sum(scripted_token_count(str(item)) for item in prompt)
    return scripted_token_count(str(prompt))


def _stop_strings(stop: object) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def _error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kind, default = _ERROR_TYPES.get(status, ("server_error", f"Server error {status} (injected fault)"))
    return {"error": {"message": message or default, "type": kind, "param": None, "code": kind}}


def _alternatives(token: str, count: int) -> list[str]:
    pool = [*"0123456789", " ", "\n", ".", "The", "answer", "is"]
    return [alt for alt in pool if alt != token][:count]


_CHOSEN_LOGPROB: Final = math.log(0.9)
_ALT_LOGPROBS: Final = tuple(math.log(0.06 * 0.5**i) for i in range(20))


class FakeOpenAIServer:
    """An OpenAI-compatible server on a background thread; a (sync or async) context manager."""

    def __init__(self, config: FakeServerConfig | None = None) -> None:
        self.config = config if config is not None else FakeServerConfig()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._faults: deque[Fault] = deque(self.config.faults)
        self._random = random.Random(self.config.fault_seed)
        self._records: list[RecordedRequest] = []
        self._billed = BilledUsage()
        self._in_flight = 0
        self._ids = itertools.count()
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind the port and serve in a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAIServer is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        self._socket = sock
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError("FakeOpenAIServer failed to start") from failure[0]
        return self

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None and self._socket is not None
        asyncio.set_event_loop(loop)
        try:
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat_completions)
            app.router.add_post("/v1/completions", self._completions)
            app.router.add_get("/v1/models", self._models)
            app.router.add_get("/health", self._health)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
            loop.run_until_complete(self._runner.setup())
            site = web.SockSite(self._runner, self._socket, shutdown_timeout=0.2, backlog=1024)
            loop.run_until_complete(site.start())
        except BaseException as error:  # reported to start()
            failure.append(error)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        """Stop serving (requests still hanging are cancelled) and join the thread."""
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._thread = self._runner = self._socket = None

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:  # e.g. requests still hanging
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- what tests look at -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (known once started)."""
        if self._socket is None:
            raise RuntimeError("FakeOpenAIServer is not running")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """The ``/v1`` base URL, for ``api_base``."""
        return f"http://{self.config.host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Bodies of the completion requests received so far (a copy)."""
        with self._lock:
            return [record.body for record in self._records]

    @property
    def records(self) -> list[RecordedRequest]:
        """The completion requests received so far, with their paths and faults (a copy)."""
        with self._lock:
            return list(self._records)

    @property
    def request_count(self) -> int:
        """How many completion requests were received."""
        with self._lock:
            return len(self._records)

    @property
    def billed(self) -> BilledUsage:
        """Usage summed over the successful completion responses. A hung request is billed when the
        server answers it, even if the client has given up by then (as real providers do): use
        :meth:`wait_idle` before comparing."""
        with self._lock:
            return self._billed

    @property
    def in_flight(self) -> int:
        """Completion requests being handled right now."""
        with self._lock:
            return self._in_flight

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no completion request is being handled; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def add_faults(self, *faults: Fault) -> None:
        """Append faults to the schedule (applied to the next requests, after those already queued)."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        """Scheduled faults not yet applied."""
        with self._lock:
            return len(self._faults)

    # -- handlers -----------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "ttc-agents"} for name in self.config.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, chat=False)

    async def _handle(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(_error_body(400, "Request body is not valid JSON"), status=400)
        if not isinstance(body, dict):
            return web.json_response(_error_body(400, "Request body must be a JSON object"), status=400)
        fault = self._admit(request.path, body)
        try:
            n = int(body.get("n") or 1)
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
            reply = _Reply(
                choices=n if self.config.honour_n else 1,
                max_tokens=None if max_tokens is None else int(max_tokens),
                delay=self.config.latency,
            )
            if fault is not None:
                early = await self._FAULT_HANDLERS[fault.kind](self, request, fault, reply)
                if early is not None:
                    return early
            if reply.delay > 0:
                await asyncio.sleep(reply.delay)
            payload = self._payload(body, chat, reply)
            with self._lock:
                self._billed += payload["usage"]
            return web.json_response(payload)
        finally:
            with self._idle:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.notify_all()

    def _admit(self, path: str, body: dict[str, Any]) -> Fault | None:
        """Record the request and pick its fault."""
        with self._lock:
            self._in_flight += 1
            if self._faults:
                fault: Fault | None = self._faults.popleft()
            elif self.config.random_faults and self._random.random() < self.config.fault_rate:
                fault = self._random.choice(list(self.config.random_faults))
            else:
                fault = None
            self._records.append(RecordedRequest(path, body, fault, time.time()))
        return fault

    # -- faults -------------------------------------------------------------------------------------

    async def _http_error(self, request: web.Request, fault: Fault, reply: _Reply) -> web.StreamResponse:
        if fault.seconds > 0:
            await asyncio.sleep(fault.seconds)
        headers = {}
        if fault.retry_after is not None:
            seconds = fault.retry_after
            headers["Retry-After"] = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
        status = fault.status or 500
        return web.json_response(_error_body(status), status=status, headers=headers)

    async def _hang(self, request: web.Request, fault: Fault, reply: _Reply) -> None:
        reply.delay += fault.seconds

    async def _connection_reset(self, request: web.Request, fault: Fault, reply: _Reply) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends RST instead of FIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # Nothing can be sent any more: end the handler the way aiohttp ends one whose client went away.
        raise asyncio.CancelledError

    async def _malformed_json(self, request: web.Request, fault: Fault, reply: _Reply) -> web.StreamResponse:
        return web.Response(
            text='{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess', content_type="application/json"
        )

    async def _empty_choices(self, request: web.Request, fault: Fault, reply: _Reply) -> None:
        reply.choices = 0

    async def _fewer_choices(self, request: web.Request, fault: Fault, reply: _Reply) -> None:
        reply.choices = max(0, min(fault.choices, reply.choices - 1))

    async def _truncate(self, request: web.Request, fault: Fault, reply: _Reply) -> None:
        reply.truncated_to = fault.tokens

    _FAULT_HANDLERS: ClassVar[Mapping[FaultKind, _FaultHandler]] = {
        FaultKind.HTTP_ERROR: _http_error,
        FaultKind.HANG: _hang,
        FaultKind.CONNECTION_RESET: _connection_reset,
        FaultKind.MALFORMED_JSON: _malformed_json,
        FaultKind.EMPTY_CHOICES: _empty_choices,
        FaultKind.FEWER_CHOICES: _fewer_choices,
        FaultKind.TRUNCATE: _truncate,
    }

    # -- answers ------------------------------------------------------------------------------------

    def _text(self, body: dict[str, Any]) -> str:
        source = self.config.text
        text = source(body) if callable(source) else source
        if self.config.completion_tokens is None:
            return text
        tokens = scripted_tokenize(text) or ["x"]
        cycled = itertools.islice(itertools.cycle(tokens), self.config.completion_tokens)
        return "".join(cycled)

    def _completion(self, text: str, body: dict[str, Any], reply: _Reply) -> _Completion:
        finish_reason = "stop"
        cuts = [position for s in _stop_strings(body.get("stop")) if (position := text.find(s)) >= 0]
        if cuts:
            text = text[: min(cuts)]
        tokens = scripted_tokenize(text)
        limits = [limit for limit in (reply.max_tokens, reply.truncated_to) if limit is not None]
        if limits and len(tokens) > min(limits):
            tokens = tokens[: min(limits)]
            text = "".join(tokens)
            finish_reason = "length"
        elif reply.truncated_to is not None:
            finish_reason = "length"
        return _Completion(text, tokens, finish_reason)

    def _payload(self, body: dict[str, Any], chat: bool, reply: _Reply) -> dict[str, Any]:
        completion = self._completion(self._text(body), body, reply)
        prompt_tokens = _prompt_tokens(body, chat)
        completion_tokens = len(completion.tokens) * reply.choices
        request_id = next(self._ids)
        payload: dict[str, Any] = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{request_id}-{uuid.uuid4().hex[:8]}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": str(body.get("model", "fake")),
            "system_fingerprint": "fake-openai",
            "choices": [self._choice(index, completion, body, chat) for index in range(reply.choices)],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return payload

    def _choice(self, index: int, completion: _Completion, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        if chat:
            logprobs = None
            if self.config.logprobs and body.get("logprobs"):
                logprobs = {"content": _chat_logprobs(completion.tokens, int(body.get("top_logprobs") or 0))}
            return {
                "index": index,
                "message": {"role": "assistant", "content": completion.text},
                "logprobs": logprobs,
                "finish_reason": completion.finish_reason,
            }
        legacy = body.get("logprobs")
        return {
            "index": index,
            "text": completion.text,
            "logprobs": _legacy_logprobs(completion.tokens, int(legacy))
            if self.config.logprobs and legacy is not None
            else None,
            "finish_reason": completion.finish_reason,
        }


def _chat_logprobs(tokens: Sequence[str], top_k: int) -> list[dict[str, Any]]:
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return [
        {
            **entry(token, _CHOSEN_LOGPROB),
            "top_logprobs": [entry(token, _CHOSEN_LOGPROB)]
            + [entry(alt, lp) for alt, lp in zip(_alternatives(token, top_k - 1), _ALT_LOGPROBS, strict=False)]
            if top_k > 0
            else [],
        }
        for token in tokens
    ]


def _legacy_logprobs(tokens: Sequence[str], top_k: int) -> dict[str, Any]:
    offsets = list(itertools.accumulate((len(token) for token in tokens), initial=0))[:-1]
    top = [
        {token: _CHOSEN_LOGPROB} | dict(zip(_alternatives(token, top_k - 1), _ALT_LOGPROBS, strict=False))
        for token in tokens
    ]
    return {
        "tokens": list(tokens),
        "token_logprobs": [_CHOSEN_LOGPROB] * len(tokens),
        "top_logprobs": top if top_k > 0 else None,
        "text_offset": offsets,
    }
