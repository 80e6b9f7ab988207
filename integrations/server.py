"""ttc-agents graphs on LangGraph Server (as subgraphs of your own graphs: :mod:`ttc_agents.integrations.subgraph`).

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

Environment: the operator's settings (all optional; the defaults run offline on ``scripted/arith``)
``TTC_MODEL`` (LiteLLM model, default ``scripted/arith``), ``TTC_VERIFIER`` (``arithmetic``,
``prm:MODEL``, ``orm:MODEL``, ``reward:URL#MODEL``, ``none``; default ``arithmetic``),
``TTC_BUDGET`` (JSON, e.g. ``{"max_samples": 32}``: the ceiling of every run), ``TTC_POLICY``,
``TTC_WORKFLOWS``, ``TTC_WORKFLOW``, ``TTC_<STRATEGY>_SPEC`` (JSON spec fields for one strategy
graph, e.g. ``TTC_BEAM_SEARCH_SPEC='{"n": 16, "width": 4}'``), the allow-lists
``TTC_ALLOWED_MODELS``, ``TTC_ALLOWED_VERIFIERS``, ``TTC_ALLOWED_WORKFLOWS`` (comma-separated; the
default is always allowed; ``TTC_ALLOWED_WORKFLOWS=*`` allows every workflow of ``TTC_WORKFLOWS``)
and ``TTC_GRAPH_CACHE_SIZE`` (built graphs kept, least recently used out; default 64).

What a client may set (a run's or an assistant's ``configurable``, and the input): ``model``,
``verifier`` and ``workflow`` among the allow-listed names only; ``budget`` (configurable or input)
only tightens the operator's: per field the smaller limit, so ``{}`` or a larger limit changes
nothing; ``strategy`` (spec fields such as ``{"n": 4}``) with the compute fields
(:data:`COMPUTE_FIELDS`) capped at the operator's spec. ``policy`` and ``workflows`` (file paths),
the router's ``estimate``/``action`` inputs, ``Command`` inputs and thread state updates are
refused with :class:`ClientRefused`; file content is never quoted back (load errors go to the
server log). Every run is tagged ``ttc-agents`` and its graph name.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.runnables import RunnableConfig
from pydantic import ValidationError

from ttc_agents._apps.example_policy import EXAMPLE_MODEL, EXAMPLE_VERIFIER, example_policy
from ttc_agents._core.budget import Budget
from ttc_agents._core.specs import StrategySpec, parse_strategy
from ttc_agents._llm.models import ModelSpec
from ttc_agents._routing.policy import Policy

from ._common import graph_label, run_config
from .subgraph import as_node

__all__ = [
    "COMPUTE_FIELDS",
    "DEFAULT_MODEL",
    "DEFAULT_VERIFIER",
    "GRAPH_CACHE_SIZE",
    "STRATEGY_DEFAULTS",
    "ClientRefused",
    "as_node",
    "beam_search",
    "best_of_n",
    "dvts",
    "example_policy",
    "hybrid",
    "revision",
    "router",
    "tighten",
    "workflow",
]

_LOG = logging.getLogger(__name__)

DEFAULT_MODEL = EXAMPLE_MODEL  # the defaults run offline, with the example policy
DEFAULT_VERIFIER = EXAMPLE_VERIFIER

STRATEGY_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "best_of_n": {"strategy": "best_of_n", "n": 8},
    "beam_search": {"strategy": "beam_search", "n": 8, "width": 2},
    "dvts": {"strategy": "dvts", "n": 8, "width": 2},
    "revision": {"strategy": "revision", "attempts": 4},
    "hybrid": {"strategy": "hybrid", "n": 8},
}
"""The spec each strategy graph of the server runs unless the assistant's ``strategy`` overrides fields."""


# ---------------------------------------------------------------------------------------------------
# Graph factories for LangGraph Server (langgraph.json)
# ---------------------------------------------------------------------------------------------------

GRAPH_CACHE_SIZE = 64
"""How many built graphs the server keeps (least recently used first out); ``TTC_GRAPH_CACHE_SIZE``
changes it. One graph is kept per distinct (graph, strategy, model, verifier, workflow)."""

COMPUTE_FIELDS = ("n", "max_rounds", "step_max_tokens", "lookahead", "attempts", "chains", "context", "max_tokens")
"""Strategy fields a client may lower but never raise above the operator's spec (they buy compute)."""

_OPERATOR_ONLY = {
    "workflows": "TTC_WORKFLOWS",
    "policy": "TTC_POLICY",
}
"""Settings that name server-side files: the operator's environment alone sets them."""

_CHOICES = {
    # key: (the operator's default, its env var, the allow-list env var)
    "model": ("TTC_MODEL", "TTC_ALLOWED_MODELS"),
    "verifier": ("TTC_VERIFIER", "TTC_ALLOWED_VERIFIERS"),
    "workflow": ("TTC_WORKFLOW", "TTC_ALLOWED_WORKFLOWS"),
}

_ROUTER_INTERNALS = ("estimate", "action")
"""Router input keys for batch allocation inside one process; a Server client may not send them."""


class ClientRefused(ValueError):
    """A LangGraph Server client asked for something the operator did not allow (the message says what)."""


_CACHE: OrderedDict[str, Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _configurable(config: RunnableConfig | None) -> Mapping[str, Any]:
    return (config or {}).get("configurable") or {}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_operator_only(config: RunnableConfig | None) -> None:
    configurable = _configurable(config)
    for key, env in _OPERATOR_ONLY.items():
        if configurable.get(key) is not None:
            raise ClientRefused(f"configurable {key!r}: set by the server's operator ({env}), not by a client")


def _choice(config: RunnableConfig | None, key: str, default: str | None) -> str | None:
    """The client's ``key`` if the operator allow-listed it, else the operator's; ClientRefused otherwise."""
    env, allowed_env = _CHOICES[key]
    operator = _env(env) or default
    asked = _configurable(config).get(key)
    if asked is None:
        return operator
    allowed = {name.strip() for name in (_env(allowed_env) or "").split(",") if name.strip()}
    if operator is not None:
        allowed.add(operator)
    if isinstance(asked, str) and asked in allowed:
        return asked
    if key == "workflow" and "*" in allowed and isinstance(asked, str):
        return asked  # any workflow of the operator's own file
    listed = ", ".join(sorted(allowed - {"*"})) or "none"
    raise ClientRefused(
        f"configurable {key!r}: {_shown(asked)} is not allowed on this server (allowed: {listed}; "
        f"the operator lists more in {allowed_env})"
    )


def _as_budget(raw: Any, where: str) -> Budget | None:
    if raw is None or isinstance(raw, Budget):
        return raw
    try:
        if isinstance(raw, str):
            raw = json.loads(raw)
        return Budget.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        problems = (
            "; ".join(f"{'.'.join(map(str, e['loc'])) or '(itself)'}: {e['msg']}" for e in exc.errors())
            if isinstance(exc, ValidationError)
            else "not JSON"
        )
        error = ValueError if where == "TTC_BUDGET" else ClientRefused
        raise error(f"{where}: not a budget ({problems})") from None


def tighten(ceiling: Budget | None, asked: Budget | None) -> Budget | None:
    """``asked`` under ``ceiling``: per field the smaller limit; a field one leaves unlimited takes the other's.

    A client's budget can therefore only tighten the operator's, never loosen it (``{}`` is the ceiling).
    """
    if asked is None:
        return ceiling
    if ceiling is None:
        return asked
    limits: dict[str, Any] = {}
    for name in Budget.model_fields:
        mine, theirs = getattr(ceiling, name), getattr(asked, name)
        limits[name] = theirs if mine is None else mine if theirs is None else min(mine, theirs)
    return Budget(**limits)


def _ceiling(config: RunnableConfig | None, operator: Budget | None = None) -> Budget | None:
    """The operator's budget (``operator`` under ``TTC_BUDGET``) tightened by the client's ``configurable``."""
    ceiling = tighten(_as_budget(_env("TTC_BUDGET"), "TTC_BUDGET"), operator)
    return tighten(ceiling, _as_budget(_configurable(config).get("budget"), "configurable 'budget'"))


class _ClientGuard:
    """Mixed into a compiled graph's class: every run's input is checked against the operator's ceiling.

    The input ``budget`` is tightened under the ceiling (the operator's budget and the assistant's
    ``configurable`` one), router-internal keys are refused, and so are ``Command`` inputs and state
    updates (these graphs take none: editing a thread's ledger would reset its spend).
    """

    _ttc_operator: ClassVar[Budget | None] = None

    def _ttc_input(self, input: Any, config: RunnableConfig | None) -> Any:
        if input is None:
            return None
        if not isinstance(input, Mapping):
            raise ClientRefused(f"input: a mapping with a `question` is expected, not {type(input).__name__}")
        for key in _ROUTER_INTERNALS:
            if input.get(key) is not None:
                raise ClientRefused(f"input {key!r}: not accepted from a client")
        budget = tighten(_ceiling(config, self._ttc_operator), _as_budget(input.get("budget"), "input 'budget'"))
        return {**input, "budget": budget}

    # invoke/ainvoke too, not only the streams they usually run on: a strategy graph's unobserved
    # ainvoke runs its nodes directly (ttc_agents._routing.direct), without astream. Checking twice
    # is harmless: a budget already under the ceiling is its own tightening.
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return super().invoke(self._ttc_input(input, config), config, **kwargs)  # type: ignore[misc]

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await super().ainvoke(self._ttc_input(input, config), config, **kwargs)  # type: ignore[misc]

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return super().stream(self._ttc_input(input, config), config, **kwargs)  # type: ignore[misc]

    def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return super().astream(self._ttc_input(input, config), config, **kwargs)  # type: ignore[misc]

    def update_state(self, *args: Any, **kwargs: Any) -> Any:
        raise ClientRefused("this graph takes no state updates from clients")

    async def aupdate_state(self, *args: Any, **kwargs: Any) -> Any:
        raise ClientRefused("this graph takes no state updates from clients")

    def bulk_update_state(self, *args: Any, **kwargs: Any) -> Any:
        raise ClientRefused("this graph takes no state updates from clients")

    async def abulk_update_state(self, *args: Any, **kwargs: Any) -> Any:
        raise ClientRefused("this graph takes no state updates from clients")


def _guarded(graph: Any, operator: Budget | None = None) -> Any:
    """``graph`` as an instance of a subclass that mixes in :class:`_ClientGuard` (copies keep the class)."""
    cls = type(graph)
    guarded = type(f"Guarded{cls.__name__}", (_ClientGuard, cls), {"_ttc_operator": operator, "__module__": __name__})
    attrs = {k: v for k, v in graph.__dict__.items() if k != "__orig_class__"}
    return guarded(**attrs)  # as Pregel.copy does


def _cache_size() -> int:
    raw = _env("TTC_GRAPH_CACHE_SIZE")
    try:
        size = int(raw) if raw is not None else GRAPH_CACHE_SIZE
    except ValueError:
        raise ValueError(f"TTC_GRAPH_CACHE_SIZE: not an integer: {raw!r}") from None
    if size < 1:
        raise ValueError(f"TTC_GRAPH_CACHE_SIZE: must be at least 1, got {size}")
    return size


def _cached(key: Mapping[str, Any], build: Callable[[], Any]) -> Any:
    """The graph built for ``key``, from a least-recently-used cache of ``TTC_GRAPH_CACHE_SIZE`` graphs."""
    text = json.dumps(key, sort_keys=True, default=str)
    with _CACHE_LOCK:
        if text in _CACHE:
            _CACHE.move_to_end(text)
            return _CACHE[text]
    graph = build()  # outside the lock: a build may read files
    with _CACHE_LOCK:
        graph = _CACHE.setdefault(text, graph)
        _CACHE.move_to_end(text)
        size = _cache_size()
        while len(_CACHE) > size:
            _CACHE.popitem(last=False)
        return graph


def _traced(graph: Any, label: str, workflow: str | None = None, operator: Budget | None = None) -> Any:
    config = run_config(label, workflow=workflow)
    config.pop("run_name", None)  # the server names runs after the graph id
    return _guarded(graph.with_config(config), operator)


def _operator_spec(name: str) -> dict[str, Any]:
    raw = _env(f"TTC_{name.upper()}_SPEC")
    overrides = json.loads(raw) if raw is not None else {}
    return {**STRATEGY_DEFAULTS[name], **dict(overrides), "strategy": name}


def _client_spec(name: str, config: RunnableConfig | None, model: str) -> StrategySpec:
    """The operator's spec for ``name`` with the client's ``strategy`` fields, compute fields capped."""
    operator = parse_strategy(_operator_spec(name))
    asked = _configurable(config).get("strategy")
    if asked is None:
        return operator
    if isinstance(asked, str):
        try:
            asked = json.loads(asked)
        except ValueError:
            raise ClientRefused("configurable 'strategy': not JSON") from None
    if not isinstance(asked, Mapping):
        raise ClientRefused("configurable 'strategy': a mapping of strategy fields is expected")
    fields = {**operator.model_dump(), **dict(asked), "strategy": name}
    for field in COMPUTE_FIELDS:
        if field not in fields or not isinstance(fields[field], int | float) or isinstance(fields[field], bool):
            continue
        cap = getattr(operator, field, None)
        if cap is None and field == "max_tokens":
            cap = ModelSpec(name=model).max_tokens
        if cap is not None:
            fields[field] = min(fields[field], cap)
    try:
        return parse_strategy(fields)
    except (ValueError, ValidationError) as exc:
        detail = (
            "; ".join(f"{'.'.join(map(str, e['loc'][1:] or e['loc']))}: {e['msg']}" for e in exc.errors())
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise ClientRefused(f"configurable 'strategy': {detail}") from None


def _strategy_graph(name: str, config: RunnableConfig | None) -> Any:
    from ttc_agents.graphs import build_strategy_graph
    from ttc_agents.verifiers._factory import make_verifier

    _check_operator_only(config)
    model = str(_choice(config, "model", DEFAULT_MODEL))
    verifier = str(_choice(config, "verifier", DEFAULT_VERIFIER))
    spec = _client_spec(name, config, model)
    _ceiling(config)  # a client budget that is not a budget is refused before the run
    key = {"graph": name, "spec": spec.model_dump(), "model": model, "verifier": verifier}

    def build() -> Any:
        graph = build_strategy_graph(spec, model=model, verifier=make_verifier(verifier))
        return _traced(graph, name)

    return _cached(key, build)


def router(config: RunnableConfig) -> Any:
    """The router graph: policy ``TTC_POLICY`` (else :func:`example_policy`), model and verifier from the env."""
    from ttc_agents.graphs.router import build_router_graph
    from ttc_agents.verifiers._factory import make_verifier

    _check_operator_only(config)
    policy_path = _env("TTC_POLICY")
    model = str(_choice(config, "model", DEFAULT_MODEL))
    verifier = str(_choice(config, "verifier", DEFAULT_VERIFIER))
    _ceiling(config)
    key = {"graph": "router", "policy": policy_path, "model": model, "verifier": verifier}

    def build() -> Any:
        if policy_path is not None:
            policy = Policy.load(policy_path)
            models: dict[str, ModelSpec | str] | None = None
        else:
            policy = example_policy(model, verifier)
            models = {model: ModelSpec(name=model, max_tokens=128)}
        graph = build_router_graph(policy, models=models, verifier=make_verifier(verifier), verifier_name=verifier)
        return _traced(graph, "router")

    return _cached(key, build)


def workflow(config: RunnableConfig) -> Any:
    """The workflow ``TTC_WORKFLOW`` of ``TTC_WORKFLOWS`` (without them: the offline :func:`router`)."""
    from ttc_agents._apps.workflow import WorkflowConfigError, load_workflow

    _check_operator_only(config)
    path = _env("TTC_WORKFLOWS")
    name = _choice(config, "workflow", None)
    if path is None and name is None:
        return router(config)
    if path is None or name is None:
        raise ValueError("the operator sets both TTC_WORKFLOWS (the YAML file) and TTC_WORKFLOW (the workflow's name)")
    file = Path(path)
    _ceiling(config)

    def build() -> Any:
        try:
            bundle = load_workflow(file, name)
        except WorkflowConfigError as exc:
            _LOG.error("workflow %r of TTC_WORKFLOWS does not load: %s", name, exc)
            raise ValueError(
                f"workflow {name!r}: the server's workflow file does not load (see the server log)"
            ) from None
        graph = bundle.build(base_dir=file.parent)
        return _traced(graph, graph_label(graph), workflow=name, operator=bundle.budget)

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
