"""The safe arithmetic evaluator: exact results, precedence, limits, and no escaping exceptions."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttc_agents._core.safe_math import (
    MAX_DEPTH,
    MAX_DIGITS,
    MAX_LENGTH,
    ExpressionError,
    UnsafeExpressionError,
    evaluate,
    try_evaluate,
)


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("1 + 2 * 3", 7),
        ("12 * 7 + 5", 89),
        ("(1 + 2) * 3", 9),
        ("10 / 4", Fraction(5, 2)),
        ("7 - 2 - 1", 4),
        ("64 / 4 / 2", 8),
        ("-2^2", -4),
        ("(-2)^2", 4),
        ("2^3^2", 512),
        ("2 ** 10", 1024),
        ("2^-2", Fraction(1, 4)),
        ("2^-3^2", Fraction(1, 512)),
        ("--3", 3),
        ("+-+-5", 5),
        ("2 * -3", -6),
        ("3.5 + .5", 4),
        ("0.1 + 0.2", Fraction(3, 10)),
        ("1,234 + 1,000,000.5", Fraction(2_002_469, 2)),
        ("3 × 4 ÷ 6", 2),
        ("3 · 4 ⋅ 2", 24),
        ("3 x 4", 12),
        ("3x4", 12),
        ("−5 + 2", -3),
        ("2(3 + 4)", 14),
        ("(1 + 1)(2 + 2)", 8),
        ("((((7))))", 7),
        ("  42  ", 42),
    ],
)
def test_evaluates_exactly(expr: str, value: Fraction | int) -> None:
    assert evaluate(expr) == value
    assert try_evaluate(expr) == value


@pytest.mark.parametrize(
    "expr",
    ["", "   ", "1 +", "* 2", "()", "(1 + 2", "1 + 2)", "1 2", "1,23", "1.2.3", "2x", "x + 1", "a + b",
     "1 / 0", "0^-1", "4^(1/2)", "2^0.5", "1 = 1", "3 % 2", "١٢ + 1", "1 +* 2", "abs(3)", "__import__('os')"],
)  # fmt: skip
def test_rejects_invalid_or_undefined(expr: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(expr)
    assert try_evaluate(expr) is None


@pytest.mark.parametrize(
    "expr",
    [
        "1" * (MAX_LENGTH + 1),
        "9" * (MAX_DIGITS + 1),
        "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
        "2^1001",
        "10^999 * 10^999 * 10^999 * 10^999 * 10^999",
        "9^9^9",
        "(10^300)^20",
        "1 / 10^999 / 10^999 / 10^999 / 10^999 / 10^999",
    ],
)
def test_limits_raise_unsafe_expression_error(expr: str) -> None:
    with pytest.raises(UnsafeExpressionError):
        evaluate(expr)
    assert try_evaluate(expr) is None


def test_limits_allow_reasonable_expressions() -> None:
    assert evaluate("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH) == 1
    assert evaluate("2^1000") == 2**1000
    assert evaluate("9" * MAX_DIGITS) == int("9" * MAX_DIGITS)
    assert evaluate("-" * 1_500 + "1") == 1  # long unary chains are iterative, not recursive


def test_error_is_a_value_error() -> None:
    assert issubclass(UnsafeExpressionError, ExpressionError)
    assert issubclass(ExpressionError, ValueError)


# --- property: agree with a reference computed on the expression tree ---------------------------


@dataclass(frozen=True)
class Node:
    text: str
    value: Fraction | None  # None: undefined (division by zero)


def _leaf(n: int) -> Node:
    return Node(str(n), Fraction(n))


def _combine(op: str, left: Node, right: Node) -> Node:
    text = f"({left.text} {op} {right.text})"
    if left.value is None or right.value is None:
        return Node(text, None)
    if op == "/":
        return Node(text, None if right.value == 0 else left.value / right.value)
    if op == "+":
        return Node(text, left.value + right.value)
    if op == "-":
        return Node(text, left.value - right.value)
    return Node(text, left.value * right.value)


def _negate(node: Node) -> Node:
    return Node(f"-{node.text}", None if node.value is None else -node.value)


def _power(base: Node, exponent: int) -> Node:
    text = f"({base.text})^{exponent}"
    if base.value is None or (base.value == 0 and exponent < 0):
        return Node(text, None)
    return Node(text, base.value**exponent)


def _trees(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(_combine, st.sampled_from("+-*/"), children, children),
        st.builds(_negate, children),
        st.builds(_power, children, st.integers(-3, 3)),
    )


expressions = st.recursive(st.integers(0, 10**6).map(_leaf), _trees, max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_matches_reference_tree_value(node: Node) -> None:
    if node.value is None:
        assert try_evaluate(node.text) is None
    else:
        assert try_evaluate(node.text) in (node.value, None)  # None only when a limit is hit
        if len(node.text) < 200:
            assert evaluate(node.text) == node.value


@settings(max_examples=300, deadline=None)
@given(a=st.integers(-(10**12), 10**12), b=st.integers(-(10**12), 10**12), c=st.integers(1, 10**6))
def test_precedence_without_parentheses(a: int, b: int, c: int) -> None:
    assert evaluate(f"{a} + {b} * {c}".replace("+ -", "- ")) == a + b * c
    assert evaluate(f"{a} - {b} / {c}".replace("- -", "+ ")) == Fraction(a) - Fraction(b, c)


# --- fuzzing: never another exception, always fast ----------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=3_000))
def test_arbitrary_unicode_never_escapes(text: str) -> None:
    with contextlib.suppress(ExpressionError):
        evaluate(text)
    try_evaluate(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-*/^().,x× ", max_size=2_000))
def test_arithmetic_alphabet_never_escapes(text: str) -> None:
    try_evaluate(text)


@pytest.mark.parametrize(
    "text",
    [
        "9" * 10_000,
        "(" * 100_000,
        "(" * 1_000 + "1" + ")" * 1_000,
        "-" * 1_999 + "1",
        "2^" * 999 + "2",
        "9^" * 999 + "9",
        "1" + "*1" * 999,
        "x" * (1 << 20),
        "1+" * (1 << 19),
    ],
)
def test_hostile_inputs_are_rejected_quickly(text: str) -> None:
    assert try_evaluate(text) is None or len(text) <= MAX_LENGTH
