"""Helpers shared by the integrations (ChatTTC, the LiteLLM provider, LangGraph Server, the subgraph
wrapper): a conversation as (question, context), a graph's run name, config and result facts, and
running a coroutine from synchronous code."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig

from ttc_agents._core.budget import LedgerSnapshot

__all__ = [
    "TOOLS_MESSAGE",
    "graph_label",
    "result_metadata",
    "run_config",
    "run_sync",
    "split_conversation",
]

T = TypeVar("T")

TOOLS_MESSAGE = (
    "ttc-agents does not call tools: it samples several answers to the last user turn and selects one "
    "with a verifier (test-time compute), so it cannot emit tool calls or structured output. Use a "
    "tool-calling chat model for the steps that call tools, and ttc-agents for the steps that must "
    "produce an answer (for example the final answer node of your graph)."
)


def _text(content: Any) -> str:
    """The text of an OpenAI-style message content: a string, or the text parts of a list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
        return "\n".join(parts)
    return str(content)


def _context_turn(message: Mapping[str, Any]) -> dict[str, Any]:
    """One earlier turn as a plain ``{"role", "content"}`` message any chat backend accepts.

    Tool traffic from other steps of a pipeline is kept as text: an assistant turn's tool calls are
    appended to its content, and a tool result becomes a user turn ``Tool result (id): ...``.
    """
    role = str(message.get("role", "user"))
    content = _text(message.get("content"))
    if role == "assistant" and message.get("tool_calls"):
        calls = "; ".join(
            f"{call.get('function', {}).get('name')}({call.get('function', {}).get('arguments')})"
            for call in message["tool_calls"]
        )
        content = f"{content}\n[called tools: {calls}]".strip()
    if role in ("tool", "function"):
        return {
            "role": "user",
            "content": f"Tool result ({message.get('tool_call_id') or message.get('name')}): {content}",
        }
    if role == "developer":
        role = "system"
    return {"role": role, "content": content}


def split_conversation(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """``(question, context)`` of OpenAI-style chat ``messages``.

    The question is the text of the last message, which must be a user turn; the context is every
    earlier turn as ``{"role", "content"}`` dicts (see :func:`_context_turn` for tool traffic).
    Raises ValueError for an empty conversation or one that does not end with a user turn.
    """
    if not messages:
        raise ValueError("ChatTTC needs at least one message: the user's question")
    last = messages[-1]
    if last.get("role") != "user":
        raise ValueError(
            f"the conversation must end with a user turn (the question to answer); it ends with a "
            f"{last.get('role')!r} message"
        )
    question = _text(last.get("content")).strip()
    if not question:
        raise ValueError("the last user turn is empty: there is no question to answer")
    return question, [_context_turn(m) for m in messages[:-1]]


def graph_label(graph: Any) -> str:
    """A short name for a graph's runs: its compiled name (``best_of_n``, ``router``, ...)."""
    name = getattr(graph, "name", None)
    if isinstance(name, str) and name and name != "LangGraph":
        return name
    bound = getattr(graph, "bound", None)  # a RunnableBinding around a compiled graph
    return graph_label(bound) if bound is not None else type(graph).__name__


def run_config(
    label: str,
    *,
    workflow: str | None = None,
    callbacks: Any = None,
    tags: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> RunnableConfig:
    """The RunnableConfig of one graph run: LangSmith-friendly name, tags and metadata.

    Run name ``ttc:<label>``; tags ``ttc-agents``, ``<label>`` (and ``workflow:<name>``); metadata
    ``ttc_strategy`` and ``ttc_workflow``. Tracing happens only when the environment enables it
    (``LANGSMITH_TRACING=true`` with a key); this function never connects anywhere.
    """
    all_tags = ["ttc-agents", label, *([f"workflow:{workflow}"] if workflow else []), *tags]
    config: RunnableConfig = {
        "run_name": f"ttc:{label}",
        "tags": list(dict.fromkeys(all_tags)),
        "metadata": {"ttc_strategy": label, "ttc_workflow": workflow, **(metadata or {})},
    }
    if callbacks is not None:
        config["callbacks"] = callbacks
    return config


def result_metadata(result: Mapping[str, Any], label: str) -> dict[str, Any]:
    """JSON-ready facts of a graph result: strategy, bin (router), ledger, stopped_by, answer."""
    ledger = result.get("ledger")
    trace = result.get("trace")
    out: dict[str, Any] = {
        "model_name": f"ttc/{label}",
        "graph": label,
        "answer": result.get("answer"),
        "strategy": result.get("strategy"),
        "bin": trace.get("bin") if isinstance(trace, Mapping) else None,
        "ledger": ledger.as_dict() if isinstance(ledger, LedgerSnapshot) else None,
        "stopped_by": result.get("stopped_by"),
        "candidates": len(result.get("candidates") or ()),
    }
    if isinstance(trace, Mapping):
        out["trace"] = dict(trace)
    return out


class _BackgroundLoop:
    """One event loop on a daemon thread, shared by every synchronous call in the process.

    A single long-lived loop (rather than ``asyncio.run`` per call) keeps loop-bound resources such
    as LiteLLM's async HTTP clients and the gateway's per-loop semaphores valid across calls. At
    interpreter exit its remaining tasks are cancelled and it is closed, as ``asyncio.run`` would.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                if self._thread is None:
                    atexit.register(self.shutdown)
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="ttc-agents-sync", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def shutdown(self) -> None:
        """Cancel what still runs on the loop, stop it and close it (a later call starts a new one)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = None
        if loop is None or loop.is_closed() or thread is None:
            return

        async def cancel_all() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()


_BACKGROUND = _BackgroundLoop()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, whether or not a loop is running here.

    The coroutine runs on a shared background loop, in a copy of the caller's context (so LangChain's
    run context propagates); the calling thread waits. Called from inside that background loop
    itself, it runs on a fresh loop in a worker thread instead, so it never deadlocks.
    """
    context = contextvars.copy_context()
    loop = _BACKGROUND.get()
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ttc-agents-nested") as pool:
            return pool.submit(context.run, asyncio.run, coro).result()

    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    tasks: list[asyncio.Task[T]] = []

    def relay(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            done.cancel()
        elif (error := task.exception()) is not None:
            done.set_exception(error)
        else:
            done.set_result(task.result())

    def start() -> None:
        task = loop.create_task(coro, context=context)
        tasks.append(task)
        task.add_done_callback(relay)

    loop.call_soon_threadsafe(start)
    try:
        return done.result()
    except BaseException:
        if tasks and not tasks[0].done():
            loop.call_soon_threadsafe(tasks[0].cancel)
        raise
