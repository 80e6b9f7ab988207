"""Counters the fault, kill/resume, bad-input and hostile-client suites keep, printed once at the end
of the run by ``conftest.pytest_terminal_summary`` (so no test exists just to print)."""

from __future__ import annotations

from collections import Counter, defaultdict

SUITE_TOTALS: defaultdict[str, Counter[str]] = defaultdict(Counter)
"""suite name -> counter name -> count, for this pytest session."""


def count(suite: str, name: str, amount: int = 1) -> None:
    """Add ``amount`` to one counter of one suite."""
    SUITE_TOTALS[suite][name] += amount
