"""Calibration: measure every strategy at every budget on a problem set, then fit the policy.

:func:`run_grid` answers every question with every *action* (a model plus a strategy spec) at
every generation budget N and records each cell as an :class:`~ttc_agents._policy.Outcome`:
correct or not, and what it cost (samples, tokens, USD, FLOPs, from the run's ledger).
:func:`calibrate` then fits the policy from those outcomes (:func:`~ttc_agents._policy.fit_policy`).

What runs for each (question, model):

* **One sample pool.** ``N_max`` full solutions in ONE request (``N_max`` = the largest budget,
  or ``probe_samples`` if larger), scored by the verifier once. Best-of-N weighted and majority at
  every budget b are read from the pool's first b samples, and each such cell is charged what a
  best-of-b run alone would cost: the pool's prompt once per request, and b/N_max of its
  completions and of the verifier's work (see :func:`standalone_cost`). :attr:`Grid.grid_cost`
  is what was really spent; :attr:`Grid.naive_cost` is the sum of every cell's cost, what running
  each cell on its own would have spent.
* **The search strategies**, one graph run per (question, budget b): ``beam_search`` and ``dvts``
  with N = b beams of width 4 (width b when b < 4; for other b not divisible by 4, its largest
  divisor up to 4, or b itself when that is 1), ``revision`` as one chain of b attempts, and
  ``hybrid`` with n = b and a sequential/parallel ratio of 1.

The difficulty statistics of a question come from the FIRST model's pool: the *probe* statistic is
the mean verifier final score of its first ``probe_samples`` samples (exactly what the router's
probe estimator computes at run time, at the same temperature), the *oracle* statistic is the share
of correct samples in the whole pool (pass@1).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from langgraph.graph.state import CompiledStateGraph
from tqdm import tqdm

from ttc_agents._budget import Ledger, LedgerSnapshot, Usage
from ttc_agents._candidates import Candidate, SelectionMethod, select_answer
from ttc_agents._datasets import Problem, grade
from ttc_agents._gateway import Gateway, get_default_gateway
from ttc_agents._models import ModelSpec
from ttc_agents._policy import Cost, Outcome, Policy, PolicyAction, fit_policy
from ttc_agents._search import (
    SearchContext,
    StrategyInput,
    StrategyOutput,
    StrategyState,
    sample_solutions,
    score_candidates,
)
from ttc_agents._specs import BeamSearchSpec, BestOfNSpec, DVTSSpec, HybridSpec, RevisionSpec, StrategySpec
from ttc_agents.graphs import build_strategy_graph
from ttc_agents.verifiers._base import ScoreFunction, Verifier, as_verifier

__all__ = [
    "STRATEGY_NAMES",
    "CalibrationError",
    "CalibrationResult",
    "CellResult",
    "Grid",
    "QuestionDifficulty",
    "actions_for",
    "calibrate",
    "fit_grid",
    "run_grid",
    "standalone_cost",
]

STRATEGY_NAMES: Final = ("best_of_n", "beam_search", "dvts", "revision", "hybrid")
"""Strategy names :func:`run_grid` accepts; ``best_of_n`` means both weighted and majority selection."""

Estimator = Literal["probe", "oracle"]
_POOL_SELECTIONS: Final[tuple[SelectionMethod, ...]] = ("weighted", "majority")
_POSTFIX_INTERVAL: Final = 0.5
_Graph = CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]


class CalibrationError(RuntimeError):
    """A cell of the grid failed; the message names the question and the action."""


@dataclass(frozen=True, slots=True)
class QuestionDifficulty:
    """Difficulty statistics of one question, from the first model's sample pool.

    ``probe``: mean verifier final score of the first ``probe_samples`` samples (None without a
    verifier). ``oracle``: share of correct samples in the pool (pass@1). ``pool``: its size.
    """

    probe: float | None
    oracle: float
    pool: int


@dataclass(frozen=True, slots=True)
class CellResult:
    """One measured cell: its outcome, the answer given, why the run stopped early (if it did),
    and whether it was read from the shared sample pool."""

    outcome: Outcome
    answer: str | None
    stopped_by: str | None = None
    pooled: bool = False


@dataclass(frozen=True, slots=True)
class Grid:
    """Every cell of a calibration grid, the questions' difficulty statistics, and the cost."""

    problems: tuple[Problem, ...]
    models: tuple[str, ...]
    verifier: str
    budgets: tuple[int, ...]
    strategies: tuple[str, ...]
    probe_samples: int
    seed: int
    cells: tuple[CellResult, ...]
    difficulty: Mapping[str, QuestionDifficulty]
    grid_cost: Cost
    """What the grid really spent (sample pools and graph runs)."""
    naive_cost: Cost
    """The sum of every cell's cost as if each were run alone (plus the first model's pool when no
    cell reads it: the difficulty statistics need it either way)."""

    @property
    def outcomes(self) -> list[Outcome]:
        return [cell.outcome for cell in self.cells]

    def statistic(self, estimator: Estimator) -> dict[str, float]:
        """Question id -> the difficulty statistic ``estimator`` bins on (higher is easier)."""
        if estimator == "oracle":
            return {q: d.oracle for q, d in self.difficulty.items()}
        missing = [q for q, d in self.difficulty.items() if d.probe is None]
        if missing:
            raise ValueError("the probe statistic needs a verifier; calibrate with one or use the oracle estimator")
        return {q: float(d.probe) for q, d in self.difficulty.items() if d.probe is not None}

    def write_outcomes(self, path: str | os.PathLike[str], policy: Policy | None = None) -> None:
        """Write one JSON line per outcome (with the question's difficulty, and bin if ``policy``)."""
        references = {p.id: p.answer for p in self.problems}
        statistic = None if policy is None else self.statistic(_estimator_of(policy))
        with Path(path).open("w", encoding="utf-8") as out:
            for cell in self.cells:
                o = cell.outcome
                difficulty = self.difficulty[o.question_id]
                row: dict[str, Any] = {
                    "question_id": o.question_id,
                    "model": o.action.model,
                    "action": o.action.key,
                    "strategy": o.action.strategy.model_dump(),
                    "budget": o.budget,
                    "correct": o.correct,
                    "answer": cell.answer,
                    "reference": references[o.question_id],
                    "cost": o.cost.model_dump(),
                    "pooled": cell.pooled,
                    "stopped_by": cell.stopped_by,
                    "probe": difficulty.probe,
                    "oracle": difficulty.oracle,
                }
                if policy is not None and statistic is not None:
                    row["bin"] = policy.bin_of(statistic[o.question_id])
                out.write(json.dumps(row) + "\n")


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """The fitted policy and the grid it was fitted on."""

    policy: Policy
    grid: Grid

    def format_table(self) -> str:
        """The policy's table per bin, and the grid's cost against the naive sum, as text."""
        return format_table(self.policy, self.grid)


# ---------------------------------------------------------------------------------------------
# Actions and costs
# ---------------------------------------------------------------------------------------------


def _width(budget: int) -> int:
    if budget < 4:
        return budget
    divisor = next(w for w in (4, 3, 2, 1) if budget % w == 0)
    return divisor if divisor > 1 else budget


def actions_for(strategy: str, model: str, budget: int) -> list[PolicyAction]:
    """The action(s) a strategy name stands for at generation budget ``budget`` on ``model``."""
    specs: list[StrategySpec]
    if strategy == "best_of_n":
        specs = [BestOfNSpec(n=budget, selection=selection) for selection in _POOL_SELECTIONS]
    elif strategy == "beam_search":
        specs = [BeamSearchSpec(n=budget, width=_width(budget))]
    elif strategy == "dvts":
        specs = [DVTSSpec(n=budget, width=_width(budget))]
    elif strategy == "revision":
        specs = [RevisionSpec(attempts=budget, chains=1)]
    elif strategy == "hybrid":
        specs = [HybridSpec(n=budget, sequential_ratio=1.0)]
    else:
        raise ValueError(f"unknown strategy {strategy!r}; use {', '.join(STRATEGY_NAMES)}")
    return [PolicyAction(model=model, strategy=spec) for spec in specs]


def _cost(usage: Usage) -> Cost:
    return Cost(samples=usage.samples, tokens=usage.total_tokens, usd=usage.usd, flops=usage.flops)


def _add(a: Cost, b: Cost) -> Cost:
    return Cost(samples=a.samples + b.samples, tokens=a.tokens + b.tokens, usd=a.usd + b.usd, flops=a.flops + b.flops)


PriceLookup = Callable[[str], tuple[float | None, float | None]]


def standalone_cost(pool: LedgerSnapshot, share: float, prices: PriceLookup | None = None) -> Cost:
    """What ``share`` of a sample pool would cost run on its own (a best-of-b run, share = b/N).

    Per ledger entry (node, model): the number of requests scales with the share but is at least
    one, and every request pays its prompt (so a best-of-1 still pays a whole prompt); samples and
    completion tokens scale with the share. USD is recomputed from ``prices(model)`` (USD per
    prompt and completion token) when they reproduce the entry's USD, else scaled like its tokens;
    FLOPs scale with tokens.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    total = Cost()
    for entry in pool.entries:
        usage = entry.usage
        if usage.calls > 0:
            prompt = usage.prompt_tokens / usage.calls * max(1, round(usage.calls * share))
        else:
            prompt = usage.prompt_tokens * share
        completion = usage.completion_tokens * share
        ratio = (prompt + completion) / usage.total_tokens if usage.total_tokens else share
        usd = usage.usd * ratio
        if prices is not None:
            in_price, out_price = prices(entry.model)
            expected = usage.prompt_tokens * (in_price or 0.0) + usage.completion_tokens * (out_price or 0.0)
            if math.isclose(expected, usage.usd, rel_tol=1e-6, abs_tol=1e-12):
                usd = prompt * (in_price or 0.0) + completion * (out_price or 0.0)
        part = Cost(samples=usage.samples * share, tokens=prompt + completion, usd=usd, flops=usage.flops * ratio)
        total = _add(total, part)
    return total


# ---------------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _UnitResult:
    cells: list[CellResult] = field(default_factory=list)
    difficulty: QuestionDifficulty | None = None
    spent: Cost = field(default_factory=Cost)
    naive: Cost = field(default_factory=Cost)


class _GridRunner:
    """Runs the (question x model) units of one grid with bounded concurrency."""

    def __init__(
        self,
        *,
        models: Sequence[ModelSpec],
        verifier: Verifier | None,
        budgets: Sequence[int],
        strategies: Sequence[str],
        gateway: Gateway,
        probe_samples: int,
        seed: int,
    ) -> None:
        self.models = list(models)
        self.verifier = verifier
        self.budgets = list(budgets)
        self.strategies = list(strategies)
        self.gateway = gateway
        self.probe_samples = probe_samples
        self.seed = seed
        self.pooled = "best_of_n" in strategies
        self.contexts = {m.name: SearchContext.create(m, verifier, gateway=gateway) for m in models}
        self.graphs: dict[tuple[str, str], _Graph] = {}
        for model in models:
            for strategy in self.strategies:
                if strategy == "best_of_n":
                    continue
                for budget in self.budgets:
                    for action in actions_for(strategy, model.name, budget):
                        self.graphs[(model.name, action.key)] = self._compile(action, model)
        self._prices: dict[str, tuple[float | None, float | None]] = {}

    def _compile(self, action: PolicyAction, model: ModelSpec) -> _Graph:
        spec = action.strategy.model_copy(update={"seed": self.seed})
        graph: _Graph = build_strategy_graph(spec, model=model, verifier=self.verifier, gateway=self.gateway)
        return graph

    def price(self, model: str) -> tuple[float | None, float | None]:
        if model not in self._prices:
            spec = next((m for m in self.models if m.name == model), None) or ModelSpec(name=model)
            self._prices[model] = self.gateway.prices(spec)
        return self._prices[model]

    def pool_size(self, first: bool) -> int:
        size = max(self.budgets) if self.pooled else 0
        return max(size, self.probe_samples) if first else size

    async def unit(self, problem: Problem, model: ModelSpec, first: bool, book: Callable[[Usage], None]) -> _UnitResult:
        result = _UnitResult()
        size = self.pool_size(first)
        if size:
            await self._pool(problem, model, size, first, result, book)
        for strategy in self.strategies:
            if strategy == "best_of_n":
                continue
            for budget in self.budgets:
                for action in actions_for(strategy, model.name, budget):
                    await self._graph_cell(problem, model, action, budget, result, book)
        return result

    async def _pool(
        self,
        problem: Problem,
        model: ModelSpec,
        size: int,
        first: bool,
        result: _UnitResult,
        book: Callable[[Usage], None],
    ) -> None:
        ctx = self.contexts[model.name]
        ledger = Ledger()
        state: StrategyState = {"question": problem.question}
        defaults = BestOfNSpec()
        try:
            samples = await sample_solutions(
                ctx,
                ledger,
                ctx.messages(state, "generate"),
                size,
                temperature=defaults.temperature,
                max_tokens=defaults.max_tokens,
                seed=self.seed,
                node="generate",
            )
            pool = await score_candidates(ctx, ledger, problem.question, samples, defaults.aggregation)
        except Exception as exc:
            raise CalibrationError(f"question {problem.id!r}, sample pool of {model.name}: {exc}") from exc
        snapshot = ledger.snapshot()
        book(snapshot.total)
        result.spent = _add(result.spent, _cost(snapshot.total))
        if len(pool) < size:
            raise CalibrationError(f"question {problem.id!r}: {model.name} returned {len(pool)} of {size} samples")
        verdicts = await asyncio.to_thread(_grade_all, problem, [c.answer for c in pool])
        if first:
            probes = pool[: self.probe_samples]
            probe = None if self.verifier is None else sum(_final_score(c) for c in probes) / len(probes)
            oracle = sum(verdicts.get(c.answer, False) for c in pool) / len(pool)
            result.difficulty = QuestionDifficulty(probe, oracle, len(pool))
        if not self.pooled:
            result.naive = _add(result.naive, _cost(snapshot.total))
            return
        for budget in self.budgets:
            cost = standalone_cost(snapshot, budget / len(pool), self.price)
            for action in actions_for("best_of_n", model.name, budget):
                spec = action.strategy
                assert isinstance(spec, BestOfNSpec)
                selection = select_answer(pool[:budget], spec.selection)
                answer = selection.answer
                correct = verdicts[answer] if answer in verdicts else grade(problem, answer)
                outcome = Outcome(problem.id, action, budget, correct, cost)
                result.cells.append(CellResult(outcome, answer, pooled=True))
                result.naive = _add(result.naive, cost)

    async def _graph_cell(
        self,
        problem: Problem,
        model: ModelSpec,
        action: PolicyAction,
        budget: int,
        result: _UnitResult,
        book: Callable[[Usage], None],
    ) -> None:
        graph = self.graphs[(model.name, action.key)]
        try:
            output = await graph.ainvoke({"question": problem.question})
        except Exception as exc:
            raise CalibrationError(f"question {problem.id!r}, {action.key}: {exc}") from exc
        usage: Usage = output["ledger"].total
        book(usage)
        answer = output.get("answer")
        correct = await asyncio.to_thread(grade, problem, answer)
        cost = _cost(usage)
        result.cells.append(
            CellResult(Outcome(problem.id, action, budget, correct, cost), answer, output.get("stopped_by"))
        )
        result.spent = _add(result.spent, cost)
        result.naive = _add(result.naive, cost)


def _final_score(candidate: Candidate) -> float:
    return 1.0 if candidate.score is None else candidate.score


def _grade_all(problem: Problem, answers: Sequence[str | None]) -> dict[str | None, bool]:
    """Grade each distinct answer once."""
    return {answer: grade(problem, answer) for answer in dict.fromkeys(answers)}


def _validate(
    problems: Sequence[Problem],
    models: Sequence[ModelSpec],
    budgets: Sequence[int],
    strategies: Sequence[str],
    probe_samples: int,
    concurrency: int,
) -> tuple[list[int], list[str]]:
    if not problems:
        raise ValueError("no problems to calibrate on")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        repeated = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"problem ids must be unique; {repeated!r} repeats")
    if not models:
        raise ValueError("give at least one model")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"models must have distinct names, got {names}")
    if not budgets or any(not isinstance(b, int) or b < 1 for b in budgets):
        raise ValueError(f"budgets must be positive integers, got {list(budgets)}")
    unknown = [s for s in strategies if s not in STRATEGY_NAMES]
    if not strategies or unknown:
        raise ValueError(f"unknown strategy {unknown[0] if unknown else '(none)'!r}; use {', '.join(STRATEGY_NAMES)}")
    if probe_samples < 1:
        raise ValueError(f"probe_samples must be at least 1, got {probe_samples}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    return sorted(set(budgets)), list(dict.fromkeys(strategies))


async def run_grid(
    problems: Sequence[Problem],
    *,
    models: Sequence[ModelSpec | str],
    verifier: Verifier | ScoreFunction | None,
    budgets: Sequence[int],
    strategies: Sequence[str],
    gateway: Gateway | None = None,
    probe_samples: int = 4,
    concurrency: int = 8,
    progress: bool = True,
    seed: int = 0,
) -> Grid:
    """Measure every (question, action, budget) cell; see the module docstring for what runs.

    ``strategies`` are names from :data:`STRATEGY_NAMES`. ``concurrency`` bounds how many
    (question x model) units run at once; ``progress`` shows a tqdm bar over those units with the
    spend so far. Runs are seeded from ``seed``, so a deterministic backend gives the same grid.
    Raises :class:`CalibrationError` (naming the question and action) when a cell fails.
    """
    specs = [ModelSpec.of(m) for m in models]
    budget_list, strategy_list = _validate(problems, specs, budgets, strategies, probe_samples, concurrency)
    checked = None if verifier is None else as_verifier(verifier)
    runner = _GridRunner(
        models=specs,
        verifier=checked,
        budgets=budget_list,
        strategies=strategy_list,
        gateway=gateway or get_default_gateway(),
        probe_samples=probe_samples,
        seed=seed,
    )
    limit = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(problems) * len(specs), desc="calibrate", unit="unit", disable=not progress, file=sys.stderr)
    spent = [Usage()]
    last_refresh = [0.0]

    def book(usage: Usage) -> None:
        spent[0] = spent[0] + usage
        if progress and time.monotonic() - last_refresh[0] >= _POSTFIX_INTERVAL:
            last_refresh[0] = time.monotonic()
            bar.set_postfix_str(_spend_text(spent[0]))

    async def unit(index: int, problem: Problem, model: ModelSpec) -> _UnitResult:
        async with limit:
            result = await runner.unit(problem, model, index == 0, book)
        bar.set_postfix_str(_spend_text(spent[0]), refresh=False)
        bar.update(1)
        return result

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                [group.create_task(unit(i, problem, model)) for i, model in enumerate(specs)] for problem in problems
            ]
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
    finally:
        bar.close()
    results = [task.result() for row in tasks for task in row]
    difficulty = {problem.id: row[0].result().difficulty for problem, row in zip(problems, tasks, strict=True)}
    grid_cost = naive_cost = Cost()
    for result in results:
        grid_cost = _add(grid_cost, result.spent)
        naive_cost = _add(naive_cost, result.naive)
    return Grid(
        problems=tuple(problems),
        models=tuple(m.name for m in specs),
        verifier="none" if checked is None else checked.name,
        budgets=tuple(budget_list),
        strategies=tuple(strategy_list),
        probe_samples=probe_samples,
        seed=seed,
        cells=tuple(cell for result in results for cell in result.cells),
        difficulty={q: d for q, d in difficulty.items() if d is not None},
        grid_cost=grid_cost,
        naive_cost=naive_cost,
    )


def _spend_text(usage: Usage) -> str:
    return f"{usage.samples} samples, {usage.total_tokens} tok, ${usage.usd:.4f}"


# ---------------------------------------------------------------------------------------------
# Fitting and reporting
# ---------------------------------------------------------------------------------------------


def _estimator_of(policy: Policy) -> Estimator:
    return "oracle" if policy.estimator == "oracle" else "probe"


def fit_grid(
    grid: Grid, *, dataset: str, estimator: Estimator = "probe", seed: int = 0, verifier_name: str | None = None
) -> Policy:
    """Fit the policy from a measured grid: difficulty bins from ``estimator``'s statistic, then the
    (bin, budget) table by 2-fold cross-validation (:func:`~ttc_agents._policy.fit_policy`).

    A question-only difficulty model (ridge regression on question features, for the router's
    ``question`` estimator) is fitted on the same statistic and stored in the policy.
    """
    statistic = grid.statistic(estimator)
    policy = fit_policy(
        grid.outcomes,
        statistic,
        models=list(grid.models),
        verifier=verifier_name if verifier_name is not None else grid.verifier,
        dataset=dataset,
        estimator=estimator,
        probe_samples=grid.probe_samples,
        seed=seed,
    )
    try:
        from ttc_agents._difficulty import QuestionOnlyEstimator

        questions = {p.id: p.question for p in grid.problems}
        ids = sorted(statistic)
        model = QuestionOnlyEstimator.fit([questions[q] for q in ids], [statistic[q] for q in ids], policy.thresholds)
    except ImportError:  # numpy is not installed: no question-only model
        return policy
    return policy.model_copy(update={"question_model": model.to_dict()})


async def calibrate(
    problems: Sequence[Problem],
    *,
    models: Sequence[ModelSpec | str],
    verifier: Verifier | ScoreFunction | None,
    budgets: Sequence[int],
    strategies: Sequence[str],
    dataset: str = "",
    estimator: Estimator = "probe",
    gateway: Gateway | None = None,
    probe_samples: int = 4,
    concurrency: int = 8,
    progress: bool = True,
    seed: int = 0,
    verifier_name: str | None = None,
) -> CalibrationResult:
    """Run the grid (:func:`run_grid`) and fit the policy (:func:`fit_grid`).

    ``dataset`` is recorded in the policy (e.g. the dataset spec). ``verifier_name`` overrides the
    name the policy records for the verifier (default: the verifier's ``name``).
    """
    if estimator == "probe" and verifier is None:
        raise ValueError("the probe estimator needs a verifier; give one or use estimator='oracle'")
    grid = await run_grid(
        problems,
        models=models,
        verifier=verifier,
        budgets=budgets,
        strategies=strategies,
        gateway=gateway,
        probe_samples=probe_samples,
        concurrency=concurrency,
        progress=progress,
        seed=seed,
    )
    policy = fit_grid(grid, dataset=dataset, estimator=estimator, seed=seed, verifier_name=verifier_name)
    return CalibrationResult(policy, grid)


def _format_cost(cost: Cost) -> str:
    return f"{cost.samples:,.0f} samples, {cost.tokens:,.0f} tokens, ${cost.usd:.4f}, {cost.flops:.3g} FLOPs"


def format_table(policy: Policy, grid: Grid) -> str:
    """Per difficulty bin: budget -> chosen action, accuracy, CV accuracy, best-of-N weighted
    accuracy at the same budget, mean tokens per question; then the grid's cost."""
    statistic = grid.statistic(_estimator_of(policy))
    members: dict[int, list[float]] = {}
    for value in statistic.values():
        members.setdefault(policy.bin_of(value), []).append(value)
    cuts = ", ".join(f"{t:.3f}" for t in policy.thresholds)
    lines = [f"difficulty: {policy.estimator} statistic, higher is easier; bin thresholds {cuts}"]
    width = max((len(e.action.key) for e in policy.table), default=10)
    for bin_ in sorted({e.bin for e in policy.table}):
        values = members.get(bin_, [])
        span = f", statistic {min(values):.3f}-{max(values):.3f}" if values else ""
        lines.append(f"bin {bin_} ({len(values)} questions{span})")
        lines.append(
            f"  {'N':>4}  {'chosen action':<{width}}  {'acc':>5}  {'cv acc':>6}  {'bon-w':>5}  {'tokens/q':>8}"
        )
        for entry in sorted((e for e in policy.table if e.bin == bin_), key=lambda e: e.budget):
            bon = "-" if entry.best_of_n_accuracy is None else f"{entry.best_of_n_accuracy:.3f}"
            lines.append(
                f"  {entry.budget:>4}  {entry.action.key:<{width}}  {entry.accuracy:>5.3f}  "
                f"{entry.cv_accuracy:>6.3f}  {bon:>5}  {entry.cost.tokens:>8.0f}"
            )
    lines.append(f"grid cost:         {_format_cost(grid.grid_cost)}")
    lines.append(f"naive sum (cells): {_format_cost(grid.naive_cost)}")
    if grid.naive_cost.tokens > 0:
        saved = 1 - grid.grid_cost.tokens / grid.naive_cost.tokens
        lines.append(f"sample-pool reuse saved {saved:.1%} of the tokens")
    return "\n".join(lines)
