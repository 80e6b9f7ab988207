"""Hidden reasoning in the scripted double: a thinking setting buys reasoning tokens, and reasoning
tokens lower the per-step error probability with diminishing returns.

A request's setting is its ``reasoning_effort`` (an effort level) or ``thinking={"type": "enabled",
"budget_tokens": K}``. Each sample reasons for

* an effort level: ``T x U(0.5, 1.5)`` tokens, ``T`` = :data:`EFFORT_REASONING_TOKENS` (none 0,
  minimal 16, low 48, medium 128, high 320);
* a budget ``K``: ``K x U(0.5, 1.0)`` tokens (it uses most of what it is given);

(``U`` from a hash of the sample's key, so the draws are seeded like the sample; at ``T = 0`` the middle of
the range). Its per-step error probability is multiplied by
``FLOOR + (1 - FLOOR) exp(-r / SCALE)`` (FLOOR 0.15, SCALE 150 tokens): low effort x0.77, medium x0.51,
high x0.25 on average. The reasoning is hidden: it is reported as OpenAI-compatible servers do, in
``usage.completion_tokens_details.reasoning_tokens`` and inside ``completion_tokens``, and it counts
against ``max_tokens`` before the answer does. A sample whose reasoning reaches ``max_tokens`` has an empty
answer and ``finish_reason="length"``.

Only the scaled profiles (``scripted/arith*``) think; the synthetic populations (``scripted/pop-*``) ignore
the parameter, as a server without reasoning does (LiteLLM drops it for them: they are not registered as
reasoning models).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from ttc_agents._llm.scripted.questions import _unit

__all__ = ["EFFORT_REASONING_TOKENS", "reasoning_factor", "reasoning_tokens", "requested_reasoning"]

EFFORT_REASONING_TOKENS: Final[Mapping[str, int]] = {"none": 0, "minimal": 16, "low": 48, "medium": 128, "high": 320}
_FLOOR: Final = 0.15
_SCALE: Final = 150.0


def requested_reasoning(optional_params: Mapping[str, Any]) -> tuple[float, float] | None:
    """The (low, high) range of reasoning tokens a request's thinking setting buys, or None without one."""
    thinking = optional_params.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
        budget = int(thinking.get("budget_tokens") or 0)
        return (0.5 * budget, 1.0 * budget) if budget > 0 else None
    effort = optional_params.get("reasoning_effort")
    if isinstance(effort, str) and effort in EFFORT_REASONING_TOKENS:
        mean = EFFORT_REASONING_TOKENS[effort]
        return (0.5 * mean, 1.5 * mean) if mean > 0 else None
    return None


def reasoning_tokens(span: tuple[float, float] | None, greedy: bool, *key: object) -> int:
    """One sample's reasoning tokens in ``span`` (uniform from a hash of ``key``; the middle when greedy)."""
    if span is None:
        return 0
    low, high = span
    u = 0.5 if greedy else _unit("reasoning", *key)
    return round(low + (high - low) * u)


def reasoning_factor(tokens: int) -> float:
    """The multiplier of the per-step error probability after ``tokens`` of reasoning (1.0 for none)."""
    return _FLOOR + (1.0 - _FLOOR) * math.exp(-tokens / _SCALE)
