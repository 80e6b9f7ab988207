"""Per-run ledgers of :class:`~ttc_agents.integrations.ChatTTC`: one budget for every model call of one
agent run.

A *run* is named by its key, taken from the call's RunnableConfig, first match wins:

1. ``ttc_run_id`` in the run's metadata or ``configurable`` (set it to share a budget explicitly);
2. ``thread_id`` (LangGraph copies ``configurable["thread_id"]`` into every node's metadata, so every
   turn of a ``create_agent`` or ToolNode loop on one thread is one run; a thread that is continued
   later keeps drawing from the same budget until :meth:`RunLedgers.reset`);
3. the root ``run_id`` of a LangGraph run, when the caller gave one (``config={"run_id": ...}``);
4. the LangGraph run the call is made in (``get_runtime().control``, one object per graph invocation,
   shared by its subgraphs): every turn of one ``agent.invoke(...)`` without a thread is one run;
5. else (a call outside any graph, with none of the above) the call is a run of its own.

Ledgers are kept for the ``max_runs`` most recently used keys (least recently used first out), so a
long-lived process does not grow without bound; a run evicted while idle starts afresh if it comes back.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables.config import var_child_runnable_config

from ttc_agents._core.budget import Budget, Ledger, LedgerSnapshot

__all__ = ["RunLedgers", "RunState", "run_key"]


def _text_key(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def run_key(metadata: Mapping[str, Any] | None) -> tuple[str | None, object | None]:
    """The run key of the current call (see the module docstring; None for a run of its own), and the
    object the key names when it is an identity (kept with the run's ledger, so the id stays unique)."""
    config = var_child_runnable_config.get() or {}
    configurable = config.get("configurable") or {}
    sources = [metadata or {}, config.get("metadata") or {}, configurable]
    for name in ("ttc_run_id", "thread_id"):
        for source in sources:
            key = _text_key(source.get(name))
            if key is not None:
                return f"{name}:{key}", None
    runtime = _runtime() if config else None
    root = getattr(getattr(runtime, "execution_info", None), "run_id", None)
    if root is not None:
        return f"run_id:{root}", None
    control = getattr(runtime, "control", None)
    if control is not None:
        return f"langgraph_run:{id(control)}", control
    return None, None


def _runtime() -> Any:
    """LangGraph's runtime of the graph run the current call is in, if any."""
    try:
        from langgraph.runtime import get_runtime

        return get_runtime()
    except (RuntimeError, KeyError, ImportError):
        return None


@dataclass(slots=True)
class RunState:
    """One run's live ledger and how many turns it has taken."""

    ledger: Ledger
    turns: int = 0
    fallbacks: int = 0
    anchor: object | None = None
    """What an identity key names (LangGraph's run control): held so that its id is not reused."""
    _locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self) -> asyncio.Lock:
        """The lock that makes the turns of one run take their budget one after the other (per loop)."""
        loop = asyncio.get_running_loop()
        with self._guard:
            lock = self._locks.get(loop)
            if lock is None:
                lock = self._locks[loop] = asyncio.Lock()
            return lock


class RunLedgers:
    """The live ledgers of the last ``max_runs`` runs, by run key (thread-safe)."""

    def __init__(self, max_runs: int = 1024) -> None:
        self.max_runs = max_runs
        self._runs: OrderedDict[str, RunState] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._runs)

    def get(
        self, key: str | None, budget: Budget, *, max_runs: int | None = None, anchor: object | None = None
    ) -> RunState:
        """The run of ``key`` (created with ``budget`` when new); ``None``: a fresh, unkept run.
        ``max_runs`` replaces the bound of kept runs; ``anchor`` is kept with a new run (see RunState)."""
        if key is None:
            return RunState(Ledger(budget=budget))
        with self._lock:
            if max_runs is not None:
                self.max_runs = max_runs
            state = self._runs.get(key)
            if state is None:
                state = self._runs[key] = RunState(Ledger(budget=budget), anchor=anchor)
            self._runs.move_to_end(key)
            while len(self._runs) > self.max_runs:
                self._runs.popitem(last=False)
            return state

    def snapshot(self, key: str) -> LedgerSnapshot | None:
        with self._lock:
            state = self._runs.get(key)
        return None if state is None else state.ledger.snapshot()

    def reset(self, key: str | None = None) -> None:
        """Forget one run (all runs when ``key`` is None)."""
        with self._lock:
            if key is None:
                self._runs.clear()
            else:
                self._runs.pop(key, None)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._runs)
