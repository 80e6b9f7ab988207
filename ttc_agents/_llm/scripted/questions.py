"""A question's computation and difficulty, and the hashes the draws come from (see "Difficulty"
and "Randomness" in :mod:`ttc_agents._llm.scripted`)."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from ttc_agents._llm.scripted.parser import _apply, _find_expression, _Operand, _plan, _Step


def _stable_hash(*parts: object) -> int:
    data = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _unit(*parts: object) -> float:
    """A uniform number in [0, 1) determined by ``parts``."""
    return _stable_hash(*parts) / 2.0**64


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True, slots=True)
class _Question:
    text: str
    steps: tuple[_Step, ...]
    values: tuple[Fraction, ...]
    """True result of each step."""
    answer: Fraction | None
    """None when the question has no expression."""
    error_p: float
    """p(q): per-step error probability at temperature 0.8 for the default profile."""


@functools.lru_cache(maxsize=8192)
def _question(text: str) -> _Question:
    node = _find_expression(text)
    steps: list[_Step] = []
    if node is not None:
        _plan(node, steps)
    values: list[Fraction] = []
    for step in steps:
        result = _apply(step.op, _resolve(step.left, values), _resolve(step.right, values))
        if result is None:  # the question itself divides by zero: treat as no expression
            steps, values = [], []
            break
        values.append(result)
    if not steps:
        return _Question(text, (), (), None, 0.0)
    literals = [operand for step in steps for operand in (step.left, step.right) if isinstance(operand, Fraction)]
    magnitude = max(max(abs(v.numerator), v.denominator) for v in (*literals, *values))
    z = -4.0 + 0.45 * (len(steps) - 1) + 0.75 * math.log10(1 + magnitude) + 3.0 * (_unit("jitter", text) - 0.5)
    error_p = min(max(_sigmoid(z), 0.01), 0.6)
    return _Question(text, tuple(steps), tuple(values), values[-1], error_p)


def _resolve(operand: _Operand, values: Sequence[Fraction]) -> Fraction:
    return operand if isinstance(operand, Fraction) else values[operand]
