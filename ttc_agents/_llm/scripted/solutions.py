"""Sampling: seeded mistakes in worked solutions, revisions and noisy judge verdicts (see "Difficulty"
in :mod:`ttc_agents._llm.scripted`)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from ttc_agents._llm.scripted.parser import _answer_line, _apply, _fmt, _fmt_operand, _Step
from ttc_agents._llm.scripted.prompts import (
    _ATTEMPT_HEADER_RE,
    _BOXED_RE,
    _answer_value,
    _claim_holds,
    _last_boxed,
    _result_value,
)
from ttc_agents._llm.scripted.questions import _Question, _resolve, _stable_hash, _unit

_FAVOURITE_MISTAKE_P: Final = 0.6
_REVISION_FACTOR: Final = 0.6
_REVISION_FLOOR: Final = 0.3
_OVERCORRECTION_P: Final = 0.1

_JUDGE_MEAN_RIGHT: Final = 0.76
_JUDGE_MEAN_WRONG: Final = 0.28
_JUDGE_SD: Final = 0.21


class _Dice:
    """The randomness of one sample: a seeded RNG, or (greedy, ``rng is None``) hashes of the key."""

    def __init__(self, rng: random.Random | None, greedy_key: tuple[object, ...]) -> None:
        self._rng = rng
        self._key = greedy_key

    def uniform(self, *key: object) -> float:
        return self._rng.random() if self._rng is not None else _unit(*self._key, *key)

    def gauss(self, mu: float, sigma: float, *key: object) -> float:
        if self._rng is not None:
            return self._rng.gauss(mu, sigma)
        u1, u2 = _unit(*self._key, *key, 1), _unit(*self._key, *key, 2)
        return mu + sigma * math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)


_Mistake = Callable[[Fraction, Fraction], Fraction | None]
_ONE, _TEN = Fraction(1), Fraction(10)
_MISTAKES: Final[Mapping[str, tuple[_Mistake, ...]]] = {
    "+": (lambda a, b: a + b + _ONE, lambda a, b: a + b - _ONE, lambda a, b: a + b + _TEN,
          lambda a, b: a - b, lambda a, b: a * b),
    "-": (lambda a, b: a - b - _ONE, lambda a, b: a - b + _ONE, lambda a, b: a - b - _TEN,
          lambda a, b: a + b, lambda a, b: b - a),
    "*": (lambda a, b: a * b + a, lambda a, b: a * b - a, lambda a, b: a * b + _TEN,
          lambda a, b: a + b, lambda a, b: a * b - b),
    "/": (lambda a, b: a * b, lambda a, b: b / a if a else None, lambda a, b: a / b + _ONE if b else None,
          lambda a, b: a / b - _ONE if b else None),
}  # fmt: skip
"""Typical slips per operator: off by one or ten, a wrong operator, swapped operands."""


@dataclass(frozen=True, slots=True)
class _Draft:
    """A sampled completion before truncation, with the character spans of mistaken results."""

    text: str
    shaky_spans: tuple[tuple[int, int], ...] = ()
    first_token_p_yes: float | None = None
    """For a judge: P("Yes") of the first token."""


def _wrong_result(question: _Question, index: int, step: _Step, a: Fraction, b: Fraction, dice: _Dice) -> Fraction:
    right = _apply(step.op, a, b)
    if right is None:
        return Fraction(0)
    mistakes = _MISTAKES[step.op]
    favourite = _stable_hash("favourite", question.text, index) % len(mistakes)
    if dice.uniform("favourite", index) >= _FAVOURITE_MISTAKE_P:
        favourite = int(dice.uniform("mistake", index) * len(mistakes))
    wrong = mistakes[favourite](a, b)
    return wrong if wrong is not None and wrong != right else right + _ONE


def _write_solution(
    question: _Question,
    prefix: Sequence[Fraction],
    step_p: float,
    dice: _Dice,
    forced_mistake: int | None = None,
) -> _Draft:
    """Steps ``len(prefix)..`` of the question, carrying the (maybe wrong) values of ``prefix``."""
    if question.answer is None:
        return _Draft(_answer_line("0"))
    values = list(prefix)
    lines: list[str] = []
    spans: list[tuple[int, int]] = []
    offset = 0
    for index in range(len(values), len(question.steps)):
        step = question.steps[index]
        a, b = _resolve(step.left, values), _resolve(step.right, values)
        result = _apply(step.op, a, b)
        wrong = result is None or index == forced_mistake or dice.uniform("step", index) < step_p
        if wrong or result is None:
            result = _wrong_result(question, index, step, a, b, dice)
        claim = f"{_fmt_operand(a)} {step.op} {_fmt_operand(b)} = "
        line = claim + _fmt(result)
        if wrong:
            spans.append((offset + len(claim), offset + len(line)))
        lines.append(line)
        offset += len(line) + 1
        values.append(result)
    final = values[-1] if values else question.answer
    lines.append(_answer_line(_fmt(final)))
    return _Draft("\n".join(lines), tuple(spans))


def _continue_steps(question: _Question, steps: Sequence[str], step_p: float, dice: _Dice) -> _Draft:
    """The rest of a solution after ``steps``, whose results are carried forward even when wrong."""
    for line in steps:
        if (boxed := _last_boxed(line)) is not None:
            return _Draft(_answer_line(boxed))
    step_lines = [line for line in steps if "=" in line]
    if question.answer is None:
        return _Draft(_answer_line("0"))
    if len(step_lines) >= len(question.steps):
        last = _result_value(step_lines[-1]) if step_lines else None
        return _Draft(_answer_line(_fmt(last if last is not None else question.answer)))
    prefix = [
        value if (value := _result_value(line)) is not None else question.values[index]
        for index, line in enumerate(step_lines)
    ]
    return _write_solution(question, prefix, step_p, dice)


def _revise(question: _Question, attempts: Sequence[str], step_p: float, scale: float, dice: _Dice) -> _Draft:
    """A new solution, better on average than the attempts, but sometimes breaking a right one."""
    text = "\n".join(attempts)
    count = max(1, len(_BOXED_RE.findall(text)), len(_ATTEMPT_HEADER_RE.findall(text)))
    revised_p = step_p * max(_REVISION_FACTOR**count, _REVISION_FLOOR)
    forced: int | None = None
    was_right = question.answer is not None and _answer_value(_last_boxed(text)) == question.answer
    if was_right and dice.uniform("overcorrect") < min(_OVERCORRECTION_P * scale, 0.3):
        forced = int(dice.uniform("overcorrect-step") * len(question.steps))
    return _write_solution(question, (), revised_p, dice, forced_mistake=forced)


def _judge(is_right: bool, dice: _Dice) -> _Draft:
    """A noisy verdict: P("Yes") drawn around 0.76 for right work and 0.28 for wrong work."""
    mean = _JUDGE_MEAN_RIGHT if is_right else _JUDGE_MEAN_WRONG
    p_yes = min(max(dice.gauss(mean, _JUDGE_SD, "confidence"), 0.02), 0.98)
    rating = min(max(round(10 * p_yes + dice.gauss(0.0, 1.0, "rating")), 0), 10)
    verdict = "Yes" if p_yes >= 0.5 else "No"
    return _Draft(f"{verdict}\nRating: {rating}", first_token_p_yes=p_yes)


def _judge_step(question: _Question, steps: Sequence[str]) -> bool:
    if not steps:
        return False
    last = steps[-1]
    if (boxed := _last_boxed(last)) is not None:
        return question.answer is not None and _answer_value(boxed) == question.answer
    return _claim_holds(last)
