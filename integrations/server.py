"""ttc-agents graphs in LangGraph: as subgraphs of your own graphs, and on LangGraph Server.

Schema of every graph (strategy graphs and the router)
-------------------------------------------------------
Input (a dict; only ``question`` is required)::

    question: str                      # the question to answer
    context:  list[dict]               # earlier turns, OpenAI-style {"role", "content"} messages
    budget:   Budget | dict | None     # hard limits for this run, e.g. {"max_samples": 16}

Output::

    answer:     str | None             # the selected final answer
    candidates: list[Candidate]        # every sample with its steps, answer and verifier scores
    ledger:     LedgerSnapshot         # spend per node and model (``.total``, ``.as_dict()``)
    stopped_by: str | None             # the budget limit that stopped the run, if any
    strategy:   dict                   # the strategy spec that ran (the router: the one it chose)
    trace:      dict                   # router only: bin, evidence, choice, why, spend per stage

Mounting a graph directly as a node
    ``parent.add_node("ttc", graph)`` works: the graph reads only ``question``, ``context`` and
    ``budget`` from the parent state and writes back only its output keys. Its state declares no
    reducers, so a parent key ``candidates: Annotated[list, operator.add]`` receives each new
    candidate exactly once and the parent's ``messages`` are never copied. The parent's keys named
    like the output (``answer``, ``ledger``, ``strategy``, ...) are overwritten, and two such nodes
    cannot run in parallel branches (both write ``answer``).

Mounting through :func:`as_node`
    ``parent.add_node("ttc", as_node(graph, output_key="ttc", messages_key="messages"))`` reads the
    question from any key (or from the last user message of a message list), writes the whole
    result under ONE key of your choice, and optionally appends the answer as an ``AIMessage`` to
    your message list and the new candidates to a list key. Use it for message-based parents,
    for parallel branches, and whenever the parent already uses ``answer``/``ledger``/... names.

LangGraph Server
----------------
``langgraph.json`` at the repository root exposes, through the factories below:

- ``router``: the compute-optimal router. Its policy is ``TTC_POLICY`` (a ``policy.json``), else
  :func:`example_policy`, a small hand-written policy for ``scripted/arith`` that shows routing
  offline (its numbers are illustrative, not measured);
- ``best_of_n``, ``beam_search``, ``dvts``, ``revision``, ``hybrid``: one fixed strategy each, sized
  for a quick demo (:data:`STRATEGY_DEFAULTS`: ``n=8``, ``width=2``, ``attempts=4``);
- ``workflow``: the workflow ``TTC_WORKFLOW`` of the YAML file ``TTC_WORKFLOWS`` (router or fixed
  strategy; without them, the same offline router as ``router``).

Environment (all optional; the defaults run offline on the ``scripted/arith`` test double):
``TTC_MODEL`` (LiteLLM model, default ``scripted/arith``), ``TTC_VERIFIER`` (``arithmetic``,
``prm:MODEL``, ``orm:MODEL``, ``reward:URL#MODEL``, ``none``; default ``arithmetic``),
``TTC_BUDGET`` (JSON, e.g. ``{"max_samples": 32}``: the default per-run budget), ``TTC_POLICY``,
``TTC_WORKFLOWS``, ``TTC_WORKFLOW`` and ``TTC_<STRATEGY>_SPEC`` (JSON spec fields for one strategy
graph, e.g. ``TTC_BEAM_SEARCH_SPEC='{"n": 16, "width": 4}'``). An assistant's ``configurable`` may override ``model``,
``verifier``, ``budget``, ``workflow`` and, for a strategy graph, ``strategy`` (a dict of spec
fields such as ``{"n": 16}``). Every run is tagged ``ttc-agents`` and its graph name.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import merge_configs

from ttc_agents._budget import Budget
from ttc_agents._models import ModelSpec
from ttc_agents._policy import Cost, Policy, PolicyAction, PolicyEntry
from ttc_agents._specs import BeamSearchSpec, BestOfNSpec, parse_strategy
from ttc_agents.integrations.chat_model import graph_label, result_metadata, run_config, split_conversation

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_VERIFIER",
    "STRATEGY_DEFAULTS",
    "as_node",
    "beam_search",
    "best_of_n",
    "dvts",
    "example_policy",
    "hybrid",
    "revision",
    "router",
    "workflow",
]

DEFAULT_MODEL = "scripted/arith"
DEFAULT_VERIFIER = "arithmetic"

STRATEGY_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "best_of_n": {"strategy": "best_of_n", "n": 8},
    "beam_search": {"strategy": "beam_search", "n": 8, "width": 2},
    "dvts": {"strategy": "dvts", "n": 8, "width": 2},
    "revision": {"strategy": "revision", "attempts": 4},
    "hybrid": {"strategy": "hybrid", "n": 8},
}
"""The spec each strategy graph of the server runs unless the assistant's ``strategy`` overrides fields."""


# ---------------------------------------------------------------------------------------------------
# Subgraph wrapper
# ---------------------------------------------------------------------------------------------------


def as_node(
    graph: Runnable[Any, Any],
    *,
    input_key: str = "question",
    output_key: str | None = "ttc",
    messages_key: str | None = None,
    context_key: str | None = None,
    budget_key: str | None = None,
    candidates_key: str | None = None,
    name: str | None = None,
) -> Callable[[Mapping[str, Any], RunnableConfig], Awaitable[dict[str, Any]]]:
    """A node function that runs ``graph`` on a parent state without sharing any key with it.

    The question is ``state[input_key]``, or, with ``messages_key``, the last message of
    ``state[messages_key]`` (LangChain messages or OpenAI dicts; it must be a user turn), the
    earlier messages becoming ``context``. ``context_key`` and ``budget_key`` name optional parent
    keys holding earlier turns and a budget.

    The node returns only NEW values: the graph's output under ``output_key`` (skipped when None),
    one ``AIMessage`` with the answer (``usage_metadata`` and ``response_metadata`` as ``ChatTTC``
    sets them) appended to ``messages_key``, and the new candidates appended to
    ``candidates_key``. So reducers such as ``operator.add`` or ``add_messages`` add each item once.
    """
    label = graph_label(graph)

    async def node(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        if messages_key is not None:
            messages = list(state.get(messages_key) or ())
            dicts = [convert_to_openai_messages(m) if isinstance(m, BaseMessage) else dict(m) for m in messages]
            question, context = split_conversation(dicts)
        else:
            question = str(state[input_key])
            context = []
        if context_key is not None:
            context = [*list(state.get(context_key) or ()), *context]
        inputs: dict[str, Any] = {"question": question, "context": context}
        if budget_key is not None and state.get(budget_key) is not None:
            inputs["budget"] = state[budget_key]
        result = dict(await graph.ainvoke(inputs, merge_configs(config, run_config(label))))
        update: dict[str, Any] = {}
        if output_key is not None:
            update[output_key] = result
        if messages_key is not None:
            ledger = result.get("ledger")
            total = ledger.total if ledger is not None else None
            update[messages_key] = [
                AIMessage(
                    content=result.get("answer") or "",
                    response_metadata=result_metadata(result, label),
                    usage_metadata={
                        "input_tokens": total.prompt_tokens if total else 0,
                        "output_tokens": total.completion_tokens if total else 0,
                        "total_tokens": total.total_tokens if total else 0,
                    },
                )
            ]
        if candidates_key is not None:
            update[candidates_key] = list(result.get("candidates") or ())
        return update

    node.__name__ = name or f"ttc_{label}"
    node.__qualname__ = node.__name__
    return node


# ---------------------------------------------------------------------------------------------------
# The example policy
# ---------------------------------------------------------------------------------------------------


def example_policy(model: str = DEFAULT_MODEL, verifier: str = DEFAULT_VERIFIER) -> Policy:
    """A small hand-written policy for ``model`` that makes the router's behaviour visible offline.

    Easy bins get best-of-N, the middle bins beam search (the paper's pattern), at generation
    budgets 4 and 8. The accuracies and costs are illustrative numbers, not measurements: fit a
    real policy on your own model, verifier and data and point ``TTC_POLICY`` at it.
    """

    def entry(
        bin_: int, budget: int, strategy: BestOfNSpec | BeamSearchSpec, accuracy: float, tokens: float
    ) -> PolicyEntry:
        return PolicyEntry(
            bin=bin_,
            budget=budget,
            action=PolicyAction(model=model, strategy=strategy),
            accuracy=round(accuracy, 4),
            cv_accuracy=round(accuracy, 4),
            cost=Cost(samples=budget, tokens=tokens),
            questions=10,
        )

    table = []
    for bin_ in range(1, 6):
        table.append(entry(bin_, 4, BestOfNSpec(n=4, seed=0), 0.9 - 0.15 * bin_, 400))
        table.append(entry(bin_, 8, BestOfNSpec(n=8, seed=0), 0.92 - 0.12 * bin_, 800))
        search_accuracy = 0.9 - (0.05 if bin_ in (3, 4) else 0.2) * bin_
        table.append(entry(bin_, 8, BeamSearchSpec(n=8, width=2, seed=0), search_accuracy, 2500))
    return Policy(
        models=[model],
        verifier=verifier,
        dataset="illustrative (hand-written, not measured)",
        thresholds=[0.5, 0.7, 0.85, 0.95],
        table=table,
        candidates=table,
    )


# ---------------------------------------------------------------------------------------------------
# Graph factories for LangGraph Server (langgraph.json)
# ---------------------------------------------------------------------------------------------------

_CACHE: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


def _setting(config: RunnableConfig | None, key: str, env: str, default: Any = None) -> Any:
    configurable = (config or {}).get("configurable") or {}
    if configurable.get(key) is not None:
        return configurable[key]
    value = os.environ.get(env)
    return value if value not in (None, "") else default


def _budget(config: RunnableConfig | None) -> Budget | None:
    raw = _setting(config, "budget", "TTC_BUDGET")
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = json.loads(raw)
    return raw if isinstance(raw, Budget) else Budget.model_validate(raw)


def _cached(key: Mapping[str, Any], build: Callable[[], Any]) -> Any:
    text = json.dumps(key, sort_keys=True, default=str)
    with _CACHE_LOCK:
        if text not in _CACHE:
            _CACHE[text] = build()
        return _CACHE[text]


def _traced(graph: Any, label: str, workflow: str | None = None) -> Any:
    config = run_config(label, workflow=workflow)
    config.pop("run_name", None)  # the server names runs after the graph id
    return graph.with_config(config)


def _strategy_graph(name: str, config: RunnableConfig | None) -> Any:
    from ttc_agents.graphs import build_strategy_graph
    from ttc_agents.verifiers._factory import make_verifier

    overrides = _setting(config, "strategy", f"TTC_{name.upper()}_SPEC", {})
    if isinstance(overrides, str):
        overrides = json.loads(overrides)
    spec = parse_strategy({**STRATEGY_DEFAULTS[name], **dict(overrides), "strategy": name})
    model = str(_setting(config, "model", "TTC_MODEL", DEFAULT_MODEL))
    verifier = str(_setting(config, "verifier", "TTC_VERIFIER", DEFAULT_VERIFIER))
    budget = _budget(config)
    key = {"graph": name, "spec": spec.model_dump(), "model": model, "verifier": verifier, "budget": budget}

    def build() -> Any:
        graph = build_strategy_graph(spec, model=model, verifier=make_verifier(verifier), budget=budget)
        return _traced(graph, name)

    return _cached(key, build)


def router(config: RunnableConfig) -> Any:
    """The router graph: policy ``TTC_POLICY`` (else :func:`example_policy`), model and verifier from the env."""
    from ttc_agents.graphs.router import build_router_graph
    from ttc_agents.verifiers._factory import make_verifier

    policy_path = _setting(config, "policy", "TTC_POLICY")
    model = str(_setting(config, "model", "TTC_MODEL", DEFAULT_MODEL))
    verifier = str(_setting(config, "verifier", "TTC_VERIFIER", DEFAULT_VERIFIER))
    budget = _budget(config)
    key = {"graph": "router", "policy": policy_path, "model": model, "verifier": verifier, "budget": budget}

    def build() -> Any:
        if policy_path is not None:
            policy = Policy.load(policy_path)
            models: dict[str, ModelSpec | str] | None = None
        else:
            policy = example_policy(model, verifier)
            models = {model: ModelSpec(name=model, max_tokens=128)}
        graph = build_router_graph(
            policy, models=models, verifier=make_verifier(verifier), verifier_name=verifier, budget=budget
        )
        return _traced(graph, "router")

    return _cached(key, build)


def workflow(config: RunnableConfig) -> Any:
    """The workflow ``TTC_WORKFLOW`` of ``TTC_WORKFLOWS`` (without them: the offline :func:`router`)."""
    from ttc_agents._workflow import load_workflow

    path = _setting(config, "workflows", "TTC_WORKFLOWS")
    name = _setting(config, "workflow", "TTC_WORKFLOW")
    if path is None and name is None:
        return router(config)
    if path is None or name is None:
        raise ValueError("set both TTC_WORKFLOWS (the YAML file) and TTC_WORKFLOW (the workflow's name)")
    file = Path(path)

    def build() -> Any:
        graph = load_workflow(file, str(name)).build(base_dir=file.parent)
        return _traced(graph, graph_label(graph), workflow=str(name))

    return _cached({"graph": "workflow", "path": str(file.resolve()), "name": name}, build)


def best_of_n(config: RunnableConfig) -> Any:
    """Best-of-N (``n=8``, weighted selection unless overridden)."""
    return _strategy_graph("best_of_n", config)


def beam_search(config: RunnableConfig) -> Any:
    """Beam search against the verifier (``n=8, width=2`` unless overridden)."""
    return _strategy_graph("beam_search", config)


def dvts(config: RunnableConfig) -> Any:
    """Diverse verifier tree search (``n=8, width=2`` unless overridden)."""
    return _strategy_graph("dvts", config)


def revision(config: RunnableConfig) -> Any:
    """Sequential revisions (``attempts=4`` unless overridden)."""
    return _strategy_graph("revision", config)


def hybrid(config: RunnableConfig) -> Any:
    """Parallel x sequential revisions (``n=8`` unless overridden)."""
    return _strategy_graph("hybrid", config)
