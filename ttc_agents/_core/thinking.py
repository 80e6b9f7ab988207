"""Thinking settings: a model's own reasoning (effort level or thinking-token budget) as part of an action.

A *thinking setting* is either an effort level (``"none"``, ``"minimal"``, ``"low"``, ``"medium"``,
``"high"``: LiteLLM's ``reasoning_effort``, which it maps for OpenAI o-series/GPT-5, Gemini, DeepSeek and
Anthropic) or a positive number of thinking tokens (``thinking={"type": "enabled", "budget_tokens": K}``:
Anthropic, Qwen3 on vLLM). ``None`` leaves the model at its default and sends nothing.

Hidden reasoning is billed as completion tokens and counts against ``max_tokens`` (OpenAI's
``max_completion_tokens``, Anthropic's ``max_tokens > budget_tokens``). So a request with thinking asks
for ``max_tokens`` = the answer's cap + the setting's *allowance* (:func:`thinking_allowance`: the budget
itself, or a per-level token allowance for an effort level), and the ledger reserves exactly that per
sample: however long the model thinks, the server stops it inside the reservation, and a server that
sends more is caught as an overrun (``server_ignored_max_tokens``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import Field, TypeAdapter

__all__ = [
    "EFFORT_ALLOWANCE",
    "EFFORT_LEVELS",
    "EffortLevel",
    "Thinking",
    "parse_thinking",
    "thinking_allowance",
    "thinking_label",
    "thinking_params",
]

EffortLevel = Literal["none", "minimal", "low", "medium", "high"]
EFFORT_LEVELS: Final[tuple[EffortLevel, ...]] = ("none", "minimal", "low", "medium", "high")

Thinking = EffortLevel | Annotated[int, Field(ge=1, le=1_000_000)]
"""An effort level, or a thinking-token budget (a positive int)."""

EFFORT_ALLOWANCE: Final[Mapping[EffortLevel, int]] = {
    "none": 0,
    "minimal": 512,
    "low": 2048,
    "medium": 8192,
    "high": 32768,
}
"""Thinking tokens a request at each effort level may spend on top of the answer's cap (its ``max_tokens``
grows by this, and the reservation with it). Override per model with ``ModelSpec.thinking_tokens``."""

_ADAPTER: TypeAdapter[Thinking] = TypeAdapter(Thinking)


def parse_thinking(value: object) -> Thinking | None:
    """A thinking setting from config or the command line: ``None``/``""``/``"default"`` -> None, an
    effort level, or a budget (``1024``, ``"1024"``). Raises ValueError naming the allowed values."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "default")):
        return None
    if isinstance(value, str):
        value = value.strip().lower()
        if value.isdigit():
            value = int(value)
    try:
        return _ADAPTER.validate_python(value)
    except ValueError:
        raise ValueError(
            f"thinking: {value!r} is neither an effort level ({', '.join(EFFORT_LEVELS)}) "
            "nor a positive thinking-token budget"
        ) from None


def thinking_params(setting: Thinking | None) -> dict[str, Any]:
    """The LiteLLM request parameters of ``setting`` (none for None)."""
    if setting is None:
        return {}
    if isinstance(setting, str):
        return {"reasoning_effort": setting}
    return {"thinking": {"type": "enabled", "budget_tokens": int(setting)}}


def thinking_allowance(setting: Thinking | None, overrides: Mapping[EffortLevel, int] | None = None) -> int:
    """Thinking tokens one sample at ``setting`` may use on top of its answer: a budget is itself, an
    effort level its entry in ``overrides`` (``ModelSpec.thinking_tokens``) or :data:`EFFORT_ALLOWANCE`."""
    if setting is None:
        return 0
    if isinstance(setting, int):
        return int(setting)
    if overrides and setting in overrides:
        return int(overrides[setting])
    return EFFORT_ALLOWANCE[setting]


def thinking_label(setting: Thinking | None) -> str:
    """A short name for tables and curves: the level, ``think=1024`` for a budget, ``default`` for None."""
    if setting is None:
        return "default"
    return setting if isinstance(setting, str) else f"think={setting}"
