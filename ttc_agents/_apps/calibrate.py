"""Calibration: measure every strategy at every budget on a problem set, then fit the policy.

:func:`run_grid` answers every question with every *action* (a model plus a strategy spec) at
every generation budget N and records each cell as an :class:`~ttc_agents._routing.policy.Outcome`:
correct or not, and what it cost (samples, tokens, USD, FLOPs, from the run's ledger).
:func:`calibrate` then fits the policy from those outcomes (:func:`~ttc_agents._routing.policy.fit_policy`).

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
  ``hybrid`` with n = b and a sequential/parallel ratio of 1, and ``adaptive`` (early-stopping
  sampling) with max_n = b in waves of up to :data:`ADAPTIVE_WAVE`, weighted votes (majority without a
  verifier). Each is charged what its own ledger booked: the adaptive cell's cost is what it really
  drew before it stopped (one prompt per wave), not its nominal b; ``particle_filter`` with b particles.

**Thinking settings.** With ``thinking`` levels (effort levels or thinking-token budgets; ``None`` is the
model's default), every action above runs once per level: a sample pool per (model, level) and graph
cells per level, the level being part of each action's spec. The difficulty statistics come from the
first level (the probe's, :attr:`~ttc_agents._routing.policy.Policy.probe_thinking`). Per (model,
level) the grid records what was requested and what the model delivered (reasoning tokens per sample,
:attr:`Grid.thinking_report`): a level is *honoured* when the model reported reasoning for it, and more
than at every cheaper honoured level (by :data:`HONOURED_MARGIN`). :func:`fit_grid` drops the cells of
levels a model did not honour (except the first, the probe's), so the policy never buys effort a model
does not deliver.

The graphs are seeded with a seed stream of their own (:data:`GRAPH_SEED_OFFSET`), not the pool's:
at run time the strategy after a probe is independent of the probe, and so it is here.

The difficulty statistics of a question come from the FIRST model's pool. Its first
``probe_samples`` samples are the *probe* (exactly what the router's probe estimator draws at run
time, at the same temperature): their :func:`~ttc_agents._routing.difficulty.probe_features` and the mean
verifier final score. The *oracle* statistic is the share of correct samples in the whole pool
(pass@1). :func:`fit_grid` fits a predictor of pass@1 from the probe features
(:class:`~ttc_agents._routing.difficulty.ProbePredictor`) and bins on its predictions, and reports how good
the estimate is: its rank correlation with the oracle pass@1 (2-fold cross-fitted) and how often a
second, independent probe (the pool's next ``probe_samples`` samples) lands in the same bin.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from langgraph.graph.state import CompiledStateGraph
from tqdm import tqdm

from ttc_agents._apps.datasets import Problem, grade
from ttc_agents._core.budget import Ledger, LedgerSnapshot, Usage
from ttc_agents._core.candidates import Candidate, SelectionMethod, select_answer
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
from ttc_agents._core.thinking import EffortLevel, Thinking, thinking_allowance, thinking_label
from ttc_agents._llm.gateway import Gateway, get_default_gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents._routing.difficulty import ProbePredictor, bin_agreement, probe_features, rank_correlation
from ttc_agents._routing.moves import (
    SearchContext,
    StrategyInput,
    StrategyOutput,
    StrategyState,
    sample_solutions,
    score_candidates,
)
from ttc_agents._routing.policy import Cost, Outcome, Policy, PolicyAction, fit_policy
from ttc_agents.graphs import build_strategy_graph
from ttc_agents.verifiers._base import CandidateVerifier, ScoreFunction, Verifier, as_verifier, fresh_verifier

__all__ = [
    "ADAPTIVE_WAVE",
    "HONOURED_MARGIN",
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

GRAPH_SEED_OFFSET: Final = 7919
"""Graph cells run with ``seed + GRAPH_SEED_OFFSET``: independent of the pool (and of its probe)."""
ADAPTIVE_WAVE: Final = 4
HONOURED_MARGIN: Final = 1.1
"""A thinking level is honoured when its reasoning tokens per sample exceed this times the next cheaper
honoured level's (and are above zero)."""
"""The grid's adaptive cells sample in waves of this many (fewer when the budget is smaller)."""
_COMPLETION_CAP_QUANTILE: Final = 0.995
_COMPLETION_CAP_MARGIN: Final = 1.25
_THINKING_CAP_MARGIN: Final = 2.0

STRATEGY_NAMES: Final = ("best_of_n", "beam_search", "dvts", "revision", "hybrid", "adaptive", "particle_filter")
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
    features: tuple[float, ...] = ()
    """:func:`~ttc_agents._routing.difficulty.probe_features` of the probe (the pool's first samples)."""
    second_features: tuple[float, ...] | None = None
    """The same of the pool's next ``probe_samples`` samples: an independent second probe."""
    probe_cost: Cost = field(default_factory=lambda: Cost())
    """What the probe alone would cost (its share of the pool)."""
    completion_tokens: tuple[float, ...] = ()
    """Each pool sample's completion length in tokens (the pool's count shared by text length)."""


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
    thinking: tuple[Thinking | None, ...] = (None,)
    """The thinking levels swept (the first is the probe's)."""
    thinking_usage: Mapping[tuple[str, str], Usage] = field(default_factory=dict)
    """(model, level label) -> what that level's generation requests booked (requested and reasoning tokens)."""
    thinking_peaks: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """(model, level label) -> the largest reasoning tokens per sample of any one question's requests."""

    def thinking_caps(self) -> dict[str, dict[EffortLevel, int]]:
        """Per model, per honoured effort level: a thinking allowance its samples fit in (twice the largest
        per-question mean, in multiples of 16), for the router's requests and reservations instead of
        :data:`~ttc_agents._core.thinking.EFFORT_ALLOWANCE` (a budget level is its own allowance)."""
        report = self.thinking_report()
        caps: dict[str, dict[EffortLevel, int]] = {}
        for model in self.models:
            for level in self.thinking:
                peak = self.thinking_peaks.get((model, thinking_label(level)), 0.0)
                if isinstance(level, str) and peak > 0 and report[model][level]["honoured"]:
                    caps.setdefault(model, {})[level] = max(64, 16 * math.ceil(_THINKING_CAP_MARGIN * peak / 16))
        return caps

    def thinking_report(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per model, per level (label): samples asked with it, thinking tokens requested and reasoning
        tokens delivered per sample, and whether the model honoured it (see the module docstring)."""
        report: dict[str, dict[str, dict[str, Any]]] = {}
        for model in self.models:
            rows: dict[str, dict[str, Any]] = {}
            for level in self.thinking:
                usage = self.thinking_usage.get((model, thinking_label(level)), Usage())
                asked = usage.thinking_samples
                rows[thinking_label(level)] = {
                    "samples": asked,
                    "requested_tokens_per_sample": usage.requested_reasoning_tokens / asked if asked else 0.0,
                    "reasoning_tokens_per_sample": usage.reasoning_tokens / asked if asked else 0.0,
                    "truncated": usage.truncated,
                    "honoured": level is None,
                }
            floor = 0.0
            for level in sorted((lv for lv in self.thinking if lv is not None), key=thinking_allowance):
                row = rows[thinking_label(level)]
                delivered = row["reasoning_tokens_per_sample"]
                row["honoured"] = delivered > 0 and delivered > floor * HONOURED_MARGIN
                if row["honoured"]:
                    floor = delivered
            report[model] = rows
        return report

    def honoured(self, action: PolicyAction) -> bool:
        """Whether ``action``'s thinking level was delivered by its model (the first level always counts)."""
        level = action.strategy.thinking
        if level == self.thinking[0]:
            return True
        row = self.thinking_report().get(action.model, {}).get(thinking_label(level))
        return bool(row and row["honoured"])

    @property
    def outcomes(self) -> list[Outcome]:
        return [cell.outcome for cell in self.cells]

    def completion_caps(self) -> dict[str, int]:
        """Per model: a per-sample ``max_tokens`` that the calibration's samples fit in (a high
        quantile of their lengths with a margin, in multiples of 16), for the router's requests."""
        lengths = sorted(t for d in self.difficulty.values() for t in d.completion_tokens)
        if not lengths:
            return {}
        index = min(len(lengths) - 1, math.ceil(_COMPLETION_CAP_QUANTILE * len(lengths)) - 1)
        cap = max(32, 16 * math.ceil(lengths[index] * _COMPLETION_CAP_MARGIN / 16))
        return {self.models[0]: cap}

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
        statistic = None if policy is None else _policy_statistic(policy, self)
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


def actions_for(strategy: str, model: str, budget: int, thinking: Thinking | None = None) -> list[PolicyAction]:
    """The action(s) a strategy name stands for at generation budget ``budget`` on ``model``, at the
    thinking setting ``thinking`` (None: the model's default)."""
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
    elif strategy == "adaptive":
        specs = [AdaptiveSpec(max_n=budget, wave=min(ADAPTIVE_WAVE, budget), selection="weighted")]
    elif strategy == "particle_filter":
        specs = [ParticleFilterSpec(n=budget)]
    else:
        raise ValueError(f"unknown strategy {strategy!r}; use {', '.join(STRATEGY_NAMES)}")
    if thinking is not None:
        specs = [spec.model_copy(update={"thinking": thinking}) for spec in specs]
    return [PolicyAction(model=model, strategy=spec) for spec in specs]


PriceLookup = Callable[[str], tuple[float | None, float | None]]


def standalone_cost(pool: LedgerSnapshot, share: float, prices: PriceLookup | None = None) -> Cost:
    """What ``share`` of a sample pool would cost run on its own (a best-of-b run, share = b/N).

    Per ledger entry (node, model): where a request carried several samples (generation with
    ``n``), the number of requests scales with the share but is at least one, and every request
    pays its prompt (so a best-of-1 still pays a whole prompt); where a request was one sample or
    a batch of candidates to score (a verifier), prompts belong to the candidates and scale with the
    share. Samples and completion tokens scale with the share. USD is recomputed from ``prices(model)`` (USD per
    prompt and completion token) when they reproduce the entry's USD, else scaled like its tokens;
    FLOPs scale with tokens.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    total = Cost()
    for entry in pool.entries:
        usage = entry.usage
        if usage.calls > 0 and usage.samples > usage.calls:
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
        total = total + part
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
    thinking: dict[tuple[str, str], Usage] = field(default_factory=dict)
    thinking_peaks: dict[tuple[str, str], float] = field(default_factory=dict)

    def book_thinking(self, model: str, level: Thinking | None, snapshot: LedgerSnapshot) -> None:
        """Add what ``snapshot``'s requests made with a thinking setting booked to (model, level)."""
        key = (model, thinking_label(level))
        asked = [e.usage for e in snapshot.entries if e.usage.thinking_samples]
        self.thinking[key] = self.thinking.get(key, Usage()) + Usage.total(asked)
        peak = max((u.reasoning_tokens / u.thinking_samples for u in asked), default=0.0)
        self.thinking_peaks[key] = max(self.thinking_peaks.get(key, 0.0), peak)


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
        search_budgets: Sequence[int] | None = None,
        thinking: Sequence[Thinking | None] = (None,),
    ) -> None:
        self.models = list(models)
        self.thinking = list(thinking)
        self.verifier = verifier
        self.budgets = list(budgets)
        self.search_budgets = self.budgets if search_budgets is None else sorted(set(search_budgets))
        self.strategies = list(strategies)
        self.gateway = gateway
        self.probe_samples = probe_samples
        self.seed = seed
        self.pooled = "best_of_n" in strategies
        self.contexts = {m.name: SearchContext.create(m, verifier, gateway=gateway) for m in models}
        self._prices: dict[str, tuple[float | None, float | None]] = {}

    def _compile(self, action: PolicyAction, model: ModelSpec) -> _Graph:
        spec = action.strategy.model_copy(update={"seed": self.seed + GRAPH_SEED_OFFSET})
        verifier = fresh_verifier(self.verifier)
        graph: _Graph = build_strategy_graph(spec, model=model, verifier=verifier, gateway=self.gateway)
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
        for index, level in enumerate(self.thinking):
            size = self.pool_size(first and index == 0)
            if size:
                await self._pool(problem, model, size, first and index == 0, result, book, level)
            for strategy in self.strategies:
                if strategy == "best_of_n":
                    continue
                for budget in self.search_budgets:
                    for action in actions_for(strategy, model.name, budget, level):
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
        level: Thinking | None = None,
    ) -> None:
        ctx = replace(self.contexts[model.name], verifier=fresh_verifier(self.verifier))
        if level is not None:
            ctx = replace(ctx, model=ctx.model.model_copy(update={"thinking": level}))
        ledger = Ledger()
        state: StrategyState = {"question": problem.question}
        defaults = BestOfNSpec()
        # Prefix sizes whose verifier cost is measured on its own: the probe and every budget.
        points = sorted({b for b in (*self.budgets, self.probe_samples) if b < size} | {size})
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
            pool, verified, verifying = await _score_by_prefix(
                ctx, problem.question, samples, defaults.aggregation, points
            )
        except Exception as exc:
            raise CalibrationError(f"question {problem.id!r}, sample pool of {model.name}: {exc}") from exc
        snapshot = ledger.snapshot()
        everything = Usage.total([snapshot.total, verifying.total])
        book(everything)
        result.spent = result.spent + Cost.of(everything)
        result.book_thinking(model.name, level, snapshot)
        if len(pool) < size:
            raise CalibrationError(f"question {problem.id!r}: {model.name} returned {len(pool)} of {size} samples")
        joined = replace(snapshot, entries=(*snapshot.entries, *verifying.entries))

        def alone(b: int) -> Cost:
            """What best-of-b on this pool's first b samples costs run on its own."""
            if verified is None or b not in verified:  # one scoring of the whole pool: its share
                return standalone_cost(joined, b / size, self.price)
            return standalone_cost(snapshot, b / size, self.price) + Cost.of(verified[b])

        verdicts = await asyncio.to_thread(_grade_all, problem, [c.answer for c in pool])
        if first:
            k = self.probe_samples
            probes = pool[:k]
            probe = None if self.verifier is None else sum(_final_score(c) for c in probes) / len(probes)
            oracle = sum(verdicts.get(c.answer, False) for c in pool) / len(pool)
            second = tuple(probe_features(pool[k : 2 * k])) if len(pool) >= 2 * k else None
            result.difficulty = QuestionDifficulty(
                probe,
                oracle,
                len(pool),
                features=tuple(probe_features(probes)),
                second_features=second,
                probe_cost=alone(min(k, size)),
                completion_tokens=_completion_lengths(snapshot, pool),
            )
        if not self.pooled:
            result.naive = result.naive + Cost.of(everything)
            return
        for budget in self.budgets:
            cost = alone(budget)
            for action in actions_for("best_of_n", model.name, budget, level):
                spec = action.strategy
                assert isinstance(spec, BestOfNSpec)
                selection = select_answer(pool[:budget], spec.selection)
                answer = selection.answer
                correct = verdicts[answer] if answer in verdicts else grade(problem, answer)
                outcome = Outcome(problem.id, action, budget, correct, cost)
                result.cells.append(CellResult(outcome, answer, pooled=True))
                result.naive = result.naive + cost

    async def _graph_cell(
        self,
        problem: Problem,
        model: ModelSpec,
        action: PolicyAction,
        budget: int,
        result: _UnitResult,
        book: Callable[[Usage], None],
    ) -> None:
        # A graph of its own, with a verifier whose score cache is empty: the cell is charged what it
        # costs alone, not helped by scores the pool or another cell of this question already paid for.
        graph = self._compile(action, model)
        try:
            output = await graph.ainvoke({"question": problem.question})
        except Exception as exc:
            raise CalibrationError(f"question {problem.id!r}, {action.key}: {exc}") from exc
        usage: Usage = output["ledger"].total
        book(usage)
        result.book_thinking(model.name, action.strategy.thinking, output["ledger"])
        answer = output.get("answer")
        correct = await asyncio.to_thread(grade, problem, answer)
        cost = Cost.of(usage)
        result.cells.append(
            CellResult(Outcome(problem.id, action, budget, correct, cost), answer, output.get("stopped_by"))
        )
        result.spent = result.spent + cost
        result.naive = result.naive + cost


async def _score_by_prefix(
    ctx: SearchContext, question: str, samples: Sequence[Candidate], aggregation: Any, points: Sequence[int]
) -> tuple[list[Candidate], dict[int, Usage] | None, LedgerSnapshot]:
    """Score ``samples`` in growing prefixes (``points``, the last the whole pool) with one verifier,
    so that its score cache makes each wave pay only for what the prefix adds: the verifier usage up
    to a point (``point -> usage``) is then what best-of-that-many pays its verifier alone. A share
    of one scoring of the whole pool undercharged small N: a judge pays once for a step that many
    samples share (on pop-mathlike, best-of-4 cost 1,927 tokens from a pool of 32 and 2,217 alone).

    A verifier that scores a batch as a whole (a :class:`CandidateVerifier`: token confidence keeps a
    share of the batch) is called once on the pool: no per-point usage (None) and its whole snapshot.
    """
    if ctx.verifier is None or isinstance(ctx.verifier, CandidateVerifier):
        ledger = Ledger()
        scored = await score_candidates(ctx, ledger, question, samples, aggregation)
        return scored, (None if ctx.verifier is not None else dict.fromkeys(points, Usage())), ledger.snapshot()
    scored_all: list[Candidate] = []
    by_point: dict[int, Usage] = {}
    entries: list[Any] = []
    for point in points:
        ledger = Ledger()
        scored_all += await score_candidates(ctx, ledger, question, samples[len(scored_all) : point], aggregation)
        entries += ledger.snapshot().entries
        by_point[point] = Usage.total(e.usage for e in entries)
    return scored_all, by_point, LedgerSnapshot(entries=tuple(entries))


def _completion_lengths(pool: LedgerSnapshot, candidates: Sequence[Candidate]) -> tuple[float, ...]:
    """Per-sample completion tokens of the answers: the pool's generation count (hidden reasoning left
    out: the thinking allowance comes on top of a sample's cap) shared in proportion to text length
    (APIs report usage per request, not per sample)."""
    generated = sum(e.usage.completion_tokens - e.usage.reasoning_tokens for e in pool.entries if e.node == "generate")
    chars = [max(1, len(c.text)) for c in candidates]
    total = sum(chars)
    return tuple(generated * c / total for c in chars) if total else ()


def _final_score(candidate: Candidate) -> float:
    return 1.0 if candidate.score is None else candidate.score


def _grade_all(problem: Problem, answers: Sequence[str | None]) -> dict[str | None, bool]:
    """Grade each distinct answer once."""
    return {answer: grade(problem, answer) for answer in dict.fromkeys(answers)}


def _validate_budgets(budgets: Sequence[int]) -> list[int]:
    if not budgets or any(not isinstance(b, int) or b < 1 for b in budgets):
        raise ValueError(f"budgets must be positive integers, got {list(budgets)}")
    return sorted(set(budgets))


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
    search_budgets: Sequence[int] | None = None,
    thinking: Sequence[Thinking | None] = (None,),
) -> Grid:
    """Measure every (question, action, budget) cell; see the module docstring for what runs.

    ``thinking``: the thinking settings every action runs at (effort levels, thinking-token budgets, or
    None for the model's default); the first is the probe's.

    ``search_budgets`` (default: ``budgets``) are the budgets the strategies other than best-of-N
    run at: best-of-N is read from the sample pool at every budget for little cost, while a search
    or revision cell costs a graph run each, so a long best-of-N curve need not mean as many runs.

    ``strategies`` are names from :data:`STRATEGY_NAMES`. ``concurrency`` bounds how many
    (question x model) units run at once; ``progress`` shows a tqdm bar over those units with the
    spend so far. Runs are seeded from ``seed``, so a deterministic backend gives the same grid.
    Raises :class:`CalibrationError` (naming the question and action) when a cell fails.
    """
    specs = [ModelSpec.of(m) for m in models]
    budget_list, strategy_list = _validate(problems, specs, budgets, strategies, probe_samples, concurrency)
    levels = list(dict.fromkeys(thinking))
    if not levels:
        raise ValueError("thinking: give at least one level (None for the model's default)")
    checked = None if verifier is None else as_verifier(verifier)
    runner = _GridRunner(
        models=specs,
        verifier=checked,
        budgets=budget_list,
        strategies=strategy_list,
        gateway=gateway or get_default_gateway(),
        probe_samples=probe_samples,
        seed=seed,
        search_budgets=None if search_budgets is None else _validate_budgets(search_budgets),
        thinking=levels,
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
    thinking_usage: dict[tuple[str, str], Usage] = {}
    thinking_peaks: dict[tuple[str, str], float] = {}
    for result in results:
        grid_cost = grid_cost + result.spent
        naive_cost = naive_cost + result.naive
        for key, usage in result.thinking.items():
            thinking_usage[key] = thinking_usage.get(key, Usage()) + usage
            thinking_peaks[key] = max(thinking_peaks.get(key, 0.0), result.thinking_peaks.get(key, 0.0))
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
        thinking=tuple(levels),
        thinking_usage=thinking_usage,
        thinking_peaks=thinking_peaks,
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
    """Fit the policy from a measured grid (:func:`~ttc_agents._routing.policy.fit_policy`).

    With the ``probe`` estimator, difficulty is the pass@1 that a :class:`ProbePredictor` fitted on
    the probe features predicts; the policy stores the predictor, the probe's mean cost (so that
    entries cost what the router spends), the measured completion caps, and in ``diagnostics`` the
    estimate's quality. A question-only difficulty model (ridge regression on question features,
    for the router's ``question`` estimator) is fitted on the same statistic and stored too.
    """
    probe_model: dict[str, Any] | None = None
    quality: dict[str, Any] = {}
    if estimator == "probe":
        grid.statistic("probe")  # refuses a grid without a verifier
        statistic, probe_model, quality = _fit_probe_predictor(grid, seed)
    else:
        statistic = grid.statistic(estimator)
    probe_costs = {q: d.probe_cost for q, d in grid.difficulty.items()} if estimator == "probe" else None
    outcomes = [o for o in grid.outcomes if grid.honoured(o.action)]  # never buy effort that is not delivered
    policy = fit_policy(
        outcomes,
        statistic,
        models=list(grid.models),
        verifier=verifier_name if verifier_name is not None else grid.verifier,
        dataset=dataset,
        estimator=estimator,
        probe_samples=grid.probe_samples,
        probe_costs=probe_costs,
        seed=seed,
        completion_caps=grid.completion_caps(),
        probe_thinking=grid.thinking[0],
    )
    if quality:
        thresholds = policy.thresholds
        first, second = quality.pop("first_probe"), quality.pop("second_probe")
        if first:
            quality["bin_agreement_of_two_probes"] = bin_agreement(first, second, thresholds)
    diagnostics = {**policy.diagnostics, "difficulty": quality}
    if grid.thinking != (None,):
        diagnostics["thinking"] = grid.thinking_report()
    update: dict[str, Any] = {
        "probe_model": probe_model,
        "diagnostics": diagnostics,
        "thinking_caps": grid.thinking_caps(),
    }
    try:
        from ttc_agents._routing.difficulty import QuestionOnlyEstimator

        questions = {p.id: p.question for p in grid.problems}
        ids = sorted(statistic)
        model = QuestionOnlyEstimator.fit([questions[q] for q in ids], [statistic[q] for q in ids], policy.thresholds)
        update["question_model"] = model.to_dict()
    except ImportError:  # numpy is not installed: no question-only model
        pass
    return policy.model_copy(update=update)


def _fit_probe_predictor(grid: Grid, seed: int) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """The predicted pass@1 per question, the predictor, and the estimate's quality.

    Quality: Spearman correlation with the oracle pass@1 of the 2-fold cross-fitted prediction and
    of the mean verifier score (the paper's statistic), and the two probes' predictions for the
    bin agreement (filled in once thresholds are known).
    """
    ids = sorted(grid.difficulty)
    rows = [list(grid.difficulty[q].features) for q in ids]
    oracle = [grid.difficulty[q].oracle for q in ids]
    predictor = ProbePredictor.fit(rows, oracle)
    predicted = {q: predictor.predict(row) for q, row in zip(ids, rows, strict=True)}
    quality: dict[str, Any] = {"questions": len(ids), "first_probe": [], "second_probe": []}
    if len(ids) >= 4:
        order = list(range(len(ids)))
        random.Random(seed).shuffle(order)
        held_out = [0.0] * len(ids)
        for fold in (order[0::2], order[1::2]):
            train = [i for i in order if i not in set(fold)]
            model = ProbePredictor.fit([rows[i] for i in train], [oracle[i] for i in train])
            for i in fold:
                held_out[i] = model.predict(rows[i])
        quality["spearman_predicted_vs_oracle"] = rank_correlation(held_out, oracle)
        means = [float(grid.difficulty[q].probe or 0.0) for q in ids]
        quality["spearman_mean_score_vs_oracle"] = rank_correlation(means, oracle)
    pairs = [(q, grid.difficulty[q].second_features) for q in ids if grid.difficulty[q].second_features is not None]
    quality["first_probe"] = [predicted[q] for q, _ in pairs]
    quality["second_probe"] = [predictor.predict(list(f)) for _, f in pairs if f is not None]
    return predicted, predictor.to_dict(), quality


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
    search_budgets: Sequence[int] | None = None,
    thinking: Sequence[Thinking | None] = (None,),
) -> CalibrationResult:
    """Run the grid (:func:`run_grid`) and fit the policy (:func:`fit_grid`).

    ``thinking`` are the thinking settings swept (see the module docstring); the first is the probe's.

    ``dataset`` is recorded in the policy (e.g. the dataset spec). ``verifier_name`` overrides the
    name the policy records for the verifier (default: the verifier's ``name``).
    """
    if estimator == "probe" and verifier is None:
        raise ValueError("the probe estimator needs a verifier; give one or use estimator='oracle'")
    if estimator == "probe" and "best_of_n" in strategies:
        # After a probe of k samples best-of-N has at least k: measure best-of-k, the probe alone.
        budgets = sorted({*budgets, probe_samples})
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
        search_budgets=search_budgets,
        thinking=thinking,
    )
    policy = fit_grid(grid, dataset=dataset, estimator=estimator, seed=seed, verifier_name=verifier_name)
    return CalibrationResult(policy, grid)


def _format_cost(cost: Cost) -> str:
    return f"{cost.samples:,.0f} samples, {cost.tokens:,.0f} tokens, ${cost.usd:.4f}, {cost.flops:.3g} FLOPs"


def _policy_statistic(policy: Policy, grid: Grid) -> dict[str, float]:
    """Question id -> the statistic the policy bins on (its probe predictor's, when it has one)."""
    if policy.estimator == "probe" and policy.probe_model is not None:
        predictor = ProbePredictor.from_dict(policy.probe_model)
        return {q: predictor.predict(list(d.features)) for q, d in grid.difficulty.items()}
    return grid.statistic(_estimator_of(policy))


def format_table(policy: Policy, grid: Grid) -> str:
    """Per difficulty bin: budget -> chosen action, accuracy, CV accuracy, best-of-N weighted
    accuracy at the same budget, mean tokens per question; then the grid's cost."""
    members: dict[int, list[float]] = {}
    for value in _policy_statistic(policy, grid).values():
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
    quality = policy.diagnostics.get("difficulty") or {}
    if "spearman_predicted_vs_oracle" in quality:
        agreement = quality.get("bin_agreement_of_two_probes")
        lines.append(
            f"difficulty estimate: Spearman vs oracle pass@1 {quality['spearman_predicted_vs_oracle']:.2f} "
            f"(mean verifier score alone {quality['spearman_mean_score_vs_oracle']:.2f})"
            + ("" if agreement is None else f"; two independent probes agree on the bin {agreement:.0%}")
        )
    plans = policy.diagnostics.get("plans") or []
    if plans:
        lines.append(
            f"matched-compute plans (mean {plans[0]['unit']} per question, development set; a plan that moves "
            "compute between bins is used only when its 2-fold held-out gain over best-of-N weighted is "
            "significant, else best-of-N weighted at N):"
        )
        lines.append(
            f"  {'N':>4}  {'bon-w cost':>10}  {'bon-w acc':>9}  {'plan cost':>9}  {'plan acc':>8}  "
            f"{'held-out gain':>15}  used"
        )
        for row in plans:
            gain, se = row.get("plan_cv_gain"), row.get("plan_cv_gain_se")
            shown = "-" if gain is None or se is None else f"{gain:+.3f} +- {se:.3f}"
            used = "plan" if row.get("plan_kept", True) else "bon-w"
            lines.append(
                f"  {row['N']:>4}  {row['best_of_n_cost']:>10.0f}  {row['best_of_n_accuracy']:>9.3f}  "
                f"{row['plan_cost']:>9.0f}  {row['plan_accuracy']:>8.3f}  {shown:>15}  {used}"
            )
    lines.append(f"grid cost:         {_format_cost(grid.grid_cost)}")
    lines.append(f"naive sum (cells): {_format_cost(grid.naive_cost)}")
    if grid.naive_cost.tokens > 0:
        saved = 1 - grid.grid_cost.tokens / grid.naive_cost.tokens
        lines.append(f"sample-pool reuse saved {saved:.1%} of the tokens")
    return "\n".join(lines)
