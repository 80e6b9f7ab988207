"""Parallel x sequential: P revision chains of S attempts under one budget of n = P x S.

The sequential/parallel ratio S/P is the hyperparameter: the paper found easy questions want
mostly sequential revisions and hard ones a mix. This is the revision graph with the chain shape
derived from ``n`` and ``sequential_ratio``.
"""

from __future__ import annotations

from collections.abc import Mapping

from langgraph.graph.state import CompiledStateGraph

from ttc_agents._core.budget import Budget
from ttc_agents._core.specs import HybridSpec
from ttc_agents._llm.gateway import Gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents._routing.moves import StrategyInput, StrategyOutput, StrategyState
from ttc_agents.graphs.revision import build_revision_graph
from ttc_agents.verifiers._base import ScoreFunction, Verifier

__all__ = ["build_hybrid_graph"]


def build_hybrid_graph(
    spec: HybridSpec,
    *,
    model: ModelSpec | str,
    verifier: Verifier | ScoreFunction | None = None,
    gateway: Gateway | None = None,
    prompts: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]:
    """Compile the hybrid graph: ``spec.shape`` = (P chains, S attempts each)."""
    graph: CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput] = build_revision_graph(
        spec.as_revision(),
        model=model,
        verifier=verifier,
        gateway=gateway,
        prompts=prompts,
        budget=budget,
        name="hybrid",
    )
    return graph
