"""Confidence from the model's own tokens (DeepConf, Fu et al. 2025): a scorer with no verifier model.

The gateway asks for token logprobs when the strategy's verifier says it needs them
(:attr:`TokenConfidenceVerifier.top_logprobs`); :func:`~ttc_agents._routing.moves.sample_solutions` keeps
each sample's tokens on its candidate (:func:`token_trace`), and this verifier scores those.

Per token i, DeepConf's *token confidence* is ``C_i = -mean_j log P_i(j)`` over the top-k alternatives
the backend returned (``measure="topk"``): high when the distribution is peaked. ``measure="chosen"``
uses the sampled token's own ``log p`` instead (for backends that return no alternatives). A *group
confidence* is the mean token confidence over a sliding window of ``window`` tokens (the whole trace
when it is shorter). A trace's confidence is its **lowest** group confidence (DeepConf's best offline
signal: one confused stretch marks the trace), the **mean** over all its tokens, or its **tail** (the
last window, where the answer is written). Scores are mapped into [0, 1] monotonically: ``1 - exp(-C)``
for ``topk``, ``exp(mean log p)`` (the geometric-mean token probability) for ``chosen``; rankings and
the filter are those of the raw confidence.

Each step of a candidate is scored by the confidence of the trace up to the end of that step, so
``aggregation="last"`` is the whole trace's. ``keep`` (DeepConf's filter, e.g. 0.9 or 0.1) zeroes the
scores of all but the most confident ``keep`` share of each batch (the candidates of a round), so a
weighted vote counts only those.

Only samples drawn as whole solutions carry tokens (best-of-N, adaptive sampling, the calibration pool);
a candidate without them (a backend that returned no logprobs, ``ModelSpec(supports_logprobs=False)``,
or one built step by step by tree search) is an error that says so: :class:`MissingLogprobsError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from ttc_agents._core.budget import Ledger
from ttc_agents._core.candidates import Candidate

__all__ = [
    "TOKENS_META_KEY",
    "MissingLogprobsError",
    "TokenConfidenceVerifier",
    "group_confidences",
    "token_confidences",
    "token_trace",
]

TOKENS_META_KEY: Final = "tokens"
"""The key of :attr:`Candidate.meta` that holds a sample's token trace (see :func:`token_trace`)."""

Measure = Literal["topk", "chosen"]
Statistic = Literal["lowest", "mean", "tail"]


class MissingLogprobsError(ValueError):
    """Token confidence was asked of candidates that carry no token logprobs."""


def token_trace(logprobs: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, float, float | None], ...]:
    """A sample's OpenAI-style token logprobs, compacted: (token, log p of it, mean log p of its top-k
    alternatives or None when the backend returned none) per token."""
    out = []
    for entry in logprobs:
        top = entry.get("top_logprobs") or ()
        values = [float(t["logprob"]) for t in top if t.get("logprob") is not None]
        out.append(
            (str(entry.get("token", "")), float(entry["logprob"]), sum(values) / len(values) if values else None)
        )
    return tuple(out)


def token_confidences(trace: Sequence[tuple[str, float, float | None]], measure: Measure = "topk") -> list[float]:
    """Per-token confidence: ``-mean top-k log p`` (``topk``) or the sampled token's ``log p`` (``chosen``)."""
    if measure == "chosen":
        return [logprob for _, logprob, _ in trace]
    missing = sum(1 for _, _, top in trace if top is None)
    if missing:
        raise MissingLogprobsError(
            f"{missing} of {len(trace)} tokens came without top logprobs: measure='topk' needs the backend's "
            "top_logprobs; use measure='chosen' for backends that return only the sampled token's"
        )
    return [-float(top) for _, _, top in trace if top is not None]


def group_confidences(confidences: Sequence[float], window: int) -> list[float]:
    """The mean confidence of every window of ``window`` consecutive tokens (one group of all of them
    when there are fewer; none for no tokens)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    n = len(confidences)
    if n == 0:
        return []
    if n <= window:
        return [math.fsum(confidences) / n]
    running = math.fsum(confidences[:window])
    groups = [running / window]
    for i in range(window, n):
        running += confidences[i] - confidences[i - window]
        groups.append(running / window)
    return groups


class TokenConfidenceVerifier:
    """DeepConf-style self-confidence as a :class:`~ttc_agents.verifiers.Verifier` (see the module doc).

    ``window``: tokens per group; ``statistic``: ``lowest`` (default), ``mean`` or ``tail``; ``measure``:
    ``topk`` (default, asks for ``top_logprobs`` alternatives) or ``chosen``; ``keep``: the share of
    each batch whose scores are kept (1.0: no filter). No model calls: nothing is booked."""

    def __init__(
        self,
        *,
        window: int = 16,
        statistic: Statistic = "lowest",
        measure: Measure = "topk",
        top_logprobs: int = 5,
        keep: float = 1.0,
        name: str | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if statistic not in ("lowest", "mean", "tail"):
            raise ValueError(f"statistic must be lowest, mean or tail, got {statistic!r}")
        if measure not in ("topk", "chosen"):
            raise ValueError(f"measure must be topk or chosen, got {measure!r}")
        if not 1 <= top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be 1-20 (what OpenAI-style APIs accept), got {top_logprobs}")
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        self.window = window
        self.statistic: Statistic = statistic
        self.measure: Measure = measure
        self.keep = keep
        self.top_logprobs: int | None = top_logprobs if measure == "topk" else 0
        """How many alternatives the gateway asks for with each sample (0: only the sampled token's)."""
        self.name: str = name or f"confidence({statistic},{measure},w={window})"

    def confidence(self, trace: Sequence[tuple[str, float, float | None]]) -> float:
        """The raw trace confidence (:attr:`statistic` of the group confidences); -inf for no tokens."""
        groups = group_confidences(token_confidences(trace, self.measure), self.window)
        if not groups:
            return -math.inf
        if self.statistic == "lowest":
            return min(groups)
        if self.statistic == "tail":
            return groups[-1]
        return math.fsum(token_confidences(trace, self.measure)) / len(trace)

    def to_score(self, confidence: float) -> float:
        """The raw confidence mapped into [0, 1], monotonically."""
        if confidence == -math.inf:
            return 0.0
        if self.measure == "chosen":
            return math.exp(min(confidence, 0.0))
        return 1.0 - math.exp(-max(confidence, 0.0))

    async def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, ledger: Ledger | None = None
    ) -> list[list[float]]:
        """Text alone carries no confidence: this verifier scores candidates (:meth:`score_candidates`)."""
        raise MissingLogprobsError(
            f"{self.name} scores the token logprobs of sampled solutions and was given text only: use it as the "
            "verifier of a strategy that samples whole solutions (best-of-N, adaptive sampling), whose gateway "
            "calls then ask for logprobs"
        )

    async def score_candidates(
        self, question: str, candidates: Sequence[Candidate], *, ledger: Ledger | None = None
    ) -> list[list[float]]:
        """Per candidate, per step: the confidence of the trace up to the end of that step (see the module doc)."""
        traces = []
        for candidate in candidates:
            trace = candidate.meta.get(TOKENS_META_KEY)
            if trace is None:
                raise MissingLogprobsError(
                    f"{self.name}: a candidate carries no token logprobs. The backend returned none (a model "
                    "with ModelSpec(supports_logprobs=False) is never asked; a llama.cpp server needs "
                    "--logits_all), or the candidate was built step by step (beam search, DVTS, revisions), "
                    "which keeps no tokens"
                )
            traces.append(trace)
        scores = [self._step_scores(c.steps, trace) for c, trace in zip(candidates, traces, strict=True)]
        if self.keep < 1.0 and scores:
            finals = [s[-1] if s else 0.0 for s in scores]
            kept = max(1, math.ceil(self.keep * len(scores)))
            order = sorted(range(len(scores)), key=lambda i: (-finals[i], i))
            dropped = set(order[kept:])
            scores = [[0.0] * len(s) if i in dropped else s for i, s in enumerate(scores)]
        return scores

    def _step_scores(self, steps: Sequence[str], trace: Sequence[tuple[str, float, float | None]]) -> list[float]:
        """The trace's confidence up to the token where each step ends in the sampled text."""
        text = "".join(token for token, _, _ in trace)
        ends: list[int] = []  # character offset where each token ends
        offset = 0
        for token, _, _ in trace:
            offset += len(token)
            ends.append(offset)
        out = []
        position = 0
        for step in steps:
            found = text.find(step, position) if step else -1
            position = found + len(step) if found >= 0 else len(text)
            tokens = max(1, sum(1 for end in ends if end <= position))
            out.append(self.to_score(self.confidence(trace[:tokens])))
        return out
