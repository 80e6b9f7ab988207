"""LangGraph state machines of ttc-agents: one module per strategy.

Every builder returns a compiled LangGraph graph (a Runnable: ``ainvoke``, ``abatch``,
``astream``, and the sync ``invoke``, ``batch``, ``stream``, also inside a running event loop; usable
as a subgraph of an async or a sync parent). Input: ``{"question": str, "context"?: [messages],
"budget"?: Budget}``. Output: ``answer``, ``candidates`` (with scores), ``ledger``,
``stopped_by`` and the ``strategy`` spec.

- :func:`build_strategy_graph`: the graph of whichever strategy spec it is given;
- :func:`build_best_of_n_graph`, :func:`build_beam_search_graph`, :func:`build_dvts_graph`,
  :func:`build_revision_graph`, :func:`build_hybrid_graph`, :func:`build_adaptive_graph`,
  :func:`build_particle_filter_graph`: one builder per strategy (one module each);
- :class:`StrategyInput`, :class:`StrategyOutput`, :class:`StrategyState`: the graphs' schemas;
- :mod:`ttc_agents.graphs.router`: the compute-optimal router (``ttc_agents.Router``,
  ``ttc_agents.build_router_graph``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from langgraph.graph.state import CompiledStateGraph

from ttc_agents._core.budget import Budget
from ttc_agents._core.specs import (
    AdaptiveSpec,
    BeamSearchSpec,
    BestOfNSpec,
    DVTSSpec,
    HybridSpec,
    ParticleFilterSpec,
    RevisionSpec,
    StrategySpec,
)
from ttc_agents._llm.gateway import Gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents._routing.moves import StrategyInput, StrategyOutput, StrategyState
from ttc_agents.graphs.adaptive import build_adaptive_graph
from ttc_agents.graphs.beam_search import build_beam_search_graph
from ttc_agents.graphs.best_of_n import build_best_of_n_graph
from ttc_agents.graphs.dvts import build_dvts_graph
from ttc_agents.graphs.hybrid import build_hybrid_graph
from ttc_agents.graphs.particle_filter import build_particle_filter_graph
from ttc_agents.graphs.revision import build_revision_graph
from ttc_agents.verifiers._base import ScoreFunction, Verifier

__all__ = [
    "StrategyInput",
    "StrategyOutput",
    "StrategyState",
    "build_adaptive_graph",
    "build_beam_search_graph",
    "build_best_of_n_graph",
    "build_dvts_graph",
    "build_hybrid_graph",
    "build_particle_filter_graph",
    "build_revision_graph",
    "build_strategy_graph",
]


def build_strategy_graph(
    spec: StrategySpec,
    *,
    model: ModelSpec | str,
    verifier: Verifier | ScoreFunction | None = None,
    gateway: Gateway | None = None,
    prompts: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]:
    """Compile the graph of whichever strategy ``spec`` describes."""
    builder = _BUILDERS.get(type(spec))
    if builder is None:
        raise TypeError(f"not a strategy spec: {spec!r}")
    return builder(spec, model=model, verifier=verifier, gateway=gateway, prompts=prompts, budget=budget)


_BUILDERS: dict[type, Callable[..., CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]]] = {
    BestOfNSpec: build_best_of_n_graph,
    BeamSearchSpec: build_beam_search_graph,
    DVTSSpec: build_dvts_graph,
    RevisionSpec: build_revision_graph,
    HybridSpec: build_hybrid_graph,
    AdaptiveSpec: build_adaptive_graph,
    ParticleFilterSpec: build_particle_filter_graph,
}
