"""A small, safe arithmetic evaluator over exact fractions.

The evaluator never hands text to Python (no ``eval``, ``exec``, ``compile`` or ``ast``): a
hand-written tokenizer feeds a shunting-yard parser, and the resulting postfix program is run on
an explicit stack of :class:`fractions.Fraction` values. Nothing recurses, so deep nesting cannot
raise ``RecursionError``.

Grammar (loosest to tightest binding)::

    expr    := expr ('+' | '-') expr
             | expr ('*' | '/') expr          # also × · ⋅ ÷ and 'x'/'X' (see below)
             | ('+' | '-') expr               # unary, binds looser than '^': -2^2 == -4
             | expr ('^' | '**') expr         # right associative: 2^3^2 == 2^9
             | number | '(' expr ')'
             | expr '(' expr ')'              # implicit product: 2(3+4) == 14

* Numbers: ``12``, ``3.5``, ``.5``, ``1,234`` and ``1,234.5`` (commas only as thousands
  separators: groups of exactly three digits). ``−`` (U+2212) is a minus sign.
* ``x`` / ``X`` mean "times" and are accepted only where a binary operator may stand, so
  ``3 x 4`` and ``3x4`` are 12 while ``2x`` or ``x+1`` are errors (letters are not variables).
* Exponents must be integers; ``4^(1/2)`` is an error rather than an inexact result.

Limits (all violations raise :class:`UnsafeExpressionError`): :data:`MAX_LENGTH` characters,
:data:`MAX_DEPTH` nested parentheses, :data:`MAX_DIGITS` digits per number literal,
:data:`MAX_EXPONENT` as the absolute value of an exponent and :data:`MAX_RESULT_BITS` bits for the
numerator and the denominator of every intermediate result (about 1,200 decimal digits).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

__all__ = [
    "MAX_DEPTH",
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "MAX_LENGTH",
    "MAX_RESULT_BITS",
    "ExpressionError",
    "UnsafeExpressionError",
    "evaluate",
    "try_evaluate",
]

MAX_LENGTH: Final = 2_000
MAX_DEPTH: Final = 64
MAX_DIGITS: Final = 200
MAX_EXPONENT: Final = 1_000
MAX_RESULT_BITS: Final = 4_096


class ExpressionError(ValueError):
    """The text is not a valid arithmetic expression, or its value is undefined (e.g. 1/0)."""


class UnsafeExpressionError(ExpressionError):
    """The expression exceeds one of the evaluator's resource limits."""


_NUMBER = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+", re.ASCII)
_OPERATORS: Final = {
    "+": "+", "-": "-", "−": "-",
    "*": "*", "×": "*", "·": "*", "⋅": "*", "x": "*", "X": "*",
    "/": "/", "÷": "/", "^": "^",
}  # fmt: skip
_BINARY_PRECEDENCE: Final = {"+": 1, "-": 1, "*": 2, "/": 2, "^": 4}
_UNARY_PRECEDENCE: Final = 3
_NEG: Final = "neg"  # unary minus in the postfix program (unary plus is dropped)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "num", "op", "(" or ")"
    text: str
    value: Fraction | None = None


def _tokens(expr: str) -> Iterator[_Token]:
    i, n = 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit() or (ch == "." and i + 1 < n and expr[i + 1].isdigit()):
            token, i = _number_token(expr, i)
            yield token
        elif expr.startswith("**", i):
            yield _Token("op", "^")
            i += 2
        elif ch in _OPERATORS:
            yield _Token("op", _OPERATORS[ch])
            i += 1
        elif ch in "()":
            yield _Token(ch, ch)
            i += 1
        else:
            raise ExpressionError(f"unexpected character {ch!r} at position {i}")


def _number_token(expr: str, start: int) -> tuple[_Token, int]:
    """The number starting at ``start`` and the index just after it."""
    match = _NUMBER.match(expr, start)
    if match is None:
        raise ExpressionError(f"malformed number at position {start}")
    text = match.group()
    end = match.end()
    if end < len(expr) and (expr[end].isdigit() or (expr[end] in ",." and expr[end + 1 : end + 2].isdigit())):
        raise ExpressionError(f"malformed number at position {start}")
    digits = text.replace(",", "").replace(".", "")
    if len(digits) > MAX_DIGITS:
        raise UnsafeExpressionError(f"number with more than {MAX_DIGITS} digits")
    return _Token("num", text, Fraction(text.replace(",", ""))), end


def _check_depth(tokens: list[_Token]) -> None:
    depth = 0
    for token in tokens:
        if token.kind == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise UnsafeExpressionError(f"more than {MAX_DEPTH} nested parentheses")
        elif token.kind == ")":
            depth -= 1
            if depth < 0:
                raise ExpressionError("unbalanced ')'")
    if depth:
        raise ExpressionError("unbalanced '('")


def _to_postfix(tokens: list[_Token]) -> list[_Token]:
    """Shunting-yard: infix tokens to a postfix program, validating the syntax on the way."""
    output: list[_Token] = []
    stack: list[_Token] = []
    expect_operand = True
    for token in tokens:
        if token.kind == "(" and not expect_operand:
            _push_operator(_Token("op", "*"), stack, output)  # implicit product: 2(3)
            expect_operand = True
        if expect_operand:
            if token.kind == "num":
                output.append(token)
                expect_operand = False
            elif token.kind == "(":
                stack.append(token)
            elif token.kind == "op" and token.text in "+-":
                if token.text == "-":
                    stack.append(_Token("op", _NEG))
            else:
                raise ExpressionError(f"expected a number, got {token.text!r}")
        elif token.kind == "op":
            _push_operator(token, stack, output)
            expect_operand = True
        elif token.kind == ")":
            while stack[-1].kind != "(":
                output.append(stack.pop())
            stack.pop()
        else:
            raise ExpressionError(f"expected an operator, got {token.text!r}")
    if expect_operand:
        raise ExpressionError("expression ends with an operator" if tokens else "empty expression")
    while stack:
        output.append(stack.pop())
    return output


def _precedence(op: str) -> int:
    return _UNARY_PRECEDENCE if op == _NEG else _BINARY_PRECEDENCE[op]


def _push_operator(token: _Token, stack: list[_Token], output: list[_Token]) -> None:
    prec = _BINARY_PRECEDENCE[token.text]
    right_assoc = token.text == "^"
    while stack and stack[-1].kind == "op":
        top = _precedence(stack[-1].text)
        if top > prec or (top == prec and not right_assoc):
            output.append(stack.pop())
        else:
            break
    stack.append(token)


def _bounded(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_RESULT_BITS or value.denominator.bit_length() > MAX_RESULT_BITS:
        raise UnsafeExpressionError(f"intermediate result larger than {MAX_RESULT_BITS} bits")
    return value


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise ExpressionError("non-integer exponent")
    exp = exponent.numerator
    if abs(exp) > MAX_EXPONENT:
        raise UnsafeExpressionError(f"exponent larger than {MAX_EXPONENT}")
    if base == 0 and exp < 0:
        raise ExpressionError("zero to a negative power")
    size = max(base.numerator.bit_length(), base.denominator.bit_length())
    if abs(base) != 1 and (size - 1) * abs(exp) > MAX_RESULT_BITS:
        raise UnsafeExpressionError(f"power larger than {MAX_RESULT_BITS} bits")
    return base**exp


def _apply(op: str, left: Fraction, right: Fraction) -> Fraction:
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        if right == 0:
            raise ExpressionError("division by zero")
        return left / right
    return _power(left, right)


def _run(program: list[_Token]) -> Fraction:
    values: list[Fraction] = []
    for token in program:
        if token.kind == "num":
            assert token.value is not None
            values.append(token.value)
        elif token.text == _NEG:
            values.append(-values.pop())
        else:
            right = values.pop()
            values.append(_bounded(_apply(token.text, values.pop(), right)))
    (result,) = values
    return result


def evaluate(expr: str) -> Fraction:
    """Evaluate an arithmetic expression exactly.

    Raises :class:`ExpressionError` (a ``ValueError``) for invalid or undefined expressions and
    :class:`UnsafeExpressionError` for expressions over the module's limits. No other exception
    escapes for any ``str`` input.
    """
    if len(expr) > MAX_LENGTH:
        raise UnsafeExpressionError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tokens = list(_tokens(expr))
        _check_depth(tokens)
        return _run(_to_postfix(tokens))
    except (ZeroDivisionError, OverflowError, RecursionError) as exc:  # defensive: should not happen
        raise ExpressionError(str(exc)) from exc


def try_evaluate(expr: str) -> Fraction | None:
    """Like :func:`evaluate`, but return ``None`` instead of raising :class:`ExpressionError`."""
    try:
        return evaluate(expr)
    except ExpressionError:
        return None
