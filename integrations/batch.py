"""Batch runs: many questions through one graph or workflow, streamed to JSON Lines, resumable.

::

    from pathlib import Path
    from ttc_agents import Budget
    from ttc_agents._workflow import load_workflow
    from ttc_agents.integrations.batch import abatch, run_batch

    workflow = load_workflow("workflows.yaml", "math-support")
    summary = await run_batch(Path("questions.jsonl"), workflow, out="answers.jsonl",
                              max_concurrency=16, total_budget=Budget(max_usd=5))
    records = await abatch(["What is 2 + 3?", "What is 7 * 8?"], workflow)   # in memory, input order

Input
    A JSONL file (pass a :class:`~pathlib.Path`) or any iterable / async iterable of
    :class:`BatchItem`, question strings or row mappings. A row has ``question`` (required), ``id``
    (a string or an integer; default: the line number, or the 1-based position for iterables),
    ``answer`` (a reference for grading; a GSM8K ``"... #### 72"`` answer grades against ``72``)
    and ``context`` (earlier turns as ``{role, content}`` messages); other fields are kept as
    metadata and echoed in the record. A bad line (invalid JSON, no question, a mistyped field, an id
    that repeats an earlier one) becomes an error record naming the line; with ``strict=True`` it
    fails the run instead (for a file, before anything runs).

Output
    One JSON object per line, written as each item finishes (so in completion order, not input
    order), with ONE ``write`` + ``flush`` per line from the event loop's single thread. An answered
    item: ``id``, ``question``, ``answer``, ``stopped_by``, ``usage`` (the ledger total: samples,
    calls, prompt/completion tokens, USD, FLOPs), ``strategy``, ``trace`` (router workflows),
    ``correct`` (when the input had an answer; :func:`~ttc_agents.answers_equivalent`),
    ``seconds`` and ``metadata`` (when the input had extra fields). A failed item: ``id``,
    ``question``, ``error`` (``"<type>: <message>"``) and ``usage``: what it really spent before
    it failed (every item runs with its own ledger, which the batch reads after the exception; a
    401 costs nothing). Only when that spend cannot be known (a graph the batch did not build,
    without a ledger on its exception) does a failed item under a total budget carry ``charged``
    instead: its whole hard budget. ``max_tokens_ignored: true`` marks an item stopped because a
    server sent more completion tokens than ``n x max_tokens`` (its budget could not be kept).
    A record that cannot be written as UTF-8 (a lone surrogate such as ``\\ud800`` in an answer)
    is written with JSON escapes instead (``ensure_ascii``: the same value when read back); an
    input line with a lone surrogate in any field is bad input (named by field), never sent to a
    model. One failing item never stops the others; a failure to write OUT stops the run at once
    (:class:`BatchAborted`, after the running items end): nothing is counted as done that is not
    in OUT.

Budgets
    ``per_item_budget`` is every item's hard budget (default: the workflow's ``budget``).
    ``total_budget`` (default: the workflow's ``batch_budget``) is a hard limit on the items of all
    the runs that write one OUT: each item starts only with a hard budget carved out of what is
    left of the total (its per-item budget, or an equal share ``left / max_concurrency`` of a
    quantity the per-item budget leaves unlimited) and gives back what it did not spend when it
    finishes. A per-item budget that does not fit waits for running items to give budget back;
    with nothing running the item gets what is left, so the last items may run with less than
    their per-item budget. A share too small to pay for a single call (the item spent nothing and
    a pooled limit stopped it) is tried once more with all that is left, when nothing else runs.
    An item the total cannot fund gets the error record ``BatchBudgetExhausted: batch budget
    exhausted (...)``: it is never lost, and ``retry_errors`` runs it again under a larger total.
    A failed item is charged what it spent. With a router workflow (a policy) and a total budget
    in samples, tokens, USD or FLOPs, items go in windows of ``policy_window``: every item of a
    window is estimated first (the probes' spend comes off the total), then the window's share of
    what is left (in proportion to the items still to run, when their number is known: a file or
    a list) is split by the policy's greedy marginal gain
    (:func:`~ttc_agents._policy.allocate_budgets`), as :meth:`Router.abatch
    <ttc_agents.graphs.router.Router.abatch>` does for one list, and each item runs its allocated
    setting with the probe's spend plus its allocation as its hard budget.

Resume guarantee
    With ``resume=True`` (the default) a run first reads OUT: a partial last line (a killed run's
    unfinished write) is cut off at the last newline, and every id with a record is skipped: it is
    not run and not paid for again; error records count as done unless ``retry_errors=True``
    (their retry appends a new record: the LAST record of an id is the one that counts). After
    ``kill -9`` the same command therefore finishes exactly the items without a record, and the
    complete lines written before the kill stay byte-identical. Items that were running at the kill
    are run again.

    The total budget holds across kills and restarts: under a total budget, every grant an item
    starts with is written to a journal next to OUT (``OUT.journal``, one JSON line per grant,
    ``fsync``-ed before the item makes any call) and closed once the item's record is in OUT. A
    resumed run counts against the total the spend recorded in OUT (every record's ``usage`` and
    ``charged``, retried error records too: each was paid once) plus, for every grant the journal
    shows started and never closed, that whole grant (what an item killed mid-run may have spent:
    at most its hard budget). So the sum over all runs never passes the total; the price is that
    a kill costs up to ``max_concurrency`` grants of budget that may not all have been spent. The
    journal is compacted to one line at every start; delete it together with OUT (or use
    ``resume=False``) to start over. A run without a total budget writes no journal.
    ``max_seconds`` of a total budget is per run. A second run on the same OUT while one is
    writing it is refused (an advisory ``flock``). A first Ctrl-C lets the running items finish
    and write their records.

    Nothing is destroyed by a start that fails: the input file is opened, a strict run's input
    validated, OUT's records read and the configuration checked (see below) before anything runs,
    and ``resume=False`` empties OUT only when the new run writes its first record.

Preflight and failures
    :func:`run_batch` checks a workflow before the batch fans out, without spending: every model
    has a LiteLLM provider (or a resolver prefix such as ``local/``), and a USD budget (per item or
    total) has a price for every model. Then (a fixed strategy; a router allocating a total probes
    its window together) the first item runs alone until its model answers a call: if it fails
    first with an error that every item would hit (HTTP 401, 403 or 404: a bad key, a model the
    server does not have), the run stops with :class:`BatchConfigError` before
    any other item starts and writes no record for it (its spend, booked in its ledger, stays in
    the journal and counts against the total).
    ``ttc batch`` exits 0 when every item of IN has an answer, 1 when the run finished and some
    items of IN have an error record (this run's or an earlier one's: ``--retry-errors``), 2 on a
    usage or configuration error found before the batch fanned out (OUT unchanged), 3 when the
    run stopped on an error of its own (OUT could not be written; what is in OUT is kept).

Memory
    Flat in the number of items: the input is read lazily, at most ``max_concurrency`` items (a
    window of ``policy_window``, for the router) are in flight, and only the ids seen so far are kept.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import json
import math
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal, Protocol, Required, TypedDict, cast

from pydantic import BaseModel

from ttc_agents._answers import answers_equivalent
from ttc_agents._budget import (
    LEDGER_ATTRIBUTE,
    SERVER_IGNORED_MAX_TOKENS,
    Budget,
    Ledger,
    LedgerSnapshot,
    Reservation,
    Usage,
    ledger_snapshot_of,
)
from ttc_agents._difficulty import DifficultyEstimate, DifficultyEstimator
from ttc_agents._gateway import Gateway, get_default_gateway
from ttc_agents._models import ModelSpec
from ttc_agents._policy import BudgetUnit, Policy, PolicyEntry, allocate_budgets, entry_cost
from ttc_agents._search import StrategyState
from ttc_agents._workflow import Workflow
from ttc_agents.graphs.router import Router

__all__ = [
    "BadInput",
    "BatchAborted",
    "BatchConfigError",
    "BatchInputError",
    "BatchItem",
    "BatchOutputError",
    "BatchRecord",
    "BatchSummary",
    "BatchTarget",
    "MaxTokensIgnored",
    "RoutedTarget",
    "SupportsAInvoke",
    "abatch",
    "item_from_row",
    "journal_path",
    "preflight",
    "read_jsonl",
    "run_batch",
    "run_batch_target",
]

EXHAUSTED = "batch budget exhausted"
"""The error message of an item that could not get any of the batch's total budget."""

# Budget fields a total budget holds back (seconds are a deadline instead), and what usage counts.
_POOLED = ("max_samples", "max_tokens", "max_usd", "max_flops")
_INTEGER = frozenset({"max_samples", "max_tokens"})
_UNIT_FIELD: dict[BudgetUnit, str] = {
    "samples": "max_samples",
    "tokens": "max_tokens",
    "usd": "max_usd",
    "flops": "max_flops",
}
_KNOWN_FIELDS = frozenset({"id", "question", "answer", "context"})


class BatchInputError(ValueError):
    """A bad input line or item in a strict run; the message names the line."""


class BatchOutputError(ValueError):
    """OUT holds something that is not a batch record, so it cannot be resumed."""


class BatchConfigError(ValueError):
    """A configuration error found before the batch fanned out (the preflight, or the first item
    failing with an error every item would hit); nothing was written to OUT."""


class BatchAborted(RuntimeError):
    """The run stopped before its end on an error that is not one item's (OUT could not be
    written, for instance). The records written so far stay; the same command resumes."""


class MaxTokensIgnored(RuntimeError):
    """A server sent more completion tokens than ``n x max_tokens``, and the ledger in use cannot flag
    it (the gateway's :meth:`~ttc_agents._budget.Ledger.flag_overrun` stops the run instead): the
    item is stopped, its record says ``max_tokens_ignored``."""


class SupportsAInvoke(Protocol):
    """Anything run like a compiled graph: ``await graph.ainvoke({"question", ...})`` -> a mapping."""

    def ainvoke(self, input: Any, config: Any = None) -> Awaitable[Any]: ...


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


class BatchRecord(TypedDict, total=False):
    """One line of OUT: an answered item (``answer`` ...) or a failed one (``error``)."""

    id: Required[str]
    question: str
    answer: str | None
    stopped_by: str | None
    usage: dict[str, float | int] | None
    strategy: dict[str, Any] | None
    trace: dict[str, Any]
    correct: bool
    seconds: float
    metadata: dict[str, Any]
    error: str
    line: int
    charged: dict[str, float | int]
    max_tokens_ignored: bool


@dataclass(slots=True)
class BatchSummary:
    """What a batch run did. ``graded``/``correct`` cover every item of OUT (earlier runs too)."""

    out: str | None = None
    answered: int = 0
    errors: int = 0
    exhausted: int = 0
    bad_input: int = 0
    skipped: int = 0
    errors_before: int = 0
    graded: int = 0
    correct: int = 0
    usage: Usage = field(default_factory=Usage)
    usage_before: Usage = field(default_factory=Usage)
    seconds: float = 0.0

    @property
    def written(self) -> int:
        """Records written by this run (answered plus errors)."""
        return self.answered + self.errors

    @property
    def failed(self) -> int:
        """Items of the input whose last record is an error: written now, or earlier and skipped."""
        return self.errors + self.errors_before

    @property
    def accuracy(self) -> float | None:
        """Correct over graded, None when nothing was graded."""
        return self.correct / self.graded if self.graded else None

    @property
    def items_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``ttc batch --json`` prints it."""
        return {
            "out": self.out,
            "answered": self.answered,
            "errors": self.errors,
            "exhausted": self.exhausted,
            "bad_input": self.bad_input,
            "skipped": self.skipped,
            "errors_before": self.errors_before,
            "failed": self.failed,
            "graded": self.graded,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "usage": self.usage.as_dict(),
            "usage_before": self.usage_before.as_dict(),
            "seconds": self.seconds,
            "items_per_second": self.items_per_second,
        }


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------


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


def _coerce(entry: InputItem, position: int) -> BatchItem | BadInput:
    if isinstance(entry, BatchItem):
        return entry if entry.line else replace(entry, line=position)
    if isinstance(entry, BadInput):
        return entry
    if isinstance(entry, str):
        return item_from_row({"question": entry}, position, "item")
    return item_from_row(entry, position, "item")


async def _entries(items: BatchInput) -> AsyncIterator[BatchItem | BadInput]:
    if isinstance(items, os.PathLike):
        for entry in read_jsonl(items):
            yield entry
    elif isinstance(items, AsyncIterable):
        position = 0
        async for raw in items:
            position += 1
            yield _coerce(raw, position)
    else:
        for position, raw in enumerate(items, start=1):
            yield _coerce(raw, position)


class _Ids:
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


# ---------------------------------------------------------------------------------------------
# Output: what an earlier run wrote, and writing records
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Previous:
    """What OUT held when the run started."""

    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)  # done ids whose last record is an error
    usage: Usage = field(default_factory=Usage)
    charged: dict[str, float] = field(default_factory=dict)
    graded: int = 0
    correct: int = 0


_USAGE_FIELDS = frozenset(Usage.__dataclass_fields__)


def _scan_output(path: Path, *, retry_errors: bool) -> _Previous:
    """Read OUT for a resumed run; a partial last line is cut off at the last newline."""
    previous = _Previous()
    if not path.exists():
        return previous
    last: dict[str, tuple[bool, bool | None]] = {}  # id -> (is an error, correct) of its LAST record
    with open(path, "r+b") as file:
        complete = 0
        for number, raw in enumerate(file, start=1):
            if not raw.endswith(b"\n"):
                break  # a killed run's unfinished write
            complete += len(raw)
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                record_id = record["id"]
                if not isinstance(record_id, str):
                    raise TypeError("id is not a string")
            except (ValueError, KeyError, TypeError) as exc:
                raise BatchOutputError(
                    f"{path}:{number}: not a batch record ({exc}); remove the line, or start over with --no-resume"
                ) from exc
            usage = record.get("usage")
            if isinstance(usage, dict):
                previous.usage += Usage(**{k: v for k, v in usage.items() if k in _USAGE_FIELDS})
            for name, amount in (record.get("charged") or {}).items():
                previous.charged[name] = previous.charged.get(name, 0.0) + float(amount)
            correct = record.get("correct")
            last[record_id] = ("error" in record, correct if isinstance(correct, bool) else None)
        if file.seek(0, os.SEEK_END) > complete:
            file.truncate(complete)
    for record_id, (is_error, correct) in last.items():
        if not (is_error and retry_errors):
            previous.done.add(record_id)
            if is_error:
                previous.failed.add(record_id)
        if not is_error and correct is not None:
            previous.graded += 1
            previous.correct += int(correct)
    return previous


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _encode(record: Mapping[str, Any]) -> bytes:
    """One JSON line. A value that is not valid Unicode (a lone surrogate) cannot be UTF-8: then the
    line is written with JSON escapes (``ensure_ascii``), which read back as the same value."""
    text = json.dumps(record, ensure_ascii=False, default=_jsonable)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = json.dumps(record, ensure_ascii=True, default=_jsonable).encode("ascii")
    return data + b"\n"


Sink = Callable[[int, BatchRecord], None]
"""Receives each finished record with its input line (position)."""


def _file_sink(file: IO[bytes], *, start_over: Callable[[], None] | None = None) -> Sink:
    """Writes each record as one line. ``start_over`` (a run with ``resume=False``) runs before
    the first write: OUT is emptied only when there is something new to write."""
    pending = [start_over] if start_over is not None else []

    def write(line: int, record: BatchRecord) -> None:
        data = _encode(record)
        if pending:
            pending.pop()()
        file.write(data)  # one write and one flush per line: a kill cuts at most this line
        file.flush()

    return write


def journal_path(out: str | os.PathLike[str]) -> Path:
    """Where the grant journal of OUT lives: ``OUT.journal`` beside it (see the module docs)."""
    path = Path(out)
    return path.with_name(path.name + ".journal")


def _add(into: dict[str, float], amounts: Mapping[str, Any]) -> None:
    for name, amount in amounts.items():
        if name in _POOLED and isinstance(amount, int | float):
            into[name] = into.get(name, 0.0) + float(amount)


class _Journal:
    """The grants of a total budget in flight, durably: a JSON line per grant start (``fsync``-ed
    before the item spends anything), a line per finish. What a killed run's items may have spent
    is what their unfinished grants held; a resumed run counts that against the total.

    Lines: ``{"carried": amounts}`` (spend outside OUT's records, from earlier runs),
    ``{"start": seq, "id": id, "grant": amounts}``, ``{"end": seq}`` (the spend is in the item's
    record) or ``{"end": seq, "spent": amounts}`` (spent, and in no record), and ``{"reset": true}``
    (a ``resume=False`` run emptied OUT: what came before no longer counts).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] | None = None
        self.seq = 0
        self.open: dict[int, tuple[str, dict[str, float]]] = {}
        self.by_item: dict[str, list[int]] = {}

    @staticmethod
    def read(path: Path) -> dict[str, float]:
        """What the journal says was spent outside OUT's records: carried amounts, unrecorded
        spend and every grant started and never finished (a cut-off last line is ignored)."""
        carried: dict[str, float] = {}
        started: dict[int, dict[str, Any]] = {}
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return carried
        for raw in data[: data.rfind(b"\n") + 1].splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("reset"):
                carried.clear()
                started.clear()
            elif isinstance(entry.get("carried"), dict):
                _add(carried, entry["carried"])
            elif isinstance(entry.get("start"), int) and isinstance(entry.get("grant"), dict):
                started[entry["start"]] = entry["grant"]
            elif isinstance(entry.get("end"), int):
                started.pop(entry["end"], None)
                if isinstance(entry.get("spent"), dict):
                    _add(carried, entry["spent"])
        for grant in started.values():
            _add(carried, grant)
        return carried

    def begin(self, carried: Mapping[str, float]) -> None:
        """Compact the journal to one line carrying ``carried`` (atomically), then append to it."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "wb") as file:
            file.write(_encode({"carried": dict(carried)}))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        _fsync_directory(self.path.parent)
        self.file = open(self.path, "ab")  # noqa: SIM115 (closed by close())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def _append(self, entry: Mapping[str, Any], *, sync: bool) -> None:
        assert self.file is not None
        self.file.write(_encode(entry))
        self.file.flush()
        if sync:
            os.fsync(self.file.fileno())

    async def start(self, item_id: str, amounts: Mapping[str, float]) -> int:
        """Journal a grant before its item spends anything; its number for :meth:`end`."""
        assert self.file is not None
        self.seq += 1
        seq = self.seq
        grant = dict(amounts)
        self._append({"start": seq, "id": item_id, "grant": grant}, sync=False)
        self.open[seq] = (item_id, grant)
        self.by_item.setdefault(item_id, []).append(seq)
        await asyncio.to_thread(os.fsync, self.file.fileno())
        return seq

    def end(self, seq: int, spent: Mapping[str, float] | None = None) -> None:
        """A grant finished; ``spent``: what it spent that no record of OUT will show. (Not
        ``fsync``-ed: a lost end line only makes a resumed run count the whole grant.)"""
        if self.open.pop(seq, None) is None:
            return
        entry: dict[str, Any] = {"end": seq}
        if spent:
            entry["spent"] = {name: amount for name, amount in spent.items() if amount}
        self._append(entry, sync=False)

    def recorded(self, item_id: str) -> None:
        """The item's record is in OUT: its grants' spend is counted from there from now on."""
        for seq in self.by_item.pop(item_id, []):
            self.end(seq)

    def reset(self) -> None:
        """OUT was emptied (``resume=False``): earlier spend no longer counts; open grants do."""
        self._append({"reset": True}, sync=False)
        for seq, (item_id, grant) in self.open.items():
            self._append({"start": seq, "id": item_id, "grant": grant}, sync=False)
        assert self.file is not None
        os.fsync(self.file.fileno())


def _fsync_directory(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not POSIX
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------------------------
# The total budget
# ---------------------------------------------------------------------------------------------


def _amounts(usage: Usage) -> dict[str, float]:
    """Usage in the budget's terms (``max_tokens`` counts prompt and completion tokens)."""
    return {
        "max_samples": usage.samples,
        "max_tokens": usage.total_tokens,
        "max_usd": usage.usd,
        "max_flops": usage.flops,
    }


def _make_budget(values: Mapping[str, float | None]) -> Budget:
    """A budget from positive amounts (integer fields rounded down); other values are dropped."""
    kept: dict[str, float | int] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name in _INTEGER:
            value = math.floor(value)
        if value > 0:
            kept[name] = value
    return Budget.model_validate(kept)


@dataclass(frozen=True, slots=True)
class _Grant:
    """The share of the total that one item holds while it runs."""

    amounts: dict[str, float]
    seconds: float | None
    whole: bool = False  # all that was left, with nothing else running
    seq: int = 0  # its number in the journal


class _BudgetPool:
    """A batch's total budget. Every running item holds its hard budget and gives back the rest."""

    def __init__(self, total: Budget, *, slots: int, spent_before: Mapping[str, float]) -> None:
        self.limits = {name: float(getattr(total, name)) for name in _POOLED if getattr(total, name) is not None}
        self.spent = {name: float(spent_before.get(name, 0.0)) for name in self.limits}
        self.held = dict.fromkeys(self.limits, 0.0)
        self.deadline = None if total.max_seconds is None else time.monotonic() + total.max_seconds
        self.slots = slots
        self.holders = 0
        self._waiters: list[asyncio.Future[None]] = []

    def left(self, name: str) -> float:
        value = self.limits[name] - self.spent[name] - self.held[name]
        return math.floor(value) if name in _INTEGER else value

    def exhausted_reason(self) -> str:
        for name, limit in self.limits.items():
            if self.left(name) <= 0:
                return f"{EXHAUSTED} ({name}: {self.spent[name]:g} of {limit:g} spent)"
        return f"{EXHAUSTED} (max_seconds)"

    async def acquire(self, want: Budget | Mapping[str, float | None] | None) -> _Grant | None:
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

    def _try(self, wanted: Mapping[str, float | None]) -> tuple[_Grant | None, bool]:
        amounts: dict[str, float] = {}
        whole = self.holders == 0
        for name in self.limits:
            left = self.left(name)
            amount = wanted.get(name)
            if amount is None:
                amount = left / self.slots
            if name in _INTEGER and math.isfinite(amount):
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
        return _Grant(amounts, seconds, whole), False

    def release(self, grant: _Grant, spent: Mapping[str, float] | None) -> None:
        """Give ``grant`` back and book ``spent`` (None: the whole grant, when the real spend is unknown)."""
        for name, amount in grant.amounts.items():
            self.held[name] -= amount
            self.spent[name] += amount if spent is None else spent.get(name, 0.0)
        self.holders -= 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


class RoutedTarget(Protocol):
    """What a batch needs of a router to allocate a total budget: the policy, the difficulty
    estimator (with its context) and the graph (a :class:`~ttc_agents.graphs.router.Router`, or a
    stand-in that runs them elsewhere, such as the Ray engine's)."""

    @property
    def policy(self) -> Policy: ...

    @property
    def ctx(self) -> Any: ...

    @property
    def estimator(self) -> DifficultyEstimator: ...

    @property
    def graph(self) -> SupportsAInvoke: ...


@dataclass(frozen=True, slots=True)
class BatchTarget:
    """What a batch runs: the graph, the router when items are allocated a total budget by the
    policy, the default per-item and total budgets, and the budget unit of the allocation.
    ``tapped``: the graph's model calls go through a gateway that books them in each item's own
    ledger too (:func:`run_batch` builds workflows so), so a failed item's spend is known."""

    graph: SupportsAInvoke
    router: RoutedTarget | None = None
    per_item: Budget | None = None
    total: Budget | None = None
    unit: BudgetUnit | None = None
    tapped: bool = False


# ---------------------------------------------------------------------------------------------
# Every item's own ledger: what its model calls spent, even when its graph raises
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _ItemSpend:
    """What one item's model calls spent (every call, whichever node's ledger it was booked in)."""

    ledger: Ledger = field(default_factory=Ledger)
    ignored_max_tokens: bool = False
    answered: asyncio.Event | None = None  # set once a call of the item got an answer


_ITEM_SPEND: contextvars.ContextVar[_ItemSpend | None] = contextvars.ContextVar("ttc_batch_item", default=None)
"""The running item's spend; set by the batch around each item's graph call (tasks inherit it)."""


class _TeeLedger:
    """A node's ledger as the gateway sees it during a batch item: everything goes to the node's
    ledger, and what each call spent is booked in the item's ledger too. A call that sent more
    completion tokens than ``n x max_tokens`` (a server ignoring ``max_tokens``) is flagged in the
    item's spend; the gateway flags it in the node's ledger, which stops the run (a ledger without
    :meth:`~ttc_agents._budget.Ledger.flag_overrun`: :class:`MaxTokensIgnored` stops it here)."""

    __slots__ = ("_inner", "_item", "_max_tokens")

    def __init__(self, inner: Ledger, item: _ItemSpend, max_tokens: int | None) -> None:
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


class _TappedGateway(Gateway):
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
        item = _ITEM_SPEND.get()
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


def _tapped(gateway: Gateway | None) -> Gateway:
    """``gateway`` (default: the process-wide one) sharing all its state, with items' calls tapped."""
    base = gateway if gateway is not None else get_default_gateway()
    if isinstance(base, _TappedGateway):
        return base
    tapped = copy.copy(base)
    tapped.__class__ = _TappedGateway
    return tapped


def _spend_on_exception(exc: BaseException) -> Usage | None:
    """The spend an exception carries (the gateway attaches the run's ledger), if any."""
    snapshot = ledger_snapshot_of(exc)
    if snapshot is not None:
        return snapshot.total
    ledger = getattr(exc, "ledger", None)
    return ledger.total if isinstance(ledger, Ledger | LedgerSnapshot) else None


def _ignored_max_tokens(exc: BaseException, item: _ItemSpend | None) -> bool:
    if item is not None and item.ignored_max_tokens:
        return True
    snapshot = ledger_snapshot_of(exc)
    return isinstance(exc, MaxTokensIgnored) or (snapshot is not None and snapshot.overrun_tokens > 0)


def _overran(result: Mapping[str, Any], item: _ItemSpend | None) -> bool:
    """Whether a server ignored ``max_tokens`` during the item (the run stopped on it)."""
    if item is not None and item.ignored_max_tokens:
        return True
    ledger = result.get("ledger")
    return result.get("stopped_by") == SERVER_IGNORED_MAX_TOKENS or getattr(ledger, "overrun_tokens", 0) > 0


_CONFIG_STATUS = frozenset({401, 403, 404})


def _every_item_would_fail(exc: BaseException) -> bool:
    """An error that is the configuration's, not the item's: a bad key or a missing model (HTTP
    401, 403, 404), a provider LiteLLM does not know, a configuration error of the library."""
    if isinstance(exc, BatchConfigError):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status in _CONFIG_STATUS:
        return True
    return "LLM Provider NOT provided" in str(exc)


def _resolve(target: Workflow | Router | SupportsAInvoke, gateway: Gateway | None, base_dir: Any) -> BatchTarget:
    if isinstance(target, Workflow):
        gateway = _tapped(gateway)
        per_item = None if target.budget.unlimited else target.budget
        if target.policy is not None:
            router = target.router(gateway=gateway, base_dir=base_dir)
            unit = target.budget_unit or router.unit
            return BatchTarget(router.graph, router, per_item, target.batch_budget, unit, tapped=True)
        graph = target.build(gateway=gateway, base_dir=base_dir)
        return BatchTarget(graph, None, per_item, target.batch_budget, tapped=True)
    if isinstance(target, Router):
        budget = target.ctx.budget
        per_item = None if budget is None or budget.unlimited else budget
        tapped = isinstance(getattr(target.ctx, "gateway", None), _TappedGateway)
        return BatchTarget(target.graph, target, per_item, None, target.unit, tapped=tapped)
    if callable(getattr(target, "ainvoke", None)):
        return BatchTarget(target)
    raise TypeError(f"expected a Workflow, a Router or a graph with ainvoke, got {type(target).__name__}")


def preflight(
    workflow: Workflow,
    *,
    gateway: Gateway | None = None,
    per_item_budget: Budget | None = None,
    total_budget: Budget | None = None,
) -> None:
    """Check a workflow before a batch fans out, without any model call: every model has a
    LiteLLM provider (or a resolver prefix such as ``local/``), and a USD budget has a price for
    every model. Raises :class:`BatchConfigError` naming the model and what is missing."""
    from ttc_agents._litellm import litellm
    from ttc_agents._providers import register_providers

    register_providers()
    gateway = gateway if gateway is not None else get_default_gateway()
    specs = dict(workflow.models)
    kind, colon, judge = workflow.verifier.partition(":")
    if colon and kind.strip().lower() in ("prm", "orm") and judge.strip():
        name = judge.strip()
        if not any(spec.name == name for spec in specs.values()):
            specs[f"verifier {workflow.verifier}"] = ModelSpec(name=name)
    budgets = [b for b in (per_item_budget, total_budget) if b is not None]
    usd = any(b.max_usd is not None for b in budgets)
    for key, spec in specs.items():
        label = f"model {key!r} ({spec.name})" if not key.startswith("verifier ") else f"the {key}"
        if spec.group is None and not (spec.name.partition("/")[0] in gateway.resolvers and spec.api_base is None):
            try:
                litellm.get_llm_provider(spec.name, api_base=spec.api_base)
            except Exception as exc:
                message = " ".join(str(exc).split())[:200]
                raise BatchConfigError(f"{label}: LiteLLM knows no provider for it ({message})") from None
        if usd and None in gateway.prices(spec):
            raise BatchConfigError(
                f"{label}: a USD budget is set but the model has no price; give its usd_per_input_token "
                "and usd_per_output_token, or budget in tokens"
            )


def _policy_unit(router: RoutedTarget | None, preferred: BudgetUnit | None, total: Budget | None) -> BudgetUnit | None:
    """The unit the router's batch allocation works in: the workflow's when the total limits it."""
    if router is None or total is None:
        return None
    units: tuple[BudgetUnit, ...] = ("tokens", "usd", "samples", "flops")
    limited = [unit for unit in units if getattr(total, _UNIT_FIELD[unit]) is not None]
    if not limited:
        return None
    return preferred if preferred in limited else limited[0]


def _usage_of(result: Any) -> Usage | None:
    if not isinstance(result, Mapping):
        raise TypeError(f"the graph returned {type(result).__name__}, expected a mapping with 'answer'")
    ledger = result.get("ledger")
    return None if ledger is None else ledger.total


def _starved(usage: Usage | None, stopped_by: Any) -> bool:
    """Whether a run's share of the total could not pay for a single call (it spent nothing, and a
    pooled limit stopped it)."""
    return usage is not None and usage.calls == 0 and usage.samples == 0 and stopped_by in _POOLED


def _grade(answer: str | None, reference: str) -> bool:
    if answer is None:
        return False
    try:
        return answers_equivalent(answer, reference)
    except Exception:
        return False


def _error_text(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass(frozen=True, slots=True)
class _Probed:
    """A router item after its difficulty estimate."""

    item: BatchItem
    estimate: DifficultyEstimate
    spent: Usage
    started: float


class _Progress:
    def __init__(self, enabled: bool, total: int | None) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="q", dynamic_ncols=True, smoothing=0.05)

    def update(self, usage: Usage, errors: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(
                f"{usage.samples} samples, {usage.total_tokens:,} tok, ${usage.usd:.4f}, {errors} err", refresh=False
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


RecordKind = Literal["answered", "error", "exhausted", "bad"]


class _Batch:
    """One run: reads items, runs them with bounded concurrency, hands every record to the sink."""

    def __init__(
        self,
        target: BatchTarget,
        sink: Sink,
        *,
        max_concurrency: int,
        per_item: Budget | None,
        total: Budget | None,
        previous: _Previous,
        strict: bool,
        expected: int | None,
        policy_window: int,
        summary: BatchSummary,
        journal: _Journal | None = None,
        carried: Mapping[str, float] | None = None,
        canary: bool = False,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if policy_window < 1:
            raise ValueError(f"policy_window must be at least 1, got {policy_window}")
        self.target = target
        self.sink = sink
        self.max_concurrency = max_concurrency
        self.per_item = per_item
        self.done = previous.done
        self.failed_before = previous.failed
        self.strict = strict
        self.pending = expected
        self.policy_window = policy_window
        self.summary = summary
        self.unit = _policy_unit(target.router, target.unit, total)
        self.pool: _BudgetPool | None = None
        self.journal: _Journal | None = None
        if total is not None and not total.unlimited:
            spent = _amounts(previous.usage)
            for name, amount in previous.charged.items():
                spent[name] = spent.get(name, 0.0) + amount
            for name, amount in (carried or {}).items():
                spent[name] = spent.get(name, 0.0) + amount
            self.pool = _BudgetPool(total, slots=max_concurrency, spent_before=spent)
            self.journal = journal
        # The first item runs alone; an error every item would hit stops the run (BatchConfigError).
        self.canary = canary
        self.canary_answered: asyncio.Event | None = None
        self.starved_spend: dict[str, dict[str, float]] = {}  # what a starved attempt spent, by id
        self.progress = _Progress(False, None)

    async def run(
        self,
        entries: AsyncIterator[BatchItem | BadInput],
        *,
        where: str,
        progress: bool,
        progress_total: int | None = None,
    ) -> None:
        self.progress = _Progress(progress, progress_total if progress_total is not None else self.pending)
        try:
            runnable = self._runnable(entries, where)
            if self.unit is not None:
                await self._run_routed_windows(runnable)
            else:
                await self._run_each(runnable)
        finally:
            self.progress.close()

    async def _runnable(self, entries: AsyncIterator[BatchItem | BadInput], where: str) -> AsyncIterator[BatchItem]:
        """The items to run: bad input becomes an error record (or stops a strict run), done ids are skipped."""
        ids = _Ids(where)
        async for raw in entries:
            entry = ids.check(raw)
            if entry.id in self.done:
                self.summary.skipped += 1
                self.summary.errors_before += entry.id in self.failed_before
            elif isinstance(entry, BadInput):
                if self.strict:
                    raise BatchInputError(entry.error)
                self._write(
                    entry.line,
                    {"id": entry.id, "line": entry.line, "error": f"BatchInputError: {entry.error}"},
                    kind="bad",
                )
            else:
                yield entry

    # -- records ------------------------------------------------------------------------------

    def _write(self, line: int, record: BatchRecord, *, kind: RecordKind, usage: Usage | None = None) -> None:
        """Hand ``record`` to the sink, then count it: a record the sink did not take is not done
        (its exception stops the run)."""
        self.sink(line, record)
        if kind == "answered":
            self.summary.answered += 1
        else:
            self.summary.errors += 1
            self.summary.exhausted += kind == "exhausted"
            self.summary.bad_input += kind == "bad"
        if usage is not None:
            self.summary.usage += usage
        if self.journal is not None:
            self.journal.recorded(record["id"])
        self.progress.update(self.summary.usage, self.summary.errors)

    def _fail(
        self,
        item: BatchItem,
        error: str,
        *,
        spent: Usage | None = None,
        charged: Mapping[str, float] | None = None,
        ignored_max_tokens: bool = False,
        kind: RecordKind = "error",
    ) -> None:
        record: BatchRecord = {"id": item.id, "question": item.question, "error": error}
        if spent is not None:
            record["usage"] = spent.as_dict()
        if charged:
            record["charged"] = {k: int(v) if k in _INTEGER else v for k, v in charged.items()}
        if ignored_max_tokens:
            record["max_tokens_ignored"] = True
        self._write(item.line, record, kind=kind, usage=spent)

    def _failed(
        self,
        item: BatchItem,
        exc: Exception,
        grant: _Grant | None,
        spent: Usage | None,
        tally: _ItemSpend | None,
        already_spent: Usage | None = None,
    ) -> None:
        """An item's exception: give its grant back with what it spent and write its error record,
        or, for the run's first item and an error every item would hit, stop the run."""
        before = already_spent or Usage()
        total = None if spent is None else before + spent
        if grant is not None and self.pool is not None:
            self.pool.release(grant, None if spent is None else _amounts(spent))
        if self.canary and _every_item_would_fail(exc):
            if self.journal is not None and total is not None:  # paid, in no record: the journal keeps it
                seqs = self.journal.by_item.pop(item.id, [])
                for seq in seqs:
                    self.journal.end(seq, _amounts(total) if seq == seqs[-1] else None)
            # (An unknown spend leaves the grant open in the journal: a resumed run counts it whole.)
            raise BatchConfigError(
                f"the first item (id {item.id!r}) failed with {_error_text(exc)}; every item would: "
                "nothing else was started and no record was written"
            ) from exc
        charged: dict[str, float] | None = None
        if total is None and grant is not None and self.pool is not None:
            charged = dict(grant.amounts)  # the real spend is unknown: the whole grant counts
            for name, amount in _amounts(before).items():
                if name in charged:
                    charged[name] += amount
        self._fail(
            item,
            _error_text(exc),
            spent=total,
            charged=charged,
            ignored_max_tokens=_ignored_max_tokens(exc, tally),
        )

    def _exhausted(self, item: BatchItem, starved: _Grant | None = None) -> None:
        """The error record of an item the total could not fund (``starved``: its share was too small)."""
        assert self.pool is not None
        if starved is None:
            reason = self.pool.exhausted_reason()
        else:
            share = ", ".join(f"{name} {amount:g}" for name, amount in starved.amounts.items())
            reason = f"{EXHAUSTED} (its share, {share}, could not pay for one call)"
        self._fail(item, f"BatchBudgetExhausted: {reason}", kind="exhausted")

    async def _answered(
        self,
        item: BatchItem,
        result: Mapping[str, Any],
        usage: Usage | None,
        started: float,
        grant: _Grant | None = None,
        tally: _ItemSpend | None = None,
    ) -> None:
        answer = result.get("answer")
        record: BatchRecord = {
            "id": item.id,
            "question": item.question,
            "answer": answer,
            "stopped_by": result.get("stopped_by"),
            "usage": None if usage is None else usage.as_dict(),
            "strategy": result.get("strategy"),
        }
        if usage is None and grant is not None and self.pool is not None:
            record["charged"] = {k: int(v) if k in _INTEGER else v for k, v in grant.amounts.items()}
        if _overran(result, tally):
            record["max_tokens_ignored"] = True
        if result.get("trace") is not None:
            record["trace"] = result["trace"]
        correct: bool | None = None
        if item.answer is not None:
            correct = await asyncio.to_thread(_grade, answer, item.answer)
            record["correct"] = correct
        record["seconds"] = round(time.perf_counter() - started, 4)
        if item.metadata:
            record["metadata"] = item.metadata
        self._write(item.line, record, kind="answered", usage=usage)
        if correct is not None:
            self.summary.graded += 1
            self.summary.correct += int(correct)

    def _request(self, item: BatchItem, budget: Budget | None) -> dict[str, Any]:
        request: dict[str, Any] = {"question": item.question}
        if item.context is not None:
            request["context"] = item.context
        if budget is not None:
            request["budget"] = budget
        return request

    # -- a graph per item (a fixed strategy, or the router answering each question alone) -----

    async def _run_each(self, items: AsyncIterator[BatchItem]) -> None:
        slots = asyncio.Semaphore(self.max_concurrency)
        running: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            slots.release()
            if not task.cancelled() and task.exception() is not None:
                failures.append(cast(BaseException, task.exception()))

        try:
            async for item in items:
                await slots.acquire()
                if failures:
                    slots.release()
                    break
                task = asyncio.create_task(self._run_item(item))
                running.add(task)
                task.add_done_callback(finished)
                if self.canary:
                    # Fan out once the first item's model answered a call (or the item ended).
                    answered = self.canary_answered = asyncio.Event()
                    waiter = asyncio.ensure_future(answered.wait())
                    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    self.canary, self.canary_answered = False, None
                if failures:
                    break
        finally:
            # A strict stop, a failure, or a first Ctrl-C (cancellation) lets running items finish and write.
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        if failures:  # a record that could not be written, or the first item's configuration error
            raise failures[0]

    def _item_budget(self, grant: _Grant, paid: Usage | None = None) -> Budget:
        """An item's hard budget: the per-item limits, with the pooled ones replaced by ``grant``
        (plus what the item already ``paid`` for, which its ledger counts again)."""
        fields: dict[str, float | None] = self.per_item.model_dump() if self.per_item is not None else {}
        before = _amounts(paid) if paid is not None else {}
        for name, amount in grant.amounts.items():
            fields[name] = amount + before.get(name, 0.0)
        seconds = [s for s in (grant.seconds, fields.get("max_seconds")) if s is not None]
        fields["max_seconds"] = min(seconds) if seconds else None
        return _make_budget(fields)

    async def _acquire(self, item: BatchItem, want: Budget | Mapping[str, float | None] | None) -> _Grant | None:
        """A share of the total for ``item``, journaled before the item can spend any of it."""
        assert self.pool is not None
        grant = await self.pool.acquire(want)
        if grant is not None and self.journal is not None:
            try:
                seq = await self.journal.start(item.id, grant.amounts)
            except BaseException:
                self.pool.release(grant, None)
                raise
            grant = replace(grant, seq=seq)
        return grant

    async def _funded(self, item: BatchItem, attempt: Callable[[_Grant], Awaitable[bool]]) -> None:
        """Run ``attempt`` under a share of the total. A share too small for one call (``attempt``
        returns False) is tried once more with all that is left, when nothing else runs; then the
        item is out of budget."""
        assert self.pool is not None
        want: Budget | Mapping[str, float | None] | None = self.per_item
        while True:
            grant = await self._acquire(item, want)
            if grant is None:
                self._exhausted(item)
                return
            if await attempt(grant):
                return
            if self.journal is not None:  # what the starved attempt spent is in no record
                seqs = self.journal.by_item.get(item.id, [])
                if grant.seq in seqs:
                    seqs.remove(grant.seq)
                self.journal.end(grant.seq, self.starved_spend.pop(item.id, None))
            if grant.whole:
                self._exhausted(item, grant)
                return
            want = dict.fromkeys(self.pool.limits, math.inf)

    async def _run_item(self, item: BatchItem) -> None:
        started = time.perf_counter()
        graph = self.target.graph
        if self.pool is None:
            await self._invoke(item, graph, self._request(item, self.per_item), None, started)
            return

        async def attempt(grant: _Grant) -> bool:
            return await self._invoke(item, graph, self._request(item, self._item_budget(grant)), grant, started)

        await self._funded(item, attempt)

    async def _invoke(
        self,
        item: BatchItem,
        graph: SupportsAInvoke,
        request: dict[str, Any],
        grant: _Grant | None,
        started: float,
        already_spent: Usage | None = None,
    ) -> bool:
        """Run one graph call and write its record; an exception becomes the item's error record,
        never the batch's. False, with nothing written, when ``grant`` could not pay for one call."""
        tally = _ItemSpend(answered=self.canary_answered)
        token = _ITEM_SPEND.set(tally)
        try:
            result = await graph.ainvoke(request)
            usage = _usage_of(result)
        except Exception as exc:
            _ITEM_SPEND.reset(token)
            known = tally.ledger.total if self.target.tapped else _spend_on_exception(exc)
            self._failed(item, exc, grant, known, tally, already_spent)
            return True
        except BaseException:
            _ITEM_SPEND.reset(token)
            if grant is not None and self.pool is not None:
                self.pool.release(grant, _amounts(tally.ledger.total) if self.target.tapped else None)
            raise
        _ITEM_SPEND.reset(token)
        if grant is not None and self.pool is not None:
            if usage is None:
                self.pool.release(grant, None)
            else:
                spent = _amounts(usage)
                if already_spent is not None:
                    before = _amounts(already_spent)
                    spent = {name: amount - before[name] for name, amount in spent.items()}
                self.pool.release(grant, spent)
            if already_spent is None and _starved(usage, result.get("stopped_by")):
                if usage is not None:
                    self.starved_spend[item.id] = _amounts(usage)
                return False
        await self._answered(item, result, usage, started, grant, tally)
        return True

    # -- the router under a total budget: estimate a window, allocate, run --------------------

    async def _run_routed_windows(self, items: AsyncIterator[BatchItem]) -> None:
        window: list[BatchItem] = []
        async for item in items:
            window.append(item)
            if len(window) >= self.policy_window:
                await self._run_window(window)
                window = []
        if window:
            await self._run_window(window)

    async def _bounded(self, coroutines: Iterable[Awaitable[Any]]) -> list[Any]:
        """Run ``coroutines``, at most ``max_concurrency`` at a time; when one raises, the others
        still finish (and write their records) before the first exception is raised."""
        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(coroutine: Awaitable[Any]) -> Any:
            async with limit:
                return await coroutine

        results = await asyncio.gather(*(one(c) for c in coroutines), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def _run_window(self, window: list[BatchItem]) -> None:
        assert self.pool is not None and self.unit is not None and self.target.router is not None
        # (No canary here: probing one item alone would change the shares the others probe with, so the
        # allocation would differ from the Ray engine's and from Router.abatch. The preflight still runs.)
        probed: list[_Probed] = [p for p in await self._bounded(self._estimate(item) for item in window) if p]
        left = max(0.0, self.pool.left(_UNIT_FIELD[self.unit]))
        share = left if self.pending is None else left * len(window) / max(self.pending, len(window))
        if self.pending is not None:
            self.pending = max(0, self.pending - len(window))
        bins = [p.estimate.bin for p in probed]
        # The probes are paid already: they count in the allocation's total and in each entry's cost
        # (a best-of-N entry reuses its probe samples), and only the difference is acquired below.
        probes = [_amounts(p.spent)[_UNIT_FIELD[self.unit]] for p in probed]
        policy = self.target.router.policy
        entries = (
            allocate_budgets(bins, policy, share + sum(probes), self.unit, probe_costs=probes) if probed else []
        )
        await self._bounded(self._run_allocated(p, e) for p, e in zip(probed, entries, strict=True))

    async def _estimate(self, item: BatchItem) -> _Probed | None:
        """The item's difficulty estimate under a share of the total (None: an error record is written)."""
        assert self.pool is not None and self.target.router is not None
        router, pool = self.target.router, self.pool
        started = time.perf_counter()
        state: StrategyState = {"question": item.question, "context": item.context or []}
        probed: list[_Probed] = []

        async def attempt(grant: _Grant) -> bool:
            ledger = Ledger(budget=self._item_budget(grant))
            tally = _ItemSpend()
            token = _ITEM_SPEND.set(tally)
            try:
                estimate = await router.estimator.estimate(router.ctx, state, ledger)
            except Exception as exc:
                _ITEM_SPEND.reset(token)
                # The probe's ledger is ours: what it booked before the exception is what it spent.
                spent = ledger.total if not self.target.tapped else tally.ledger.total
                self._failed(item, exc, grant, spent, tally)
                return True
            except BaseException:
                _ITEM_SPEND.reset(token)
                pool.release(grant, _amounts(ledger.total))
                raise
            _ITEM_SPEND.reset(token)
            snapshot = ledger.snapshot()
            pool.release(grant, _amounts(snapshot.total))
            if _starved(snapshot.total, snapshot.stopped_by):
                self.starved_spend[item.id] = _amounts(snapshot.total)
                return False
            probed.append(_Probed(item, replace(estimate, spent=snapshot), snapshot.total, started))
            return True

        await self._funded(item, attempt)
        return probed[0] if probed else None

    async def _run_allocated(self, probed: _Probed, entry: PolicyEntry | None) -> None:
        """Run the router with the allocated setting; the item's budget includes its probe's spend."""
        assert self.pool is not None and self.unit is not None and self.target.router is not None
        unit_field = _UNIT_FIELD[self.unit]
        probe = _amounts(probed.spent)
        per_item = self.per_item.model_dump() if self.per_item is not None else {}
        grant = None
        if entry is not None:
            # The probe is paid: hold the allocated setting's cost, and what the per-item budget leaves.
            want: dict[str, float | None] = {}
            for name in self.pool.limits:
                per = per_item.get(name)
                want[name] = None if per is None else per - probe[name]
            paid = probe[unit_field]
            cost = entry_cost(self.target.router.policy, entry, self.unit, paid) - paid
            per_left = want[unit_field]
            want[unit_field] = cost if per_left is None else min(cost, per_left)
            if all(value is None or value > 0 for value in want.values()):
                grant = await self._acquire(probed.item, want)
        if grant is None:  # nothing beyond the probe: the router answers from the probe samples
            budget = _make_budget({unit_field: max(probe[unit_field], 1 if unit_field in _INTEGER else 1e-12)})
        else:
            budget = self._item_budget(grant, paid=probed.spent)
        request = self._request(probed.item, budget)
        request["estimate"] = probed.estimate
        request["action"] = entry if grant is not None else None
        await self._invoke(probed.item, self.target.router.graph, request, grant, probed.started, probed.spent)


def _count_pending(items: BatchInput, done: set[str], *, strict: bool, where: str) -> tuple[int, int] | None:
    """Items still to run and bad ones still to record, when that can be known without consuming
    the input; a strict run's first bad line fails here, before anything runs."""
    if isinstance(items, os.PathLike):
        entries: Iterable[BatchItem | BadInput] = read_jsonl(items)
    elif isinstance(items, Collection) and not isinstance(items, Iterator):
        entries = (_coerce(raw, position) for position, raw in enumerate(items, start=1))
    else:
        return None
    ids = _Ids(where)
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


def _lock(file: IO[bytes], path: Path) -> None:
    """Refuse a second run writing the same OUT at the same time (an advisory lock, POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise BatchOutputError(f"{path}: another batch run is writing this file") from exc


async def run_batch(
    items: BatchInput,
    target: Workflow | Router | SupportsAInvoke,
    *,
    out: str | os.PathLike[str],
    max_concurrency: int = 8,
    per_item_budget: Budget | None = None,
    total_budget: Budget | None = None,
    progress: bool = True,
    resume: bool = True,
    retry_errors: bool = False,
    strict: bool = False,
    policy_window: int = 256,
    gateway: Gateway | None = None,
    base_dir: str | os.PathLike[str] = ".",
) -> BatchSummary:
    """Answer every item with ``target`` and stream one JSON record per item to ``out``.

    ``items``: a JSONL file as a path object, or an iterable / async iterable of :class:`BatchItem`,
    question strings or rows. ``target``: a :class:`~ttc_agents._workflow.Workflow` (built with
    ``gateway`` and ``base_dir``), a :class:`~ttc_agents.graphs.router.Router`, or any compiled graph.
    ``per_item_budget`` and ``total_budget`` default to the workflow's ``budget`` and
    ``batch_budget``. ``resume`` skips ids already recorded in ``out`` (``retry_errors`` redoes error
    records); without it ``out`` is overwritten (once the run writes its first record). ``strict``
    fails on the first bad input line instead of writing an error record. A workflow is checked
    first (:func:`preflight`). Raises :class:`BatchConfigError` (and other errors of the input, OUT
    or the configuration) before anything is written, :class:`BatchAborted` when the run stopped
    after it started. See the module docstring for the record format, the budget rules and the
    resume guarantee.
    """
    if isinstance(items, str | bytes):
        raise TypeError("pass a JSONL file as a Path (a plain string would be read as characters)")
    resolved = _resolve(target, gateway, base_dir)
    check: Callable[[], None] | None = None
    if isinstance(target, Workflow):
        workflow = target

        def check() -> None:
            preflight(
                workflow,
                gateway=gateway,
                per_item_budget=per_item_budget if per_item_budget is not None else resolved.per_item,
                total_budget=total_budget if total_budget is not None else resolved.total,
            )

    return await run_batch_target(
        items,
        resolved,
        out=out,
        max_concurrency=max_concurrency,
        per_item_budget=per_item_budget,
        total_budget=total_budget,
        progress=progress,
        resume=resume,
        retry_errors=retry_errors,
        strict=strict,
        policy_window=policy_window,
        check=check,
    )


class _FileSink:
    """Writes each record to OUT as one line; with ``resume=False`` OUT (and the journal's account
    of earlier runs) is emptied just before the first record, so that a failed start loses nothing."""

    def __init__(self, file: IO[bytes], journal: _Journal | None, *, start_over: bool) -> None:
        self.write = _file_sink(file, start_over=self.start_over if start_over else None)
        self.file = file
        self.journal = journal
        self.emptied = not start_over

    def start_over(self) -> None:
        if not self.emptied:
            self.emptied = True
            self.file.truncate(0)
            if self.journal is not None:
                self.journal.reset()

    def __call__(self, line: int, record: BatchRecord) -> None:
        self.write(line, record)


async def run_batch_target(
    items: BatchInput,
    resolved: BatchTarget,
    *,
    out: str | os.PathLike[str],
    max_concurrency: int = 8,
    per_item_budget: Budget | None = None,
    total_budget: Budget | None = None,
    progress: bool = True,
    resume: bool = True,
    retry_errors: bool = False,
    strict: bool = False,
    policy_window: int = 256,
    check: Callable[[], None] | None = None,
    canary: bool = True,
) -> BatchSummary:
    """:func:`run_batch` for a target that is already resolved (another engine's stand-in graph and
    router, for instance): the same input, output, budget and resume rules, with this process as the
    one writer of ``out``. ``check`` runs after the input and OUT are validated, before anything
    runs (a configuration check such as :func:`preflight`); ``canary`` (a tapped target: a
    workflow :func:`run_batch` built): the first item runs alone until its model answers a call,
    and an error every item would hit (HTTP 401, 403, 404) stops the run with
    :class:`BatchConfigError` before the others start."""
    if isinstance(items, str | bytes):
        raise TypeError("pass a JSONL file as a Path (a plain string would be read as characters)")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
    if policy_window < 1:
        raise ValueError(f"policy_window must be at least 1, got {policy_window}")
    out_path = Path(out)
    where = "line" if isinstance(items, os.PathLike) else "item"
    started = time.perf_counter()
    if isinstance(items, os.PathLike):
        with open(items, "rb"):  # a missing or unreadable input fails here, before OUT is touched
            pass
    per_item = per_item_budget if per_item_budget is not None else resolved.per_item
    total = total_budget if total_budget is not None else resolved.total
    with open(out_path, "ab") as file:  # O_APPEND: every write lands at the end, even after the cut below
        _lock(file, out_path)
        previous = _scan_output(out_path, retry_errors=retry_errors) if resume else _Previous()
        counted = _count_pending(items, previous.done, strict=strict, where=where)
        if check is not None:
            check()
        journal: _Journal | None = None
        carried: dict[str, float] = {}
        if total is not None and not total.unlimited:
            journal = _Journal(journal_path(out_path))
            earlier = _Journal.read(journal.path)
            carried = earlier if resume else {}
            journal.begin(earlier)  # resume=False: the earlier account stays until OUT is emptied
        sink = _FileSink(file, journal, start_over=not resume)
        summary = BatchSummary(
            out=str(out_path), usage_before=previous.usage, graded=previous.graded, correct=previous.correct
        )
        try:
            batch = _Batch(
                resolved,
                sink,
                max_concurrency=max_concurrency,
                per_item=per_item,
                total=total,
                previous=previous,
                strict=strict,
                expected=None if counted is None else counted[0],
                policy_window=policy_window,
                summary=summary,
                journal=journal,
                carried=carried,
                canary=canary and resolved.tapped,
            )
            progress_total = None if counted is None else sum(counted)
            await batch.run(_entries(items), where=where, progress=progress, progress_total=progress_total)
            sink.start_over()  # resume=False and nothing to write: OUT is still emptied, as asked
        except (BatchConfigError, BatchInputError):
            raise
        except Exception as exc:
            raise BatchAborted(
                f"the batch stopped: {_error_text(exc)} (the {summary.written} records written to {out_path} "
                "are kept; run the same command again to resume)"
            ) from exc
        finally:
            summary.seconds = time.perf_counter() - started
            if journal is not None:
                journal.close()
    return summary


async def abatch(
    items: Iterable[InputItem],
    target: Workflow | Router | SupportsAInvoke,
    *,
    max_concurrency: int = 8,
    per_item_budget: Budget | None = None,
    total_budget: Budget | None = None,
    progress: bool = False,
    gateway: Gateway | None = None,
    base_dir: str | os.PathLike[str] = ".",
) -> list[BatchRecord]:
    """Answer ``items`` in memory and return their records in input order (no file, no resume).

    The same rules as :func:`run_batch`: bounded concurrency, per-item and total budgets, a
    failing item gives an error record (``"error"`` key) in its place instead of raising.
    """
    if isinstance(items, str | bytes):
        raise TypeError("pass a list of questions, not one string")
    listed = list(items)
    records: list[BatchRecord | None] = [None] * len(listed)

    def keep(line: int, record: BatchRecord) -> None:
        records[line - 1] = record

    resolved = _resolve(target, gateway, base_dir)
    batch = _Batch(
        resolved,
        keep,
        max_concurrency=max_concurrency,
        per_item=per_item_budget if per_item_budget is not None else resolved.per_item,
        total=total_budget if total_budget is not None else resolved.total,
        previous=_Previous(),
        strict=False,
        expected=len(listed),
        policy_window=max(len(listed), 1),
        summary=BatchSummary(),
    )
    # Positions, not the items' own lines, say where each record goes.
    positioned = [replace(_coerce(raw, i), line=i) for i, raw in enumerate(listed, start=1)]
    await batch.run(_entries(positioned), where="item", progress=progress)
    missing = [i for i, record in enumerate(records, start=1) if record is None]
    if missing:  # every item writes exactly one record; this would be a bug
        raise RuntimeError(f"no record for items {missing}")
    return [record for record in records if record is not None]
