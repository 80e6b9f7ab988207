"""Verifiers from any chat model acting as a judge: a process (PRM) and an outcome (ORM) reward model.

The judge is asked whether the last step (PRM) or the final answer (ORM) is correct and to answer
"Yes" or "No", then "Rating: N". The score is P(correct), read from the logprobs of the first
generated token: the probabilities of the "Yes" and "No" entries among its top logprobs,
renormalised, ``P(Yes) / (P(Yes) + P(No))``. Backends without logprobs (or a first token that is
neither) fall back to the text: ``Rating: N`` gives N/10, else a leading Yes/No gives 1.0/0.0,
else 0.5.

Every judge call goes through the gateway under the node name ``"verify"``, so it is booked in the
ledger handed to :meth:`score`. Scores are cached per (question, judged text), so a beam search
round pays only for the steps it has not seen. When the budget refuses a call, the unscored steps
get the neutral score 0.5 (not cached) and no further calls are issued for that batch.
"""

from __future__ import annotations

import asyncio
import copy
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from ttc_agents._core.budget import Ledger
from ttc_agents._core.candidates import UNJUDGED
from ttc_agents._llm.gateway import Gateway, Sample, gather_or_cancel, get_default_gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents.prompts import render_prompt

__all__ = ["NEUTRAL_SCORE", "LLMJudgeORM", "LLMJudgePRM", "judge_probability"]

NEUTRAL_SCORE = 0.5
"""The score of a step that could not be judged (the budget refused the call, or no verdict)."""

_MAX_TOKENS = 8
_TOP_LOGPROBS = 10
_RATING = re.compile(r"rating\s*[:=]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_VERDICT = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)

Unit = tuple[str, ...]
"""The steps one judge call looks at: a prefix (PRM) or a whole solution (ORM)."""


def _logprob(value: object) -> float | None:
    """A logprob as the server sent it: a number, at most 0 (larger ones are clipped); else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    logprob = float(value)
    return None if math.isnan(logprob) else min(logprob, 0.0)


def _verdict_logprobs(position: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """The (P(Yes), P(No)) masses among one token position's top logprobs (None when absent).

    What a server sends is not trusted: entries that are not a token with a numeric logprob are skipped.
    """
    entries: dict[str, float] = {}
    top = position.get("top_logprobs")
    for item in top if isinstance(top, list | tuple) else ():
        if isinstance(item, Mapping) and "token" in item and (logprob := _logprob(item.get("logprob"))) is not None:
            entries.setdefault(str(item["token"]), logprob)
    if "token" in position and (logprob := _logprob(position.get("logprob"))) is not None:
        entries.setdefault(str(position["token"]), logprob)
    yes = [lp for token, lp in entries.items() if token.strip().lower() == "yes"]
    no = [lp for token, lp in entries.items() if token.strip().lower() == "no"]
    return (
        sum(math.exp(lp) for lp in yes) if yes else None,
        sum(math.exp(lp) for lp in no) if no else None,
    )


def _first_token(logprobs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first generated token that is not only whitespace (chat models may open with one)."""
    for position in logprobs:
        if isinstance(position, Mapping) and str(position.get("token", "")).strip():
            return position
    return None


def _from_logprobs(logprobs: Sequence[Mapping[str, Any]] | None) -> float | None:
    if not logprobs:
        return None
    position = _first_token(logprobs)
    if position is None:
        return None
    p_yes, p_no = _verdict_logprobs(position)
    if p_yes is None and p_no is None:
        return None
    p_yes, p_no = p_yes or 0.0, p_no or 0.0
    total = p_yes + p_no
    return p_yes / total if total > 0 else None


def _from_text(text: str) -> float | None:
    rating = _RATING.search(text)
    if rating is not None:
        value = float(rating.group(1))
        if 0 <= value <= 10:
            return value / 10
    verdict = _VERDICT.match(text)
    if verdict is not None:
        return 1.0 if verdict.group(1).lower() == "yes" else 0.0
    return None


def judge_probability(sample: Sample) -> float:
    """P(correct) from one judge answer: Yes/No logprobs, else ``Rating: N``, else Yes/No text, else 0.5.

    Yes/No tokens match case- and whitespace-insensitively (``" yes"``, ``"YES"``). When only one
    of them is among the top logprobs, the other counts as zero (so only "No" gives 0.0).
    """
    from_logprobs = _from_logprobs(sample.logprobs)
    if from_logprobs is not None:
        return from_logprobs
    from_text = _from_text(sample.text)
    return NEUTRAL_SCORE if from_text is None else from_text


class _ScoreCache:
    """A bounded LRU map from (question, unit) to a judged score."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"cache_size must be >= 0, got {size}")
        self.size = size
        self._items: OrderedDict[tuple[str, Unit], float] = OrderedDict()

    def get(self, key: tuple[str, Unit]) -> float | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple[str, Unit], value: float) -> None:
        if self.size == 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()


class _LLMJudge:
    """What the PRM and ORM share: caching, concurrent judge calls, budget handling."""

    _prompt_name: ClassVar[str]
    _kind: ClassVar[str]

    def __init__(
        self,
        model: ModelSpec | str,
        *,
        gateway: Gateway | None = None,
        prompt: str | None = None,
        max_concurrency: int = 32,
        cache_size: int = 10_000,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.model = ModelSpec.of(model)
        self.name = f"{self._kind}:{self.model.name}"
        self.max_concurrency = max_concurrency
        self._gateway = gateway
        self._overrides = {self._prompt_name: prompt} if prompt is not None else None
        self._cache = _ScoreCache(cache_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.name!r})"

    @property
    def gateway(self) -> Gateway:
        """The gateway the judge calls go through (the process default unless one was given)."""
        return self._gateway if self._gateway is not None else get_default_gateway()

    def clear_cache(self) -> None:
        """Forget every cached score."""
        self._cache.clear()

    def fresh(self) -> _LLMJudge:
        """The same judge with an empty score cache of its own: what a run costs measured alone
        (calibration cells, evaluation runs), not helped by scores another run already paid for."""
        twin = copy.copy(self)
        twin._cache = _ScoreCache(self._cache.size)
        return twin

    def _units(self, steps: Sequence[str]) -> list[Unit]:
        raise NotImplementedError

    def _render(self, question: str, unit: Unit) -> str:
        raise NotImplementedError

    def _expand(self, steps: Sequence[str], unit_scores: list[float]) -> list[float]:
        raise NotImplementedError

    async def score(
        self,
        question: str,
        candidates: Sequence[Sequence[str]],
        *,
        ledger: Ledger | None = None,
    ) -> list[list[float]]:
        """One score in [0, 1] per step of each candidate; unjudged steps (budget refused) get 0.5."""
        units = [self._units(steps) for steps in candidates]
        known: dict[Unit, float] = {}
        missing: list[Unit] = []
        for unit in _unique(u for per_candidate in units for u in per_candidate):
            cached = self._cache.get((question, unit))
            if cached is None:
                missing.append(unit)
            else:
                known[unit] = cached
        known.update(await self._judge_all(question, missing, ledger))
        return [
            self._expand(steps, [known.get(u, UNJUDGED) for u in per_candidate])
            for steps, per_candidate in zip(candidates, units, strict=True)
        ]

    async def _judge_all(self, question: str, units: list[Unit], ledger: Ledger | None) -> dict[Unit, float]:
        """Judge ``units`` concurrently; a budget refusal stops the calls not yet issued."""
        if not units:
            return {}
        gate = asyncio.Semaphore(self.max_concurrency)
        refused = asyncio.Event()
        gateway = self.gateway

        async def judge(unit: Unit) -> float | None:
            async with gate:
                if refused.is_set():
                    return None
                batch = await gateway.sample(
                    self.model,
                    [{"role": "user", "content": self._render(question, unit)}],
                    1,
                    ledger=ledger,
                    node="verify",
                    max_tokens=_MAX_TOKENS,
                    temperature=0.0,
                    logprobs=True,
                    top_logprobs=_TOP_LOGPROBS,
                )
                if not batch.samples:
                    refused.set()
                    return None
                return judge_probability(batch.samples[0])

        # One failure cancels the other judgements, and is raised once they have booked their spend.
        results = await gather_or_cancel(*(judge(unit) for unit in units))
        judged: dict[Unit, float] = {}
        for unit, value in zip(units, results, strict=True):
            if value is not None:
                judged[unit] = value
                self._cache.put((question, unit), value)
        return judged


def _unique(units: Iterable[Unit]) -> list[Unit]:
    return list(dict.fromkeys(units))


class LLMJudgePRM(_LLMJudge):
    """A process reward model from any chat model: P(correct) of every step, judged in context.

    Step ``i`` is judged with the ``judge_step`` prompt (``$question``, ``$steps`` = steps 1..i
    joined by newlines); ``prompt`` replaces that template. All prefixes of a batch are judged
    concurrently (at most ``max_concurrency`` calls at a time) with temperature 0, booked under
    node ``"verify"``. Scores are cached per (question, prefix) in an LRU of ``cache_size``
    entries, so extending a scored candidate by one step costs one call. When the budget refuses
    a call, that step and all steps not yet judged get the neutral score 0.5, uncached, and no
    further call is issued for the batch.
    """

    _prompt_name = "judge_step"
    _kind = "prm"

    def _units(self, steps: Sequence[str]) -> list[Unit]:
        return [tuple(steps[: i + 1]) for i in range(len(steps))]

    def _render(self, question: str, unit: Unit) -> str:
        return str(render_prompt(self._prompt_name, self._overrides, question=question, steps="\n".join(unit)))

    def _expand(self, steps: Sequence[str], unit_scores: list[float]) -> list[float]:
        return unit_scores


class LLMJudgeORM(_LLMJudge):
    """An outcome reward model from any chat model: one judgement of the whole solution.

    Uses the ``judge_answer`` prompt (``$question``, ``$solution`` = all steps joined by newlines),
    one call per distinct candidate, and gives every step the same score so that ``last``
    aggregation works. Same caching, concurrency and budget handling as :class:`LLMJudgePRM`.
    """

    _prompt_name = "judge_answer"
    _kind = "orm"

    def _units(self, steps: Sequence[str]) -> list[Unit]:
        return [tuple(steps)] if steps else []

    def _render(self, question: str, unit: Unit) -> str:
        text = render_prompt(self._prompt_name, self._overrides, question=question, solution="\n".join(unit))
        return str(text)

    def _expand(self, steps: Sequence[str], unit_scores: list[float]) -> list[float]:
        return [unit_scores[0]] * len(steps) if unit_scores else []
