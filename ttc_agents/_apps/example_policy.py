"""A small hand-written policy for ``scripted/arith`` that makes the router's behaviour visible offline
(LangGraph Server's default router, the examples and the demo)."""

from __future__ import annotations

from ttc_agents._core.specs import BeamSearchSpec, BestOfNSpec
from ttc_agents._routing.policy import Cost, Policy, PolicyAction, PolicyEntry

__all__ = ["EXAMPLE_MODEL", "EXAMPLE_VERIFIER", "example_policy"]

EXAMPLE_MODEL = "scripted/arith"
"""The offline scripted model the example policy is written for."""
EXAMPLE_VERIFIER = "arithmetic"
"""The verifier the example policy names."""


def example_policy(model: str = EXAMPLE_MODEL, verifier: str = EXAMPLE_VERIFIER) -> Policy:
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
