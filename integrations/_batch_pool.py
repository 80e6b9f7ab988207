"""A batch's total budget: every running item holds its hard budget out of it and gives back the rest
(see :mod:`ttc_agents.integrations.batch`)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ttc_agents._core.budget import Budget, Usage

__all__ = ["EXHAUSTED", "INTEGER_FIELDS", "POOLED_FIELDS", "BudgetPool", "Grant", "make_budget", "pooled_amounts"]

EXHAUSTED = "batch budget exhausted"
"""The error message of an item that could not get any of the batch's total budget."""

# Budget fields a total budget holds back (seconds are a deadline instead), and what usage counts.
POOLED_FIELDS = ("max_samples", "max_tokens", "max_usd", "max_flops")
INTEGER_FIELDS = frozenset({"max_samples", "max_tokens"})


def pooled_amounts(usage: Usage) -> dict[str, float]:
    """Usage in the budget's terms (``max_tokens`` counts prompt and completion tokens)."""
    return {
        "max_samples": usage.samples,
        "max_tokens": usage.total_tokens,
        "max_usd": usage.usd,
        "max_flops": usage.flops,
    }


def make_budget(values: Mapping[str, float | None]) -> Budget:
    """A budget from positive amounts (integer fields rounded down); other values are dropped."""
    kept: dict[str, float | int] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name in INTEGER_FIELDS:
            value = math.floor(value)
        if value > 0:
            kept[name] = value
    return Budget.model_validate(kept)


@dataclass(frozen=True, slots=True)
class Grant:
    """The share of the total that one item holds while it runs."""

    amounts: dict[str, float]
    seconds: float | None
    whole: bool = False  # all that was left, with nothing else running
    seq: int = 0  # its number in the journal


class BudgetPool:
    """A batch's total budget. Every running item holds its hard budget and gives back the rest."""

    def __init__(self, total: Budget, *, slots: int, spent_before: Mapping[str, float]) -> None:
        self.limits = {name: float(getattr(total, name)) for name in POOLED_FIELDS if getattr(total, name) is not None}
        self.spent = {name: float(spent_before.get(name, 0.0)) for name in self.limits}
        self.held = dict.fromkeys(self.limits, 0.0)
        self.deadline = None if total.max_seconds is None else time.monotonic() + total.max_seconds
        self.slots = slots
        self.holders = 0
        self._waiters: list[asyncio.Future[None]] = []

    def left(self, name: str) -> float:
        value = self.limits[name] - self.spent[name] - self.held[name]
        return math.floor(value) if name in INTEGER_FIELDS else value

    def exhausted_reason(self) -> str:
        for name, limit in self.limits.items():
            if self.left(name) <= 0:
                return f"{EXHAUSTED} ({name}: {self.spent[name]:g} of {limit:g} spent)"
        return f"{EXHAUSTED} (max_seconds)"

    async def acquire(self, want: Budget | Mapping[str, float | None] | None) -> Grant | None:
        """Hold ``want`` of each pooled quantity (None: an equal share ``left / slots`` of what is
        left; ``math.inf``: all of it), waiting for running items to give budget back when it does
        not fit. With nothing running: what is left when ``want`` does not fit, None when nothing is."""
        wanted: Mapping[str, float | None] = (
            {} if want is None else want.model_dump() if isinstance(want, Budget) else want
        )
        while True:
            grant, wait = self._try(wanted)
            if not wait:
                return grant
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _try(self, wanted: Mapping[str, float | None]) -> tuple[Grant | None, bool]:
        amounts: dict[str, float] = {}
        whole = self.holders == 0
        for name in self.limits:
            left = self.left(name)
            amount = wanted.get(name)
            if amount is None:
                amount = left / self.slots
            if name in INTEGER_FIELDS and math.isfinite(amount):
                amount = max(1, math.floor(amount))
            if left <= 0 or amount > left:
                if self.holders > 0:
                    return None, True
                if left <= 0:
                    return None, False
                amount = left
            whole = whole and amount >= left
            amounts[name] = amount
        seconds = None
        if self.deadline is not None:
            seconds = self.deadline - time.monotonic()
            if seconds <= 0:
                return None, False
        for name, amount in amounts.items():
            self.held[name] += amount
        self.holders += 1
        return Grant(amounts, seconds, whole), False

    def release(self, grant: Grant, spent: Mapping[str, float] | None) -> None:
        """Give ``grant`` back and book ``spent`` (None: the whole grant, when the real spend is unknown)."""
        for name, amount in grant.amounts.items():
            self.held[name] -= amount
            self.spent[name] += amount if spent is None else spent.get(name, 0.0)
        self.holders -= 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
