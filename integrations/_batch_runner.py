"""The batch runner: items with bounded concurrency under per-item and total budgets, a record for
every item, the router's windows allocated by the policy (see :mod:`ttc_agents.integrations.batch`)."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from ttc_agents._apps.workflow import Workflow
from ttc_agents._core.answers import answers_equivalent
from ttc_agents._core.budget import UNIT_FIELDS, Budget, BudgetUnit, Ledger, Usage
from ttc_agents._llm.gateway import Gateway, get_default_gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents._routing.allocation import Allocation, estimate_allocate_run
from ttc_agents._routing.difficulty import DifficultyEstimate, DifficultyEstimator
from ttc_agents._routing.moves import StrategyState
from ttc_agents._routing.policy import Policy

from ._batch_input import (
    BadInput,
    BatchInput,
    BatchInputError,
    BatchItem,
    IdCheck,
    count_pending,
    iter_entries,
)
from ._batch_output import (
    BatchRecord,
    FileSink,
    GrantJournal,
    PreviousRun,
    Sink,
    journal_path,
    lock_output,
    scan_output,
)
from ._batch_pool import (
    EXHAUSTED,
    INTEGER_FIELDS,
    POOLED_FIELDS,
    BudgetPool,
    Grant,
    make_budget,
    pooled_amounts,
)
from ._batch_spend import (
    ITEM_SPEND,
    ItemSpend,
    item_ignored_max_tokens,
    item_overran,
    spend_on_exception,
)

__all__ = [
    "BatchAborted",
    "BatchConfigError",
    "BatchRun",
    "BatchSummary",
    "BatchTarget",
    "RoutedTarget",
    "SupportsAInvoke",
    "preflight",
    "run_batch_target",
]


class BatchConfigError(ValueError):
    """A configuration error found before the batch fanned out (the preflight, or the first item
    failing with an error every item would hit); nothing was written to OUT."""


class BatchAborted(RuntimeError):
    """The run stopped before its end on an error that is not one item's (OUT could not be
    written, for instance). The records written so far stay; the same command resumes."""


class SupportsAInvoke(Protocol):
    """Anything run like a compiled graph: ``await graph.ainvoke({"question", ...})`` -> a mapping."""

    def ainvoke(self, input: Any, config: Any = None) -> Awaitable[Any]: ...


@dataclass(slots=True)
class BatchSummary:
    """What a batch run did. ``graded``/``correct`` cover every item of OUT (earlier runs too)."""

    out: str | None = None
    answered: int = 0
    errors: int = 0
    exhausted: int = 0
    bad_input: int = 0
    skipped: int = 0
    errors_before: int = 0
    graded: int = 0
    correct: int = 0
    usage: Usage = field(default_factory=Usage)
    usage_before: Usage = field(default_factory=Usage)
    seconds: float = 0.0

    @property
    def written(self) -> int:
        """Records written by this run (answered plus errors)."""
        return self.answered + self.errors

    @property
    def failed(self) -> int:
        """Items of the input whose last record is an error: written now, or earlier and skipped."""
        return self.errors + self.errors_before

    @property
    def accuracy(self) -> float | None:
        """Correct over graded, None when nothing was graded."""
        return self.correct / self.graded if self.graded else None

    @property
    def items_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``ttc batch --json`` prints it."""
        return {
            "out": self.out,
            "answered": self.answered,
            "errors": self.errors,
            "exhausted": self.exhausted,
            "bad_input": self.bad_input,
            "skipped": self.skipped,
            "errors_before": self.errors_before,
            "failed": self.failed,
            "graded": self.graded,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "usage": self.usage.as_dict(),
            "usage_before": self.usage_before.as_dict(),
            "seconds": self.seconds,
            "items_per_second": self.items_per_second,
        }


class RoutedTarget(Protocol):
    """What a batch needs of a router to allocate a total budget: the policy, the difficulty
    estimator (with its context) and the graph (a :class:`~ttc_agents.graphs.router.Router`, or a
    stand-in that runs them elsewhere, such as the Ray engine's)."""

    @property
    def policy(self) -> Policy: ...

    @property
    def ctx(self) -> Any: ...

    @property
    def estimator(self) -> DifficultyEstimator: ...

    @property
    def graph(self) -> SupportsAInvoke: ...


@dataclass(frozen=True, slots=True)
class BatchTarget:
    """What a batch runs: the graph, the router when items are allocated a total budget by the
    policy, the default per-item and total budgets, and the budget unit of the allocation.
    ``tapped``: the graph's model calls go through a gateway that books them in each item's own
    ledger too (:func:`run_batch` builds workflows so), so a failed item's spend is known."""

    graph: SupportsAInvoke
    router: RoutedTarget | None = None
    per_item: Budget | None = None
    total: Budget | None = None
    unit: BudgetUnit | None = None
    tapped: bool = False


_CONFIG_STATUS = frozenset({401, 403, 404})


def _every_item_would_fail(exc: BaseException) -> bool:
    """An error that is the configuration's, not the item's: a bad key or a missing model (HTTP
    401, 403, 404), a provider LiteLLM does not know, a configuration error of the library."""
    if isinstance(exc, BatchConfigError):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status in _CONFIG_STATUS:
        return True
    return "LLM Provider NOT provided" in str(exc)


def preflight(
    workflow: Workflow,
    *,
    gateway: Gateway | None = None,
    per_item_budget: Budget | None = None,
    total_budget: Budget | None = None,
) -> None:
    """Check a workflow before a batch fans out, without any model call: every model has a
    LiteLLM provider (or a resolver prefix such as ``local/``), and a USD budget has a price for
    every model. Raises :class:`BatchConfigError` naming the model and what is missing."""
    from ttc_agents._llm.litellm import litellm
    from ttc_agents._llm.providers import register_providers

    register_providers()
    gateway = gateway if gateway is not None else get_default_gateway()
    specs = dict(workflow.models)
    kind, colon, judge = workflow.verifier.partition(":")
    if colon and kind.strip().lower() in ("prm", "orm") and judge.strip():
        name = judge.strip()
        if not any(spec.name == name for spec in specs.values()):
            specs[f"verifier {workflow.verifier}"] = ModelSpec(name=name)
    budgets = [b for b in (per_item_budget, total_budget) if b is not None]
    usd = any(b.max_usd is not None for b in budgets)
    for key, spec in specs.items():
        label = f"model {key!r} ({spec.name})" if not key.startswith("verifier ") else f"the {key}"
        if spec.group is None and not (spec.name.partition("/")[0] in gateway.resolvers and spec.api_base is None):
            try:
                litellm.get_llm_provider(spec.name, api_base=spec.api_base)
            except Exception as exc:
                message = " ".join(str(exc).split())[:200]
                raise BatchConfigError(f"{label}: LiteLLM knows no provider for it ({message})") from None
        if usd and None in gateway.prices(spec):
            raise BatchConfigError(
                f"{label}: a USD budget is set but the model has no price; give its usd_per_input_token "
                "and usd_per_output_token, or budget in tokens"
            )


def _policy_unit(router: RoutedTarget | None, preferred: BudgetUnit | None, total: Budget | None) -> BudgetUnit | None:
    """The unit the router's batch allocation works in: the workflow's when the total limits it."""
    if router is None or total is None:
        return None
    units: tuple[BudgetUnit, ...] = ("tokens", "usd", "samples", "flops")
    limited = [unit for unit in units if getattr(total, UNIT_FIELDS[unit]) is not None]
    if not limited:
        return None
    return preferred if preferred in limited else limited[0]


def _usage_of(result: Any) -> Usage | None:
    if not isinstance(result, Mapping):
        raise TypeError(f"the graph returned {type(result).__name__}, expected a mapping with 'answer'")
    ledger = result.get("ledger")
    return None if ledger is None else ledger.total


def _starved(usage: Usage | None, stopped_by: Any) -> bool:
    """Whether a run's share of the total could not pay for a single call (it spent nothing, and a
    pooled limit stopped it)."""
    return usage is not None and usage.calls == 0 and usage.samples == 0 and stopped_by in POOLED_FIELDS


def _grade(answer: str | None, reference: str) -> bool:
    if answer is None:
        return False
    try:
        return answers_equivalent(answer, reference)
    except Exception:
        return False


def _error_text(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass(frozen=True, slots=True)
class _Probed:
    """A router item after its difficulty estimate."""

    item: BatchItem
    estimate: DifficultyEstimate
    spent: Usage
    started: float


class _Progress:
    def __init__(self, enabled: bool, total: int | None) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="q", dynamic_ncols=True, smoothing=0.05)

    def update(self, usage: Usage, errors: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"{usage.samples} samples, {usage.total_tokens:,} tok, ${usage.usd:.4f}, {errors} err", refresh=False
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


RecordKind = Literal["answered", "error", "exhausted", "bad"]


class BatchRun:
    """One run: reads items, runs them with bounded concurrency, hands every record to the sink."""

    def __init__(
        self,
        target: BatchTarget,
        sink: Sink,
        *,
        max_concurrency: int,
        per_item: Budget | None,
        total: Budget | None,
        previous: PreviousRun,
        strict: bool,
        expected: int | None,
        policy_window: int,
        summary: BatchSummary,
        journal: GrantJournal | None = None,
        carried: Mapping[str, float] | None = None,
        canary: bool = False,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if policy_window < 1:
            raise ValueError(f"policy_window must be at least 1, got {policy_window}")
        self.target = target
        self.sink = sink
        self.max_concurrency = max_concurrency
        self.per_item = per_item
        self.done = previous.done
        self.failed_before = previous.failed
        self.strict = strict
        self.pending = expected
        self.policy_window = policy_window
        self.summary = summary
        self.unit = _policy_unit(target.router, target.unit, total)
        self.pool: BudgetPool | None = None
        self.journal: GrantJournal | None = None
        if total is not None and not total.unlimited:
            spent = pooled_amounts(previous.usage)
            for name, amount in previous.charged.items():
                spent[name] = spent.get(name, 0.0) + amount
            for name, amount in (carried or {}).items():
                spent[name] = spent.get(name, 0.0) + amount
            self.pool = BudgetPool(total, slots=max_concurrency, spent_before=spent)
            self.journal = journal
        # The first item runs alone; an error every item would hit stops the run (BatchConfigError).
        self.canary = canary
        self.canary_answered: asyncio.Event | None = None
        self.starved_spend: dict[str, dict[str, float]] = {}  # what a starved attempt spent, by id
        self.progress = _Progress(False, None)

    async def run(
        self,
        entries: AsyncIterator[BatchItem | BadInput],
        *,
        where: str,
        progress: bool,
        progress_total: int | None = None,
    ) -> None:
        self.progress = _Progress(progress, progress_total if progress_total is not None else self.pending)
        try:
            runnable = self._runnable(entries, where)
            if self.unit is not None:
                await self._run_routed_windows(runnable)
            else:
                await self._run_each(runnable)
        finally:
            self.progress.close()

    async def _runnable(self, entries: AsyncIterator[BatchItem | BadInput], where: str) -> AsyncIterator[BatchItem]:
        """The items to run: bad input becomes an error record (or stops a strict run), done ids are skipped."""
        ids = IdCheck(where)
        async for raw in entries:
            entry = ids.check(raw)
            if entry.id in self.done:
                self.summary.skipped += 1
                self.summary.errors_before += entry.id in self.failed_before
            elif isinstance(entry, BadInput):
                if self.strict:
                    raise BatchInputError(entry.error)
                self._write(
                    entry.line,
                    {"id": entry.id, "line": entry.line, "error": f"BatchInputError: {entry.error}"},
                    kind="bad",
                )
            else:
                yield entry

    # -- records ------------------------------------------------------------------------------

    def _write(self, line: int, record: BatchRecord, *, kind: RecordKind, usage: Usage | None = None) -> None:
        """Hand ``record`` to the sink, then count it: a record the sink did not take is not done
        (its exception stops the run)."""
        self.sink(line, record)
        if kind == "answered":
            self.summary.answered += 1
        else:
            self.summary.errors += 1
            self.summary.exhausted += kind == "exhausted"
            self.summary.bad_input += kind == "bad"
        if usage is not None:
            self.summary.usage += usage
        if self.journal is not None:
            self.journal.recorded(record["id"])
        self.progress.update(self.summary.usage, self.summary.errors)

    def _fail(
        self,
        item: BatchItem,
        error: str,
        *,
        spent: Usage | None = None,
        charged: Mapping[str, float] | None = None,
        ignored_max_tokens: bool = False,
        kind: RecordKind = "error",
    ) -> None:
        record: BatchRecord = {"id": item.id, "question": item.question, "error": error}
        if spent is not None:
            record["usage"] = spent.as_dict()
        if charged:
            record["charged"] = {k: int(v) if k in INTEGER_FIELDS else v for k, v in charged.items()}
        if ignored_max_tokens:
            record["max_tokens_ignored"] = True
        self._write(item.line, record, kind=kind, usage=spent)

    def _failed(
        self,
        item: BatchItem,
        exc: Exception,
        grant: Grant | None,
        spent: Usage | None,
        tally: ItemSpend | None,
        already_spent: Usage | None = None,
    ) -> None:
        """An item's exception: give its grant back with what it spent and write its error record,
        or, for the run's first item and an error every item would hit, stop the run."""
        before = already_spent or Usage()
        total = None if spent is None else before + spent
        if grant is not None and self.pool is not None:
            self.pool.release(grant, None if spent is None else pooled_amounts(spent))
        if self.canary and _every_item_would_fail(exc):
            if self.journal is not None and total is not None:  # paid, in no record: the journal keeps it
                seqs = self.journal.by_item.pop(item.id, [])
                for seq in seqs:
                    self.journal.end(seq, pooled_amounts(total) if seq == seqs[-1] else None)
            # (An unknown spend leaves the grant open in the journal: a resumed run counts it whole.)
            raise BatchConfigError(
                f"the first item (id {item.id!r}) failed with {_error_text(exc)}; every item would: "
                "nothing else was started and no record was written"
            ) from exc
        charged: dict[str, float] | None = None
        if total is None and grant is not None and self.pool is not None:
            charged = dict(grant.amounts)  # the real spend is unknown: the whole grant counts
            for name, amount in pooled_amounts(before).items():
                if name in charged:
                    charged[name] += amount
        self._fail(
            item,
            _error_text(exc),
            spent=total,
            charged=charged,
            ignored_max_tokens=item_ignored_max_tokens(exc, tally),
        )

    def _exhausted(self, item: BatchItem, starved: Grant | None = None) -> None:
        """The error record of an item the total could not fund (``starved``: its share was too small)."""
        assert self.pool is not None
        if starved is None:
            reason = self.pool.exhausted_reason()
        else:
            share = ", ".join(f"{name} {amount:g}" for name, amount in starved.amounts.items())
            reason = f"{EXHAUSTED} (its share, {share}, could not pay for one call)"
        self._fail(item, f"BatchBudgetExhausted: {reason}", kind="exhausted")

    async def _answered(
        self,
        item: BatchItem,
        result: Mapping[str, Any],
        usage: Usage | None,
        started: float,
        grant: Grant | None = None,
        tally: ItemSpend | None = None,
    ) -> None:
        answer = result.get("answer")
        record: BatchRecord = {
            "id": item.id,
            "question": item.question,
            "answer": answer,
            "stopped_by": result.get("stopped_by"),
            "usage": None if usage is None else usage.as_dict(),
            "strategy": result.get("strategy"),
        }
        if usage is None and grant is not None and self.pool is not None:
            record["charged"] = {k: int(v) if k in INTEGER_FIELDS else v for k, v in grant.amounts.items()}
        if item_overran(result, tally):
            record["max_tokens_ignored"] = True
        if result.get("trace") is not None:
            record["trace"] = result["trace"]
        correct: bool | None = None
        if item.answer is not None:
            correct = await asyncio.to_thread(_grade, answer, item.answer)
            record["correct"] = correct
        record["seconds"] = round(time.perf_counter() - started, 4)
        if item.metadata:
            record["metadata"] = item.metadata
        self._write(item.line, record, kind="answered", usage=usage)
        if correct is not None:
            self.summary.graded += 1
            self.summary.correct += int(correct)

    def _request(self, item: BatchItem, budget: Budget | None) -> dict[str, Any]:
        request: dict[str, Any] = {"question": item.question}
        if item.context is not None:
            request["context"] = item.context
        if budget is not None:
            request["budget"] = budget
        return request

    # -- a graph per item (a fixed strategy, or the router answering each question alone) -----

    async def _run_each(self, items: AsyncIterator[BatchItem]) -> None:
        slots = asyncio.Semaphore(self.max_concurrency)
        running: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            slots.release()
            if not task.cancelled() and task.exception() is not None:
                failures.append(cast(BaseException, task.exception()))

        try:
            async for item in items:
                await slots.acquire()
                if failures:
                    slots.release()
                    break
                task = asyncio.create_task(self._run_item(item))
                running.add(task)
                task.add_done_callback(finished)
                if self.canary:
                    # Fan out once the first item's model answered a call (or the item ended).
                    answered = self.canary_answered = asyncio.Event()
                    waiter = asyncio.ensure_future(answered.wait())
                    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    self.canary, self.canary_answered = False, None
                if failures:
                    break
        finally:
            # A strict stop, a failure, or a first Ctrl-C (cancellation) lets running items finish and write.
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        if failures:  # a record that could not be written, or the first item's configuration error
            raise failures[0]

    def _item_budget(self, grant: Grant, paid: Usage | None = None) -> Budget:
        """An item's hard budget: the per-item limits, with the pooled ones replaced by ``grant``
        (plus what the item already ``paid`` for, which its ledger counts again)."""
        fields: dict[str, float | None] = self.per_item.model_dump() if self.per_item is not None else {}
        before = pooled_amounts(paid) if paid is not None else {}
        for name, amount in grant.amounts.items():
            fields[name] = amount + before.get(name, 0.0)
        seconds = [s for s in (grant.seconds, fields.get("max_seconds")) if s is not None]
        fields["max_seconds"] = min(seconds) if seconds else None
        return make_budget(fields)

    async def _acquire(self, item: BatchItem, want: Budget | Mapping[str, float | None] | None) -> Grant | None:
        """A share of the total for ``item``, journaled before the item can spend any of it."""
        assert self.pool is not None
        grant = await self.pool.acquire(want)
        if grant is not None and self.journal is not None:
            try:
                seq = await self.journal.start(item.id, grant.amounts)
            except BaseException:
                self.pool.release(grant, None)
                raise
            grant = replace(grant, seq=seq)
        return grant

    async def _funded(self, item: BatchItem, attempt: Callable[[Grant], Awaitable[bool]]) -> None:
        """Run ``attempt`` under a share of the total. A share too small for one call (``attempt``
        returns False) is tried once more with all that is left, when nothing else runs; then the
        item is out of budget."""
        assert self.pool is not None
        want: Budget | Mapping[str, float | None] | None = self.per_item
        while True:
            grant = await self._acquire(item, want)
            if grant is None:
                self._exhausted(item)
                return
            if await attempt(grant):
                return
            if self.journal is not None:  # what the starved attempt spent is in no record
                seqs = self.journal.by_item.get(item.id, [])
                if grant.seq in seqs:
                    seqs.remove(grant.seq)
                self.journal.end(grant.seq, self.starved_spend.pop(item.id, None))
            if grant.whole:
                self._exhausted(item, grant)
                return
            want = dict.fromkeys(self.pool.limits, math.inf)

    async def _run_item(self, item: BatchItem) -> None:
        started = time.perf_counter()
        graph = self.target.graph
        if self.pool is None:
            await self._invoke(item, graph, self._request(item, self.per_item), None, started)
            return

        async def attempt(grant: Grant) -> bool:
            return await self._invoke(item, graph, self._request(item, self._item_budget(grant)), grant, started)

        await self._funded(item, attempt)

    async def _invoke(
        self,
        item: BatchItem,
        graph: SupportsAInvoke,
        request: dict[str, Any],
        grant: Grant | None,
        started: float,
        already_spent: Usage | None = None,
    ) -> bool:
        """Run one graph call and write its record; an exception becomes the item's error record,
        never the batch's. False, with nothing written, when ``grant`` could not pay for one call."""
        tally = ItemSpend(answered=self.canary_answered)
        token = ITEM_SPEND.set(tally)
        try:
            result = await graph.ainvoke(request)
            usage = _usage_of(result)
        except Exception as exc:
            ITEM_SPEND.reset(token)
            known = tally.ledger.total if self.target.tapped else spend_on_exception(exc)
            self._failed(item, exc, grant, known, tally, already_spent)
            return True
        except BaseException:
            ITEM_SPEND.reset(token)
            if grant is not None and self.pool is not None:
                self.pool.release(grant, pooled_amounts(tally.ledger.total) if self.target.tapped else None)
            raise
        ITEM_SPEND.reset(token)
        if grant is not None and self.pool is not None:
            if usage is None:
                self.pool.release(grant, None)
            else:
                spent = pooled_amounts(usage)
                if already_spent is not None:
                    before = pooled_amounts(already_spent)
                    spent = {name: amount - before[name] for name, amount in spent.items()}
                self.pool.release(grant, spent)
            if already_spent is None and _starved(usage, result.get("stopped_by")):
                if usage is not None:
                    self.starved_spend[item.id] = pooled_amounts(usage)
                return False
        await self._answered(item, result, usage, started, grant, tally)
        return True

    # -- the router under a total budget: estimate a window, allocate, run --------------------

    async def _run_routed_windows(self, items: AsyncIterator[BatchItem]) -> None:
        window: list[BatchItem] = []
        async for item in items:
            window.append(item)
            if len(window) >= self.policy_window:
                await self._run_window(window)
                window = []
        if window:
            await self._run_window(window)

    async def _run_window(self, window: list[BatchItem]) -> None:
        """Estimate every item of the window (the probes' spend comes off the total), allocate the
        window's share of what is left by the policy, run each item with its allocation."""
        assert self.pool is not None and self.unit is not None and self.target.router is not None
        # (No canary here: probing one item alone would change the shares the others probe with, so the
        # allocation would differ from the Ray engine's and from Router.abatch. The preflight still runs.)
        pool, unit = self.pool, self.unit
        probed: dict[str, _Probed] = {}

        async def estimate(item: BatchItem) -> DifficultyEstimate | None:
            found = await self._estimate(item)
            if found is None:
                return None
            probed[item.id] = found
            return found.estimate

        def total(probes: float) -> float:
            # The window's share of what is left, in proportion to the items still to run (when known).
            # The probes are paid already: they count in the allocation's total and in each entry's
            # cost (a best-of-N entry reuses its probe samples), and only the difference is acquired.
            left = max(0.0, pool.left(UNIT_FIELDS[unit]))
            share = left if self.pending is None else left * len(window) / max(self.pending, len(window))
            if self.pending is not None:
                self.pending = max(0, self.pending - len(window))
            return share + probes

        async def run(item: BatchItem, _: DifficultyEstimate, allocation: Allocation) -> None:
            await self._run_allocated(probed[item.id], allocation)

        await estimate_allocate_run(
            window,
            estimate=estimate,
            run=run,
            policy=self.target.router.policy,
            unit=unit,
            total=total,
            max_concurrency=self.max_concurrency,
        )

    async def _estimate(self, item: BatchItem) -> _Probed | None:
        """The item's difficulty estimate under a share of the total (None: an error record is written)."""
        assert self.pool is not None and self.target.router is not None
        router, pool = self.target.router, self.pool
        started = time.perf_counter()
        state: StrategyState = {"question": item.question, "context": item.context or []}
        probed: list[_Probed] = []

        async def attempt(grant: Grant) -> bool:
            ledger = Ledger(budget=self._item_budget(grant))
            tally = ItemSpend()
            token = ITEM_SPEND.set(tally)
            try:
                estimate = await router.estimator.estimate(router.ctx, state, ledger)
            except Exception as exc:
                ITEM_SPEND.reset(token)
                # The probe's ledger is ours: what it booked before the exception is what it spent.
                spent = ledger.total if not self.target.tapped else tally.ledger.total
                self._failed(item, exc, grant, spent, tally)
                return True
            except BaseException:
                ITEM_SPEND.reset(token)
                pool.release(grant, pooled_amounts(ledger.total))
                raise
            ITEM_SPEND.reset(token)
            snapshot = ledger.snapshot()
            pool.release(grant, pooled_amounts(snapshot.total))
            if _starved(snapshot.total, snapshot.stopped_by):
                self.starved_spend[item.id] = pooled_amounts(snapshot.total)
                return False
            probed.append(_Probed(item, replace(estimate, spent=snapshot), snapshot.total, started))
            return True

        await self._funded(item, attempt)
        return probed[0] if probed else None

    async def _run_allocated(self, probed: _Probed, allocation: Allocation) -> None:
        """Run the router with the allocated setting; the item's budget includes its probe's spend."""
        assert self.pool is not None and self.unit is not None and self.target.router is not None
        unit_field = UNIT_FIELDS[self.unit]
        probe = pooled_amounts(probed.spent)
        per_item = self.per_item.model_dump() if self.per_item is not None else {}
        entry = allocation.entry
        grant = None
        if entry is not None:
            # The probe is paid: hold the allocated setting's cost, and what the per-item budget leaves.
            want: dict[str, float | None] = {}
            for name in self.pool.limits:
                per = per_item.get(name)
                want[name] = None if per is None else per - probe[name]
            per_left = want[unit_field]
            want[unit_field] = allocation.extra if per_left is None else min(allocation.extra, per_left)
            if all(value is None or value > 0 for value in want.values()):
                grant = await self._acquire(probed.item, want)
        if grant is None:  # nothing beyond the probe: the router answers from the probe samples
            budget = Budget.of_unit(self.unit, allocation.probe)
        else:
            budget = self._item_budget(grant, paid=probed.spent)
        request = self._request(probed.item, budget)
        request["estimate"] = probed.estimate
        request["action"] = entry if grant is not None else None
        await self._invoke(probed.item, self.target.router.graph, request, grant, probed.started, probed.spent)


async def run_batch_target(
    items: BatchInput,
    resolved: BatchTarget,
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
    check: Callable[[], None] | None = None,
    canary: bool = True,
) -> BatchSummary:
    """:func:`run_batch` for a target that is already resolved (another engine's stand-in graph and
    router, for instance): the same input, output, budget and resume rules, with this process as the
    one writer of ``out``. ``check`` runs after the input and OUT are validated, before anything
    runs (a configuration check such as :func:`preflight`); ``canary`` (a tapped target: a
    workflow :func:`run_batch` built): the first item runs alone until its model answers a call,
    and an error every item would hit (HTTP 401, 403, 404) stops the run with
    :class:`BatchConfigError` before the others start."""
    if isinstance(items, str | bytes):
        raise TypeError("pass a JSONL file as a Path (a plain string would be read as characters)")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    if policy_window < 1:
        raise ValueError(f"policy_window must be at least 1, got {policy_window}")
    out_path = Path(out)
    where = "line" if isinstance(items, os.PathLike) else "item"
    started = time.perf_counter()
    if isinstance(items, os.PathLike):
        with open(items, "rb"):  # a missing or unreadable input fails here, before OUT is touched
            pass
    per_item = per_item_budget if per_item_budget is not None else resolved.per_item
    total = total_budget if total_budget is not None else resolved.total
    with open(out_path, "ab") as file:  # O_APPEND: every write lands at the end, even after the cut below
        lock_output(file, out_path)
        previous = scan_output(out_path, retry_errors=retry_errors) if resume else PreviousRun()
        counted = count_pending(items, previous.done, strict=strict, where=where)
        if check is not None:
            check()
        journal: GrantJournal | None = None
        carried: dict[str, float] = {}
        if total is not None and not total.unlimited:
            journal = GrantJournal(journal_path(out_path))
            earlier = GrantJournal.read(journal.path)
            carried = earlier if resume else {}
            journal.begin(earlier)  # resume=False: the earlier account stays until OUT is emptied
        sink = FileSink(file, journal, start_over=not resume)
        summary = BatchSummary(
            out=str(out_path), usage_before=previous.usage, graded=previous.graded, correct=previous.correct
        )
        try:
            batch = BatchRun(
                resolved,
                sink,
                max_concurrency=max_concurrency,
                per_item=per_item,
                total=total,
                previous=previous,
                strict=strict,
                expected=None if counted is None else counted[0],
                policy_window=policy_window,
                summary=summary,
                journal=journal,
                carried=carried,
                canary=canary and resolved.tapped,
            )
            progress_total = None if counted is None else sum(counted)
            await batch.run(iter_entries(items), where=where, progress=progress, progress_total=progress_total)
            sink.start_over()  # resume=False and nothing to write: OUT is still emptied, as asked
        except (BatchConfigError, BatchInputError):
            raise
        except Exception as exc:
            raise BatchAborted(
                f"the batch stopped: {_error_text(exc)} (the {summary.written} records written to {out_path} "
                "are kept; run the same command again to resume)"
            ) from exc
        finally:
            summary.seconds = time.perf_counter() - started
            if journal is not None:
                journal.close()
    return summary
