"""Every batch item's own ledger: what its model calls spent (booked through a tapped gateway), even
when its graph raises, and whether a server ignored ``max_tokens`` (see
:mod:`ttc_agents.integrations.batch`)."""

from __future__ import annotations

import asyncio
import contextvars
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ttc_agents._core.budget import (
    LEDGER_ATTRIBUTE,
    SERVER_IGNORED_MAX_TOKENS,
    Ledger,
    LedgerSnapshot,
    Reservation,
    Usage,
    ledger_snapshot_of,
)
from ttc_agents._llm.gateway import Gateway, get_default_gateway
from ttc_agents._llm.models import ModelSpec

__all__ = [
    "ITEM_SPEND",
    "ItemSpend",
    "MaxTokensIgnored",
    "TappedGateway",
    "item_ignored_max_tokens",
    "item_overran",
    "spend_on_exception",
    "tapped_gateway",
]


class MaxTokensIgnored(RuntimeError):
    """A server sent more completion tokens than ``n x max_tokens``, and the ledger in use cannot flag
    it (the gateway's :meth:`~ttc_agents._core.budget.Ledger.flag_overrun` stops the run instead): the
    item is stopped, its record says ``max_tokens_ignored``."""


@dataclass(slots=True)
class ItemSpend:
    """What one item's model calls spent (every call, whichever node's ledger it was booked in)."""

    ledger: Ledger = field(default_factory=Ledger)
    ignored_max_tokens: bool = False
    answered: asyncio.Event | None = None  # set once a call of the item got an answer


ITEM_SPEND: contextvars.ContextVar[ItemSpend | None] = contextvars.ContextVar("ttc_batch_item", default=None)
"""The running item's spend; set by the batch around each item's graph call (tasks inherit it)."""


class _TeeLedger:
    """A node's ledger as the gateway sees it during a batch item: everything goes to the node's
    ledger, and what each call spent is booked in the item's ledger too. A call that sent more
    completion tokens than ``n x max_tokens`` (a server ignoring ``max_tokens``) is flagged in the
    item's spend; the gateway flags it in the node's ledger, which stops the run (a ledger without
    :meth:`~ttc_agents._core.budget.Ledger.flag_overrun`: :class:`MaxTokensIgnored` stops it here)."""

    __slots__ = ("_inner", "_item", "_max_tokens")

    def __init__(self, inner: Ledger, item: ItemSpend, max_tokens: int | None) -> None:
        self._inner = inner
        self._item = item
        self._max_tokens = max_tokens

    def settle(self, reservation: Reservation | None, usage: Usage, *, node: str, model: str) -> None:
        self._inner.settle(reservation, usage, node=node, model=model)
        self._item.ledger.settle(None, usage, node=node, model=model)
        if usage.calls and self._item.answered is not None:
            self._item.answered.set()
        limit = self._max_tokens
        if reservation is not None and limit and usage.completion_tokens > reservation.n * limit:
            self._item.ignored_max_tokens = True
            if hasattr(self._inner, "flag_overrun"):
                return  # the gateway flags it right after this: the run stops with its answer so far
            raise MaxTokensIgnored(
                f"{model} sent {usage.completion_tokens} completion tokens for n={reservation.n} x "
                f"max_tokens={limit}: the server ignores max_tokens, so the item's budget cannot be kept"
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TappedGateway(Gateway):
    """The gateway with every call of a batch item booked in the item's ledger too."""

    __slots__ = ()

    async def sample(
        self,
        model: Any,
        messages: Any,
        k: int = 1,
        *,
        ledger: Ledger | None = None,
        max_tokens: int | None = None,
        **params: Any,
    ) -> Any:
        item = ITEM_SPEND.get()
        if item is None:
            return await Gateway.sample(self, model, messages, k, ledger=ledger, max_tokens=max_tokens, **params)
        limit = max_tokens or ModelSpec.of(model).max_tokens
        inner = ledger if ledger is not None else Ledger()
        tee = cast(Ledger, _TeeLedger(inner, item, limit))
        try:
            return await Gateway.sample(self, model, messages, k, ledger=tee, max_tokens=max_tokens, **params)
        except BaseException as exc:
            if getattr(exc, LEDGER_ATTRIBUTE, None) is tee:  # the exception carries the node's own ledger
                setattr(exc, LEDGER_ATTRIBUTE, inner)
            raise


def tapped_gateway(gateway: Gateway | None) -> Gateway:
    """``gateway`` (default: the process-wide one) sharing all its state, with items' calls tapped."""
    base = gateway if gateway is not None else get_default_gateway()
    if isinstance(base, TappedGateway):
        return base
    tapped = copy.copy(base)
    tapped.__class__ = TappedGateway
    return tapped


def spend_on_exception(exc: BaseException) -> Usage | None:
    """The spend an exception carries (the gateway attaches the run's ledger), if any."""
    snapshot = ledger_snapshot_of(exc)
    if snapshot is not None:
        return snapshot.total
    ledger = getattr(exc, "ledger", None)
    return ledger.total if isinstance(ledger, Ledger | LedgerSnapshot) else None


def item_ignored_max_tokens(exc: BaseException, item: ItemSpend | None) -> bool:
    if item is not None and item.ignored_max_tokens:
        return True
    snapshot = ledger_snapshot_of(exc)
    return isinstance(exc, MaxTokensIgnored) or (snapshot is not None and snapshot.overrun_tokens > 0)


def item_overran(result: Mapping[str, Any], item: ItemSpend | None) -> bool:
    """Whether a server ignored ``max_tokens`` during the item (the run stopped on it)."""
    if item is not None and item.ignored_max_tokens:
        return True
    ledger = result.get("ledger")
    return result.get("stopped_by") == SERVER_IGNORED_MAX_TOKENS or getattr(ledger, "overrun_tokens", 0) > 0
