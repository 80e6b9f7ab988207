"""What several benchmarks share: a bounded concurrent driver and a paired interval. Standard library only
(the peer benchmark's client processes import it)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

__all__ = ["drive", "paired_interval"]


class _Progress(Protocol):
    def update(self, n: float | None = 1) -> bool | None: ...


async def drive(
    questions: range | int,
    concurrency: int,
    one: Callable[[int], Awaitable[int]],
    bar: _Progress | None = None,
) -> int:
    """Run ``one(i)`` for every question index (``range(questions)`` for an int), at most ``concurrency``
    at a time; the sum of what they return (samples)."""
    limit = asyncio.Semaphore(concurrency)
    samples = 0

    async def task(i: int) -> None:
        nonlocal samples
        async with limit:
            got = await one(i)  # not `samples += await ...`: that reads `samples` before the await
            samples += got
            if bar is not None:
                bar.update(1)

    indices = range(questions) if isinstance(questions, int) else questions
    await asyncio.gather(*(task(i) for i in indices))
    return samples


def paired_interval(differences: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% normal half-width of paired differences (infinite for fewer than two)."""
    n = len(differences)
    mean = math.fsum(differences) / n
    if n < 2:
        return mean, math.inf
    variance = math.fsum((d - mean) ** 2 for d in differences) / (n - 1)
    return mean, 1.96 * math.sqrt(variance / n)
