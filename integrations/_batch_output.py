"""Batch output: OUT as an earlier run left it (resume), writing records, the grant journal that
keeps a total budget across kills, and the lock against a second writer (see
:mod:`ttc_agents.integrations.batch`)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import IO, Any, Required, TypedDict

from pydantic import BaseModel

from ttc_agents._core.budget import Usage

from ._batch_pool import POOLED_FIELDS

__all__ = [
    "BatchOutputError",
    "BatchRecord",
    "FileSink",
    "GrantJournal",
    "PreviousRun",
    "Sink",
    "journal_path",
    "lock_output",
    "scan_output",
]


class BatchOutputError(ValueError):
    """OUT holds something that is not a batch record, so it cannot be resumed."""


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
class PreviousRun:
    """What OUT held when the run started."""

    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)  # done ids whose last record is an error
    usage: Usage = field(default_factory=Usage)
    charged: dict[str, float] = field(default_factory=dict)
    graded: int = 0
    correct: int = 0


_USAGE_FIELDS = frozenset(Usage.__dataclass_fields__)


def scan_output(path: Path, *, retry_errors: bool) -> PreviousRun:
    """Read OUT for a resumed run; a partial last line is cut off at the last newline."""
    previous = PreviousRun()
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
        if name in POOLED_FIELDS and isinstance(amount, int | float):
            into[name] = into.get(name, 0.0) + float(amount)


class GrantJournal:
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


class FileSink:
    """Writes each record to OUT as one line; with ``resume=False`` OUT (and the journal's account
    of earlier runs) is emptied just before the first record, so that a failed start loses nothing."""

    def __init__(self, file: IO[bytes], journal: GrantJournal | None, *, start_over: bool) -> None:
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


def lock_output(file: IO[bytes], path: Path) -> None:
    """Refuse a second run writing the same OUT at the same time (an advisory lock, POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise BatchOutputError(f"{path}: another batch run is writing this file") from exc
