"""The compute-optimal policy: per difficulty bin, which setting (strategy, hyperparameters, model)
to run for a given budget, fitted from measured outcomes (the paper's Eq. 1).

Calibration measures, for every question of a development set, the outcome of every setting at
every generation budget N: correct or not, and what it cost in samples, tokens, USD and FLOPs.
:func:`fit_policy` groups questions into difficulty bins and, per (bin, N), picks the setting with
the highest accuracy by 2-fold cross-validation within the bin. The router then asks the policy
for the best setting whose mean cost fits the question's budget in the budget's unit, which
compares a small model with search and a larger model with one sample on equal terms.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ttc_agents._budget import Budget
from ttc_agents._specs import StrategySpec

__all__ = [
    "POLICY_FORMAT_VERSION",
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
]

POLICY_FORMAT_VERSION = 1
BudgetUnit = Literal["samples", "tokens", "usd", "flops"]
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


_SIZE_FIELDS = ("n", "width", "attempts", "chains")


class PolicyAction(BaseModel):
    """What the router runs: a strategy spec on a model (a key of the policy's model list)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    strategy: StrategySpec = Field(discriminator="strategy")

    @property
    def key(self) -> str:
        """A stable name for tables and traces: the size fields (n, width, attempts, chains) always,
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
    """The chosen action for one (bin, generation budget), with its evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bin: int = Field(ge=1, le=N_BINS)
    budget: int = Field(ge=1)
    action: PolicyAction
    accuracy: float = Field(description="accuracy of the action on the bin's questions")
    cv_accuracy: float = Field(description="2-fold cross-validated accuracy of choosing per fold")
    best_of_n_accuracy: float | None = Field(default=None, description="best-of-N weighted at the same N")
    cost: Cost
    questions: int


class Policy(BaseModel):
    """A fitted policy: bin thresholds, the (bin, budget) table, and what it was fitted on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = POLICY_FORMAT_VERSION
    models: list[str]
    verifier: str
    dataset: str
    estimator: Literal["probe", "question", "oracle"] = "probe"
    probe_samples: int = Field(default=4, ge=1)
    thresholds: list[float] = Field(description="4 ascending cut points of the difficulty statistic")
    higher_is_easier: bool = True
    table: list[PolicyEntry]
    candidates: list[PolicyEntry] = Field(
        default_factory=list, description="every measured (bin, budget, action) cell, for cost-based lookup"
    )
    question_model: dict[str, Any] | None = None

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

    def choose(self, bin_: int, budget: Budget | int, unit: BudgetUnit | None = None) -> PolicyEntry:
        """The action for ``bin_`` under ``budget``.

        With an int (a generation budget N), the most accurate table entry fitted at a budget
        <= N (the paper's table; the smaller budget wins ties, so spending more must buy
        accuracy), or the smallest-budget entry when none is that small. With a :class:`Budget`,
        the most accurate measured action whose mean cost fits every set limit (``unit`` restricts
        the comparison to one unit); ties go to the cheaper action.
        """
        if isinstance(budget, int):
            rows = [e for e in self.table if e.bin == bin_ and e.budget <= budget]
            if not rows:
                rows = sorted((e for e in self.table if e.bin == bin_), key=lambda e: e.budget)[:1]
            if not rows:
                raise LookupError(f"policy has no entry for bin {bin_}")
            return max(rows, key=lambda e: (round(e.accuracy, 9), -e.budget, -e.cost.tokens))
        pool = [e for e in (self.candidates or self.table) if e.bin == bin_]
        if not pool:
            raise LookupError(f"policy has no entry for bin {bin_}")
        limits = _limits(budget, unit)
        fitting = [e for e in pool if all(e.cost.in_unit(u) <= limit for u, limit in limits.items())]
        if not fitting:
            return min(pool, key=lambda e: tuple(e.cost.in_unit(u) for u in limits) or (e.budget,))
        return max(fitting, key=lambda e: (round(e.accuracy, 9), -_cost_key(e, limits)))

    def curve(self, bin_: int, unit: BudgetUnit) -> list[PolicyEntry]:
        """The accuracy-vs-cost frontier of a bin: entries whose accuracy no cheaper entry matches."""
        pool = sorted((e for e in (self.candidates or self.table) if e.bin == bin_), key=lambda e: e.cost.in_unit(unit))
        frontier: list[PolicyEntry] = []
        for entry in pool:
            if not frontier or entry.accuracy > frontier[-1].accuracy:
                frontier.append(entry)
        return frontier

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy file; an unknown format version is an error."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a policy file: invalid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a policy file: expected a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != POLICY_FORMAT_VERSION:
            raise ValueError(f"{path}: policy format_version {version!r} is not {POLICY_FORMAT_VERSION}")
        return cls.model_validate(data)


def _limits(budget: Budget, unit: BudgetUnit | None) -> dict[BudgetUnit, float]:
    limits: dict[BudgetUnit, float] = {}
    fields = (("samples", "max_samples"), ("tokens", "max_tokens"), ("usd", "max_usd"), ("flops", "max_flops"))
    for name, field in fields:
        value = getattr(budget, field, None)
        if value is not None and (unit is None or unit == name):
            limits[name] = float(value)  # type: ignore[index]
    return limits


def _cost_key(entry: PolicyEntry, limits: Mapping[BudgetUnit, float]) -> float:
    return sum(entry.cost.in_unit(u) / limit for u, limit in limits.items() if limit > 0)


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
    higher_is_easier: bool = True,
    seed: int = 0,
) -> Policy:
    """Fit bins and the (bin, budget) table from measured outcomes (2-fold CV within each bin).

    ``difficulty`` maps question ids to the difficulty statistic (mean probe score, predicted
    score or oracle pass@1); its quantiles become the bin thresholds.
    """
    rows = list(outcomes)
    if not rows:
        raise ValueError("no outcomes to fit a policy from")
    thresholds = quantile_thresholds([difficulty[q] for q in sorted(difficulty)])
    bins = {q: bin_of(v, thresholds, higher_is_easier=higher_is_easier) for q, v in difficulty.items()}
    cells: dict[tuple[int, int, str], list[Outcome]] = defaultdict(list)
    actions: dict[str, PolicyAction] = {}
    for row in rows:
        if row.question_id not in bins:
            continue
        key = row.action.key
        actions[key] = row.action
        cells[(bins[row.question_id], row.budget, key)].append(row)

    table: list[PolicyEntry] = []
    every: list[PolicyEntry] = []
    rng = random.Random(seed)
    for bin_ in range(1, N_BINS + 1):
        for budget in sorted({b for (b_, b, _) in cells if b_ == bin_}):
            options = {k: cells[(bin_, budget, k)] for (b_, b, k) in cells if b_ == bin_ and b == budget}
            questions = sorted({o.question_id for group in options.values() for o in group})
            rng.shuffle(questions)
            folds = [set(questions[0::2]), set(questions[1::2])]
            entries = {
                key: _entry(bin_, budget, actions[key], group, _cv_accuracy(options, key, folds))
                for key, group in options.items()
            }
            every.extend(entries.values())
            best_key = _pick(options)
            cv = _cross_validated(options, folds)
            bon = [e for e in entries.values() if _is_weighted_best_of_n(e.action)]
            chosen = entries[best_key].model_copy(
                update={"cv_accuracy": cv, "best_of_n_accuracy": max((e.accuracy for e in bon), default=None)}
            )
            table.append(chosen)
    return Policy(
        models=list(models),
        verifier=verifier,
        dataset=dataset,
        estimator=estimator,
        probe_samples=probe_samples,
        thresholds=thresholds,
        higher_is_easier=higher_is_easier,
        table=table,
        candidates=every,
    )


def _is_weighted_best_of_n(action: PolicyAction) -> bool:
    return action.strategy.strategy == "best_of_n" and getattr(action.strategy, "selection", None) == "weighted"


def _pick(options: Mapping[str, Sequence[Outcome]], only: set[str] | None = None) -> str:
    """The most accurate action on the questions ``only`` (all when None); fewer tokens break ties."""
    return max(options, key=lambda k: (_accuracy(options[k], only), -_mean_cost(options[k], only).tokens))


def _accuracy(group: Sequence[Outcome], only: set[str] | None = None) -> float:
    chosen = [o for o in group if only is None or o.question_id in only]
    return sum(o.correct for o in chosen) / len(chosen) if chosen else 0.0


def _mean_cost(group: Sequence[Outcome], only: set[str] | None = None) -> Cost:
    group = [o for o in group if only is None or o.question_id in only]
    n = max(len(group), 1)
    return Cost(
        samples=sum(o.cost.samples for o in group) / n,
        tokens=sum(o.cost.tokens for o in group) / n,
        usd=sum(o.cost.usd for o in group) / n,
        flops=sum(o.cost.flops for o in group) / n,
    )


def _cross_validated(options: Mapping[str, Sequence[Outcome]], folds: Sequence[set[str]]) -> float:
    """Pick the best action on one fold, score it on the other; the mean over both directions."""
    scores = []
    for train, test in ((folds[0], folds[1]), (folds[1], folds[0])):
        if not train or not test:
            continue
        pick = _pick(options, train)
        scores.append(_accuracy(options[pick], test))
    if not scores:
        return max(_accuracy(group) for group in options.values())
    return sum(scores) / len(scores)


def _cv_accuracy(options: Mapping[str, Sequence[Outcome]], key: str, folds: Sequence[set[str]]) -> float:
    return sum(_accuracy(options[key], fold) for fold in folds if fold) / max(1, sum(1 for f in folds if f))


def _entry(bin_: int, budget: int, action: PolicyAction, group: Sequence[Outcome], cv: float) -> PolicyEntry:
    return PolicyEntry(
        bin=bin_,
        budget=budget,
        action=action,
        accuracy=_accuracy(group),
        cv_accuracy=cv,
        cost=_mean_cost(group),
        questions=len({o.question_id for o in group}),
    )


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
    accuracy-vs-cost frontier adds the most accuracy per unit of cost. Easy bins saturate early and
    hopeless bins gain little, so the budget flows to medium and hard questions. None means the
    question could not be afforded.

    ``probe_costs`` are what each question's difficulty probe already spent: they count against
    ``total``, and an entry costs the probe plus its own cost, except best-of-N on the policy's first
    model, which reuses the probe samples (its measured cost already includes them). The sum of
    :func:`entry_cost` over the chosen entries never exceeds ``total``.
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
    while True:
        best: tuple[float, int, float] | None = None
        for i, p in enumerate(position):
            curve = curves[bins[i]]
            if p < 0 or p + 1 >= len(curve):
                continue
            extra = cost(i, p + 1) - cost(i, p)
            gain = curve[p + 1].accuracy - curve[p].accuracy
            if gain <= 0 or spent + extra > total:
                continue
            rate = gain / max(extra, 1e-12)
            if best is None or rate > best[0]:
                best = (rate, i, extra)
        if best is None:
            break
        _, i, extra = best
        position[i] += 1
        spent += extra
    return [curves[bins[i]][p] if p >= 0 else None for i, p in enumerate(position)]


def entry_cost(policy: Policy, entry: PolicyEntry, unit: BudgetUnit, probe_cost: float = 0.0) -> float:
    """What answering with ``entry`` costs after a probe that cost ``probe_cost``, probe included."""
    own = entry.cost.in_unit(unit)
    reuses_probe = entry.action.strategy.strategy == "best_of_n" and entry.action.model == policy.models[0]
    return max(own, probe_cost) if reuses_probe else probe_cost + own
