"""Budgets (hard limits) and the ledger that counts every model call against them.

A :class:`Budget` is a value: the limits for one question or one workflow. A :class:`Ledger` is the
running account of one run: before a call starts, the gateway asks it for a *reservation* of the
call's worst case (``prompt + n x max_tokens`` tokens, its USD at that size, ``n`` samples); the
ledger grants the largest ``n`` that fits every limit, or none, and names the limit that stopped it.
After the call the reservation is settled with what the call really used. The reserved worst case
is always at least the real use, so the totals never pass a limit.

Between graph nodes the ledger travels in the graph state as a :class:`LedgerSnapshot`, an
immutable value that checkpointers can store.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt

__all__ = [
    "UNIT_FIELDS",
    "Budget",
    "BudgetLimit",
    "BudgetUnit",
    "Ledger",
    "LedgerEntry",
    "LedgerSnapshot",
    "Reservation",
    "Usage",
    "ledger_snapshot_of",
]

BudgetLimit = Literal["max_samples", "max_tokens", "max_usd", "max_flops", "max_seconds", "server_ignored_max_tokens"]
"""Why a run was stopped: the limit that ran out, or ``server_ignored_max_tokens`` when a server sent
more completion tokens than a request's ``max_tokens x n`` (see :meth:`Ledger.flag_overrun`)."""

BudgetUnit = Literal["samples", "tokens", "usd", "flops"]
"""A quantity a budget limits and a cost is measured in (seconds are a deadline, not a quantity)."""

UNIT_FIELDS: Mapping[BudgetUnit, BudgetLimit] = {
    "samples": "max_samples",
    "tokens": "max_tokens",
    "usd": "max_usd",
    "flops": "max_flops",
}
"""Budget unit -> the :class:`Budget` field that limits it."""

SERVER_IGNORED_MAX_TOKENS: Final = "server_ignored_max_tokens"


class Budget(BaseModel):
    """Hard limits for one run. A field left unset means no limit on that quantity.

    ``max_tokens`` counts prompt and completion tokens of every call. Zero or negative values are
    rejected with a ``ValidationError`` that names the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_samples: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    max_usd: PositiveFloat | None = None
    max_flops: PositiveFloat | None = None
    max_seconds: PositiveFloat | None = None

    @property
    def unlimited(self) -> bool:
        """True when no limit is set."""
        return all(getattr(self, name) is None for name in type(self).model_fields)

    def limits(self, unit: BudgetUnit | None = None) -> dict[BudgetUnit, float]:
        """The set limits by unit (only ``unit``'s when given); seconds are not a unit."""
        out: dict[BudgetUnit, float] = {}
        for name, field_name in UNIT_FIELDS.items():
            value = getattr(self, field_name)
            if value is not None and (unit is None or unit == name):
                out[name] = float(value)
        return out

    @classmethod
    def of_unit(cls, unit: BudgetUnit, amount: float) -> Budget:
        """A budget limiting only ``unit`` to ``amount`` (at least one sample or token)."""
        if unit in ("samples", "tokens"):
            return cls.model_validate({UNIT_FIELDS[unit]: max(1, int(amount))})
        return cls.model_validate({UNIT_FIELDS[unit]: max(amount, 1e-12)})

    def exhausted_by(self, spent: Usage, elapsed: float) -> BudgetLimit | None:
        """The first limit that ``spent`` (charged amounts) and ``elapsed`` seconds use up, if any."""
        amounts = spent.in_units()
        for name, field_name in UNIT_FIELDS.items():
            limit = getattr(self, field_name)
            if limit is not None and amounts[name] >= limit:
                return field_name
        if self.max_seconds is not None and elapsed >= self.max_seconds:
            return "max_seconds"
        return None

    def remaining(self, spent: Usage, elapsed: float) -> Budget | None:
        """What is left after ``spent`` and ``elapsed`` seconds; None when a limit is used up."""
        if self.exhausted_by(spent, elapsed) is not None:
            return None
        amounts = spent.in_units()
        left: dict[str, float] = {
            field_name: getattr(self, field_name) - amounts[name]
            for name, field_name in UNIT_FIELDS.items()
            if getattr(self, field_name) is not None
        }
        if self.max_seconds is not None:
            left["max_seconds"] = self.max_seconds - elapsed
        return Budget.model_validate(left)

    def scaled(self, share: float) -> Budget:
        """This budget's limits times ``share`` (0 < share <= 1), rounded down but at least 1."""
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        return Budget(
            max_samples=None if self.max_samples is None else max(1, math.floor(self.max_samples * share)),
            max_tokens=None if self.max_tokens is None else max(1, math.floor(self.max_tokens * share)),
            max_usd=None if self.max_usd is None else self.max_usd * share,
            max_flops=None if self.max_flops is None else self.max_flops * share,
            max_seconds=None if self.max_seconds is None else self.max_seconds * share,
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """What some calls spent. ``replayed`` counts samples answered from the record store.

    ``prompt_tokens``, ``completion_tokens``, ``usd`` and ``flops`` are what providers reported. The
    ``unconfirmed_*`` fields are the worst case (the reservation) of requests whose bill nobody saw: an
    attempt the client timed out on, or that was cancelled while in flight, may still be billed by the
    provider. Budgets count both (:attr:`charged_tokens`, :attr:`charged_usd`, :attr:`charged_flops`).
    """

    calls: int = 0
    samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    flops: float = 0.0
    failed_calls: int = 0
    replayed: int = 0
    unconfirmed_tokens: int = 0
    unconfirmed_usd: float = 0.0
    unconfirmed_flops: float = 0.0
    reasoning_tokens: int = 0
    """Of ``completion_tokens``, those the model spent on hidden reasoning (LiteLLM's
    ``usage.completion_tokens_details.reasoning_tokens``); they are in every total already."""
    thinking_samples: int = 0
    """Samples requested with a thinking setting (effort level or thinking budget)."""
    requested_reasoning_tokens: int = 0
    """The thinking allowance those samples were given, summed: requested against :attr:`reasoning_tokens`."""
    truncated: int = 0
    """Samples cut at ``max_tokens`` with no answer left (the reasoning used it up): billed, never selected."""

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens providers reported."""
        return self.prompt_tokens + self.completion_tokens

    def in_units(self) -> dict[BudgetUnit, float]:
        """What a budget counts of this usage, per unit: samples and the charged tokens, USD, FLOPs."""
        return {
            "samples": float(self.samples),
            "tokens": float(self.charged_tokens),
            "usd": self.charged_usd,
            "flops": self.charged_flops,
        }

    @property
    def charged_tokens(self) -> int:
        """What a token budget counts: reported tokens plus the worst case of unconfirmed requests."""
        return self.total_tokens + self.unconfirmed_tokens

    @property
    def charged_usd(self) -> float:
        """What a USD budget counts: reported USD plus the worst case of unconfirmed requests."""
        return self.usd + self.unconfirmed_usd

    @property
    def charged_flops(self) -> float:
        """What a FLOPs budget counts: reported FLOPs plus the worst case of unconfirmed requests."""
        return self.flops + self.unconfirmed_flops

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, name) + getattr(other, name) for name in _USAGE_FIELDS))

    def as_dict(self) -> dict[str, float | int]:
        """A plain dict, as the CLI's ``usage`` object prints it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def total(usages: Iterable[Usage]) -> Usage:
        out = Usage()
        for usage in usages:
            out = out + usage
        return out


_USAGE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Usage))
"""Usage's fields in order (read once: ``fields()`` on every addition was a visible share of a search's CPU)."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """Spend of one graph node on one model."""

    node: str
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """An immutable copy of a ledger, as graph states and results carry it."""

    budget: Budget | None = None
    started_at: float = 0.0
    entries: tuple[LedgerEntry, ...] = ()
    stopped_by: BudgetLimit | None = None
    overrun_tokens: int = 0
    """Completion tokens servers sent above the requests' ``max_tokens x n`` (booked: the spend is real)."""

    @property
    def total(self) -> Usage:
        return Usage.total(entry.usage for entry in self.entries)

    def by_model(self) -> dict[str, Usage]:
        out: dict[str, Usage] = {}
        for entry in self.entries:
            out[entry.model] = out.get(entry.model, Usage()) + entry.usage
        return out

    def by_node(self) -> dict[str, Usage]:
        out: dict[str, Usage] = {}
        for entry in self.entries:
            out[entry.node] = out.get(entry.node, Usage()) + entry.usage
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: totals, per-node/model entries, limits and the stop reason."""
        return {
            "total": self.total.as_dict(),
            "entries": [{"node": e.node, "model": e.model, **e.usage.as_dict()} for e in self.entries],
            "budget": None if self.budget is None else self.budget.model_dump(exclude_none=True),
            "stopped_by": self.stopped_by,
            "overrun_tokens": self.overrun_tokens,
        }


@dataclass(slots=True)
class Reservation:
    """Worst-case spend held for one call that has been allowed to start."""

    n: int
    tokens: int
    usd: float
    flops: float = 0.0
    settled: bool = False


@dataclass(slots=True)
class Ledger:
    """The running account of one run against its budget. Safe to share between tasks and threads.

    ``overrun_tokens`` counts completion tokens a server sent above a request's ``max_tokens x n``
    (:meth:`flag_overrun`): they are booked, since they are billed, and from then on the ledger
    grants no reservation, so the run stops (``stopped_by == "server_ignored_max_tokens"``).
    """

    budget: Budget = field(default_factory=Budget)
    started_at: float = field(default_factory=time.time)
    stopped_by: BudgetLimit | None = None
    overrun_tokens: int = 0
    _spent: dict[tuple[str, str], Usage] = field(default_factory=dict)
    _held_samples: int = 0
    _held_tokens: int = 0
    _held_usd: float = 0.0
    _held_flops: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _open: int = 0
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(default_factory=list, repr=False)

    @classmethod
    def resume(cls, snapshot: LedgerSnapshot | None, budget: Budget | None = None) -> Ledger:
        """A live ledger continuing from ``snapshot`` (a fresh one when it is None)."""
        if snapshot is None:
            return cls(budget=budget or Budget())
        ledger = cls(budget=budget or snapshot.budget or Budget(), started_at=snapshot.started_at)
        ledger.stopped_by = snapshot.stopped_by
        ledger.overrun_tokens = snapshot.overrun_tokens
        for entry in snapshot.entries:
            ledger._spent[(entry.node, entry.model)] = entry.usage
        return ledger

    def snapshot(self) -> LedgerSnapshot:
        with self._lock:
            entries = tuple(LedgerEntry(node, model, usage) for (node, model), usage in self._spent.items())
            return LedgerSnapshot(self.budget, self.started_at, entries, self.stopped_by, self.overrun_tokens)

    @property
    def total(self) -> Usage:
        with self._lock:
            return Usage.total(self._spent.values())

    def elapsed(self) -> float:
        return time.time() - self.started_at

    def seconds_left(self) -> float | None:
        """Seconds until ``max_seconds`` runs out (None when unlimited)."""
        if self.budget.max_seconds is None:
            return None
        return self.budget.max_seconds - self.elapsed()

    def stop(self, limit: BudgetLimit) -> None:
        """Record that ``limit`` stopped the run (the first reason is kept)."""
        with self._lock:
            if self.stopped_by is None:
                self.stopped_by = limit

    def flag_overrun(self, tokens: int) -> None:
        """Record that a server sent ``tokens`` completion tokens above what was asked for: the run
        stops (no more reservations) with ``stopped_by = "server_ignored_max_tokens"``."""
        with self._lock:
            self.overrun_tokens += max(1, tokens)
            self.stopped_by = SERVER_IGNORED_MAX_TOKENS

    def reserve(
        self,
        n: int,
        *,
        prompt_tokens: int,
        max_completion_tokens: int,
        usd_per_prompt_token: float | None = None,
        usd_per_completion_token: float | None = None,
        flops_per_token: float | None = None,
    ) -> Reservation | None:
        """Hold the worst case of one call asking for ``n`` samples, shrinking ``n`` to what fits.

        ``prompt_tokens`` must be an upper bound of the prompt's size. Returns None, and records the
        limit in :attr:`stopped_by`, when not even one sample fits, and always after an overrun
        (:meth:`flag_overrun`). A USD limit with an unknown price is an error: the ledger could not keep it.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        prices = (usd_per_prompt_token, usd_per_completion_token, flops_per_token)
        with self._lock:
            if self.overrun_tokens:
                return None
            granted, limit = self._grant(n, prompt_tokens, max_completion_tokens, prices, holds=True)
            if granted == 0:
                if self.stopped_by is None:
                    self.stopped_by = limit
                return None
            if granted < n and limit is not None and self.stopped_by is None:
                # The run goes on with fewer samples, but it was a limit that cut it short.
                self.stopped_by = limit
            tokens = prompt_tokens + granted * max_completion_tokens
            usd = 0.0
            if usd_per_prompt_token is not None and usd_per_completion_token is not None:
                usd = prompt_tokens * usd_per_prompt_token + granted * max_completion_tokens * usd_per_completion_token
            flops = tokens * (flops_per_token or 0.0)
            self._held_samples += granted
            self._held_tokens += tokens
            self._held_usd += usd
            self._held_flops += flops
            self._open += 1
            return Reservation(granted, tokens, usd, flops)

    def grantable(
        self,
        n: int,
        *,
        prompt_tokens: int,
        max_completion_tokens: int,
        usd_per_prompt_token: float | None = None,
        usd_per_completion_token: float | None = None,
        flops_per_token: float | None = None,
    ) -> tuple[int, BudgetLimit | None]:
        """How many of ``n`` samples :meth:`reserve` would grant now, and the limit that cuts it; nothing
        is held or recorded (a caller deciding how many samples to ask for)."""
        prices = (usd_per_prompt_token, usd_per_completion_token, flops_per_token)
        with self._lock:
            if self.overrun_tokens:
                return 0, SERVER_IGNORED_MAX_TOKENS
            return self._grant(n, prompt_tokens, max_completion_tokens, prices, holds=True)

    def _grant(
        self,
        n: int,
        prompt_tokens: int,
        max_completion_tokens: int,
        prices: tuple[float | None, float | None, float | None],
        *,
        holds: bool,
    ) -> tuple[int, BudgetLimit | None]:
        """How many of ``n`` samples fit (counting what is held, or not), and the limit that cut it."""
        usd_per_prompt_token, usd_per_completion_token, flops_per_token = prices
        budget = self.budget
        spent = Usage.total(self._spent.values())
        held = (self._held_samples, self._held_tokens, self._held_usd, self._held_flops) if holds else (0, 0, 0.0, 0.0)
        limit: BudgetLimit | None = None
        granted = n
        if budget.max_seconds is not None and self.elapsed() >= budget.max_seconds:
            granted, limit = 0, "max_seconds"
        if budget.max_samples is not None and granted > 0:
            fits = budget.max_samples - spent.samples - held[0]
            if fits < granted:
                granted, limit = max(0, fits), "max_samples"
        if budget.max_tokens is not None and granted > 0:
            left = budget.max_tokens - spent.charged_tokens - held[1] - prompt_tokens
            fits = left // max_completion_tokens if left > 0 else 0
            if fits < granted:
                granted, limit = max(0, fits), "max_tokens"
        if budget.max_usd is not None and granted > 0:
            if usd_per_prompt_token is None or usd_per_completion_token is None:
                raise ValueError(
                    "max_usd is set but the model's price is unknown; give the ModelSpec "
                    "usd_per_input_token and usd_per_output_token"
                )
            left_usd = budget.max_usd - spent.charged_usd - held[2] - prompt_tokens * usd_per_prompt_token
            per_sample = max_completion_tokens * usd_per_completion_token
            fits = granted if per_sample == 0 else math.floor(left_usd / per_sample) if left_usd > 0 else 0
            if fits < granted:
                granted, limit = max(0, fits), "max_usd"
        if budget.max_flops is not None and granted > 0:
            if flops_per_token is None:
                raise ValueError(
                    "max_flops is set but the model's parameter count is unknown; give ModelSpec parameters"
                )
            left_flops = budget.max_flops - spent.charged_flops - held[3] - prompt_tokens * flops_per_token
            per_sample = max_completion_tokens * flops_per_token
            fits = math.floor(left_flops / per_sample) if left_flops > 0 else 0
            if fits < granted:
                granted, limit = max(0, fits), "max_flops"
        return granted, limit

    async def reserve_waiting(
        self,
        n: int,
        *,
        prompt_tokens: int,
        max_completion_tokens: int,
        usd_per_prompt_token: float | None = None,
        usd_per_completion_token: float | None = None,
        flops_per_token: float | None = None,
    ) -> Reservation | None:
        """:meth:`reserve`, but when nothing fits only because other calls' worst cases are held,
        wait until one of them settles and try again. Concurrent calls (a verifier scoring many
        candidates at once) then share a tight budget by what they really use, not by the sum of
        their worst cases; the limits hold exactly as with :meth:`reserve`."""
        prices = (usd_per_prompt_token, usd_per_completion_token, flops_per_token)
        while True:
            loop = asyncio.get_running_loop()
            with self._lock:
                waiting: asyncio.Future[None] | None = None
                if not self.overrun_tokens and self._holding():
                    held_back = self._grant(1, prompt_tokens, max_completion_tokens, prices, holds=True)[0] == 0
                    if held_back and self._grant(1, prompt_tokens, max_completion_tokens, prices, holds=False)[0] > 0:
                        waiting = loop.create_future()
                        self._waiters.append((loop, waiting))
            if waiting is None:
                return self.reserve(
                    n,
                    prompt_tokens=prompt_tokens,
                    max_completion_tokens=max_completion_tokens,
                    usd_per_prompt_token=usd_per_prompt_token,
                    usd_per_completion_token=usd_per_completion_token,
                    flops_per_token=flops_per_token,
                )
            await waiting

    def _holding(self) -> bool:
        return self._open > 0

    def _wake(self) -> None:
        """Wake every :meth:`reserve_waiting` caller (under the lock, after a hold was given back)."""
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def absorb(self, child: LedgerSnapshot, *, prefix: str) -> None:
        """Book a child run's spend (a subgraph's ledger) under ``prefix/node``, and its stop reason."""
        for entry in child.entries:
            self.settle(None, entry.usage, node=f"{prefix}/{entry.node}", model=entry.model)
        if child.overrun_tokens:
            self.flag_overrun(child.overrun_tokens)
        if child.stopped_by is not None:
            self.stop(child.stopped_by)

    def settle(self, reservation: Reservation | None, usage: Usage, *, node: str, model: str) -> None:
        """Release ``reservation`` and book what the call really used."""
        with self._lock:
            if reservation is not None:
                self._unhold(reservation)
            key = (node, model)
            self._spent[key] = self._spent.get(key, Usage()) + usage

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose call never ran."""
        with self._lock:
            self._unhold(reservation)

    def settle_unconfirmed(self, reservation: Reservation, *, node: str, model: str) -> None:
        """Book the whole of ``reservation`` as unconfirmed spend: for a request that was sent but
        whose answer never came (the client timed out, or it was cancelled in flight). The provider
        may bill it anyway, so its worst case stays counted against the budget."""
        usage = Usage(
            unconfirmed_tokens=reservation.tokens,
            unconfirmed_usd=reservation.usd,
            unconfirmed_flops=reservation.flops,
        )
        self.settle(reservation, usage, node=node, model=model)

    def _unhold(self, reservation: Reservation) -> None:
        if not reservation.settled:
            reservation.settled = True
            self._held_samples -= reservation.n
            self._held_tokens -= reservation.tokens
            self._held_usd -= reservation.usd
            self._held_flops -= reservation.flops
            self._open -= 1
            self._wake()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


LEDGER_ATTRIBUTE: Final = "ttc_ledger"
"""The attribute under which an exception out of a model call carries the run's live :class:`Ledger`."""


def attach_ledger(exc: BaseException, ledger: Ledger) -> None:
    """Let ``exc`` carry ``ledger`` (the innermost ledger wins: it is the failing call's)."""
    if getattr(exc, LEDGER_ATTRIBUTE, None) is None:
        with contextlib.suppress(AttributeError, TypeError):  # an exception type with __slots__
            setattr(exc, LEDGER_ATTRIBUTE, ledger)


def ledger_snapshot_of(exc: BaseException) -> LedgerSnapshot | None:
    """What the run had spent when ``exc`` ended it, or None if ``exc`` carries no ledger.

    Every exception a model call raises through the gateway carries the run's ledger, with what was
    booked up to the failure (and, once the failure has reached the caller, what the cancelled sibling
    calls booked): read it here so that a failed run's spend is not lost. Exception groups are searched.
    """
    pending = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        ledger = getattr(current, LEDGER_ATTRIBUTE, None)
        if isinstance(ledger, Ledger):
            return ledger.snapshot()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return None
