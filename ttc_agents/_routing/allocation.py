"""One total budget over many questions: estimate each, allocate by the policy, run each with its share.

    estimate every question (its probe's spend counts against the total)
      -> allocate_budgets: the policy's greedy marginal gain over the bins' accuracy-vs-cost curves
      -> run every question with its allocated setting and its share (probe included) as a hard limit

:meth:`Router.abatch <ttc_agents.graphs.router.Router.abatch>` runs it over one list, the batch
runner (:mod:`ttc_agents.integrations.batch`) over every window of a file under a pooled total.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ttc_agents._core.budget import Budget, BudgetUnit
from ttc_agents._routing.difficulty import DifficultyEstimate
from ttc_agents._routing.policy import Cost, Policy, PolicyEntry, allocate_budgets, entry_cost

__all__ = ["Allocation", "allocate", "bounded", "estimate_allocate_run", "probe_cost"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Allocation:
    """One question's share of a total: the setting it runs (None: it answers from its probe samples
    alone), what its probe spent and its whole share, probe included, both in the allocation's unit."""

    entry: PolicyEntry | None
    probe: float
    share: float

    @property
    def extra(self) -> float:
        """What the question may spend beyond its probe (0 without an entry)."""
        return self.share - self.probe

    def budget(self, unit: BudgetUnit) -> Budget:
        """The question's hard budget: its share in ``unit`` (at least one sample or token)."""
        return Budget.of_unit(unit, self.share)


def probe_cost(estimate: DifficultyEstimate, unit: BudgetUnit) -> float:
    """What the estimate's probe spent, in ``unit`` (0 when it carries no spend)."""
    return 0.0 if estimate.spent is None else Cost.of(estimate.spent.total).in_unit(unit)


def allocate(
    estimates: Sequence[DifficultyEstimate], policy: Policy, total: float, unit: BudgetUnit
) -> list[Allocation]:
    """Split ``total`` (in ``unit``, the probes' spend included) over the estimated questions by
    :func:`~ttc_agents._routing.policy.allocate_budgets`; a best-of-N setting reuses its probe samples
    (:func:`~ttc_agents._routing.policy.entry_cost`). The shares never sum past ``total``."""
    probes = [probe_cost(estimate, unit) for estimate in estimates]
    if not estimates:
        return []
    entries = allocate_budgets([e.bin for e in estimates], policy, total, unit, probe_costs=probes)
    return [
        Allocation(entry, probe, probe if entry is None else entry_cost(policy, entry, unit, probe))
        for entry, probe in zip(entries, probes, strict=True)
    ]


async def bounded(coroutines: Iterable[Awaitable[R]], max_concurrency: int) -> list[R]:
    """Run ``coroutines``, at most ``max_concurrency`` at a time, results in order; when one raises,
    the others still finish before the first exception is raised."""
    limit = asyncio.Semaphore(max_concurrency)

    async def one(coroutine: Awaitable[R]) -> R:
        async with limit:
            return await coroutine

    results = await asyncio.gather(*(one(c) for c in coroutines), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)  # type: ignore[arg-type]  # no exception left


async def estimate_allocate_run(
    items: Sequence[T],
    *,
    estimate: Callable[[T], Awaitable[DifficultyEstimate | None]],
    run: Callable[[T, DifficultyEstimate, Allocation], Awaitable[R]],
    policy: Policy,
    unit: BudgetUnit,
    total: float | Callable[[float], float],
    max_concurrency: int,
) -> list[R]:
    """Estimate every item (``estimate``: its :class:`DifficultyEstimate` with the probe's spend in
    ``spent``, or None for an item that is out: it already has its outcome), allocate ``total``
    over the estimated ones, then ``run`` each with its :class:`Allocation`; results in order.

    ``total`` is in ``unit`` and includes the probes' spend; a callable gets the probes' summed
    spend once every estimate is in (a total that depends on what the probes left, as a pooled
    batch budget does). At most ``max_concurrency`` estimates, then runs, at a time.
    """
    estimated: list[Any] = await bounded((estimate(item) for item in items), max_concurrency)
    kept = [(item, e) for item, e in zip(items, estimated, strict=True) if e is not None]
    estimates = [e for _, e in kept]
    amount = total(sum(probe_cost(e, unit) for e in estimates)) if callable(total) else total
    allocations = allocate(estimates, policy, amount, unit)
    return await bounded((run(item, e, a) for (item, e), a in zip(kept, allocations, strict=True)), max_concurrency)
