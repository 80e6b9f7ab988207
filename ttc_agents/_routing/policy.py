"""The compute-optimal policy: per difficulty bin, which setting (strategy, hyperparameters, model)
to run for a given budget, fitted from measured outcomes (the paper's Eq. 1, at matched compute).

Calibration measures, for every question of a development set, the outcome of every setting at
every generation budget N: correct or not, and what it cost in samples, tokens, USD and FLOPs.
:func:`fit_policy` groups questions into difficulty bins and then, in this order:

1. **Deployed cost.** Every cell is charged what the router will really spend on it: the difficulty
   probe plus the strategy, except best-of-N on the policy's first model, which reuses the probe
   samples (:func:`reuses_probe`; one rule, used by the router, the batch allocation and the fit).
2. **Robust accuracy.** A bin's accuracy of an action is shrunk towards its neighbouring bins
   (``smoothing`` pseudo-questions), so that 30 questions per bin do not decide alone.
3. **Best-of-N weighted unless proven otherwise.** An alternative (another strategy or selection) is
   *eligible* only when, on the bin's questions, it beats best-of-N weighted at no more cost by more
   than ``margin_z`` standard errors of the paired difference. In-sample maxima over many noisy
   actions otherwise pick noise.
4. **Matched-compute plans.** "Generation budget N" means the mean compute of best-of-N weighted at
   N (probe and verifier included), not N calls of anything: for each N, the table assigns one
   eligible entry per bin, by greedy marginal gain on each bin's accuracy-vs-cost hull, so that the
   mean cost over the development questions stays within best-of-N weighted's at N. Easy questions
   get little, hopeless ones little, the rest the remainder: the paper's compute-optimal allocation.
5. **Honest estimates.** The same procedure fitted on one half of the questions and scored on the
   other (2-fold, both ways) gives each table entry's ``cv_accuracy`` and the plan's held-out
   accuracy against best-of-N weighted's in :attr:`Policy.diagnostics`.
6. **A plan must beat plain best-of-N held out.** A plan that moves compute between bins is kept for
   budget N only when its cross-validated accuracy (step 5, per question) beats best-of-N weighted at
   N on the same questions by more than ``margin_z`` standard errors of the paired difference; else
   every bin runs best-of-N weighted at N. Greedy allocation over noisy per-bin curves otherwise
   spends on bins where the gain was noise (measured: a weak, over-optimised verifier lost 4 points
   at N=8 held out with the reallocating plan).

Under a hard budget (:meth:`Policy.choose` with a :class:`~ttc_agents.Budget`) the router takes the
most accurate eligible entry whose cost for THIS question (its probe already paid) fits the
question's whole budget, using the 90th percentile of a non-reusing entry's measured cost so that a
chosen search is rarely cut short.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ttc_agents._core.budget import UNIT_FIELDS, Budget, BudgetUnit, Usage
from ttc_agents._core.specs import StrategySpec
from ttc_agents._core.thinking import EffortLevel, Thinking

__all__ = [
    "POLICY_FORMAT_VERSION",
    "UNIT_FIELDS",
    "BudgetUnit",
    "Cost",
    "Outcome",
    "Policy",
    "PolicyAction",
    "PolicyEntry",
    "PolicyMismatchError",
    "allocate_budgets",
    "bin_of",
    "entry_cost",
    "fit_policy",
    "quantile_thresholds",
    "reuses_probe",
]

K = TypeVar("K", bound=Hashable)

POLICY_FORMAT_VERSION = 1
N_BINS = 5


class PolicyMismatchError(ValueError):
    """A policy fitted for other models or another verifier is used without ``force``."""


class Cost(BaseModel):
    """Mean spend of one setting on one question, in every unit a budget can use."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: float = 0.0
    tokens: float = 0.0
    usd: float = 0.0
    flops: float = 0.0

    def in_unit(self, unit: BudgetUnit) -> float:
        return float(getattr(self, unit))

    @classmethod
    def of(cls, usage: Usage) -> Cost:
        """The cost of what a ledger booked."""
        return cls(samples=usage.samples, tokens=usage.total_tokens, usd=usage.usd, flops=usage.flops)

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            samples=self.samples + other.samples,
            tokens=self.tokens + other.tokens,
            usd=self.usd + other.usd,
            flops=self.flops + other.flops,
        )

    def __sub__(self, other: Cost) -> Cost:
        return Cost(
            samples=self.samples - other.samples,
            tokens=self.tokens - other.tokens,
            usd=self.usd - other.usd,
            flops=self.flops - other.flops,
        )

    def maximum(self, other: Cost) -> Cost:
        """The larger of the two in every unit."""
        return Cost(
            samples=max(self.samples, other.samples),
            tokens=max(self.tokens, other.tokens),
            usd=max(self.usd, other.usd),
            flops=max(self.flops, other.flops),
        )

    @staticmethod
    def mean(costs: Sequence[Cost]) -> Cost:
        n = max(len(costs), 1)
        return Cost(
            samples=sum(c.samples for c in costs) / n,
            tokens=sum(c.tokens for c in costs) / n,
            usd=sum(c.usd for c in costs) / n,
            flops=sum(c.flops for c in costs) / n,
        )

    @staticmethod
    def quantile(costs: Sequence[Cost], q: float) -> Cost:
        """The ``q`` quantile of each unit separately (nearest rank)."""
        if not costs:
            return Cost()

        def pick(values: list[float]) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

        return Cost(
            samples=pick([c.samples for c in costs]),
            tokens=pick([c.tokens for c in costs]),
            usd=pick([c.usd for c in costs]),
            flops=pick([c.flops for c in costs]),
        )


_SIZE_FIELDS = ("n", "width", "attempts", "chains", "max_n", "wave")


class PolicyAction(BaseModel):
    """What the router runs: a strategy spec on a model (a key of the policy's model list)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    strategy: StrategySpec = Field(discriminator="strategy")

    @property
    def key(self) -> str:
        """A stable name for tables and traces: the size fields (n, width, attempts, chains, max_n, wave) always,
        other fields when they differ from their defaults."""
        changed = self.strategy.model_dump(exclude_defaults=True, exclude={"strategy"})
        sizes = self.strategy.model_dump(include=set(_SIZE_FIELDS))
        spec = {**sizes, **changed}
        params = ",".join(f"{k}={v}" for k, v in sorted(spec.items()))
        return f"{self.model}:{self.strategy.strategy}({params})"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One measured cell: a question answered by one action at generation budget ``budget``."""

    question_id: str
    action: PolicyAction
    budget: int
    correct: bool
    cost: Cost


class PolicyEntry(BaseModel):
    """One measured (bin, budget, action) cell, or the table's choice for a (bin, budget), with evidence.

    ``cost`` is what the router spends on it, probe included (see :func:`reuses_probe`).
    ``value`` (the smoothed accuracy) is what lookups compare; ``eligible`` says whether lookups may
    pick it at all (best-of-N weighted always; others only when proven better, see the module doc).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bin: int = Field(ge=1, le=N_BINS)
    budget: int = Field(ge=1)
    action: PolicyAction
    accuracy: float = Field(description="accuracy of the action on the bin's questions (in-sample)")
    cv_accuracy: float = Field(description="held-out (2-fold) accuracy of the fitting procedure's choice")
    best_of_n_accuracy: float | None = Field(default=None, description="best-of-N weighted at the same N")
    cost: Cost
    questions: int
    smoothed_accuracy: float | None = Field(default=None, description="accuracy shrunk towards neighbouring bins")
    cost_p90: Cost | None = Field(default=None, description="90th percentile of the per-question cost")
    eligible: bool = True
    gain_vs_best_of_n: float | None = Field(
        default=None, description="paired accuracy gain over best-of-N weighted at no more cost"
    )
    gain_se: float | None = Field(default=None, description="standard error of that gain")

    @property
    def value(self) -> float:
        """The accuracy lookups compare: smoothed when fitted, else the raw accuracy."""
        return self.accuracy if self.smoothed_accuracy is None else self.smoothed_accuracy


class Policy(BaseModel):
    """A fitted policy: bin thresholds, the (bin, budget) table, and what it was fitted on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = POLICY_FORMAT_VERSION
    models: list[str]
    verifier: str
    dataset: str
    estimator: Literal["probe", "question", "oracle"] = "probe"
    probe_samples: int = Field(default=4, ge=1)
    probe_thinking: Thinking | None = Field(
        default=None, description="the thinking setting the difficulty probe samples at (the grid's first level)"
    )
    thresholds: list[float] = Field(description="4 ascending cut points of the difficulty statistic")
    higher_is_easier: bool = True
    table: list[PolicyEntry]
    candidates: list[PolicyEntry] = Field(
        default_factory=list, description="every measured (bin, budget, action) cell, for cost-based lookup"
    )
    question_model: dict[str, Any] | None = None
    probe_model: dict[str, Any] | None = Field(
        default=None, description="the fitted predictor of pass@1 from probe features (ProbePredictor)"
    )
    probe_cost: Cost = Field(default_factory=Cost, description="mean cost of the difficulty probe")
    completion_caps: dict[str, int] = Field(
        default_factory=dict, description="per model: the max_tokens a sample is given (measured lengths)"
    )
    thinking_caps: dict[str, dict[EffortLevel, int]] = Field(
        default_factory=dict,
        description="per model, per effort level: the thinking allowance a sample is given (measured reasoning)",
    )
    plan_unit: BudgetUnit = "tokens"
    diagnostics: dict[str, Any] = Field(default_factory=dict)

    @field_validator("thresholds")
    @classmethod
    def _ascending(cls, value: list[float]) -> list[float]:
        if len(value) != N_BINS - 1:
            raise ValueError(f"need {N_BINS - 1} cut points, got {len(value)}")
        if any(not math.isfinite(v) for v in value):
            raise ValueError(f"cut points must be finite numbers, got {value}")
        if any(b < a for a, b in itertools.pairwise(value)):
            raise ValueError(f"cut points must be ascending, got {value}")
        return value

    def check_compatible(self, models: Sequence[str], verifier: str, *, force: bool = False) -> None:
        """Refuse use with models or a verifier the policy was not fitted for, unless ``force``."""
        problems = []
        unknown = sorted(set(models) - set(self.models))
        if unknown:
            problems.append(f"models {unknown} (fitted for {self.models})")
        if verifier != self.verifier:
            problems.append(f"verifier {verifier!r} (fitted for {self.verifier!r})")
        if problems and not force:
            raise PolicyMismatchError(
                "policy was fitted for other settings: " + "; ".join(problems) + ". Re-calibrate or pass force=True."
            )

    def bin_of(self, statistic: float) -> int:
        """The difficulty bin (1 = easiest, 5 = hardest) of a difficulty statistic."""
        return bin_of(statistic, self.thresholds, higher_is_easier=self.higher_is_easier)

    def reuses_probe(self, action: PolicyAction) -> bool:
        """True when ``action``'s samples include the probe's: best-of-N on the first model, after a probe."""
        return reuses_probe(self, action)

    def choose(
        self,
        bin_: int,
        budget: Budget | int,
        unit: BudgetUnit | None = None,
        *,
        probe_spent: Cost | None = None,
    ) -> PolicyEntry:
        """The action for ``bin_`` under ``budget``.

        With an int (a generation budget N): the table's entry for the largest fitted budget <= N,
        a matched-compute plan (the smallest fitted budget when none is that small).

        With a :class:`Budget` (the question's WHOLE hard budget, probe included): of the measured
        actions whose cost for this question fits every set limit (``unit`` restricts the comparison
        to one unit), best-of-N weighted at the next size above the largest that fits (the budget cuts
        it: it spends the whole budget), unless an eligible alternative is more accurate than every
        best-of-N weighted that fits. ``probe_spent`` is what the probe already
        cost: best-of-N reuses it, other actions add their own cost to it, and those are checked at
        their 90th-percentile cost. When nothing fits, the cheapest action.
        """
        if isinstance(budget, int):
            rows = [e for e in self.table if e.bin == bin_]
            if not rows:
                raise LookupError(f"policy has no entry for bin {bin_}")
            fitting = [e for e in rows if e.budget <= budget]
            if not fitting:
                return min(rows, key=lambda e: (e.budget, -e.value))
            largest = max(e.budget for e in fitting)
            return max((e for e in fitting if e.budget == largest), key=lambda e: (round(e.value, 9), -e.cost.tokens))
        pool = [e for e in (self.candidates or self.table) if e.bin == bin_]
        if not pool:
            raise LookupError(f"policy has no entry for bin {bin_}")
        pool = [e for e in pool if e.eligible] or pool
        limits = budget.limits(unit)
        spent = probe_spent if probe_spent is not None else self.probe_cost

        def need(entry: PolicyEntry, u: BudgetUnit) -> float:
            return entry_cost(self, entry, u, spent.in_unit(u), high=True)

        fitting = [e for e in pool if all(need(e, u) <= limit for u, limit in limits.items())]
        if not fitting:
            return min(pool, key=lambda e: tuple(need(e, u) for u in limits) or (e.budget,))

        def load(entry: PolicyEntry) -> float:
            return sum(need(entry, u) / lim for u, lim in limits.items() if lim > 0)

        best_of_n = [e for e in fitting if _is_weighted_best_of_n(e.action)]
        if not best_of_n:
            return max(fitting, key=lambda e: (round(e.value, 9), -load(e)))
        # More samples never hurt best-of-N weighted in expectation: of the sizes that fit, take the
        # largest (valued at the best of them), whatever a bin's noisy in-sample dips say; and since a
        # question's unspent budget is lost, ask for the next size up when there is one: the ledger
        # cuts best-of-N where the budget runs out (its samples come in waves), so it spends the whole
        # budget, as plain best-of-N under the same limit does. An eligible alternative (proven better
        # than best-of-N weighted) replaces it only when it is worth more.
        most = max(best_of_n, key=lambda e: (load(e), e.budget))
        larger = [e for e in pool if _is_weighted_best_of_n(e.action) and e.budget > most.budget and e not in fitting]
        worth = max(e.value for e in best_of_n)
        if larger:
            most = min(larger, key=lambda e: (e.budget, load(e)))
        others = [e for e in fitting if not _is_weighted_best_of_n(e.action) and e.eligible]
        challenger = max(others, key=lambda e: (round(e.value, 9), -load(e)), default=None)
        return challenger if challenger is not None and challenger.value > worth + 1e-9 else most

    def curve(self, bin_: int, unit: BudgetUnit) -> list[PolicyEntry]:
        """The accuracy-vs-cost hull of a bin's eligible entries: each step up costs more and buys
        accuracy at a falling rate, so that greedy marginal-gain allocation is sound."""
        pool = [e for e in (self.candidates or self.table) if e.bin == bin_]
        return _hull([e for e in pool if e.eligible] or pool, unit)

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy file; every error names the file (and the field, for a bad value)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not a policy file: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the policy file: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a policy file: invalid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a policy file: expected a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != POLICY_FORMAT_VERSION:
            raise ValueError(f"{path}: policy format_version {version!r} is not {POLICY_FORMAT_VERSION}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
            )
            raise ValueError(f"{path}: invalid policy: {problems}") from None


def reuses_probe(policy: Policy, action: PolicyAction) -> bool:
    """Best-of-N on the policy's first model at the probe's thinking setting counts the probe samples
    among its N (the probe's samples are samples of this very strategy), so its cost already includes
    the probe's."""
    return (
        policy.estimator == "probe"
        and action.strategy.strategy == "best_of_n"
        and action.model == policy.models[0]
        and action.strategy.thinking == policy.probe_thinking
    )


def entry_cost(
    policy: Policy, entry: PolicyEntry, unit: BudgetUnit, probe_cost: float = 0.0, *, high: bool = False
) -> float:
    """What answering with ``entry`` costs after a probe that cost ``probe_cost``, probe included.

    ``entry.cost`` already includes the policy's mean probe cost; it is replaced by this question's.
    With ``high``, a non-reusing entry is costed at its 90th percentile (for hard-budget admission).
    """
    own = entry.cost.in_unit(unit)
    if policy.reuses_probe(entry.action):
        return max(own, probe_cost)
    measured = entry.cost_p90 if high and entry.cost_p90 is not None else entry.cost
    return max(measured.in_unit(unit) - policy.probe_cost.in_unit(unit), 0.0) + probe_cost


def _hull(entries: Sequence[PolicyEntry], unit: BudgetUnit) -> list[PolicyEntry]:
    """The upper concave hull of (cost, value), from the cheapest entry up."""
    if not entries:
        return []
    cheapest = min(entries, key=lambda e: (e.cost.in_unit(unit), -e.value))
    points = sorted(
        (e for e in entries if e.cost.in_unit(unit) > cheapest.cost.in_unit(unit) and e.value > cheapest.value),
        key=lambda e: (e.cost.in_unit(unit), -e.value),
    )
    hull = [cheapest]
    for entry in points:
        if entry.value <= hull[-1].value:
            continue
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            ab = (b.value - a.value) / max(b.cost.in_unit(unit) - a.cost.in_unit(unit), 1e-12)
            ac = (entry.value - a.value) / max(entry.cost.in_unit(unit) - a.cost.in_unit(unit), 1e-12)
            if ac >= ab:
                hull.pop()
            else:
                break
        hull.append(entry)
    return hull


def quantile_thresholds(values: Sequence[float], bins: int = N_BINS) -> list[float]:
    """The ``bins - 1`` cut points that split ``values`` into equal-count quantile bins."""
    if not values:
        raise ValueError("need at least one value to fit difficulty thresholds")
    ordered = sorted(values)
    cuts = []
    for k in range(1, bins):
        position = k * (len(ordered) - 1) / bins
        low, high = math.floor(position), math.ceil(position)
        cuts.append(ordered[low] + (ordered[high] - ordered[low]) * (position - low))
    return cuts


def bin_of(statistic: float, thresholds: Sequence[float], *, higher_is_easier: bool = True) -> int:
    """Bin 1 (easiest) to ``len(thresholds) + 1`` (hardest) of ``statistic``.

    The bins are the intervals between the cut points. Ties with a cut matter because difficulty
    statistics are often discrete (a probe score of 1.0 for many questions):

    - a value equal to one cut joins the interval below it, except at the highest cut, where it
      joins the top interval (the highest cut is often the largest value seen, e.g. 1.0);
    - a value equal to a cut repeated in ``thresholds`` is a point mass that gets a bin of its own,
      between the bins of the values below and above it, so that it merges with neither.

    "Below" and "top" refer to the statistic's order; with ``higher_is_easier`` the top interval
    is bin 1.
    """
    n = len(thresholds)
    below = sum(1 for cut in thresholds if cut < statistic)
    at = sum(1 for cut in thresholds if cut == statistic)
    if at >= 2:
        rank = below + 1 + at // 2  # rank 1 = lowest statistic ... n + 1 = highest
    elif at == 1 and below == n - 1:
        rank = n + 1
    else:
        rank = below + 1
    return n + 2 - rank if higher_is_easier else rank


def fit_policy(
    outcomes: Iterable[Outcome],
    difficulty: Mapping[str, float],
    *,
    models: Sequence[str],
    verifier: str,
    dataset: str,
    estimator: Literal["probe", "question", "oracle"] = "probe",
    probe_samples: int = 4,
    probe_costs: Mapping[str, Cost] | None = None,
    higher_is_easier: bool = True,
    seed: int = 0,
    margin_z: float = 1.64,
    smoothing: float = 6.0,
    plan_unit: BudgetUnit = "tokens",
    completion_caps: Mapping[str, int] | None = None,
    probe_thinking: Thinking | None = None,
) -> Policy:
    """Fit bins, eligible entries and the matched-compute table from measured outcomes.

    ``difficulty`` maps question ids to the difficulty statistic (predicted pass@1, mean probe score
    or oracle pass@1); its quantiles become the bin thresholds. ``probe_costs`` (question id ->
    what its probe cost) make every entry's cost the deployed one; without them the probe is free.
    See the module docstring for the steps; ``margin_z`` and ``smoothing`` are steps 3 and 2.
    """
    rows = list(outcomes)
    if not rows:
        raise ValueError("no outcomes to fit a policy from")
    thresholds = quantile_thresholds([difficulty[q] for q in sorted(difficulty)])
    bins = {q: bin_of(v, thresholds, higher_is_easier=higher_is_easier) for q, v in difficulty.items()}
    shell = Policy(
        models=list(models),
        verifier=verifier,
        dataset=dataset,
        estimator=estimator,
        probe_samples=probe_samples,
        probe_thinking=probe_thinking,
        thresholds=thresholds,
        higher_is_easier=higher_is_easier,
        table=[],
        probe_cost=Cost.mean([probe_costs[q] for q in sorted(bins) if q in probe_costs]) if probe_costs else Cost(),
        completion_caps=dict(completion_caps or {}),
        plan_unit=plan_unit,
    )
    fitter = _Fitter(shell, rows, bins, probe_costs or {}, margin_z=margin_z, smoothing=smoothing)
    everyone = sorted(bins)
    entries = fitter.entries(set(everyone))
    plans = fitter.plans(entries, set(everyone))
    held_out_correct = _cross_validate(fitter, everyone, seed)
    gates = fitter.gate_plans(entries, plans, held_out_correct, everyone)
    held_out = _bin_accuracies(fitter, held_out_correct)
    table: list[PolicyEntry] = []
    for (bin_, budget), key in sorted(plans.items()):
        chosen = entries[(bin_, key)]
        bon = entries.get((bin_, fitter.best_of_n_key(budget) or ""))
        # A plan replaced by best-of-N weighted (step 6) was not fitted: its accuracy is its own.
        cv = held_out.get((bin_, budget)) if gates.get(budget, {}).get("plan_kept", True) else None
        table.append(
            chosen.model_copy(
                update={
                    "budget": budget,
                    "cv_accuracy": chosen.accuracy if cv is None else cv,
                    "best_of_n_accuracy": None if bon is None else bon.accuracy,
                }
            )
        )
    report = fitter.plan_report(entries, plans, everyone, held_out)
    for row in report:
        row.update(gates.get(row["N"], {}))
    diagnostics = {"plans": report}
    return shell.model_copy(update={"table": table, "candidates": list(entries.values()), "diagnostics": diagnostics})


@dataclass(slots=True)
class _Fitter:
    """Steps 1-4 of the module docstring, on any subset of the questions (for cross-validation)."""

    policy: Policy
    rows: list[Outcome]
    bins: Mapping[str, int]
    probe_costs: Mapping[str, Cost]
    margin_z: float
    smoothing: float
    cells: dict[str, dict[str, Outcome]] = field(default_factory=dict)
    actions: dict[str, tuple[PolicyAction, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for row in self.rows:
            if row.question_id not in self.bins:
                continue
            if (
                self.policy.reuses_probe(row.action)
                and getattr(row.action.strategy, "n", 0) < self.policy.probe_samples
            ):
                continue  # after a probe of k samples, best-of-N has at least k: best-of-k covers it
            key = f"{row.budget}|{row.action.key}"
            self.actions[key] = (row.action, row.budget)
            self.cells.setdefault(key, {})[row.question_id] = row

    def deployed(self, row: Outcome) -> Cost:
        probe = self.probe_costs.get(row.question_id, Cost())
        return row.cost.maximum(probe) if self.policy.reuses_probe(row.action) else row.cost + probe

    def is_best_of_n(self, key: str) -> bool:
        return _is_weighted_best_of_n(self.actions[key][0])

    def best_of_n_key(self, budget: int) -> str | None:
        matches = [k for k, (a, b) in self.actions.items() if b == budget and _is_weighted_best_of_n(a)]
        if not matches:
            return None
        first = [k for k in matches if self.actions[k][0].model == self.policy.models[0]]
        return (first or matches)[0]

    def entries(self, questions: set[str]) -> dict[tuple[int, str], PolicyEntry]:
        """(bin, key) -> entry, with smoothed accuracy, p90 cost and eligibility, on ``questions``."""
        raw: dict[tuple[int, str], list[Outcome]] = {}
        for key, by_question in self.cells.items():
            for question, row in by_question.items():
                if question in questions:
                    raw.setdefault((self.bins[question], key), []).append(row)
        accuracy = {cell: sum(o.correct for o in group) / len(group) for cell, group in raw.items()}
        out: dict[tuple[int, str], PolicyEntry] = {}
        for (bin_, key), group in raw.items():
            neighbours = [accuracy[(b, key)] for b in (bin_ - 1, bin_ + 1) if (b, key) in accuracy]
            n = len(group)
            smoothed = accuracy[(bin_, key)]
            if neighbours:
                smoothed = (n * smoothed + self.smoothing * sum(neighbours) / len(neighbours)) / (n + self.smoothing)
            costs = [self.deployed(o) for o in group]
            action, budget = self.actions[key]
            out[(bin_, key)] = PolicyEntry(
                bin=bin_,
                budget=budget,
                action=action,
                accuracy=accuracy[(bin_, key)],
                cv_accuracy=accuracy[(bin_, key)],
                cost=Cost.mean(costs),
                cost_p90=Cost.quantile(costs, 0.9),
                questions=n,
                smoothed_accuracy=smoothed,
            )
        for (bin_, key), entry in list(out.items()):
            if self.is_best_of_n(key):
                continue
            reference = self._reference(out, bin_, entry)
            if reference is None:
                out[(bin_, key)] = entry.model_copy(update={"eligible": False})
                continue
            ref_key = f"{reference.budget}|{reference.action.key}"
            pairs = [
                (int(row.correct) - int(self.cells[ref_key][q].correct))
                for q, row in self.cells[key].items()
                if q in questions and self.bins[q] == bin_ and q in self.cells[ref_key]
            ]
            gain, se = _mean_and_se(pairs)
            eligible = len(pairs) >= 2 and gain - self.margin_z * se > 0
            out[(bin_, key)] = entry.model_copy(update={"eligible": eligible, "gain_vs_best_of_n": gain, "gain_se": se})
        return out

    def _reference(
        self, entries: Mapping[tuple[int, str], PolicyEntry], bin_: int, entry: PolicyEntry
    ) -> PolicyEntry | None:
        """Best-of-N weighted in the same bin at the largest cost not above ``entry``'s (else the cheapest)."""
        unit = self.policy.plan_unit
        bon = [e for (b, k), e in entries.items() if b == bin_ and self.is_best_of_n(k)]
        if not bon:
            return None
        cheaper = [e for e in bon if e.cost.in_unit(unit) <= entry.cost.in_unit(unit) * (1 + 1e-9)]
        if cheaper:
            return max(cheaper, key=lambda e: (e.cost.in_unit(unit), e.value))
        return min(bon, key=lambda e: e.cost.in_unit(unit))

    def plans(self, entries: Mapping[tuple[int, str], PolicyEntry], questions: set[str]) -> dict[tuple[int, int], str]:
        """(bin, N) -> key of the entry the matched-compute plan for generation budget N assigns."""
        unit = self.policy.plan_unit
        sizes: dict[int, int] = {}
        for question in questions:
            sizes[self.bins[question]] = sizes.get(self.bins[question], 0) + 1
        hulls = {b: _hull([e for (b_, _), e in entries.items() if b_ == b and e.eligible], unit) for b in sorted(sizes)}
        budgets = sorted({b for k, (a, b) in self.actions.items() if _is_weighted_best_of_n(a)})
        out: dict[tuple[int, int], str] = {}
        for budget in budgets:
            reference = self.best_of_n_key(budget)
            if reference is None:
                continue
            target = sum(self.cells[reference][q].cost.in_unit(unit) for q in questions if q in self.cells[reference])
            position = {b: 0 for b in hulls if hulls[b]}
            spent = sum(sizes[b] * hulls[b][0].cost.in_unit(unit) for b in position)
            greedy_upgrades(
                position,
                lambda b, p: len(hulls[b]) - 1,
                lambda b, p: sizes[b] * (hulls[b][p + 1].cost.in_unit(unit) - hulls[b][p].cost.in_unit(unit)),
                lambda b, p: sizes[b] * (hulls[b][p + 1].value - hulls[b][p].value),
                target * (1 + 1e-9) - spent,
            )
            for b, p in position.items():
                chosen = hulls[b][p]
                out[(b, budget)] = f"{chosen.budget}|{chosen.action.key}"
        return out

    def gate_plans(
        self,
        entries: Mapping[tuple[int, str], PolicyEntry],
        plans: dict[tuple[int, int], str],
        held_out: Mapping[int, Mapping[str, int]],
        questions: Sequence[str],
    ) -> dict[int, dict[str, Any]]:
        """Step 6, in place on ``plans``: per N, keep the plan only when its held-out answers beat
        best-of-N weighted at N by more than ``margin_z`` standard errors; else best-of-N weighted at N
        in every bin. Returns per N the paired gain, its standard error and the decision."""
        out: dict[int, dict[str, Any]] = {}
        for budget in sorted({n for _, n in plans}):
            reference = self.best_of_n_key(budget)
            if reference is None:
                continue
            answers = held_out.get(budget, {})
            pairs = [
                answers[q] - int(self.cells[reference][q].correct)
                for q in questions
                if q in answers and q in self.cells[reference]
            ]
            gain, se = _mean_and_se(pairs)
            proven = len(pairs) >= 2 and gain - self.margin_z * se > 0
            bins = [b for b, n in plans if n == budget]
            replaceable = all((b, reference) in entries for b in bins)  # best-of-N at N measured in every bin
            if not proven and replaceable:
                for b in bins:
                    plans[(b, budget)] = reference
            out[budget] = {"plan_cv_gain": gain, "plan_cv_gain_se": se, "plan_kept": proven or not replaceable}
        return out

    def plan_report(
        self,
        entries: Mapping[tuple[int, str], PolicyEntry],
        plans: Mapping[tuple[int, int], str],
        questions: Sequence[str],
        held_out: Mapping[tuple[int, int], float],
    ) -> list[dict[str, Any]]:
        """Per generation budget N: the plan's mean cost and accuracy (in-sample and 2-fold held
        out) against best-of-N weighted at N, over the development questions."""
        unit = self.policy.plan_unit
        report = []
        for budget in sorted({n for _, n in plans}):
            reference = self.best_of_n_key(budget)
            assert reference is not None
            chosen = [(q, plans.get((self.bins[q], budget))) for q in questions]
            rows = [self.cells[k][q] for q, k in chosen if k is not None and q in self.cells[k]]
            bon = [self.cells[reference][q] for q in questions if q in self.cells[reference]]
            sizes = {b: sum(1 for q in questions if self.bins[q] == b) for b in range(1, N_BINS + 1)}
            cv = sum(held_out.get((b, budget), 0.0) * n for b, n in sizes.items()) / max(1, sum(sizes.values()))
            report.append(
                {
                    "N": budget,
                    "unit": unit,
                    "plan_cost": sum(self.deployed(r).in_unit(unit) for r in rows) / max(1, len(rows)),
                    "plan_accuracy": sum(r.correct for r in rows) / max(1, len(rows)),
                    "plan_cv_accuracy": cv,
                    "best_of_n_cost": sum(r.cost.in_unit(unit) for r in bon) / max(1, len(bon)),
                    "best_of_n_accuracy": sum(r.correct for r in bon) / max(1, len(bon)),
                }
            )
        return report


def _cross_validate(fitter: _Fitter, questions: Sequence[str], seed: int) -> dict[int, dict[str, int]]:
    """N -> question -> 1 when the plan fitted on the other half (2-fold, both ways) answers it right."""
    by_bin: dict[int, list[str]] = {}
    for question in questions:
        by_bin.setdefault(fitter.bins[question], []).append(question)
    rng = random.Random(seed)
    folds: tuple[set[str], set[str]] = (set(), set())
    for members in by_bin.values():
        rng.shuffle(members)
        folds[0].update(members[0::2])
        folds[1].update(members[1::2])
    correct: dict[int, dict[str, int]] = {}
    for train, test in ((folds[0], folds[1]), (folds[1], folds[0])):
        if not train or not test:
            continue
        plans = fitter.plans(fitter.entries(train), train)
        for (bin_, budget), key in plans.items():
            for q, row in fitter.cells.get(key, {}).items():
                if q in test and fitter.bins[q] == bin_:
                    correct.setdefault(budget, {})[q] = int(row.correct)
    return correct


def _bin_accuracies(fitter: _Fitter, correct: Mapping[int, Mapping[str, int]]) -> dict[tuple[int, int], float]:
    """(bin, N) -> held-out accuracy of the plan on the bin's questions."""
    groups: dict[tuple[int, int], list[int]] = {}
    for budget, by_question in correct.items():
        for q, value in by_question.items():
            groups.setdefault((fitter.bins[q], budget), []).append(value)
    return {cell: sum(v) / len(v) for cell, v in groups.items()}


def _mean_and_se(values: Sequence[int]) -> tuple[float, float]:
    if not values:
        return 0.0, math.inf
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.inf
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def _is_weighted_best_of_n(action: PolicyAction) -> bool:
    return action.strategy.strategy == "best_of_n" and getattr(action.strategy, "selection", None) == "weighted"


def allocate_budgets(
    bins: Sequence[int],
    policy: Policy,
    total: float,
    unit: BudgetUnit,
    *,
    probe_costs: Sequence[float] | None = None,
) -> list[PolicyEntry | None]:
    """Split ``total`` (in ``unit``) across questions by greedy marginal gain on each bin's curve.

    First every question gets its bin's cheapest entry (cheapest first, while the total allows), so
    each one is answered. Then the next upgrade goes to the question whose next step on its bin's
    accuracy-vs-cost hull adds the most accuracy per unit of cost. Easy bins saturate early and
    hopeless bins gain little, so the budget flows to medium and hard questions. None means the
    question could not be afforded.

    ``probe_costs`` are what each question's difficulty probe already spent: they count against
    ``total``, and an entry costs :func:`entry_cost` (the probe plus its own cost, except
    best-of-N, which reuses the probe samples). The sum of :func:`entry_cost` over the chosen
    entries never exceeds ``total``.
    """
    probes = list(probe_costs) if probe_costs is not None else [0.0] * len(bins)
    curves = {b: policy.curve(b, unit) for b in set(bins)}
    position = [-1] * len(bins)
    spent = sum(probes)

    def cost(i: int, p: int) -> float:
        return probes[i] if p < 0 else entry_cost(policy, curves[bins[i]][p], unit, probes[i])

    for i in sorted(range(len(bins)), key=lambda i: cost(i, 0) if curves[bins[i]] else 0.0):
        if curves[bins[i]] and spent + cost(i, 0) - cost(i, -1) <= total:
            spent += cost(i, 0) - cost(i, -1)
            position[i] = 0
    afforded = {i: p for i, p in enumerate(position) if p >= 0}
    greedy_upgrades(
        afforded,
        lambda i, p: len(curves[bins[i]]) - 1,
        lambda i, p: cost(i, p + 1) - cost(i, p),
        lambda i, p: curves[bins[i]][p + 1].value - curves[bins[i]][p].value,
        total - spent,
    )
    return [curves[bins[i]][afforded[i]] if i in afforded else None for i in range(len(bins))]


def greedy_upgrades(
    position: dict[K, int],
    last: Callable[[K, int], int],
    extra_cost: Callable[[K, int], float],
    gain: Callable[[K, int], float],
    room: float,
) -> float:
    """Move items up their accuracy-vs-cost curves by greedy marginal gain, in place.

    ``position[k]`` is item k's step on its curve (``last(k, p)`` its top step); the next upgrade is
    the one with the most ``gain`` per ``extra_cost`` that still fits in ``room``, while any gains.
    Returns the room left. On concave curves (see :func:`_hull`) greedy is the optimal allocation.
    """
    while True:
        best: tuple[float, K, float] | None = None
        for k, p in position.items():
            if p >= last(k, p):
                continue
            extra, more = extra_cost(k, p), gain(k, p)
            if more <= 0 or extra > room:
                continue
            rate = more / max(extra, 1e-12)
            if best is None or rate > best[0]:
                best = (rate, k, extra)
        if best is None:
            return room
        _, chosen, extra = best
        position[chosen] += 1
        room -= extra
