"""Arithmetic expressions: tokenizer, precedence parser, evaluation plan and how values are written
(see "Solutions" in :mod:`ttc_agents._llm.scripted`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Final


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
