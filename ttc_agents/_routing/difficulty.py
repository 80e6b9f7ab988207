"""Difficulty estimators: each puts a question into a bin (1 = easiest ... 5 = hardest) with evidence.

- :class:`ProbeEstimator` (the paper's "predicted difficulty"): a few samples scored by the
  verifier. With a :class:`ProbePredictor` fitted at calibration, everything the probe paid for
  (:func:`probe_features`: verifier scores and their spread, answer agreement, how many samples
  reached an answer, lengths) predicts pass@1, binned by the policy's quantile thresholds; without
  one, the mean final score is (the paper's statistic). Its samples are returned as candidates so
  the chosen strategy can reuse them: nothing is spent twice.
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

from ttc_agents._core.answers import answers_equivalent
from ttc_agents._core.budget import Ledger, LedgerSnapshot
from ttc_agents._core.candidates import Candidate
from ttc_agents._routing.moves import SearchContext, StrategyState, sample_solutions, score_candidates
from ttc_agents._routing.policy import bin_of

__all__ = [
    "DifficultyEstimate",
    "DifficultyEstimator",
    "OracleEstimator",
    "ProbeEstimator",
    "ProbePredictor",
    "QuestionOnlyEstimator",
    "bin_agreement",
    "probe_features",
    "question_features",
    "rank_correlation",
    "rest_seed",
]


@dataclass(frozen=True, slots=True)
class DifficultyEstimate:
    """A bin, the statistic it came from, the evidence, and any samples drawn on the way."""

    bin: int
    statistic: float
    evidence: dict[str, Any] = field(default_factory=dict)
    candidates: tuple[Candidate, ...] = ()
    spent: LedgerSnapshot | None = None
    seed: int | None = None
    """The seed the probe's samples were drawn with: a strategy that continues after the probe draws
    with another one (:func:`rest_seed`), or a seeded backend would give it the probe's samples again."""
    prompt_tokens: int | None = None
    """The prompt size the server reported for the probe's request (its messages are best-of-N's)."""


def rest_seed(probe_seed: int, probe_samples: int) -> int:
    """The seed best-of-N draws the rest of its samples with after a probe of ``probe_samples`` samples
    drawn with ``probe_seed``: another seed, so that a seeded backend gives new samples, not the
    probe's again."""
    return probe_seed + probe_samples + 1


@runtime_checkable
class DifficultyEstimator(Protocol):
    """Assigns a difficulty bin; model calls it makes are booked in ``ledger``."""

    @property
    def name(self) -> str: ...

    async def estimate(self, ctx: SearchContext, state: StrategyState, ledger: Ledger) -> DifficultyEstimate: ...


PROBE_FEATURES: tuple[str, ...] = (
    "bias",
    "mean_score",
    "min_score",
    "max_score",
    "score_spread",
    "agreement",
    "distinct_answers",
    "answered",
    "log_length",
)
"""The names of :func:`probe_features`, in order."""


def probe_features(candidates: Sequence[Candidate]) -> list[float]:
    """What a probe's samples say about a question's difficulty, as numbers.

    Verifier final scores (mean, min, max, standard deviation; 1.0 without a verifier), the share of
    samples that give the most common answer (agreement), distinct answers per sample, the share of
    samples with an answer at all, and the log of the mean solution length in characters.
    """
    if not candidates:
        return [1.0] + [0.0] * (len(PROBE_FEATURES) - 1)
    scores = [1.0 if c.score is None else float(c.score) for c in candidates]
    mean = sum(scores) / len(scores)
    spread = math.sqrt(sum((x - mean) ** 2 for x in scores) / len(scores))
    answers = [c.answer for c in candidates if c.answer is not None]
    counts: dict[str, int] = {}
    for answer in answers:
        counts[answer] = counts.get(answer, 0) + 1
    k = len(candidates)
    length = sum(len(c.text) for c in candidates) / k
    return [
        1.0,
        mean,
        min(scores),
        max(scores),
        spread,
        max(counts.values(), default=0) / k,
        len(counts) / k,
        len(answers) / k,
        math.log1p(length),
    ]


@dataclass(frozen=True, slots=True)
class ProbePredictor:
    """Ridge regression from :func:`probe_features` to pass@1, fitted at calibration."""

    weights: Sequence[float]
    features: Sequence[str] = PROBE_FEATURES

    @classmethod
    def fit(cls, rows: Sequence[Sequence[float]], pass_at_1: Sequence[float], *, l2: float = 1.0) -> ProbePredictor:
        """Closed form (X'X + l2 I)^-1 X'y, no shrinkage of the intercept."""
        import numpy as np

        if len(rows) != len(pass_at_1) or not rows:
            raise ValueError("need as many pass@1 values as feature rows, and at least one")
        x = np.array(rows, dtype=float)
        y = np.array(pass_at_1, dtype=float)
        penalty = l2 * np.eye(x.shape[1])
        penalty[0, 0] = 0.0
        weights = np.linalg.solve(x.T @ x + penalty, x.T @ y)
        return cls([float(w) for w in weights])

    def predict(self, features: Sequence[float]) -> float:
        """Predicted pass@1, clipped to [0, 1]."""
        value = sum(w * f for w, f in zip(self.weights, features, strict=True))
        return min(max(value, 0.0), 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"weights": list(self.weights), "features": list(self.features)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbePredictor:
        features = tuple(data.get("features", PROBE_FEATURES))
        if features != PROBE_FEATURES:
            raise ValueError(f"probe predictor features {list(features)} are not this version's {list(PROBE_FEATURES)}")
        return cls([float(w) for w in data["weights"]], features)


@dataclass(frozen=True, slots=True)
class ProbeEstimator:
    """``samples`` probe samples scored by the verifier, binned by ``thresholds``.

    The statistic is ``predictor``'s pass@1 from :func:`probe_features` when there is one, else the
    mean verifier final score. ``seed`` None derives the seed from the question text (reported in
    the evidence): reproducible, different per question, and explicit, so that a strategy that
    continues after the probe can draw *other* samples (see :attr:`DifficultyEstimate.seed`).
    """

    thresholds: Sequence[float]
    samples: int = 4
    temperature: float = 0.8
    seed: int | None = None
    name: str = "probe"
    predictor: ProbePredictor | None = None
    max_tokens: int | None = None

    def seed_for(self, question: str) -> int:
        """The seed the probe draws with for ``question``."""
        return self.seed if self.seed is not None else _question_seed(question)

    async def estimate(self, ctx: SearchContext, state: StrategyState, ledger: Ledger) -> DifficultyEstimate:
        seed = self.seed_for(state["question"])
        before = ledger.total
        probes = await sample_solutions(
            ctx,
            ledger,
            ctx.messages(state, "generate"),
            self.samples,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=seed,
            node="estimate",
        )
        drawn = ledger.total
        calls = drawn.calls - before.calls
        prompt = (drawn.prompt_tokens - before.prompt_tokens) // calls if calls > 0 else None
        scored = await score_candidates(ctx, ledger, state["question"], probes, "last")
        features = probe_features(scored)
        mean = features[1] if scored else 0.0
        statistic = self.predictor.predict(features) if self.predictor is not None else mean
        return DifficultyEstimate(
            bin=bin_of(statistic, self.thresholds, higher_is_easier=True),
            statistic=statistic,
            evidence={
                "estimator": self.name,
                "statistic": "predicted pass@1" if self.predictor is not None else "mean verifier score",
                "mean_score": mean,
                "scores": [1.0 if c.score is None else c.score for c in scored],
                "features": dict(zip(PROBE_FEATURES, features, strict=True)),
                "thresholds": list(self.thresholds),
                "seed": seed,
            },
            candidates=tuple(scored),
            seed=seed,
            prompt_tokens=prompt,
        )


def _question_seed(question: str) -> int:
    return int.from_bytes(hashlib.blake2b(question.encode("utf-8", "surrogatepass"), digest_size=4).digest()) >> 1


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); 0.0 when either side is constant."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("need two equally long sequences of at least two values")

    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra))
    vb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    return cov / (va * vb) if va > 0 and vb > 0 else 0.0


def bin_agreement(first: Sequence[float], second: Sequence[float], thresholds: Sequence[float]) -> float:
    """The share of questions that two independent estimates put in the same bin."""
    if len(first) != len(second) or not first:
        raise ValueError("need two equally long, non-empty sequences")
    same = sum(bin_of(x, thresholds) == bin_of(y, thresholds) for x, y in zip(first, second, strict=True))
    return same / len(first)


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
