"""Run a strategy graph's nodes in order, without LangGraph's Pregel loop, when nothing observes the run.

LangGraph spends about 0.5-1 ms of CPU per super-step (tasks, channel writes, checkpoint objects, callback
managers, config merges) and about 1 ms per invocation, which on a loaded 2-core machine is most of a
best-of-N question's client CPU (measured by ``python -m ttc_agents.bench.peers``). A strategy graph is a
chain of nodes with plain and conditional edges over last-value state keys, so when an ``ainvoke`` has
nothing to observe its steps (no checkpointer, no callbacks or tracing, no interrupts, no stream, not a
subgraph of a running graph) it gives the same result when its nodes are called one after the other:
:class:`DirectStateGraph.ainvoke` does that, and hands every other call to LangGraph unchanged. The
nodes, their order, the state each one sees, the updates, the output keys and the recursion limit are the
graph's own; only the bookkeeping nobody reads is skipped.

:func:`compile_direct` compiles a ``StateGraph`` that qualifies (see :func:`_plan`) into a
:class:`DirectStateGraph`; one that does not (a reducer, a ``Send``, a node that takes a config...) stays
a plain ``CompiledStateGraph``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.callbacks.manager import AsyncCallbackManager
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph._internal._runnable import RunnableCallable
from langgraph.channels.last_value import LastValue
from langgraph.constants import END, START
from langgraph.errors import GraphRecursionError
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

__all__ = ["DirectStateGraph", "compile_direct"]

_DEFAULT_RECURSION_LIMIT = 25
_PLAIN_CONFIG_KEYS = frozenset({"recursion_limit", "tags", "metadata", "run_name", "max_concurrency", "run_id"})
"""Config keys a direct run may carry: none of them changes what the nodes compute."""


@dataclass(frozen=True, slots=True)
class _Step:
    name: str
    afunc: Callable[[Any], Any]
    next: str | None
    """The node after this one (END included), when its edge is plain."""
    route: Callable[[Any], Any] | None
    """The routing function, when its edge is conditional."""
    ends: Mapping[Hashable, str] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    first: str
    steps: Mapping[str, _Step]
    keys: frozenset[str]
    inputs: frozenset[str]
    outputs: tuple[str, ...]


def _as_async(runnable: Any) -> Callable[[Any], Any] | None:
    """A node's (or route's) function as an async function of the state alone; None when it takes more
    (a config, writer, store or runtime) or is not a plain function LangGraph wrapped."""
    if not isinstance(runnable, RunnableCallable) or runnable.func_accepts or runnable.kwargs:
        return None
    if runnable.afunc is not None:
        return runnable.afunc
    func = runnable.func
    if func is None:
        return None

    async def call(state: Any) -> Any:
        return func(state)

    return call


def _plan(graph: StateGraph[Any, Any, Any, Any]) -> _Plan | None:
    """How to run ``graph`` directly, or None when it does not qualify: every state key a last value,
    every node a function of the state alone with the graph's state schema, no retry or cache policy,
    one plain edge or one conditional edge out of every node and out of START."""
    if any(type(channel) is not LastValue for channel in graph.channels.values()):
        return None
    if getattr(graph, "managed", None) or graph.waiting_edges:
        return None
    plain: dict[str, list[str]] = {}
    for source, target in graph.edges:
        plain.setdefault(source, []).append(target)
    steps: dict[str, _Step] = {}
    for name, node in graph.nodes.items():
        afunc = _as_async(node.runnable)
        if afunc is None or node.retry_policy or node.cache_policy or node.defer or node.ends:
            return None
        if node.input_schema not in (None, graph.state_schema):
            return None
        targets, branches = plain.get(name, []), graph.branches.get(name, {})
        if len(targets) + len(branches) != 1:
            return None
        if branches:
            (branch,) = branches.values()
            route = _as_async(branch.path)
            if route is None:
                return None
            steps[name] = _Step(name, afunc, None, route, branch.ends)
        else:
            steps[name] = _Step(name, afunc, targets[0], None, None)
    starts = plain.get(START, [])
    if len(starts) != 1 or START in graph.branches or starts[0] not in steps:
        return None
    inputs = frozenset(graph.schemas[graph.input_schema]) if graph.input_schema in graph.schemas else None
    outputs = tuple(graph.schemas[graph.output_schema]) if graph.output_schema in graph.schemas else None
    if inputs is None or outputs is None:
        return None
    return _Plan(starts[0], steps, frozenset(graph.channels), inputs, outputs)


_PLANS: weakref.WeakKeyDictionary[StateGraph[Any, Any, Any, Any], _Plan] = weakref.WeakKeyDictionary()
"""Each qualifying builder's plan (compiled copies share the builder)."""


class DirectStateGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """A compiled strategy graph whose unobserved ``ainvoke`` runs its nodes directly (module docstring)."""

    @property
    def _direct_plan(self) -> _Plan:
        """The plan of this graph's builder (a copy, e.g. from ``with_config``, keeps the builder)."""
        plan = _PLANS.get(self.builder)
        if plan is None:
            plan = _plan(self.builder)
            if plan is None:  # compile_direct only makes qualifying graphs direct
                raise TypeError(f"graph {self.name!r} cannot run directly")
            _PLANS[self.builder] = plan
        return plan

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """LangGraph's ``ainvoke``; the same result without its Pregel loop when nothing observes the run."""
        if kwargs or not self._unobserved(config) or not isinstance(input, Mapping):
            return await super().ainvoke(input, config, **kwargs)
        return await self._run_direct(input, config)

    def _unobserved(self, config: RunnableConfig | None) -> bool:
        if self.checkpointer not in (None, False) or self.store is not None or getattr(self, "cache", None):
            return False
        if self.interrupt_before_nodes or self.interrupt_after_nodes or self.debug:
            return False
        if var_child_runnable_config.get():  # inside another runnable's run (a parent graph's node)
            return False
        merged = {**(self.config or {}), **(config or {})}
        if any(key not in _PLAIN_CONFIG_KEYS for key, value in merged.items() if value):
            return False  # callbacks, configurable (threads, checkpoints, a parent's pregel keys)...
        # Callbacks from the environment or the context (LangSmith tracing, debug/verbose, collectors).
        return not AsyncCallbackManager.configure(None, None).handlers

    async def _run_direct(self, input: Mapping[str, Any], config: RunnableConfig | None) -> dict[str, Any]:
        plan = self._direct_plan
        merged: dict[str, Any] = {**(self.config or {}), **(config or {})}
        limit = int(merged.get("recursion_limit") or _DEFAULT_RECURSION_LIMIT)
        state: dict[str, Any] = {key: value for key, value in input.items() if key in plan.inputs}
        current: str = plan.first
        executed = 0
        while current != END:
            if executed >= limit:
                raise GraphRecursionError(
                    f"Recursion limit of {limit} reached without hitting a stop condition. You can increase the "
                    "limit by setting the `recursion_limit` config key."
                )
            step = plan.steps[current]
            update = await step.afunc(dict(state))
            executed += 1
            if update is not None:
                if not isinstance(update, Mapping):
                    raise TypeError(f"node {step.name!r} returned {type(update).__name__}, not a dict update")
                state.update((key, value) for key, value in update.items() if key in plan.keys)
            if step.route is None:
                current = cast(str, step.next)
                continue
            chosen = await step.route(dict(state))
            if not isinstance(chosen, Hashable) or isinstance(chosen, list | tuple):
                raise TypeError(f"the route after {step.name!r} chose {chosen!r}; a direct run follows one edge")
            current = step.ends[chosen] if step.ends is not None else cast(str, chosen)
        return {key: state[key] for key in plan.outputs if key in state}


def compile_direct(graph: StateGraph[Any, Any, Any, Any], *, name: str) -> CompiledStateGraph[Any, Any, Any, Any]:
    """``graph.compile(name=name)``, as a :class:`DirectStateGraph` when the graph qualifies."""
    compiled = graph.compile(name=name)
    plan = _plan(graph)
    if plan is None:
        return compiled
    compiled.__class__ = DirectStateGraph
    _PLANS[graph] = plan
    return compiled
