"""The verifier seam: anything that scores the steps of many candidates in one call."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from ttc_agents._core.budget import Ledger
from ttc_agents._core.candidates import Candidate, UnjudgedScore

__all__ = ["CallableVerifier", "CandidateVerifier", "ScoreFunction", "Verifier", "as_verifier"]

ScoreFunction = Callable[
    [str, Sequence[Sequence[str]]],
    "list[list[float]] | Awaitable[list[list[float]]]",
]


@runtime_checkable
class Verifier(Protocol):
    """Scores every step of every candidate: one list of floats in [0, 1] per candidate.

    ``score`` is async and batched: the strategies hand it all candidates of a round at once.
    Verifiers that call a model book those calls in ``ledger``.
    """

    name: str

    async def score(
        self,
        question: str,
        candidates: Sequence[Sequence[str]],
        *,
        ledger: Ledger | None = None,
    ) -> list[list[float]]: ...


@runtime_checkable
class CandidateVerifier(Verifier, Protocol):
    """A verifier that scores candidates, not only their steps' text: the strategies call
    ``score_candidates`` instead of ``score`` (the token-confidence scorer reads the candidates' token
    logprobs). Same result shape: one list of floats in [0, 1] per candidate, one per step."""

    async def score_candidates(
        self,
        question: str,
        candidates: Sequence[Candidate],
        *,
        ledger: Ledger | None = None,
    ) -> list[list[float]]: ...


class CallableVerifier:
    """A verifier from any sync or async function ``f(question, candidates) -> scores``."""

    def __init__(self, function: ScoreFunction, name: str | None = None) -> None:
        self.function = function
        self.name: str = name or str(getattr(function, "__name__", "callable"))

    async def score(
        self,
        question: str,
        candidates: Sequence[Sequence[str]],
        *,
        ledger: Ledger | None = None,
    ) -> list[list[float]]:
        result = self.function(question, candidates)
        if inspect.isawaitable(result):
            result = await result
        scores = [[x if isinstance(x, UnjudgedScore) else float(x) for x in s] for s in result]  # UNJUDGED stays
        if len(scores) != len(candidates):
            raise ValueError(
                f"verifier {self.name!r} returned {len(scores)} score lists for {len(candidates)} candidates"
            )
        for steps, step_scores in zip(candidates, scores, strict=True):
            if len(step_scores) != len(steps):
                raise ValueError(f"verifier {self.name!r} returned {len(step_scores)} scores for {len(steps)} steps")
        return scores


def as_verifier(obj: Verifier | ScoreFunction) -> Verifier:
    """``obj`` itself when it is a Verifier, else a :class:`CallableVerifier` around it."""
    if isinstance(obj, Verifier):
        return obj
    if callable(obj):
        return CallableVerifier(obj)
    raise TypeError(f"not a verifier or score function: {obj!r}")


def fresh_verifier(verifier: Verifier | None) -> Verifier | None:
    """``verifier`` without the memory of earlier runs: its ``fresh()`` copy when it keeps a score
    cache (the LLM judges), else itself. Measurements that charge each run what it costs alone use it."""
    fresh = getattr(verifier, "fresh", None)
    return fresh() if callable(fresh) else verifier
