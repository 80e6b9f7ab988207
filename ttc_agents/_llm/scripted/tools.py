"""Tool calls of the scripted double: OpenAI-format calls for a calculator-style tool (see "Tools" in
:mod:`ttc_agents._llm.scripted`).

When a request carries ``tools``, the double looks for one it knows how to call:

* a *calculator*: a function whose parameters have exactly one required property, of type string
  (``expression``, ``expr``, ...). Until the conversation holds a tool result after the last user turn,
  every sample calls it with the arithmetic expression of the question; afterwards every sample
  answers in text, ``The answer is \\boxed{<the last tool result>}.``
* an *answer schema* (a structured-output tool): one required property of type number or integer.
  Every sample calls it with the question's answer.

Mistakes, per sample and seeded like every other draw: with the question's tool error rate
``r(q) = min(0.9, (0.15 + 0.45 u) x profile)`` (``u`` a uniform hash of the question), a call is wrong.
A wrong call is malformed JSON (one in three: the closing brace is missing, the same text for every
sample of the question, so a vote over raw strings could pick it) or a slip: one number of the
expression (or the answer) off by one or ten, drawn per sample, so wrong calls mostly disagree with
each other. ``tool_choice="none"`` (or no known tool) answers in text as without tools.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal

from ttc_agents._llm.scripted.parser import _CANDIDATE_RE, _count_ops, _fmt, _ParseError, _Parser
from ttc_agents._llm.scripted.prompts import _content_text
from ttc_agents._llm.scripted.questions import _question, _stable_hash, _unit

__all__ = ["ToolDraft", "tool_drafts"]

_MAX_RATE: Final = 0.9
_MALFORMED_SHARE: Final = 1.0 / 3.0
_NUMBER_RE: Final = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class ToolDraft:
    """One sample's answer to a request with tools: a call (name, raw argument text) or text."""

    name: str | None
    arguments: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class _Tool:
    name: str
    kind: Literal["calculator", "answer"]
    parameter: str
    integer: bool = False


def _known_tool(tool: Mapping[str, Any]) -> _Tool | None:
    function = tool.get("function") if tool.get("type", "function") == "function" else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        return None
    parameters = function.get("parameters") or {}
    properties = parameters.get("properties") or {}
    required = list(parameters.get("required") or properties)
    if len(required) != 1 or not isinstance(properties.get(required[0]), Mapping):
        return None
    kind = properties[required[0]].get("type")
    if kind == "string":
        return _Tool(function["name"], "calculator", required[0])
    if kind in ("number", "integer"):
        return _Tool(function["name"], "answer", required[0], integer=kind == "integer")
    return None


def _chosen_tool(tools: Sequence[Mapping[str, Any]], tool_choice: object) -> _Tool | None:
    if tool_choice == "none":
        return None
    known = [tool for tool in map(_known_tool, tools) if tool is not None]
    if isinstance(tool_choice, Mapping):
        wanted = (tool_choice.get("function") or {}).get("name")
        known = [tool for tool in known if tool.name == wanted]
    return known[0] if known else None


def _expression_text(question: str) -> str | None:
    """The arithmetic run of ``question`` with the most operations, as written."""
    best: tuple[int, str] | None = None
    for match in _CANDIDATE_RE.finditer(question):
        candidate = match.group().strip().rstrip(".")
        for attempt in (candidate, candidate.rstrip(")"), candidate.lstrip("(")):
            try:
                node = _Parser(attempt).parse()
            except (_ParseError, RecursionError):
                continue
            ops = _count_ops(node)
            if ops > 0 and (best is None or ops > best[0]):
                best = (ops, attempt.strip())
            break
    return best[1] if best else None


def _slip(text: str, rng: random.Random) -> str:
    """``text`` with one of its numbers off by one or ten (never unchanged)."""
    numbers = list(_NUMBER_RE.finditer(text))
    if not numbers:
        return text + "1"
    match = numbers[rng.randrange(len(numbers))]
    value = int(match.group())
    delta = rng.choice((-10, -1, 1, 10))
    changed = value + delta if value + delta >= 0 else value + abs(delta)
    return text[: match.start()] + str(changed) + text[match.end() :]


def _tool_result(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The last tool result after the last user turn, if any."""
    result: str | None = None
    for message in messages:
        role = message.get("role")
        if role == "user":
            result = None
        elif role == "tool":
            result = _content_text(message.get("content")).strip()
    return result


def tool_rate(question: str, scale: float) -> float:
    """``r(q)``: the probability that one sample's tool call is wrong."""
    return min(_MAX_RATE, (0.15 + 0.45 * _unit("tool-rate", question)) * scale)


def tool_drafts(
    question: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    tool_choice: object,
    *,
    scale: float,
    rngs: Sequence[random.Random | None],
) -> list[ToolDraft] | None:
    """One draft per sample (``rngs``: None means greedy), or None when the double calls no tool here."""
    tool = _chosen_tool(tools, tool_choice)
    if tool is None:
        return None
    rate = tool_rate(question, scale)
    if tool.kind == "calculator":
        result = _tool_result(messages)
        if result is not None:
            return [ToolDraft(None, None, f"The answer is \\boxed{{{result}}}.") for _ in rngs]
        value = _expression_text(question)
        if value is None:
            return None
    else:
        answer = _question(question).answer
        if answer is None:
            return None
        value = _fmt(answer) if answer.denominator == 1 or not tool.integer else str(round(answer))
    drafts = []
    for index, rng in enumerate(rngs):
        dice = rng if rng is not None else random.Random(_stable_hash("tool-greedy", question, index % 1))
        right = value
        if dice.random() < rate:
            if dice.random() < _MALFORMED_SHARE:
                drafts.append(ToolDraft(tool.name, _arguments(tool, value)[:-1], None))
                continue
            right = _slip(value, dice)
        drafts.append(ToolDraft(tool.name, _arguments(tool, right), None))
    return drafts


def _arguments(tool: _Tool, value: str) -> str:
    if tool.kind == "calculator":
        return json.dumps({tool.parameter: value})
    number = Fraction(value)
    shown: int | float = int(number) if number.denominator == 1 else float(number)
    return json.dumps({tool.parameter: shown})
