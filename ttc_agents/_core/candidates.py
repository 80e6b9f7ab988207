"""Candidates (partial or finished solutions) and how a final answer is selected among them.

Per candidate, the verifier's step scores are reduced to one number (``last`` by default: the
paper found the last step's PRM score best). Across candidates the answer is chosen by naive
best-of-N (highest score), best-of-N weighted (sum of scores per distinct final answer) or
majority vote. A candidate with no parseable answer never wins over one that has an answer, and
one the verifier did not judge (its call refused by the budget: :data:`UNJUDGED`) never outweighs
the judged ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ttc_agents._core.answers import group_answers, normalize_answer

__all__ = [
    "UNJUDGED",
    "Aggregation",
    "Candidate",
    "Selection",
    "SelectionMethod",
    "UnjudgedScore",
    "aggregate_scores",
    "select_answer",
    "select_hierarchical",
]

Aggregation = Literal["last", "min", "prod", "mean"]
SelectionMethod = Literal["naive", "weighted", "majority"]


class UnjudgedScore(float):
    """The neutral score a verifier gives a step it did not judge (the budget refused the call).

    It is 0.5 in arithmetic, so a search can still rank with it, but :func:`score_candidates
    <ttc_agents._routing.moves.score_candidates>` marks its candidate ``meta["unjudged"]``, and selection
    leaves such candidates out while judged ones exist: a budget running out mid-scoring must not give
    unjudged samples a vote as if a verifier had found them half right."""

    __slots__ = ()


UNJUDGED: float = UnjudgedScore(0.5)
"""The score of a step no verifier call judged."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A (partial) solution: its steps, final answer if it has one, and its verifier scores.

    ``chain`` and ``attempt`` locate a revision attempt; ``group`` is the subtree of DVTS.
    """

    steps: tuple[str, ...]
    answer: str | None = None
    finished: bool = False
    step_scores: tuple[float, ...] = ()
    score: float | None = None
    chain: int | None = None
    attempt: int | None = None
    group: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # A checkpointer (msgpack) gives tuples back as lists: keep them tuples, or a graph resumed from
        # a checkpoint fails extending its steps (list + tuple).
        if not isinstance(self.steps, tuple):
            object.__setattr__(self, "steps", tuple(self.steps))
        if not isinstance(self.step_scores, tuple):
            object.__setattr__(self, "step_scores", tuple(self.step_scores))

    @property
    def text(self) -> str:
        return "\n".join(self.steps)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for results and the CLI."""
        out: dict[str, Any] = {
            "answer": self.answer,
            "score": self.score,
            "step_scores": list(self.step_scores),
            "finished": self.finished,
            "text": self.text,
        }
        for key in ("chain", "attempt", "group"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def scored(self, step_scores: Sequence[float], aggregation: Aggregation) -> Candidate:
        return self.evolve(step_scores=tuple(step_scores), score=aggregate_scores(step_scores, aggregation))

    def evolve(self, **changes: Any) -> Candidate:
        """``dataclasses.replace(self, **changes)``, without its per-call introspection (search moves make
        a few hundred candidates per question)."""
        values = {name: getattr(self, name) for name in _CANDIDATE_FIELDS}
        values.update(changes)
        return Candidate(**values)


_CANDIDATE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Candidate))


def aggregate_scores(step_scores: Sequence[float], how: Aggregation = "last") -> float:
    """One score for a candidate from its per-step scores (0.0 for no steps)."""
    if not step_scores:
        return 0.0
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "prod":
        return float(math.prod(step_scores))
    if how == "mean":
        return float(sum(step_scores) / len(step_scores))
    raise ValueError(f"unknown aggregation {how!r}; use last, min, prod or mean")


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen answer, the candidate that carries it, and the total weight of every answer."""

    answer: str | None
    index: int | None
    weights: dict[str, float]


def select_answer(candidates: Sequence[Candidate], method: SelectionMethod = "weighted") -> Selection:
    """Pick the final answer among ``candidates``.

    ``naive``: the single highest-scored candidate. ``weighted``: the answer whose equivalent
    candidates have the largest summed score. ``majority``: the most frequent answer (summed score
    breaks ties). Unscored candidates count with score 1.0 for weighting, so ``weighted`` without
    a verifier is majority vote. ``naive`` and ``weighted`` leave out candidates marked unjudged (see
    :class:`UnjudgedScore`) when any answered candidate was judged. Ties keep the earliest candidate.
    """
    if not candidates:
        return Selection(None, None, {})
    # An answer that normalises to nothing (\boxed{\text{}}, \boxed{$}) is no answer.
    answered = [i for i, c in enumerate(candidates) if c.answer is not None and normalize_answer(c.answer)]
    if not answered:
        best = max(range(len(candidates)), key=lambda i: _score(candidates[i]))
        return Selection(None, best, {})
    if method != "majority":
        answered = [i for i in answered if not candidates[i].meta.get("unjudged")] or answered
    if method == "naive":
        best = max(answered, key=lambda i: (_score(candidates[i]), -i))
        return Selection(candidates[best].answer, best, {str(candidates[best].answer): _score(candidates[best])})
    groups = group_answers([candidates[i].answer for i in answered])
    totals: dict[int, float] = {}
    counts: dict[int, int] = {}
    best_in_group: dict[int, int] = {}
    for position, group in zip(answered, groups, strict=True):
        assert group is not None
        totals[group] = totals.get(group, 0.0) + _score(candidates[position])
        counts[group] = counts.get(group, 0) + 1
        current = best_in_group.get(group)
        if current is None or _score(candidates[position]) > _score(candidates[current]):
            best_in_group[group] = position
    order = list(dict.fromkeys(g for g in groups if g is not None))
    if method == "weighted":
        winner = max(order, key=lambda g: totals[g])
    elif method == "majority":
        winner = max(order, key=lambda g: (counts[g], totals[g]))
    else:
        raise ValueError(f"unknown selection {method!r}; use naive, weighted or majority")
    index = best_in_group[winner]
    weights = {str(candidates[best_in_group[g]].answer): totals[g] for g in order}
    return Selection(candidates[index].answer, index, weights)


def _score(candidate: Candidate) -> float:
    return 1.0 if candidate.score is None else candidate.score


def select_hierarchical(candidates: Sequence[Candidate]) -> Selection:
    """Revision chains: best-of-N weighted within each chain, then weighted across the chain winners.

    Revisions can turn a right answer wrong, so the last attempt of a chain is not trusted blindly.
    """
    chains: dict[int | None, list[int]] = {}
    for index, candidate in enumerate(candidates):
        chains.setdefault(candidate.chain, []).append(index)
    winners: list[int] = []
    for members in chains.values():
        inside = select_answer([candidates[i] for i in members], "weighted")
        if inside.index is not None:
            winners.append(members[inside.index])
    across = select_answer([candidates[i] for i in winners], "weighted")
    if across.index is None:
        return Selection(None, None, {})
    return Selection(across.answer, winners[across.index], across.weights)
