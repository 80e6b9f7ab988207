"""Batch input: a JSONL file or an iterable of items, read lazily and checked line by line (see
:mod:`ttc_agents.integrations.batch`)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "BadInput",
    "BatchInput",
    "BatchInputError",
    "BatchItem",
    "IdCheck",
    "InputItem",
    "coerce_item",
    "count_pending",
    "item_from_row",
    "iter_entries",
    "read_jsonl",
]

_KNOWN_FIELDS = frozenset({"id", "question", "answer", "context"})


class BatchInputError(ValueError):
    """A bad input line or item in a strict run; the message names the line."""


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One question of a batch. ``line`` is its line in the input file (1-based position otherwise)."""

    id: str
    question: str
    context: list[dict[str, Any]] | None = None
    answer: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True)
class BadInput:
    """An input line or item that is not a valid question; it becomes an error record."""

    id: str
    line: int
    error: str


def item_from_row(data: Any, line: int, where: str = "line") -> BatchItem | BadInput:
    """A :class:`BatchItem` from one parsed row, or a :class:`BadInput` saying what is wrong there."""
    label = f"{where} {line}"
    if not isinstance(data, Mapping):
        return BadInput(str(line), line, f"{label}: expected a JSON object, got {type(data).__name__}")
    raw_id = data.get("id")
    if raw_id is None:
        item_id = str(line)
    elif isinstance(raw_id, int | str) and not isinstance(raw_id, bool) and str(raw_id).strip():
        item_id = str(raw_id)
    else:
        return BadInput(str(line), line, f"{label}: field 'id': must be a non-empty string or an integer")

    def bad(what: str) -> BadInput:
        return BadInput(item_id, line, f"{label}: {what}")

    question = data.get("question")
    if question is None:
        return bad("field 'question': required")
    if not isinstance(question, str) or not question.strip():
        return bad("field 'question': must be a non-empty string")
    answer = data.get("answer")
    if answer is not None:
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            return bad(f"field 'answer': must be a string or a number, got {type(answer).__name__}")
        answer = answer if isinstance(answer, str) else json.dumps(answer)
        if "####" in answer:  # GSM8K: reasoning, then "#### 72"
            answer = answer.rsplit("####", 1)[1]
        answer = answer.strip()
        if not answer:
            return bad("field 'answer': must not be empty")
    context = data.get("context")
    if context is not None:
        if not isinstance(context, list) or not all(
            isinstance(m, Mapping) and isinstance(m.get("role"), str) and "content" in m for m in context
        ):
            return bad("field 'context': must be a list of {role, content} messages")
        context = [dict(m) for m in context]
    metadata = {k: v for k, v in data.items() if k not in _KNOWN_FIELDS}
    return BatchItem(item_id, question, context, answer, metadata, line)


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[BatchItem | BadInput]:
    """The items of a JSONL file, read lazily; blank lines are skipped, bad ones come as :class:`BadInput`."""
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadInput(str(number), number, f"line {number}: not UTF-8 text (byte {exc.start})")
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                yield BadInput(str(number), number, f"line {number}: invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            yield item_from_row(data, number)


InputItem = BatchItem | BadInput | str | Mapping[str, Any]
"""What an iterable of items may hold: items, question strings or rows."""

BatchInput = Iterable[InputItem] | AsyncIterable[InputItem] | os.PathLike[str]
"""A JSONL file (a path object; not a plain string), or an iterable / async iterable of items."""


def coerce_item(entry: InputItem, position: int) -> BatchItem | BadInput:
    if isinstance(entry, BatchItem):
        return entry if entry.line else replace(entry, line=position)
    if isinstance(entry, BadInput):
        return entry
    if isinstance(entry, str):
        return item_from_row({"question": entry}, position, "item")
    return item_from_row(entry, position, "item")


async def iter_entries(items: BatchInput) -> AsyncIterator[BatchItem | BadInput]:
    if isinstance(items, os.PathLike):
        for entry in read_jsonl(items):
            yield entry
    elif isinstance(items, AsyncIterable):
        position = 0
        async for raw in items:
            position += 1
            yield coerce_item(raw, position)
    else:
        for position, raw in enumerate(items, start=1):
            yield coerce_item(raw, position)


class IdCheck:
    """Catches ids that repeat: the repeat becomes a bad input with an id of its own."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.seen: dict[str, int] = {}

    def check(self, entry: BatchItem | BadInput) -> BatchItem | BadInput:
        if entry.id in self.seen:
            first = self.seen[entry.id]
            entry = BadInput(
                f"{entry.id}@{self.where}{entry.line}",
                entry.line,
                f"{self.where} {entry.line}: id {entry.id!r} repeats {self.where} {first}",
            )
        self.seen[entry.id] = entry.line
        return _checked(entry, self.where)


def _lone_surrogate(value: Any) -> str | None:
    """``U+XXXX`` of the first lone surrogate in ``value`` (strings, keys, nested lists and
    mappings), or None when every string in it is valid Unicode text."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            try:
                current.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"U+{ord(current[exc.start]):04X}"
        elif isinstance(current, Mapping):
            stack.extend(current.keys())
            stack.extend(current.values())
        elif isinstance(current, list | tuple):
            stack.extend(current)
    return None


def _checked(entry: BatchItem | BadInput, where: str) -> BatchItem | BadInput:
    """``entry``, or a bad input naming the field that is not valid Unicode text (a lone surrogate,
    as JSON's ``"\\ud800"`` decodes to, can be neither sent to a model nor written as UTF-8)."""
    if isinstance(entry, BadInput):
        return entry
    known = {"id": entry.id, "question": entry.question, "answer": entry.answer, "context": entry.context}
    for name, value in [*known.items(), *entry.metadata.items()]:
        found = _lone_surrogate(name) or _lone_surrogate(value)
        if found is not None:
            return BadInput(
                entry.id,
                entry.line,
                f"{where} {entry.line}: field {name!r}: not valid Unicode text (a lone surrogate, {found})",
            )
    return entry


def count_pending(items: BatchInput, done: set[str], *, strict: bool, where: str) -> tuple[int, int] | None:
    """Items still to run and bad ones still to record, when that can be known without consuming
    the input; a strict run's first bad line fails here, before anything runs."""
    if isinstance(items, os.PathLike):
        entries: Iterable[BatchItem | BadInput] = read_jsonl(items)
    elif isinstance(items, Collection) and not isinstance(items, Iterator):
        entries = (coerce_item(raw, position) for position, raw in enumerate(items, start=1))
    else:
        return None
    ids = IdCheck(where)
    pending = bad = 0
    for raw in entries:
        entry = ids.check(raw)
        if entry.id in done:
            continue
        if isinstance(entry, BadInput):
            if strict:
                raise BatchInputError(entry.error)
            bad += 1
        else:
            pending += 1
    return pending, bad
