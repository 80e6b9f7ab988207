"""OpenAI-style token logprobs of a scripted sample."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from typing import Final

from litellm.types.utils import ChatCompletionTokenLogprob, ChoiceLogprobs, TopLogprob

from ttc_agents._llm.scripted.solutions import _Draft

_JUDGE_LABEL_MASS: Final = 0.97
"""The probability mass of "Yes" and "No" together at a judge's first token."""


_FILLER_TOKENS: Final = (
    " ", "\n", "=", "+", "-", "*", "/", ".", "The", "answer", "is", "(", ")", "\\", "boxed", "{", "}",
    "So", "Step", "Then", "we", "get", "Yes", "No", "Rating", ":",
)  # fmt: skip
_DIGITS: Final = tuple("0123456789")
_JUDGE_FILLERS: Final = (
    "yes", "no", " Yes", " No", "The", "\n", "Rating", "Correct", "Incorrect",
    *(t for t in _FILLER_TOKENS if t not in ("Yes", "No", "\n", "Rating")),
)  # fmt: skip


_CONFIDENT_LEVELS: Final = tuple(0.85 + 0.149 * i / 15 for i in range(16))
_SHAKY_LEVELS: Final = tuple(0.4 + 0.3 * i / 15 for i in range(16))
"""Probabilities of a generated token: sure, or (inside a mistaken result) hesitant. Always above the
best alternative (at most 0.6 of the rest), so the chosen token is the most likely one."""


def _top(token: str, logprob: float) -> TopLogprob:
    return TopLogprob(token=token, logprob=logprob, bytes=list(token.encode()))


def _entry(token: str, ranked: Sequence[tuple[str, float]], top_k: int) -> ChatCompletionTokenLogprob:
    """The logprob entry of ``token``, with the first ``top_k`` of ``ranked`` (token, probability)."""
    return ChatCompletionTokenLogprob(
        token=token,
        logprob=math.log(dict(ranked).get(token, ranked[0][1])),
        bytes=list(token.encode()),
        top_logprobs=[_top(t, math.log(p)) for t, p in ranked[:top_k]],
    )


@functools.lru_cache(maxsize=65536)
def _generated_entry(token: str, probability: float, top_k: int) -> ChatCompletionTokenLogprob:
    """Entries are shared between responses (building ~100 pydantic objects per sample is slow and
    keeps the garbage collector busy): treat them as read-only."""
    pool = _DIGITS + _FILLER_TOKENS if token.isdigit() else _FILLER_TOKENS + _DIGITS
    ranked = [(token, probability)]
    rest = 1.0 - probability
    for alt in [alt for alt in pool if alt != token][: max(top_k - 1, 0)]:
        ranked.append((alt, 0.6 * rest))  # a geometric tail: the alternatives share at most 1 - p
        rest *= 0.4
    return _entry(token, ranked, top_k)


def _judge_entry(token: str, p_yes: float, top_k: int) -> ChatCompletionTokenLogprob:
    ranked = sorted(
        [("Yes", _JUDGE_LABEL_MASS * p_yes), ("No", _JUDGE_LABEL_MASS * (1 - p_yes))],
        key=lambda item: -item[1],
    )
    rest = 1.0 - _JUDGE_LABEL_MASS
    for alt in _JUDGE_FILLERS[: max(top_k - 2, 0)]:
        rest /= 2
        ranked.append((alt, rest))
    return _entry(token, ranked, top_k)


def _logprobs(draft: _Draft, tokens: Sequence[str], top_k: int, rng: random.Random) -> ChoiceLogprobs:
    """OpenAI-style token logprobs. The chosen token is always the most likely one; tokens of a mistaken
    result are less certain; a judge's first token carries its P("Yes") and P("No")."""
    content: list[ChatCompletionTokenLogprob] = []
    offset = 0
    for position, token in enumerate(tokens):
        if position == 0 and draft.first_token_p_yes is not None:
            content.append(_judge_entry(token, draft.first_token_p_yes, top_k))
        else:
            shaky = any(start <= offset < end for start, end in draft.shaky_spans)
            levels = _SHAKY_LEVELS if shaky else _CONFIDENT_LEVELS
            content.append(_generated_entry(token, levels[rng.randrange(len(levels))], top_k))
        offset += len(token)
    return ChoiceLogprobs(content=content)
