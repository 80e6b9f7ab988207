"""Difficulty estimators: each puts a question into a bin (1 = easiest ... 5 = hardest) with evidence.

- :class:`ProbeEstimator` (the paper's "predicted difficulty"): a few samples scored by the
  verifier; the mean final score is binned by the policy's quantile thresholds. Its samples are
  returned as candidates so the chosen strategy can reuse them: nothing is spent twice.
- :class:`QuestionOnlyEstimator`: a ridge regression over simple features of the question text,
  fitted during calibration; costs no generation.
- :class:`OracleEstimator`: pass@1 over many samples graded against the reference answer. For
  evaluation only: it needs the answer.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ttc_agents._answers import answers_equivalent
from ttc_agents._budget import Ledger, LedgerSnapshot
from ttc_agents._candidates import Candidate
from ttc_agents._policy import bin_of
from ttc_agents._search import SearchContext, StrategyState, sample_solutions, score_candidates

__all__ = [
    "DifficultyEstimate",
    "DifficultyEstimator",
    "OracleEstimator",
    "ProbeEstimator",
    "QuestionOnlyEstimator",
    "question_features",
]


@dataclass(frozen=True, slots=True)
class DifficultyEstimate:
    """A bin, the statistic it came from, the evidence, and any samples drawn on the way."""

    bin: int
    statistic: float
    evidence: dict[str, Any] = field(default_factory=dict)
    candidates: tuple[Candidate, ...] = ()
    spent: LedgerSnapshot | None = None


@runtime_checkable
class DifficultyEstimator(Protocol):
    """Assigns a difficulty bin; model calls it makes are booked in ``ledger``."""

    @property
    def name(self) -> str: ...

    async def estimate(self, ctx: SearchContext, state: StrategyState, ledger: Ledger) -> DifficultyEstimate: ...


@dataclass(frozen=True, slots=True)
class ProbeEstimator:
    """Mean verifier final score of ``samples`` probe samples, binned by ``thresholds``."""

    thresholds: Sequence[float]
    samples: int = 4
    temperature: float = 0.8
    seed: int | None = None
    name: str = "probe"

    async def estimate(self, ctx: SearchContext, state: StrategyState, ledger: Ledger) -> DifficultyEstimate:
        probes = await sample_solutions(
            ctx,
            ledger,
            ctx.messages(state, "generate"),
            self.samples,
            temperature=self.temperature,
            max_tokens=None,
            seed=self.seed,
            node="estimate",
        )
        scored = await score_candidates(ctx, ledger, state["question"], probes, "last")
        scores = [1.0 if c.score is None else c.score for c in scored]
        mean = sum(scores) / len(scores) if scores else 0.0
        return DifficultyEstimate(
            bin=bin_of(mean, self.thresholds, higher_is_easier=True),
            statistic=mean,
            evidence={
                "estimator": self.name,
                "mean_score": mean,
                "scores": scores,
                "thresholds": list(self.thresholds),
            },
            candidates=tuple(scored),
        )


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_OPERATOR = re.compile(r"[-+*/×÷^=<>]")
_WORD = re.compile(r"[A-Za-z]+")
_HASH_BUCKETS = 32


def question_features(question: str) -> list[float]:
    """Cheap features of the question alone: size, numbers, operators, and hashed words."""
    numbers = _NUMBER.findall(question)
    words = _WORD.findall(question.lower())
    magnitude = max((len(n.lstrip("-").split(".")[0]) for n in numbers), default=0)
    dense = [
        1.0,
        math.log1p(len(question)),
        float(len(numbers)),
        float(len(_OPERATOR.findall(question))),
        float(magnitude),
        math.log1p(len(words)),
    ]
    buckets = [0.0] * _HASH_BUCKETS
    for word in words:
        buckets[int(hashlib.blake2b(word.encode(), digest_size=2).hexdigest(), 16) % _HASH_BUCKETS] += 1.0
    norm = math.sqrt(sum(b * b for b in buckets)) or 1.0
    return dense + [b / norm for b in buckets]


@dataclass(frozen=True, slots=True)
class QuestionOnlyEstimator:
    """Ridge regression from :func:`question_features` to the difficulty statistic; no generation."""

    weights: Sequence[float]
    thresholds: Sequence[float]
    higher_is_easier: bool = True
    name: str = "question"

    @classmethod
    def fit(
        cls,
        questions: Sequence[str],
        statistics: Sequence[float],
        thresholds: Sequence[float],
        *,
        l2: float = 1.0,
        higher_is_easier: bool = True,
    ) -> QuestionOnlyEstimator:
        """Fit the weights in closed form: (X'X + l2 I)^-1 X'y."""
        import numpy as np

        if len(questions) != len(statistics) or not questions:
            raise ValueError("need as many statistics as questions, and at least one")
        x = np.array([question_features(q) for q in questions])
        y = np.array(statistics, dtype=float)
        penalty = l2 * np.eye(x.shape[1])
        penalty[0, 0] = 0.0  # no shrinkage on the intercept
        weights = np.linalg.solve(x.T @ x + penalty, x.T @ y)
        return cls([float(w) for w in weights], list(thresholds), higher_is_easier)

    def predict(self, question: str) -> float:
        return float(sum(w * f for w, f in zip(self.weights, question_features(question), strict=True)))

    async def estimate(self, ctx: SearchContext, state: StrategyState, ledger: Ledger) -> DifficultyEstimate:
        value = self.predict(state["question"])
        return DifficultyEstimate(
            bin=bin_of(value, self.thresholds, higher_is_easier=self.higher_is_easier),
            statistic=value,
            evidence={"estimator": self.name, "predicted": value, "thresholds": list(self.thresholds)},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "thresholds": list(self.thresholds),
            "higher_is_easier": self.higher_is_easier,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuestionOnlyEstimator:
        return cls(list(data["weights"]), list(data["thresholds"]), bool(data.get("higher_is_easier", True)))


@dataclass(frozen=True, slots=True)
class OracleEstimator:
    """pass@1 over ``samples`` samples graded against the reference answers (evaluation only)."""

    answers: Mapping[str, str]
    thresholds: Sequence[float]
    samples: int = 16
    temperature: float = 0.8
    seed: int | None = None
    name: str = "oracle"

    async def estimate(self, ctx: SearchContext, state: StrategyState, ledger: Ledger) -> DifficultyEstimate:
        question = state["question"]
        if question not in self.answers:
            raise KeyError(f"the oracle estimator has no reference answer for {question[:80]!r}")
        samples = await sample_solutions(
            ctx,
            ledger,
            ctx.messages(state, "generate"),
            self.samples,
            temperature=self.temperature,
            max_tokens=None,
            seed=self.seed,
            node="estimate",
        )
        reference = self.answers[question]
        correct = [c.answer is not None and answers_equivalent(c.answer, reference) for c in samples]
        pass_at_1 = sum(correct) / len(correct) if correct else 0.0
        return DifficultyEstimate(
            bin=bin_of(pass_at_1, self.thresholds, higher_is_easier=True),
            statistic=pass_at_1,
            evidence={"estimator": self.name, "pass_at_1": pass_at_1, "thresholds": list(self.thresholds)},
            candidates=tuple(samples),
        )
