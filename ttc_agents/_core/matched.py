"""Matched-compute statistics: a method against best-of-N weighted at the method's own mean cost.

"Method A beats best-of-N" means nothing at nominal N when A spends more per N. These functions
compare at equal mean tokens (probe and verifier included, as the ledger counted them): best-of-N
weighted's accuracy-vs-tokens curve is interpolated at the method's mean tokens (linear in log
tokens, on the monotone envelope), and the *compute factor* is how many tokens best-of-N weighted
needs to reach the method's accuracy, over the method's tokens. Intervals are paired bootstrap
intervals over questions (the same resampled questions for both sides).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BOOTSTRAP",
    "CURVE_BUDGETS",
    "CurvePoint",
    "compute_factor",
    "interpolate_accuracy",
    "matched_compute",
    "paired_difference",
]

CURVE_BUDGETS = (1, 2, 4, 8, 16, 32, 64)
BOOTSTRAP = 1000


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """Best-of-N weighted at one N: mean tokens and accuracy."""

    n: int
    tokens: float
    accuracy: float


def interpolate_accuracy(curve: Sequence[CurvePoint], tokens: float) -> float:
    """Best-of-N weighted's accuracy at ``tokens``: linear in log tokens between measured points,
    the monotone envelope (more samples never hurt on average), flat beyond the ends."""
    xs, ys = _envelope(curve)
    return float(np.interp(math.log(max(tokens, 1e-9)), xs, ys))


def compute_factor(curve: Sequence[CurvePoint], accuracy: float, tokens: float) -> float:
    """Tokens best-of-N weighted needs to reach ``accuracy``, over ``tokens``; ``inf`` when no
    measured N reaches it, below 1 when best-of-N weighted gets there cheaper."""
    xs, ys = _envelope(curve)
    if accuracy > ys[-1] + 1e-12:
        return math.inf
    if accuracy <= ys[0]:
        return math.exp(xs[0]) / tokens
    index = int(np.searchsorted(ys, accuracy - 1e-12))
    x0, x1, y0, y1 = xs[index - 1], xs[index], ys[index - 1], ys[index]
    x = x1 if y1 == y0 else x0 + (accuracy - y0) * (x1 - x0) / (y1 - y0)
    return math.exp(x) / tokens


def _envelope(curve: Sequence[CurvePoint]) -> tuple[list[float], list[float]]:
    points = sorted(curve, key=lambda p: p.tokens)
    xs = [math.log(p.tokens) for p in points]
    ys = list(np.maximum.accumulate([p.accuracy for p in points]))
    return xs, ys


def matched_compute(
    bon_tokens: np.ndarray, bon_correct: np.ndarray, tokens: np.ndarray, correct: np.ndarray, *, seed: int = 0
) -> dict[str, Any]:
    """A method (per-question ``tokens``, ``correct``) against best-of-N weighted (per question x N
    arrays, one column per measured N) at the method's mean tokens, with paired bootstrap intervals
    over questions: accuracy, tokens, best-of-N weighted's accuracy at those tokens, their
    difference, and the compute factor."""

    def stats(index: np.ndarray) -> tuple[float, float, float]:
        curve = [
            CurvePoint(i + 1, float(bon_tokens[index, i].mean()), float(bon_correct[index, i].mean()))
            for i in range(bon_tokens.shape[1])
        ]
        spent, accuracy = float(tokens[index].mean()), float(correct[index].mean())
        return accuracy - interpolate_accuracy(curve, spent), compute_factor(curve, accuracy, spent), accuracy

    everyone = np.arange(len(tokens))
    delta, factor, accuracy = stats(everyone)
    rng = np.random.default_rng(seed)
    draws = [stats(rng.integers(0, len(tokens), len(tokens))) for _ in range(BOOTSTRAP)]
    deltas = np.array([d[0] for d in draws])
    factors = np.array([min(d[1], 1e6) for d in draws])
    return {
        "accuracy": accuracy,
        "tokens": float(tokens.mean()),
        "best_of_n_at_tokens": accuracy - delta,
        "delta": delta,
        "delta_ci": [float(np.quantile(deltas, 0.025)), float(np.quantile(deltas, 0.975))],
        "compute_factor": factor,
        "compute_factor_ci": [float(np.quantile(factors, 0.025)), float(np.quantile(factors, 0.975))],
    }


def paired_difference(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, list[float]]:
    """Mean of ``a - b`` per question, and its 95% bootstrap interval over questions."""
    rng = np.random.default_rng(seed)
    diffs = a.astype(float) - b.astype(float)
    draws = [diffs[rng.integers(0, len(diffs), len(diffs))].mean() for _ in range(BOOTSTRAP)]
    return float(diffs.mean()), [float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))]
