"""One agent turn of a tool-bound :class:`~ttc_agents.integrations.ChatTTC`: tools in OpenAI format, the
validation of a sampled tool call, and the vote that selects the turn's response.

A turn samples N responses to the whole conversation in one request. Each sample is a *tool-calling*
sample (it made tool calls), a *text* sample, or *invalid*: a tool call whose arguments are not a JSON
object, that names a tool that was not bound, or whose arguments fail the tool's schema (the pydantic
model of a pydantic tool or structured-output schema, else the JSON schema's required keys and basic
types). Invalid samples are counted but can never win.

Selection: the valid samples vote on the turn's *kind* first (tool calls or text; a tie goes to tool
calls when ``tool_choice`` requires a call, else to the kind of the first valid sample). A tool-calling
turn is then the plurality over *normalised* tool calls: the calls of one sample as a sorted tuple of
``(name, json.dumps(args, sort_keys=True))``, so key order and whitespace do not split votes; ties keep
the earliest sample. A text turn is the best-of-N weighted selection of the text samples' final
answers (verifier scores when a verifier is configured, else majority).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

from ttc_agents._llm.gateway import Sample

__all__ = [
    "ParsedCall",
    "ToolBinding",
    "TurnVote",
    "bind_tool_specs",
    "canonical_calls",
    "parse_sample",
    "vote_turn",
]

Validator = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """A valid tool call of a sample: name, parsed arguments and the id the model gave it."""

    name: str
    args: dict[str, Any]
    id: str | None

    @property
    def key(self) -> tuple[str, str]:
        return self.name, json.dumps(self.args, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class ToolBinding:
    """What ``bind_tools`` bound: the tools in OpenAI format and a validator per tool name."""

    tools: tuple[dict[str, Any], ...]
    validators: Mapping[str, Validator] = field(default_factory=dict)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(str(t["function"]["name"]) for t in self.tools)


def _pydantic_validator(model: type[BaseModel]) -> Validator:
    def check(args: dict[str, Any]) -> bool:
        try:
            model.model_validate(args)
        except ValidationError:
            return False
        return True

    return check


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _schema_validator(parameters: Mapping[str, Any]) -> Validator:
    """The required keys and the top-level properties' basic JSON types of a JSON schema."""
    properties = parameters.get("properties") or {}
    required = list(parameters.get("required") or ())

    def check(args: dict[str, Any]) -> bool:
        if any(name not in args for name in required):
            return False
        for name, value in args.items():
            spec = properties.get(name)
            kind = spec.get("type") if isinstance(spec, Mapping) else None
            kinds = [kind] if isinstance(kind, str) else list(kind) if isinstance(kind, list) else []
            known = [k for k in kinds if k in _JSON_TYPES]
            if known and not any(_JSON_TYPES[k](value) for k in known):
                return False
        return True

    return check


def bind_tool_specs(tools: Sequence[Any]) -> ToolBinding:
    """Tools of any form LangChain accepts (BaseTool, function, pydantic model, TypedDict, OpenAI dict)
    in OpenAI format, with their validators (pydantic where the tool has a pydantic schema)."""
    converted: list[dict[str, Any]] = []
    validators: dict[str, Validator] = {}
    for tool in tools:
        spec = dict(convert_to_openai_tool(tool))
        name = str(spec["function"]["name"])
        converted.append(spec)
        schema: Any = None
        if isinstance(tool, type) and issubclass(tool, BaseModel):
            schema = tool
        elif isinstance(tool, BaseTool) and isinstance(tool.args_schema, type):
            schema = tool.args_schema if issubclass(tool.args_schema, BaseModel) else None
        validators[name] = (
            _pydantic_validator(schema)
            if schema is not None
            else _schema_validator(spec["function"].get("parameters") or {})
        )
    return ToolBinding(tuple(converted), validators)


def parse_sample(sample: Sample, binding: ToolBinding) -> tuple[ParsedCall, ...] | None:
    """The valid tool calls of ``sample``; ``()`` for a text sample; None when any call is invalid."""
    if not sample.tool_calls:
        return ()
    calls: list[ParsedCall] = []
    for call in sample.tool_calls:
        function = call.get("function") or {}
        name = function.get("name")
        raw = function.get("arguments")
        if not isinstance(name, str) or name not in binding.names:
            return None
        try:
            args = json.loads(raw) if isinstance(raw, str) and raw.strip() else {} if raw in (None, "") else raw
        except (json.JSONDecodeError, RecursionError):
            return None
        if not isinstance(args, dict):
            return None
        validator = binding.validators.get(name)
        if validator is not None and not validator(args):
            return None
        call_id = call.get("id")
        calls.append(ParsedCall(name, args, call_id if isinstance(call_id, str) else None))
    return tuple(calls)


def canonical_calls(calls: Sequence[ParsedCall]) -> tuple[tuple[str, str], ...]:
    """The vote key of one sample's calls: sorted ``(name, canonical JSON args)`` pairs."""
    return tuple(sorted(call.key for call in calls))


@dataclass(frozen=True, slots=True)
class TurnVote:
    """The outcome of one turn's vote."""

    kind: Literal["tool_calls", "text", "none"]
    index: int | None
    """The chosen sample (for a text turn: the one :func:`vote_turn`'s caller picks among ``text``)."""
    calls: tuple[ParsedCall, ...] = ()
    votes: dict[str, int] = field(default_factory=dict)
    """Votes per normalised call set (``name(args); ...``), for a tool-calling turn."""
    text: tuple[int, ...] = ()
    """Indexes of the text samples (for a text turn)."""
    invalid: int = 0
    tool_samples: int = 0


def _label(key: tuple[tuple[str, str], ...]) -> str:
    return "; ".join(f"{name}({args})" for name, args in key)


def vote_turn(samples: Sequence[Sample], binding: ToolBinding, *, require_call: bool = False) -> TurnVote:
    """Select among one turn's samples (see the module docstring)."""
    parsed = [parse_sample(s, binding) for s in samples]
    invalid = sum(1 for p in parsed if p is None)
    tooled = [i for i, p in enumerate(parsed) if p]
    text = tuple(i for i, p in enumerate(parsed) if p == ())
    if not tooled and not text:
        return TurnVote("none", None, invalid=invalid)
    if require_call and tooled:
        calls_win = True
    elif len(tooled) != len(text):
        calls_win = len(tooled) > len(text)
    else:  # a tie: the kind of the first valid sample
        calls_win = min([*tooled, *text]) in tooled
    if not calls_win:
        return TurnVote("text", None, text=text, invalid=invalid, tool_samples=len(tooled))
    keys = {i: canonical_calls(parsed[i] or ()) for i in tooled}
    counts = Counter(keys.values())
    order = list(dict.fromkeys(keys[i] for i in tooled))
    winner = max(order, key=lambda k: counts[k])
    index = next(i for i in tooled if keys[i] == winner)
    votes = {_label(k): counts[k] for k in order}
    return TurnVote(
        "tool_calls",
        index,
        calls=parsed[index] or (),
        votes=votes,
        text=text,
        invalid=invalid,
        tool_samples=len(tooled),
    )
