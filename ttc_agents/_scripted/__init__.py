"""A deterministic, offline LLM test double registered with LiteLLM as the provider ``scripted``.

It is *not* a model: it solves the arithmetic expression in a question exactly, then makes seeded,
question-dependent mistakes so that sampling, voting, verifiers and revision behave like they do on a
real model, with no network and at a few microseconds per sample::

    register_scripted_provider()
    response = await litellm.acompletion(
        model="scripted/arith", messages=[{"role": "user", "content": prompt}], n=4, temperature=0.8, seed=1
    )

Profiles
    ``scripted/arith`` (default difficulty), ``scripted/arith-easy`` (error rates x0.3) and
    ``scripted/arith-hard`` (error rates x2, capped at 0.9). ``scripted/pop-<setting>`` (e.g.
    ``scripted/pop-mathlike``) answers the same questions and roles from a synthetic population with
    documented knobs (difficulty mixture, conceptual errors, distractors, judge AUC, over-optimisation,
    revision fix/flip rates): see :mod:`ttc_agents._population`. Everything below but "Difficulty" and
    the judges' score distributions holds for them too.

Roles
    The role is recognised from the last user message (the templates in ``prompts/*.txt``), checked in
    this order:

    1. ``judge_step``: a line that is exactly ``Steps:``.
    2. ``judge_answer``: a line that is exactly ``Solution:``.
    3. ``revise``: a line starting with ``Earlier attempts``.
    4. ``step_generate``: a line that is exactly ``Steps so far:``.
    5. ``generate``: anything else.

    The question is the rest of the last line starting with ``Problem:`` (the whole last user message
    when there is none). Sections (``Steps:``, ``Steps so far:``) are the lines after their header up to
    the next blank line; ``(none)`` means empty. ``Solution:`` and the earlier attempts run up to the
    template's closing question (or the end of the message).

Solutions
    The expression (integers or decimals, ``+ - * /``, parentheses, unary minus; ``×``, ``÷`` and ``−``
    are accepted too) is parsed by a small precedence parser and computed in evaluation order, one binary
    operation per line (``12 * 7 = 84``), ending with ``The answer is \\boxed{89}.`` Values are exact
    rationals: integers are written as integers, other values as a reduced fraction ``p/q``; as an
    operand a negative or fractional value is put in parentheses (``(89/5) - (-2) = 99/5``). A unary minus
    on a parenthesised expression is the step ``0 - v``. A question without an expression (or whose true
    computation divides by zero) is answered ``The answer is \\boxed{0}.`` A step that divides by zero
    because of an earlier mistake writes ``= 0`` (and is wrong).

Difficulty
    For a question with ``k`` binary operations, ``M`` the largest absolute value among its literals and
    true intermediate results (numerator or denominator) and ``u`` a uniform hash of the question text::

        p(q) = clamp(sigmoid(-4.0 + 0.45 (k - 1) + 0.75 log10(1 + M) + 3.0 (u - 0.5)), 0.01, 0.6)

    ``p(q)`` is the per-step error probability at the usual sampling temperature 0.8. A profile scales it
    (capped at 0.9) and temperature ``T`` scales it by ``0.6 + 0.5 T`` (capped at 0.95). ``T = 0`` is
    greedy: the draws come from hashes of (question, step), so all choices are identical, independent of
    ``seed``, and a hard question can be wrong. Mistakes come from a small per-operator list of typical
    slips (off by one or ten, wrong operator, swapped operands), with a per-(question, step) favourite, so
    wrong answers often collide. Later steps carry the wrong value forward.

Randomness
    Sample ``i`` draws from ``random.Random`` seeded with a blake2b hash of (profile, seed, question,
    i, role salt); without a seed the literal ``"noseed"`` is used, so calls are still deterministic.

Tokens
    :func:`scripted_tokenize` splits text with ``[0-9]|[A-Za-z]+|\\s+|[^\\sA-Za-z0-9]``: every token has
    at least one character, so a count never exceeds the UTF-8 byte count. Prompt tokens are the sum over
    all messages' text contents; completion tokens are counted on the returned (truncated) text.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

from litellm.types.utils import (
    ChatCompletionTokenLogprob,
    ChoiceLogprobs,
    Choices,
    Message,
    ModelResponse,
    TopLogprob,
    Usage,
)

from ttc_agents._custom_llm import CustomLLMAdapter, custom_llm_error
from ttc_agents._litellm import litellm

__all__ = [
    "SCRIPTED_PROFILES",
    "ScriptedLLM",
    "register_scripted_provider",
    "scripted_parameter_count",
    "scripted_prompt_tokens",
    "scripted_respond",
    "scripted_token_count",
    "scripted_tokenize",
]

PROVIDER: Final = "scripted"
INPUT_COST_PER_TOKEN: Final = 1e-7
OUTPUT_COST_PER_TOKEN: Final = 2e-7

SCRIPTED_PROFILES: Final[Mapping[str, float]] = {
    "arith": 1.0,
    "arith-easy": 0.3,
    "arith-hard": 2.0,
}
"""Profile name (the part after ``scripted/``) -> multiplier of the per-step error probability.
The synthetic populations ``pop-<setting>`` (:mod:`ttc_agents._population`) are profiles too."""

_POPULATION_PREFIX: Final = "pop-"

_MAX_PROFILE_P: Final = 0.9
_MAX_STEP_P: Final = 0.95
_FAVOURITE_MISTAKE_P: Final = 0.6
_REVISION_FACTOR: Final = 0.6
_REVISION_FLOOR: Final = 0.3
_OVERCORRECTION_P: Final = 0.1

_JUDGE_MEAN_RIGHT: Final = 0.76
_JUDGE_MEAN_WRONG: Final = 0.28
_JUDGE_SD: Final = 0.21
_JUDGE_LABEL_MASS: Final = 0.97

# ---------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------

_TOKEN_RE: Final = re.compile(r"[0-9]|[A-Za-z]+|\s+|[^\sA-Za-z0-9]")


def scripted_tokenize(text: str) -> list[str]:
    """Split ``text`` into the scripted provider's tokens (``"".join`` of the result is ``text``)."""
    return _TOKEN_RE.findall(text)


def scripted_token_count(text: str) -> int:
    """Number of tokens of ``text`` under :func:`scripted_tokenize`."""
    return len(_TOKEN_RE.findall(text))


def scripted_parameter_count() -> int:
    """Nominal parameter count of the scripted "model", for FLOPs estimates (2 N per token)."""
    return 1_000_000


# ---------------------------------------------------------------------------------------------------
# Arithmetic: tokenizer, precedence parser, evaluation plan
# ---------------------------------------------------------------------------------------------------


class _ParseError(ValueError):
    """The text is not an arithmetic expression this module understands."""


@dataclass(frozen=True, slots=True)
class _Num:
    value: Fraction


@dataclass(frozen=True, slots=True)
class _BinOp:
    op: str
    left: _Node
    right: _Node


_Node = _Num | _BinOp

_EXPR_TOKEN_RE: Final = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|(.))")
_OPERATOR_ALIASES: Final = {"×": "*", "÷": "/", "−": "-"}


def _expression_tokens(text: str) -> list[Fraction | str]:
    tokens: list[Fraction | str] = []
    for match in _EXPR_TOKEN_RE.finditer(text.rstrip()):
        number, symbol = match.groups()
        if number is not None:
            tokens.append(Fraction(number))
            continue
        symbol = _OPERATOR_ALIASES.get(symbol, symbol)
        if symbol not in "+-*/()":
            raise _ParseError(f"unexpected character {symbol!r}")
        tokens.append(symbol)
    return tokens


class _Parser:
    """Recursive descent: ``expr := term (+|- term)*``, ``term := unary (*|/ unary)*``,
    ``unary := (+|-) unary | atom``, ``atom := NUMBER | ( expr )``."""

    def __init__(self, text: str) -> None:
        self._tokens = _expression_tokens(text)
        self._pos = 0

    def parse(self) -> _Node:
        if not self._tokens:
            raise _ParseError("empty expression")
        node = self._expr()
        if self._pos != len(self._tokens):
            raise _ParseError(f"unexpected {self._tokens[self._pos]!r}")
        return node

    def _peek(self) -> Fraction | str | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _take(self) -> Fraction | str:
        token = self._peek()
        if token is None:
            raise _ParseError("unexpected end of expression")
        self._pos += 1
        return token

    def _expr(self) -> _Node:
        node = self._term()
        while (op := self._peek()) in ("+", "-"):
            self._pos += 1
            node = _BinOp(str(op), node, self._term())
        return node

    def _term(self) -> _Node:
        node = self._unary()
        while (op := self._peek()) in ("*", "/"):
            self._pos += 1
            node = _BinOp(str(op), node, self._unary())
        return node

    def _unary(self) -> _Node:
        sign = self._peek()
        if sign in ("+", "-"):
            self._pos += 1
            operand = self._unary()
            if sign == "+":
                return operand
            if isinstance(operand, _Num):
                return _Num(-operand.value)
            return _BinOp("-", _Num(Fraction(0)), operand)
        return self._atom()

    def _atom(self) -> _Node:
        token = self._take()
        if isinstance(token, Fraction):
            return _Num(token)
        if token == "(":
            node = self._expr()
            if self._take() != ")":
                raise _ParseError("missing ')'")
            return node
        raise _ParseError(f"unexpected {token!r}")


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction | None:
    """``a op b``, or None for a division by zero."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b else None


def _evaluate(node: _Node) -> Fraction:
    if isinstance(node, _Num):
        return node.value
    result = _apply(node.op, _evaluate(node.left), _evaluate(node.right))
    if result is None:
        raise _ParseError("division by zero")
    return result


def _evaluate_text(text: str) -> Fraction | None:
    """The exact value of an expression, or None when ``text`` is not one (or divides by zero)."""
    try:
        return _evaluate(_Parser(text).parse())
    except (_ParseError, RecursionError):
        return None


_Operand = Fraction | int
"""A literal value, or (an ``int``) the index of the step whose result is used."""


@dataclass(frozen=True, slots=True)
class _Step:
    op: str
    left: _Operand
    right: _Operand


def _plan(node: _Node, steps: list[_Step]) -> _Operand:
    """Append the binary operations of ``node`` to ``steps`` in evaluation order."""
    if isinstance(node, _Num):
        return node.value
    left = _plan(node.left, steps)
    right = _plan(node.right, steps)
    steps.append(_Step(node.op, left, right))
    return len(steps) - 1


_CANDIDATE_RE: Final = re.compile(r"[-−(\d][\d\s.+\-−*/×÷()]*")


def _find_expression(text: str) -> _Node | None:
    """The arithmetic run of ``text`` with the most operations (the first among equals), if any."""
    best: tuple[int, _Node] | None = None
    for match in _CANDIDATE_RE.finditer(text):
        candidate = match.group().strip().rstrip(".")
        for attempt in (candidate, candidate.rstrip(")"), candidate.lstrip("(")):
            try:
                node = _Parser(attempt).parse()
            except (_ParseError, RecursionError):
                continue
            ops = _count_ops(node)
            if best is None or ops > best[0]:
                best = (ops, node)
            break
    return best[1] if best else None


def _count_ops(node: _Node) -> int:
    return 0 if isinstance(node, _Num) else 1 + _count_ops(node.left) + _count_ops(node.right)


def _fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _fmt_operand(value: Fraction) -> str:
    text = _fmt(value)
    return f"({text})" if value < 0 or value.denominator != 1 else text


def _answer_line(answer: str) -> str:
    return f"The answer is \\boxed{{{answer}}}."


# ---------------------------------------------------------------------------------------------------
# Questions and difficulty
# ---------------------------------------------------------------------------------------------------


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
    literals = [
        operand for step in steps for operand in (step.left, step.right) if isinstance(operand, Fraction)
    ]
    magnitude = max(max(abs(v.numerator), v.denominator) for v in (*literals, *values))
    z = (
        -4.0
        + 0.45 * (len(steps) - 1)
        + 0.75 * math.log10(1 + magnitude)
        + 3.0 * (_unit("jitter", text) - 0.5)
    )
    error_p = min(max(_sigmoid(z), 0.01), 0.6)
    return _Question(text, tuple(steps), tuple(values), values[-1], error_p)


def _resolve(operand: _Operand, values: Sequence[Fraction]) -> Fraction:
    return operand if isinstance(operand, Fraction) else values[operand]


# ---------------------------------------------------------------------------------------------------
# Prompt reading
# ---------------------------------------------------------------------------------------------------


class _Role(enum.StrEnum):
    GENERATE = "generate"
    STEP_GENERATE = "step_generate"
    REVISE = "revise"
    JUDGE_STEP = "judge_step"
    JUDGE_ANSWER = "judge_answer"


_PROBLEM_RE: Final = re.compile(r"^[ \t]*Problem:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_BOXED_RE: Final = re.compile(r"\\boxed\{")
_ATTEMPT_HEADER_RE: Final = re.compile(
    r"^\s*(?:#+\s*)?(?:Attempt|Solution)\s*\d+", re.MULTILINE | re.IGNORECASE
)


def _content_text(content: object) -> str:
    """Text of a message ``content``: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return _content_text(messages[-1].get("content")) if messages else ""


def _has_line(lines: Sequence[str], header: str) -> bool:
    return any(line.strip() == header for line in lines)


def _detect_role(lines: Sequence[str]) -> _Role:
    if _has_line(lines, "Steps:"):
        return _Role.JUDGE_STEP
    if _has_line(lines, "Solution:"):
        return _Role.JUDGE_ANSWER
    if any(line.lstrip().startswith("Earlier attempts") for line in lines):
        return _Role.REVISE
    if _has_line(lines, "Steps so far:"):
        return _Role.STEP_GENERATE
    return _Role.GENERATE


def _section(
    lines: Sequence[str], is_header: Callable[[str], bool], end_marker: str | None = None
) -> list[str]:
    """Lines after the first header line: up to ``end_marker`` if given and present, else up to the
    next blank line. ``(none)`` lines are dropped."""
    start = next((i + 1 for i, line in enumerate(lines) if is_header(line)), len(lines))
    body = lines[start:]
    end = len(body)
    if end_marker is not None and any(line.lstrip().startswith(end_marker) for line in body):
        end = next(i for i, line in enumerate(body) if line.lstrip().startswith(end_marker))
    else:
        end = next((i for i, line in enumerate(body) if not line.strip()), end)
    return [line for line in body[:end] if line.strip() and line.strip() != "(none)"]


def _header(name: str) -> Callable[[str], bool]:
    return lambda line: line.strip() == name


def _last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (braces balanced), if any."""
    starts = [match.end() for match in _BOXED_RE.finditer(text)]
    if not starts:
        return None
    depth, start = 1, starts[-1]
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return text[start:]


_FRAC_RE: Final = re.compile(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}")


def _answer_value(answer: str | None) -> Fraction | None:
    """The value of a final answer such as ``89``, ``-2``, ``89/5``, ``\\frac{89}{5}`` or ``1,234``."""
    if answer is None:
        return None
    text = _FRAC_RE.sub(r"(\1)/(\2)", answer).replace("$", "").replace(",", "").replace("\\left", "")
    return _evaluate_text(text.replace("\\right", "").strip().rstrip("."))


def _result_value(line: str) -> Fraction | None:
    """The number after the last ``=`` of a step line."""
    if "=" not in line:
        return None
    rhs = line.rsplit("=", 1)[1].strip().rstrip(".").strip()
    value = _evaluate_text(rhs)
    if value is None and (match := re.search(r"-?\d+(?:\.\d+)?(?:/\d+)?", rhs)):
        value = _evaluate_text(match.group())
    return value


def _claim_holds(line: str) -> bool:
    """Whether the arithmetic claim ``lhs = rhs`` of a step line is true."""
    parts = line.split("=")
    if len(parts) < 2:
        return False
    lhs = _find_expression(parts[0])
    if lhs is None:
        return False
    try:
        values = [_evaluate(lhs)]
    except _ParseError:
        return False
    for part in parts[1:]:
        value = _result_value("=" + part)
        if value is None:
            return False
        values.append(value)
    return all(value == values[0] for value in values)


# ---------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------


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


def _wrong_result(
    question: _Question, index: int, step: _Step, a: Fraction, b: Fraction, dice: _Dice
) -> Fraction:
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


# ---------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prompt:
    """What one request asks, read once and shared by its ``n`` samples."""

    role: _Role
    question: _Question
    context: tuple[str, ...]
    """The role's section: steps so far, judged steps or solution, earlier attempts."""

    @property
    def salt(self) -> str:
        """Distinguishes the samples of different roles and contexts."""
        return f"{self.role}\x1e" + "\n".join(self.context)

    @property
    def greedy_key(self) -> tuple[object, ...]:
        """Key of the greedy (T=0) draws: per question for solutions, so that greedy continuations agree
        with greedy full solutions; per question and judged text for judges."""
        if self.role in (_Role.JUDGE_STEP, _Role.JUDGE_ANSWER):
            return (self.question.text, self.salt)
        return (self.question.text,)


@functools.lru_cache(maxsize=8192)
def _read_prompt(text: str) -> _Prompt:
    lines = text.splitlines()
    role = _detect_role(lines)
    problems = _PROBLEM_RE.findall(text)  # the last one: few-shot examples come first
    question = _question(problems[-1] if problems else text.strip())
    if role is _Role.JUDGE_STEP:
        context = _section(lines, _header("Steps:"))
    elif role is _Role.JUDGE_ANSWER:
        context = _section(lines, _header("Solution:"), end_marker="Is the final answer correct")
    elif role is _Role.REVISE:
        context = _section(
            lines, lambda line: line.lstrip().startswith("Earlier attempts"), "Find any mistakes"
        )
    elif role is _Role.STEP_GENERATE:
        context = _section(lines, _header("Steps so far:"))
    else:
        context = []
    return _Prompt(role, question, tuple(context))


def _draft(prompt: _Prompt, profile: str, scale: float, temperature: float, dice: _Dice) -> _Draft:
    if profile.startswith(_POPULATION_PREFIX):
        from ttc_agents._population import population_draft

        return population_draft(prompt, profile, temperature, dice)
    question = prompt.question
    profile_p = min(question.error_p * scale, _MAX_PROFILE_P)
    step_p = min(profile_p * (0.6 + 0.5 * max(temperature, 0.0)), _MAX_STEP_P)
    if prompt.role is _Role.GENERATE:
        return _write_solution(question, (), step_p, dice)
    if prompt.role is _Role.STEP_GENERATE:
        return _continue_steps(question, prompt.context, step_p, dice)
    if prompt.role is _Role.REVISE:
        return _revise(question, prompt.context, step_p, scale, dice)
    if prompt.role is _Role.JUDGE_STEP:
        return _judge(_judge_step(question, prompt.context), dice)
    answer = _answer_value(_last_boxed("\n".join(prompt.context)))
    return _judge(question.answer is not None and answer == question.answer, dice)


def _truncate(text: str, stop: Sequence[str], max_tokens: int | None) -> tuple[str, list[str], str]:
    """Apply ``stop`` then ``max_tokens``; returns the text, its tokens and the finish reason."""
    finish_reason = "stop"
    cuts = [position for s in stop if s and (position := text.find(s)) >= 0]
    if cuts:
        text = text[: min(cuts)]
    tokens = scripted_tokenize(text)
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens = tokens[:max_tokens]
        text = "".join(tokens)
        finish_reason = "length"
    return text, tokens, finish_reason


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


def _stop_list(stop: object) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, Iterable):
        return [str(s) for s in stop]
    raise custom_llm_error(400, f"scripted: invalid stop {stop!r}")


def _profile_names() -> list[str]:
    """Every profile: the scaled ones, then the synthetic populations (``pop-<setting>``)."""
    from ttc_agents._population import POPULATION_SETTINGS

    return [*SCRIPTED_PROFILES, *(_POPULATION_PREFIX + name for name in POPULATION_SETTINGS)]


def _profile_scale(model: str) -> tuple[str, float]:
    profile = model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model
    if profile in SCRIPTED_PROFILES:
        return profile, SCRIPTED_PROFILES[profile]
    names = _profile_names()
    if profile not in names:
        known = ", ".join(f"{PROVIDER}/{name}" for name in names)
        raise custom_llm_error(404, f"unknown scripted profile {model!r}; known: {known}")
    return profile, 1.0


def scripted_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of chat ``messages``: the tokens of every message's text content, summed (string
    contents, or the ``text`` parts of a content list; no per-message overhead)."""
    return sum(scripted_token_count(_content_text(message.get("content"))) for message in messages)


def scripted_respond(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    optional_params: Mapping[str, Any],
    model_response: ModelResponse | None = None,
) -> ModelResponse:
    """Answer one chat request (the body of :class:`ScriptedLLM`; usable directly in tests).

    ``model`` is a profile name with or without the ``scripted/`` prefix; ``optional_params`` holds the
    OpenAI parameters (``n``, ``temperature``, ``seed``, ``max_tokens``, ``stop``, ``logprobs``,
    ``top_logprobs``).
    """
    profile, scale = _profile_scale(model)
    n = int(optional_params.get("n") or 1)
    if n < 1:
        raise custom_llm_error(400, f"scripted: n must be >= 1, got {n}")
    temperature = optional_params.get("temperature")
    temperature = 1.0 if temperature is None else float(temperature)
    seed = optional_params.get("seed")
    max_tokens = optional_params.get("max_tokens", optional_params.get("max_completion_tokens"))
    stop = _stop_list(optional_params.get("stop"))
    want_logprobs = bool(optional_params.get("logprobs"))
    top_k = int(optional_params.get("top_logprobs") or 0)

    prompt = _read_prompt(_last_user_text(messages))
    greedy_key = prompt.greedy_key
    choices: list[Choices] = []
    completion_tokens = 0
    for index in range(n):
        sample_key = (profile, "noseed" if seed is None else seed, prompt.question.text, index, prompt.salt)
        rng = None if temperature <= 0 else random.Random(_stable_hash(*sample_key))
        draft = _draft(prompt, profile, scale, temperature, _Dice(rng, greedy_key))
        text, tokens, finish_reason = _truncate(
            draft.text, stop, None if max_tokens is None else int(max_tokens)
        )
        completion_tokens += len(tokens)
        logprobs = None
        if want_logprobs:
            logprob_rng = random.Random(
                _stable_hash("logprobs", *(greedy_key if rng is None else sample_key))
            )
            logprobs = _logprobs(draft, tokens, top_k, logprob_rng)
        message = Message(content=text, role="assistant")
        choices.append(Choices(finish_reason=finish_reason, index=index, message=message, logprobs=logprobs))

    response = model_response if model_response is not None else ModelResponse()
    prompt_tokens = scripted_prompt_tokens(messages)
    response.choices = choices
    response.model = f"{PROVIDER}/{profile}"
    response.created = int(time.time())
    response.usage = Usage(  # type: ignore[attr-defined]  # set dynamically, as LiteLLM's own providers do
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )
    return response


# ---------------------------------------------------------------------------------------------------
# LiteLLM provider
# ---------------------------------------------------------------------------------------------------


class ScriptedLLM(CustomLLMAdapter):
    """The LiteLLM handler of the ``scripted`` provider (see the module docstring)."""

    async def respond(
        self, model: str, messages: list[Any], optional_params: Mapping[str, Any], model_response: ModelResponse
    ) -> ModelResponse:
        """Answer on the event loop (tens of microseconds of CPU per sample: no thread needed)."""
        return scripted_respond(model, messages, optional_params, model_response)

    def respond_sync(
        self, model: str, messages: list[Any], optional_params: Mapping[str, Any], model_response: ModelResponse
    ) -> ModelResponse:
        """Answer synchronously."""
        return scripted_respond(model, messages, optional_params, model_response)


_HANDLER: Final = ScriptedLLM()


def register_scripted_provider() -> None:
    """Register the ``scripted`` provider and the prices of its profiles with LiteLLM (idempotent).

    Each profile ``scripted/<name>`` is registered with :func:`litellm.register_model` at 1e-7 USD per
    input token and 2e-7 USD per output token (cache prices 0, which also silences LiteLLM's
    missing-cache-price warning), so ``response._hidden_params["response_cost"]`` and
    ``litellm.completion_cost(response)`` work: responses name their model ``scripted/<name>``.
    """
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": _HANDLER})
    missing = {
        f"{PROVIDER}/{name}": {
            "litellm_provider": PROVIDER,
            "mode": "chat",
            "input_cost_per_token": INPUT_COST_PER_TOKEN,
            "output_cost_per_token": OUTPUT_COST_PER_TOKEN,
            "cache_creation_input_token_cost": 0.0,
            "cache_read_input_token_cost": 0.0,
        }
        for name in _profile_names()
        if f"{PROVIDER}/{name}" not in litellm.model_cost
    }
    if missing:
        litellm.register_model(missing)
