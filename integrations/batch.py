"""Batch runs: many questions through one graph or workflow, streamed to JSON Lines, resumable.

::

    from pathlib import Path
    from ttc_agents import Budget, load_workflow
    from ttc_agents.integrations.batch import abatch, run_batch

    workflow = load_workflow("workflows.yaml", "math-support")
    summary = await run_batch(Path("questions.jsonl"), workflow, out="answers.jsonl",
                              max_concurrency=16, total_budget=Budget(max_usd=5))
    records = await abatch(["What is 2 + 3?", "What is 6 * 7?"], workflow)   # in memory, input order

The manual (input rows, the record format, the budget rules, the resume guarantee, the preflight,
exit statuses, memory) is the README's "Async batches" section. The parts live beside this module:
``_batch_input`` (reading and checking items), ``_batch_output`` (OUT, resume, the grant journal,
the lock), ``_batch_pool`` (the total budget), ``_batch_spend`` (every item's own ledger) and
``_batch_runner`` (the run; the router's windows go through :mod:`ttc_agents._routing.allocation`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ttc_agents._apps.workflow import Workflow
from ttc_agents._core.budget import Budget
from ttc_agents._llm.gateway import Gateway
from ttc_agents.graphs.router import Router

from ._batch_input import (
    BadInput,
    BatchInput,
    BatchInputError,
    BatchItem,
    InputItem,
    coerce_item,
    item_from_row,
    iter_entries,
    read_jsonl,
)
from ._batch_output import BatchOutputError, BatchRecord, PreviousRun, journal_path
from ._batch_pool import EXHAUSTED as EXHAUSTED
from ._batch_runner import (
    BatchAborted,
    BatchConfigError,
    BatchRun,
    BatchSummary,
    BatchTarget,
    RoutedTarget,
    SupportsAInvoke,
    preflight,
    run_batch_target,
)
from ._batch_spend import MaxTokensIgnored, TappedGateway, tapped_gateway

__all__ = [
    "BadInput",
    "BatchAborted",
    "BatchConfigError",
    "BatchInputError",
    "BatchItem",
    "BatchOutputError",
    "BatchRecord",
    "BatchSummary",
    "BatchTarget",
    "MaxTokensIgnored",
    "RoutedTarget",
    "SupportsAInvoke",
    "abatch",
    "item_from_row",
    "journal_path",
    "preflight",
    "read_jsonl",
    "run_batch",
    "run_batch_target",
]


def _resolve(target: Workflow | Router | SupportsAInvoke, gateway: Gateway | None, base_dir: Any) -> BatchTarget:
    if isinstance(target, Workflow):
        gateway = tapped_gateway(gateway)
        per_item = None if target.budget.unlimited else target.budget
        if target.policy is not None:
            router = target.router(gateway=gateway, base_dir=base_dir)
            unit = target.budget_unit or router.unit
            return BatchTarget(router.graph, router, per_item, target.batch_budget, unit, tapped=True)
        graph = target.build(gateway=gateway, base_dir=base_dir)
        return BatchTarget(graph, None, per_item, target.batch_budget, tapped=True)
    if isinstance(target, Router):
        budget = target.ctx.budget
        per_item = None if budget is None or budget.unlimited else budget
        tapped = isinstance(getattr(target.ctx, "gateway", None), TappedGateway)
        return BatchTarget(target.graph, target, per_item, None, target.unit, tapped=tapped)
    if callable(getattr(target, "ainvoke", None)):
        return BatchTarget(target)
    raise TypeError(f"expected a Workflow, a Router or a graph with ainvoke, got {type(target).__name__}")


async def run_batch(
    items: BatchInput,
    target: Workflow | Router | SupportsAInvoke,
    *,
    out: str | os.PathLike[str],
    max_concurrency: int = 8,
    per_item_budget: Budget | None = None,
    total_budget: Budget | None = None,
    progress: bool = True,
    resume: bool = True,
    retry_errors: bool = False,
    strict: bool = False,
    policy_window: int = 256,
    gateway: Gateway | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> BatchSummary:
    """Answer every item with ``target`` and stream one JSON record per item to ``out``.

    ``items``: a JSONL file as a path object, or an iterable / async iterable of :class:`BatchItem`,
    question strings or rows. ``target``: a :class:`~ttc_agents._apps.workflow.Workflow` (built with
    ``gateway`` and ``base_dir``), a :class:`~ttc_agents.graphs.router.Router`, or any compiled graph.
    ``per_item_budget`` and ``total_budget`` default to the workflow's ``budget`` and
    ``batch_budget``. ``resume`` skips ids already recorded in ``out`` (``retry_errors`` redoes error
    records); without it ``out`` is overwritten (once the run writes its first record). ``strict``
    fails on the first bad input line instead of writing an error record. A workflow is checked
    first (:func:`preflight`). Raises :class:`BatchConfigError` (and other errors of the input, OUT
    or the configuration) before anything is written, :class:`BatchAborted` when the run stopped
    after it started. See the module docstring for the record format, the budget rules and the
    resume guarantee.
    """
    if isinstance(items, str | bytes):
        raise TypeError("pass a JSONL file as a Path (a plain string would be read as characters)")
    resolved = _resolve(target, gateway, base_dir)
    check: Callable[[], None] | None = None
    if isinstance(target, Workflow):
        workflow = target

        def check() -> None:
            preflight(
                workflow,
                gateway=gateway,
                per_item_budget=per_item_budget if per_item_budget is not None else resolved.per_item,
                total_budget=total_budget if total_budget is not None else resolved.total,
            )

    return await run_batch_target(
        items,
        resolved,
        out=out,
        max_concurrency=max_concurrency,
        per_item_budget=per_item_budget,
        total_budget=total_budget,
        progress=progress,
        resume=resume,
        retry_errors=retry_errors,
        strict=strict,
        policy_window=policy_window,
        check=check,
    )


async def abatch(
    items: Iterable[InputItem],
    target: Workflow | Router | SupportsAInvoke,
    *,
    max_concurrency: int = 8,
    per_item_budget: Budget | None = None,
    total_budget: Budget | None = None,
    progress: bool = False,
    gateway: Gateway | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> list[BatchRecord]:
    """Answer ``items`` in memory and return their records in input order (no file, no resume).

    The same rules as :func:`run_batch`: bounded concurrency, per-item and total budgets, a
    failing item gives an error record (``"error"`` key) in its place instead of raising.
    """
    if isinstance(items, str | bytes):
        raise TypeError("pass a list of questions, not one string")
    listed = list(items)
    records: list[BatchRecord | None] = [None] * len(listed)

    def keep(line: int, record: BatchRecord) -> None:
        records[line - 1] = record

    resolved = _resolve(target, gateway, base_dir)
    batch = BatchRun(
        resolved,
        keep,
        max_concurrency=max_concurrency,
        per_item=per_item_budget if per_item_budget is not None else resolved.per_item,
        total=total_budget if total_budget is not None else resolved.total,
        previous=PreviousRun(),
        strict=False,
        expected=len(listed),
        policy_window=max(len(listed), 1),
        summary=BatchSummary(),
    )
    # Positions, not the items' own lines, say where each record goes.
    positioned = [replace(coerce_item(raw, i), line=i) for i, raw in enumerate(listed, start=1)]
    await batch.run(iter_entries(positioned), where="item", progress=progress)
    missing = [i for i, record in enumerate(records, start=1) if record is None]
    if missing:  # every item writes exactly one record; this would be a bug
        raise RuntimeError(f"no record for items {missing}")
    return [record for record in records if record is not None]
