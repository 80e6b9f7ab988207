"""Local-file loaders for MATH-500 and GSM8K in their published formats, and the benchmark's dataset specs.

Nothing here talks to a dataset hub: download the files once, then point the loaders at them.

MATH-500 (``HuggingFaceH4/MATH-500``, ``test.jsonl``)
    One object per line: ``problem``, ``solution``, ``answer`` (LaTeX), ``subject``, ``level``
    (1-5) and ``unique_id`` (e.g. ``"test/precalculus/807.json"``). Rows of the original MATH
    release are accepted too: ``level`` as ``"Level 3"`` (``"Level ?"`` means unknown), ``type``
    instead of ``subject``, and no ``answer`` field, in which case the answer is the last
    ``\\boxed{...}`` of the solution. The level becomes :attr:`Problem.difficulty`.
GSM8K (``openai/grade-school-math``, ``grade_school_math/data/test.jsonl``)
    One object per line: ``question`` and ``answer``, the worked solution ending in ``#### N``.
    The reference answer is ``N`` with thousands separators removed; the solution is kept as
    ``metadata["solution"]``.

Both loaders report a bad line with the file name and line number (:class:`DatasetError`), or
skip it with a :class:`DatasetWarning` saying the same when ``on_error="skip"``.

:func:`load_bench_problems` reads every dataset spec of :func:`~ttc_agents._datasets.load_problems`
plus ``math500:PATH`` and ``gsm8k:PATH``; a bare JSONL path is sniffed from its first row (MATH
rows have ``problem`` and ``solution``, GSM8K rows ``question`` and an answer with ``####``;
anything else goes to the generic loader).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr, ValidationError

from ttc_agents._answers import extract_answer
from ttc_agents._datasets import DatasetError, DatasetWarning, Problem, load_jsonl, load_problems

__all__ = ["OnError", "load_bench_problems", "load_gsm8k", "load_math500"]

OnError = Literal["fail", "skip"]

_LEVEL_TEXT: Final = re.compile(r"\s*level\s*(?P<n>\d+|\?)\s*", re.IGNORECASE)
_NUMBER_WITH_COMMAS: Final = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


class _BadLine(ValueError):
    """What is wrong with one line (the caller adds the file and the line number)."""


class _MathRow(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    problem: StrictStr
    solution: StrictStr | None = None
    answer: StrictStr | StrictInt | StrictFloat | None = None
    level: StrictInt | StrictStr | None = None
    subject: StrictStr | None = None
    type: StrictStr | None = None
    unique_id: StrictStr | None = None


class _GSM8KRow(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    question: StrictStr
    answer: StrictStr
    id: StrictStr | StrictInt | None = None


def _objects(path: Path, on_error: OnError) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; unreadable lines are reported by ``_report``."""
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            _report(path, number, f"invalid JSON: {exc.msg} (column {exc.colno})", on_error)
            continue
        if not isinstance(data, dict):
            _report(path, number, f"expected a JSON object, got {type(data).__name__}", on_error)
            continue
        yield number, data


def _report(path: Path, number: int, what: str, on_error: OnError) -> None:
    message = f"{path}:{number}: {what}"
    if on_error == "fail":
        raise DatasetError(message)
    warnings.warn(f"skipped {message}", DatasetWarning, stacklevel=4)


def _fields_message(error: ValidationError) -> str:
    parts: dict[str, str] = {}
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "row"
        if name not in parts:  # a union reports one error per member type
            got = "" if item["type"] == "missing" else f", got {type(item['input']).__name__}"
            parts[name] = f"field {name!r}: {'required' if item['type'] == 'missing' else 'wrong type'}{got}"
    return "; ".join(parts.values())


def _load(path: str | Path, on_error: OnError, parse: Callable[[dict[str, Any], str, int], Problem]) -> list[Problem]:
    path = Path(path).expanduser()
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for number, data in _objects(path, on_error):
        try:
            problem = parse(data, path.stem, number)
            if problem.id in seen:
                raise _BadLine(f"id {problem.id!r} repeats line {seen[problem.id]}")
        except ValidationError as exc:
            _report(path, number, _fields_message(exc), on_error)
            continue
        except _BadLine as exc:
            _report(path, number, str(exc), on_error)
            continue
        seen[problem.id] = number
        problems.append(problem)
    return problems


# ---------------------------------------------------------------------------------------------
# MATH-500
# ---------------------------------------------------------------------------------------------


def _level(value: int | str | None) -> int | None:
    if value is None or isinstance(value, int):
        if isinstance(value, int) and value < 1:
            raise _BadLine(f"field 'level': must be at least 1, got {value}")
        return value
    match = _LEVEL_TEXT.fullmatch(value) or re.fullmatch(r"\s*(?P<n>\d+)\s*", value)
    if match is None:
        raise _BadLine(f"field 'level': expected an integer or 'Level N', got {value!r}")
    return None if match.group("n") == "?" else int(match.group("n"))


def _math_problem(data: dict[str, Any], stem: str, number: int) -> Problem:
    row = _MathRow.model_validate(data)
    if not row.problem.strip():
        raise _BadLine("field 'problem': must not be empty")
    if row.answer is not None:
        answer = row.answer if isinstance(row.answer, str) else json.dumps(row.answer)
    elif row.solution is not None and ("\\boxed" in row.solution or "\\fbox" in row.solution):
        answer = extract_answer(row.solution) or ""
    else:
        raise _BadLine("no 'answer' field and no \\boxed{} answer in 'solution'")
    if not answer.strip():
        raise _BadLine("field 'answer': must not be empty")
    level = _level(row.level)
    metadata: dict[str, Any] = {
        key: value
        for key, value in {
            "source": "MATH",
            "solution": row.solution,
            "subject": row.subject or row.type,
            "level": level,
            "unique_id": row.unique_id,
        }.items()
        if value is not None
    }
    metadata.update(row.model_extra or {})
    problem_id = row.unique_id or f"{stem}:{number}"
    return Problem(problem_id, row.problem, answer.strip(), level, metadata)


def load_math500(path: str | Path, *, on_error: OnError = "fail") -> list[Problem]:
    """Problems from a local MATH-500 (or MATH) JSONL file; see the module docstring.

    Ids are the rows' ``unique_id`` (else ``"<file stem>:<line>"``), ``difficulty`` is the
    level, and answers are graded by math-verify equivalence (:func:`~ttc_agents._datasets.grade`).
    """
    return _load(path, on_error, _math_problem)


# ---------------------------------------------------------------------------------------------
# GSM8K
# ---------------------------------------------------------------------------------------------


def _gsm8k_final_answer(answer: str) -> str:
    """The ``N`` of a GSM8K solution ending in ``#### N``, without thousands separators."""
    if "####" not in answer:
        raise _BadLine("field 'answer': must end with '#### <final answer>'")
    final = answer.rsplit("####", 1)[1].strip()
    if not final:
        raise _BadLine("field 'answer': nothing after '####'")
    if _NUMBER_WITH_COMMAS.fullmatch(final):
        final = final.replace(",", "")
    return final


def _gsm8k_problem(data: dict[str, Any], stem: str, number: int) -> Problem:
    row = _GSM8KRow.model_validate(data)
    if not row.question.strip():
        raise _BadLine("field 'question': must not be empty")
    final = _gsm8k_final_answer(row.answer)
    metadata: dict[str, Any] = {"source": "GSM8K", "solution": row.answer, **(row.model_extra or {})}
    problem_id = f"{stem}:{number}" if row.id is None else str(row.id)
    return Problem(problem_id, row.question, final, None, metadata)


def load_gsm8k(path: str | Path, *, on_error: OnError = "fail") -> list[Problem]:
    """Problems from a local GSM8K JSONL file; see the module docstring. Ids are ``"<file stem>:<line>"``
    (or the row's ``id``); GSM8K has no difficulty levels."""
    return _load(path, on_error, _gsm8k_problem)


# ---------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------


def _sniff(path: Path) -> Literal["math500", "gsm8k", "jsonl"]:
    """The format of the first line that is a JSON object: ``math500`` (``problem`` with ``solution``
    or ``answer``), ``gsm8k`` (``question`` and an ``answer`` with ``####``), else ``jsonl``."""
    try:
        with path.open(encoding="utf-8-sig") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(data, dict):
                    if "problem" in data and ("solution" in data or "answer" in data):
                        return "math500"
                    if "question" in data and "####" in str(data.get("answer", "")):
                        return "gsm8k"
                    return "jsonl"
    except (OSError, UnicodeDecodeError):
        pass
    return "jsonl"


def load_bench_problems(spec: str, *, on_bad_line: OnError = "fail") -> list[Problem]:
    """The problems of a benchmark dataset spec.

    ``math500:PATH`` and ``gsm8k:PATH`` use the loaders above; an existing file is sniffed
    (MATH rows, GSM8K rows, else the generic JSONL loader; all with ``on_bad_line``); anything else
    (``rg:NAME?...``, ``arith?...``) goes to :func:`~ttc_agents._datasets.load_problems`.
    """
    text = spec.strip()
    kind, colon, rest = text.partition(":")
    loaders: dict[str, Callable[..., list[Problem]]] = {"math500": load_math500, "gsm8k": load_gsm8k}
    if colon and kind.lower() in loaders:
        path = Path(rest.strip()).expanduser()
        if not path.is_file():
            raise DatasetError(f"dataset spec {spec!r}: no such file {str(path)!r}")
        problems = loaders[kind.lower()](path, on_error=on_bad_line)
    elif Path(text).expanduser().is_file():
        path = Path(text).expanduser()
        kind = _sniff(path)
        problems = (
            loaders[kind](path, on_error=on_bad_line) if kind in loaders else load_jsonl(path, on_error=on_bad_line)
        )
    else:
        problems = load_problems(text)
    if not problems:
        raise DatasetError(f"dataset {spec!r} has no problems")
    return problems
