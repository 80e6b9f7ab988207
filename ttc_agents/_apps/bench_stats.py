"""``ttc bench``'s statistics: per setting and difficulty bin, means over seeds with t-intervals,
bootstrap intervals over questions, the router at matched compute (see :mod:`ttc_agents._apps.bench`)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from ttc_agents._apps.bench_results import Row
from ttc_agents._apps.datasets import Problem
from ttc_agents._routing.policy import Cost, bin_of, quantile_thresholds

__all__ = [
    "STYLE",
    "BinMode",
    "difficulty_bins",
    "matched_rows",
    "setting_order",
    "style_of",
    "summarize",
    "thinking_shade",
]


_METRICS: Final = ("samples", "tokens", "usd", "flops")


_BOOTSTRAP_RESAMPLES: Final = 2000


_T975: Final = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
"""The 97.5% quantile of Student's t for 1-30 degrees of freedom (two-sided 95% intervals)."""


# Plot order, label, colour and marker of every setting.
STYLE: Final[Mapping[str, tuple[str, str, str]]] = {
    "best_of_n_weighted": ("best-of-N weighted", "tab:blue", "o"),
    "best_of_n_majority": ("majority vote", "tab:orange", "v"),
    "beam_search": ("beam search (PRM)", "tab:green", "s"),
    "dvts": ("DVTS", "tab:purple", "D"),
    "revision": ("sequential revisions", "tab:red", "^"),
    "hybrid": ("parallel x sequential", "tab:brown", "P"),
    "adaptive": ("adaptive sampling", "tab:cyan", "X"),
    "particle_filter": ("particle filter (PRM)", "tab:olive", "h"),
    "router": ("compute-optimal router", "black", "*"),
}


BinMode = Literal["auto", "level", "oracle"]


def _t975(df: int) -> float:
    """The 97.5% quantile of Student's t (table to 30 degrees of freedom, Cornish-Fisher beyond)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def _interval(values: Sequence[float], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Mean over seeds, the 95% t-interval (None with one value), and the per-seed values."""
    mean = math.fsum(values) / len(values)
    ci: list[float] | None = None
    if len(values) > 1:
        half = _t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        low, high = mean - half, mean + half
        if bounds is not None:
            low, high = max(bounds[0], low), min(bounds[1], high)
        ci = [low, high]
    return {"mean": mean, "ci": ci, "per_seed": list(values)}


def _bootstrap_questions(rows: Sequence[Row], resamples: int = _BOOTSTRAP_RESAMPLES) -> list[float] | None:
    """95% percentile bootstrap interval of the accuracy over questions (each question's accuracy
    averaged over its seeds); None with fewer than two questions. Seeded, so summaries repeat."""
    import numpy as np

    per_question: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        per_question[str(row["question_id"])].append(float(bool(row["correct"])))
    if len(per_question) < 2:
        return None
    values = np.array([math.fsum(v) / len(v) for _, v in sorted(per_question.items())])
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(low), float(high)]


_EFFORT_ORDER: Final = ("none", "minimal", "low", "medium", "high")


def _level_rank(level: str) -> float:
    """Effort levels in order, then thinking budgets (``think=K``) by K."""
    if level in _EFFORT_ORDER:
        return _EFFORT_ORDER.index(level)
    _, _, tokens = level.partition("=")
    return len(_EFFORT_ORDER) + (float(tokens) if tokens.isdigit() else math.inf)


_EFFORT_SHADES: Final[Mapping[str, float]] = {"none": -0.6, "minimal": -0.45, "low": -0.3, "medium": 0.25, "high": 0.5}


def thinking_shade(setting: str) -> float:
    """How a thinking setting's curve is shaded from its strategy's colour (the default setting: 0):
    lighter (< 0) for none, minimal, low and budgets under 2048 tokens, darker (> 0) above."""
    _, _, level = setting.partition("@")
    if not level:
        return 0.0
    if level in _EFFORT_SHADES:
        return _EFFORT_SHADES[level]
    _, _, tokens = level.partition("=")
    shade = (math.log2(max(2, int(tokens) if tokens.isdigit() else 2)) - 11) / 8  # 2048 tokens: the middle
    return round(math.copysign(min(0.6, max(0.15, abs(shade))), shade), 3)


def style_of(setting: str) -> tuple[str, str, str]:
    """(legend label, colour, marker) of a setting. A thinking setting (``best_of_n_weighted@high``) keeps
    its strategy's label (the level added), colour and marker; :func:`thinking_shade` shades the colour."""
    base, _, level = setting.partition("@")
    label, colour, marker = STYLE.get(base, (base, "gray", "x"))
    return (f"{label} @ {level}", colour, marker) if level else (label, colour, marker)


def setting_order(setting: str) -> tuple[int, float]:
    """Where ``setting`` goes in tables and legends: the order of the style table (unknown ones last), a
    strategy's thinking levels after it, by level."""
    base, _, level = setting.partition("@")
    order = list(STYLE)
    return (order.index(base) if base in order else len(order), _level_rank(level) if level else -1.0)


def _group_stats(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per (setting, budget): accuracy and mean cost per question, each over seeds."""
    groups: dict[tuple[str, int], dict[int, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[(str(row["setting"]), int(row["budget"]))][int(row["seed"])].append(row)
    out = []
    for (setting, budget), by_seed in sorted(groups.items(), key=lambda kv: (setting_order(kv[0][0]), kv[0][1])):
        seeds = sorted(by_seed)
        accuracy = _interval([sum(bool(r["correct"]) for r in by_seed[s]) / len(by_seed[s]) for s in seeds], (0.0, 1.0))
        accuracy["ci_questions"] = _bootstrap_questions([r for s in seeds for r in by_seed[s]])
        entry: dict[str, Any] = {
            "setting": setting,
            "budget": budget,
            "questions": max(len({r["question_id"] for r in by_seed[s]}) for s in seeds),
            "seeds": len(seeds),
            "accuracy": accuracy,
        }
        for metric in _METRICS:
            entry[metric] = _interval(
                [math.fsum(float(r["usage"][metric]) for r in by_seed[s]) / len(by_seed[s]) for s in seeds]
            )
        out.append(entry)
    return out


def summarize(
    rows: Sequence[Row],
    *,
    bins: Mapping[str, int] | None = None,
    bin_labels: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The summary of result rows: per setting, per difficulty bin (question id -> bin), and cost.

    Every number is a mean over seeds of the per-seed mean over questions, with its 95% t-interval.
    ``cost.grid`` is what the units spent (sample pools shared), ``cost.cells`` the sum of every
    cell's cost as if each ran alone.
    """
    bins = bins or {}
    labels = dict(bin_labels or {})
    per_bin = []
    for bin_ in sorted({bins[r["question_id"]] for r in rows if r["question_id"] in bins}):
        members = [r for r in rows if bins.get(r["question_id"]) == bin_]
        per_bin.append(
            {
                "bin": bin_,
                "label": labels.get(bin_, f"bin {bin_}"),
                "questions": len({r["question_id"] for r in members}),
                "settings": _group_stats(members),
            }
        )
    units: dict[tuple[str, int], Cost] = {}
    cells = Cost()
    for row in rows:
        cells = cells + Cost.model_validate(row["usage"])
        if "unit_spent" in row:
            units[(str(row["question_id"]), int(row["seed"]))] = Cost.model_validate(row["unit_spent"])
    grid = Cost()
    for cost in units.values():
        grid = grid + cost
    return {
        "settings": _group_stats(rows),
        "bins": per_bin,
        "matched": matched_rows(rows),
        "cost": {
            "grid": grid.model_dump(),
            "cells": cells.model_dump(),
            "saved_tokens": 1 - grid.tokens / cells.tokens if cells.tokens else 0.0,
            "units": len(units),
        },
        "rows": len(rows),
    }


def matched_rows(rows: Sequence[Row], *, seed: int = 0) -> list[dict[str, Any]]:
    """Per router budget N: the router against best-of-N weighted at the router's own mean tokens
    (:func:`~ttc_agents._core.matched.matched_compute`; per question means over seeds; questions that
    have both). Empty without router rows or a best-of-N weighted curve."""
    import numpy as np

    from ttc_agents._core.matched import matched_compute

    def per_question(setting: str) -> dict[int, dict[str, tuple[float, float]]]:
        groups: dict[int, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            if row["setting"] == setting:
                pair = (float(row["usage"]["tokens"]), float(bool(row["correct"])))
                groups[int(row["budget"])][str(row["question_id"])].append(pair)
        return {
            n: {q: (statistics.fmean(t for t, _ in v), statistics.fmean(c for _, c in v)) for q, v in by_q.items()}
            for n, by_q in groups.items()
        }

    router, bon = per_question("router"), per_question("best_of_n_weighted")
    if not router or not bon:
        return []
    curve_budgets = sorted(bon)
    out = []
    for n in sorted(router):
        questions = sorted(q for q in router[n] if all(q in bon[b] for b in curve_budgets))
        if len(questions) < 2:
            continue
        bon_tokens = np.array([[bon[b][q][0] for b in curve_budgets] for q in questions])
        bon_correct = np.array([[bon[b][q][1] for b in curve_budgets] for q in questions])
        tokens = np.array([router[n][q][0] for q in questions])
        correct = np.array([router[n][q][1] for q in questions])
        out.append(
            {
                "N": n,
                "questions": len(questions),
                **matched_compute(bon_tokens, bon_correct, tokens, correct, seed=seed),
            }
        )
    return out


def difficulty_bins(
    problems: Sequence[Problem], rows: Sequence[Row], mode: BinMode, pooled: bool
) -> tuple[str, dict[str, int], dict[int, str]]:
    """The difficulty source, question id -> bin, and bin labels."""
    if mode == "level" or (mode == "auto" and all(p.difficulty is not None for p in problems)):
        levels = {p.id: int(p.difficulty) for p in problems if p.difficulty is not None}
        return "level", levels, {level: f"level {level}" for level in sorted(set(levels.values()))}
    if not pooled:
        return "none", {}, {}
    passes: dict[str, list[float]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for row in rows:
        unit = (str(row["question_id"]), int(row["seed"]))
        if row.get("oracle") is not None and unit not in seen:
            seen.add(unit)
            passes[unit[0]].append(float(row["oracle"]))
    if not passes:
        return "none", {}, {}
    statistic = {q: math.fsum(v) / len(v) for q, v in passes.items()}
    thresholds = quantile_thresholds([statistic[q] for q in sorted(statistic)])
    bins = {q: bin_of(value, thresholds) for q, value in statistic.items()}
    labels = {}
    for bin_ in sorted(set(bins.values())):
        values = [statistic[q] for q, b in bins.items() if b == bin_]
        labels[bin_] = f"bin {bin_} (pass@1 {min(values):.2f}-{max(values):.2f})"
    return "oracle pass@1 quintiles (bin 1 easiest)", bins, labels
