"""Flag values checked where they are parsed, so that a bad one gets a one-line error naming the flag.

Use the checkers as argparse ``type=``; argparse then reports
``ttc solve: error: argument --max-tokens: must be a positive integer, got '-5'`` (one line, exit
code 2, see :class:`OneLineErrorParser`) instead of a validation error from deep inside::

    parser.add_argument("--max-tokens", type=positive_int)
    parser.add_argument("--temperature", type=non_negative_float)
"""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

__all__ = [
    "OneLineErrorParser",
    "integer",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
]


def _int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def _float(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def integer(text: str) -> int:
    """Any integer."""
    return _int(text, "an integer")


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = _int(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer of at least 0."""
    value = _int(text, "a non-negative integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = _float(text, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of at least 0."""
    value = _float(text, "a non-negative number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text!r}")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``PROG: error: MESSAGE (see PROG --help)``,
    with exit code 2 (argparse's own prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
