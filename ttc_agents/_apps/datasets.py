"""Problem sets for calibration and evaluation: JSONL files, reasoning-gym generators, graded arithmetic.

A :class:`Problem` is a question, its reference final answer and, when its generator has one, a
grader. :func:`load_problems` reads a *dataset spec*:

``PATH``
    A JSON Lines file: one object per line with ``question`` and ``answer`` (a string or a
    number), optional ``id`` (default ``"<file stem>:<line>"``) and ``difficulty`` (an int, e.g. a
    level); any other field goes to ``metadata``. A GSM8K-style answer ``"... #### 72"`` is
    graded on ``72`` (the full text is kept as ``metadata["solution"]``). See :func:`load_jsonl`.
``rg:NAME?key=value&...``
    ``size`` problems of the reasoning-gym generator ``NAME`` (``size`` defaults to 100, ``seed``
    to 0); every other key is a field of the generator's config, converted to the field's type
    (lists are comma-separated: ``operators=+,*``). ``pass_score`` (default 1.0) is the score of
    the generator's own ``score_answer`` that counts as correct. Examples:
    ``rg:basic_arithmetic?size=40&seed=0&max_terms=3``, ``rg:gsm_symbolic?size=50``.
``arith?size=N&seed=S&levels=1,2,3``
    The built-in graded arithmetic set (:func:`arithmetic_problems`).

Which generators the offline ``scripted/*`` provider can answer: it solves the arithmetic
expression it finds on the prompt's ``Problem:`` line, exactly, in rationals, writing non-integer
results as ``p/q``. Measured on 50 problems each (reasoning-gym 0.1.25, default configs), giving
the provider's error-free answer to the generator's own scorer:

* ``basic_arithmetic``, ``chain_sum``, ``products``: 50/50 parsed and graded right.
* ``decimal_arithmetic``, ``decimal_chain_sum``: parsed, but graded wrong: the scorer wants
  decimals and the provider writes fractions (and ``decimal_arithmetic`` puts the expression on
  the question's second line, which the ``Problem:`` line does not carry).
* ``gsm_symbolic``, ``bitwise_arithmetic``, ``power_function``, ``fraction_simplification``: word
  problems, hex or powers; the provider answers ``0`` or a wrong number. Use a real model.

:func:`arithmetic_problems` is made for the scripted provider: questions such as
``"What is 12 * 7 + 5?"`` in five levels, whose per-sample accuracy on ``scripted/arith`` falls
from about 0.95 (level 1) to about 0.1 (level 5), so calibration sees easy and hard questions.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr, ValidationError

from ttc_agents._core.answers import answers_equivalent, extract_answer
from ttc_agents._core.safe_math import evaluate

__all__ = [
    "ARITHMETIC_LEVELS",
    "DatasetError",
    "DatasetWarning",
    "Grader",
    "Problem",
    "arithmetic_problems",
    "grade",
    "jsonl_lines",
    "load_gsm8k",
    "load_jsonl",
    "load_math500",
    "load_problems",
    "read_jsonl_objects",
    "reasoning_gym_problems",
    "report_bad_line",
]

OnError = Literal["fail", "skip"]
"""What a loader does with a bad line: raise :class:`DatasetError`, or warn and skip it."""

Grader = Callable[[str | None], bool]
"""A generator's own check of a predicted final answer (``None`` = no answer)."""


class DatasetError(ValueError):
    """A dataset file or spec that cannot be read; the message names the file and line or the bad part."""


class DatasetWarning(UserWarning):
    """A line of a dataset file was skipped (``on_error="skip"``)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One question with its reference final answer.

    ``difficulty`` is a level given by the data (not the calibrated bin). ``grader``, when the
    generator provides one, decides correctness instead of answer equivalence (see :func:`grade`).
    """

    id: str
    question: str
    answer: str
    difficulty: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    grader: Grader | None = field(default=None, compare=False, hash=False, repr=False)


def grade(problem: Problem, predicted: str | None) -> bool:
    """Whether ``predicted`` answers ``problem``: its generator's grader when it has one, else
    :func:`~ttc_agents.answers_equivalent` with the reference answer (numbers compared with a
    relative tolerance of 1e-6, LaTeX by math-verify with a 2 s bound per check). ``None`` is wrong;
    a grader that raises counts as wrong."""
    if predicted is None:
        return False
    if problem.grader is not None:
        try:
            return bool(problem.grader(predicted))
        except Exception:
            return False
    return answers_equivalent(predicted, problem.answer)


# ---------------------------------------------------------------------------------------------
# JSON Lines
# ---------------------------------------------------------------------------------------------


class _Row(BaseModel):
    """One line of a JSONL dataset; fields other than these go to the problem's metadata."""

    model_config = ConfigDict(extra="allow", frozen=True)

    question: StrictStr
    answer: StrictStr | StrictInt | StrictFloat
    id: StrictStr | StrictInt | None = None
    difficulty: StrictInt | None = None


_EXPECTED: Final = {
    "question": "a string",
    "answer": "a string or a number",
    "id": "a string or an integer",
    "difficulty": "an integer",
}


def _validation_message(error: ValidationError) -> str:
    """One phrase per bad field: ``field 'answer': required``, ``field 'id': must be ...``."""
    parts: dict[str, str] = {}
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "row"
        if name in parts:
            continue  # a union reports one error per member type
        if item["type"] == "missing":
            parts[name] = f"field {name!r}: required"
        elif name in _EXPECTED:
            parts[name] = f"field {name!r}: must be {_EXPECTED[name]}, got {type(item['input']).__name__}"
        else:
            parts[name] = f"field {name!r}: {item['msg']}"
    return "; ".join(parts.values())


def _row_problem(row: _Row, default_id: str) -> Problem:
    if not row.question.strip():
        raise ValueError("field 'question': must not be empty")
    metadata: dict[str, Any] = dict(row.model_extra or {})
    answer = row.answer if isinstance(row.answer, str) else json.dumps(row.answer)
    if isinstance(row.answer, str) and "####" in row.answer:  # GSM8K: reasoning, then "#### 72"
        metadata["solution"] = row.answer
        answer = row.answer.rsplit("####", 1)[1].strip()
    if not answer.strip():
        raise ValueError("field 'answer': must not be empty")
    problem_id = default_id if row.id is None else str(row.id)
    return Problem(problem_id, row.question, answer.strip(), row.difficulty, metadata)


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of JSON Lines text, numbered as the file's lines are.

    Lines end at ``\\n`` only (a trailing ``\\r`` is dropped): never at the other Unicode line
    boundaries :meth:`str.splitlines` knows (``\\x1c``-``\\x1e``, ``\\x85``, U+2028, U+2029), which
    JSON allows inside strings and which no JSONL writer treats as the end of a record. Every
    JSONL reader of the library goes through this function.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line[:-1] if line.endswith("\r") else line


def read_jsonl_objects(path: Path, on_error: OnError, *, stacklevel: int = 2) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of the JSON Lines file ``path``.

    An unreadable or non-UTF-8 file raises :class:`DatasetError` naming it; a line that is not JSON
    or not an object is reported by :func:`report_bad_line` (raise, or warn and skip). Lines are
    split by :func:`jsonl_lines`. ``stacklevel`` is the warning's, counted from the caller.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    for number, line in jsonl_lines(text):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            report_bad_line(path, number, f"invalid JSON: {exc.msg} (column {exc.colno})", on_error, stacklevel + 1)
            continue
        except RecursionError:
            report_bad_line(path, number, "invalid JSON: nested too deeply", on_error, stacklevel + 1)
            continue
        if not isinstance(data, dict):
            report_bad_line(
                path, number, f"expected a JSON object, got {type(data).__name__}", on_error, stacklevel + 1
            )
            continue
        yield number, data


def report_bad_line(path: Path, number: int, what: str, on_error: OnError, stacklevel: int = 2) -> None:
    """Raise :class:`DatasetError` ``PATH:LINE: what`` (``on_error="fail"``), or warn and go on."""
    message = f"{path}:{number}: {what}"
    if on_error == "fail":
        raise DatasetError(message)
    warnings.warn(f"skipped {message}", DatasetWarning, stacklevel=stacklevel + 1)


def _load_rows(
    path: str | Path,
    on_error: OnError,
    parse: Callable[[dict[str, Any], str, int], Problem],
    *,
    describe: Callable[[ValidationError], str] | None = None,
    stacklevel: int = 3,
) -> list[Problem]:
    """Problems parsed by ``parse(object, file stem, line number)`` from every object line of ``path``.

    ``parse`` raises ``ValueError`` (or a pydantic ``ValidationError``) saying what is wrong with a
    line; a repeated id is a bad line too."""
    path = Path(path).expanduser()
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for number, data in read_jsonl_objects(path, on_error, stacklevel=stacklevel + 1):
        try:
            problem = parse(data, path.stem, number)
            if problem.id in seen:
                raise ValueError(f"id {problem.id!r} repeats line {seen[problem.id]}")
        except ValidationError as exc:
            report_bad_line(path, number, (describe or _validation_message)(exc), on_error, stacklevel + 1)
            continue
        except ValueError as exc:
            report_bad_line(path, number, str(exc), on_error, stacklevel + 1)
            continue
        seen[problem.id] = number
        problems.append(problem)
    return problems


def _generic_problem(data: dict[str, Any], stem: str, number: int) -> Problem:
    return _row_problem(_Row.model_validate(data), f"{stem}:{number}")


def load_jsonl(path: str | Path, *, on_error: OnError = "fail") -> list[Problem]:
    """Read problems from a JSON Lines file (see the module docstring for the fields).

    Blank lines are ignored; lines end at ``\\n`` only (:func:`jsonl_lines`). A bad line (invalid
    JSON, not an object, a missing or mistyped field, an empty question or answer, a repeated id)
    raises :class:`DatasetError` naming the file, the line number and what is wrong; with
    ``on_error="skip"`` it is skipped with a :class:`DatasetWarning` saying the same.
    """
    return _load_rows(path, on_error, _generic_problem)


# ---------------------------------------------------------------------------------------------
# Published formats: MATH-500 and GSM8K (see ttc_agents._apps.loaders for the specs)
# ---------------------------------------------------------------------------------------------

_LEVEL_TEXT: Final = re.compile(r"\s*level\s*(?P<n>\d+|\?)\s*", re.IGNORECASE)
_NUMBER_WITH_COMMAS: Final = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


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


def _fields_message(error: ValidationError) -> str:
    parts: dict[str, str] = {}
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "row"
        if name not in parts:  # a union reports one error per member type
            got = "" if item["type"] == "missing" else f", got {type(item['input']).__name__}"
            parts[name] = f"field {name!r}: {'required' if item['type'] == 'missing' else 'wrong type'}{got}"
    return "; ".join(parts.values())


# ---------------------------------------------------------------------------------------------
# MATH-500
# ---------------------------------------------------------------------------------------------


def _level(value: int | str | None) -> int | None:
    if value is None or isinstance(value, int):
        if isinstance(value, int) and value < 1:
            raise ValueError(f"field 'level': must be at least 1, got {value}")
        return value
    match = _LEVEL_TEXT.fullmatch(value) or re.fullmatch(r"\s*(?P<n>\d+)\s*", value)
    if match is None:
        raise ValueError(f"field 'level': expected an integer or 'Level N', got {value!r}")
    return None if match.group("n") == "?" else int(match.group("n"))


def _math_problem(data: dict[str, Any], stem: str, number: int) -> Problem:
    row = _MathRow.model_validate(data)
    if not row.problem.strip():
        raise ValueError("field 'problem': must not be empty")
    if row.answer is not None:
        answer = row.answer if isinstance(row.answer, str) else json.dumps(row.answer)
    elif row.solution is not None and ("\\boxed" in row.solution or "\\fbox" in row.solution):
        answer = extract_answer(row.solution) or ""
    else:
        raise ValueError("no 'answer' field and no \\boxed{} answer in 'solution'")
    if not answer.strip():
        raise ValueError("field 'answer': must not be empty")
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
    level, and answers are graded by math-verify equivalence (:func:`grade`).
    """
    return _load_rows(path, on_error, _math_problem, describe=_fields_message)


# ---------------------------------------------------------------------------------------------
# GSM8K
# ---------------------------------------------------------------------------------------------


def _gsm8k_final_answer(answer: str) -> str:
    """The ``N`` of a GSM8K solution ending in ``#### N``, without thousands separators."""
    if "####" not in answer:
        raise ValueError("field 'answer': must end with '#### <final answer>'")
    final = answer.rsplit("####", 1)[1].strip()
    if not final:
        raise ValueError("field 'answer': nothing after '####'")
    if _NUMBER_WITH_COMMAS.fullmatch(final):
        final = final.replace(",", "")
    return final


def _gsm8k_problem(data: dict[str, Any], stem: str, number: int) -> Problem:
    row = _GSM8KRow.model_validate(data)
    if not row.question.strip():
        raise ValueError("field 'question': must not be empty")
    final = _gsm8k_final_answer(row.answer)
    metadata: dict[str, Any] = {"source": "GSM8K", "solution": row.answer, **(row.model_extra or {})}
    problem_id = f"{stem}:{number}" if row.id is None else str(row.id)
    return Problem(problem_id, row.question, final, None, metadata)


def load_gsm8k(path: str | Path, *, on_error: OnError = "fail") -> list[Problem]:
    """Problems from a local GSM8K JSONL file; see the module docstring. Ids are ``"<file stem>:<line>"``
    (or the row's ``id``); GSM8K has no difficulty levels."""
    return _load_rows(path, on_error, _gsm8k_problem, describe=_fields_message)


# ---------------------------------------------------------------------------------------------
# reasoning-gym
# ---------------------------------------------------------------------------------------------


def _reasoning_gym() -> types.ModuleType:
    try:
        import reasoning_gym
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DatasetError("reasoning-gym generators need the package: pip install reasoning-gym") from exc
    module: types.ModuleType = reasoning_gym
    return module


def reasoning_gym_problems(name: str, *, size: int, seed: int, pass_score: float = 1.0, **config: Any) -> list[Problem]:
    """``size`` problems of the reasoning-gym generator ``name`` (e.g. ``basic_arithmetic``,
    ``chain_sum``, ``gsm_symbolic``), graded by the generator's own ``score_answer``: a score of at
    least ``pass_score`` is correct. ``config`` goes to the generator's config. Ids are
    ``"<name>:<seed>:<index>"``.
    """
    rg = _reasoning_gym()
    from reasoning_gym.factory import DATASETS

    if name not in DATASETS:
        raise DatasetError(f"unknown reasoning-gym generator {name!r}; known: {', '.join(sorted(DATASETS))}")
    if size < 1:
        raise DatasetError(f"size must be at least 1, got {size}")
    try:
        dataset = rg.create_dataset(name, size=size, seed=seed, **config)
    except (TypeError, ValueError, AssertionError) as exc:
        raise DatasetError(f"reasoning-gym {name}: bad config {config}: {exc}") from exc
    problems = []
    for index in range(size):
        entry = dataset[index]
        problems.append(
            Problem(
                id=f"{name}:{seed}:{index}",
                question=str(entry["question"]),
                answer=str(entry["answer"]),
                metadata={"source": f"reasoning_gym/{name}", **dict(entry.get("metadata") or {})},
                grader=_RGGrader(dataset, entry, pass_score),
            )
        )
    return problems


@dataclass(frozen=True, slots=True)
class _RGGrader:
    """A reasoning-gym entry's ``score_answer`` as a pass/fail grader."""

    dataset: Any
    entry: Mapping[str, Any]
    pass_score: float

    def __call__(self, predicted: str | None) -> bool:
        return float(self.dataset.score_answer(predicted, self.entry)) >= self.pass_score


def _config_types(name: str) -> dict[str, Any]:
    _reasoning_gym()
    from reasoning_gym.factory import DATASETS

    if name not in DATASETS:
        raise DatasetError(f"unknown reasoning-gym generator {name!r}; known: {', '.join(sorted(DATASETS))}")
    config_cls = DATASETS[name][1]
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints.get(f.name, str) for f in dataclasses.fields(config_cls)}


def _coerce(text: str, annotation: Any) -> Any:
    """``text`` as a value of type ``annotation`` (bool, int, float, str, Literal, Optional, list/tuple)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        for member in (a for a in args if a is not type(None)):
            try:
                return _coerce(text, member)
            except ValueError:
                continue
        raise ValueError(f"expected {annotation}")
    if origin is Literal:
        for option in args:
            if str(option) == text:
                return option
        raise ValueError(f"expected one of {', '.join(map(str, args))}")
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        member = args[0] if args else str
        items = [_coerce(item.strip(), member) for item in text.split(",") if item.strip()]
        return tuple(items) if origin is tuple or annotation is tuple else items
    if annotation is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError("expected true or false")
    if annotation is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected an integer") from None
    if annotation is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number") from None
    return text


# ---------------------------------------------------------------------------------------------
# Built-in graded arithmetic
# ---------------------------------------------------------------------------------------------

ARITHMETIC_LEVELS: Final[Mapping[int, tuple[int, int, int, bool]]] = {
    1: (2, 1, 9, False),
    2: (3, 2, 20, False),
    3: (3, 10, 99, False),
    4: (4, 10, 99, True),
    5: (5, 10, 199, True),
}
"""Level -> (terms, smallest operand, largest operand, parenthesise the multiplication's left side).

Level 1 adds or subtracts two digits; from level 2 on, one operator is ``*`` and the rest are
``+``/``-``. Per-sample accuracy on ``scripted/arith`` at T=0.8 (300 questions per level):
0.95, 0.73, 0.54, 0.30, 0.10.
"""


def _arithmetic_question(rng: random.Random, level: int) -> tuple[str, int]:
    terms, low, high, parenthesise = ARITHMETIC_LEVELS[level]
    numbers = [rng.randint(low, high) for _ in range(terms)]
    times = rng.randrange(terms - 1) if level > 1 else None
    operators = ["*" if i == times else rng.choice("+-") for i in range(terms - 1)]
    parts = [str(numbers[0])]
    for operator, number in zip(operators, numbers[1:], strict=True):
        parts += [operator, str(number)]
    if parenthesise and times is not None and times >= 1:
        left = 2 * times  # the left operand of "*"; group it with its left neighbour: (a - b) * c
        parts[left - 2] = "(" + parts[left - 2]
        parts[left] += ")"
    expression = " ".join(parts)
    return f"What is {expression}?", int(evaluate(expression))  # integers, + - * and parentheses


def arithmetic_problems(size: int, seed: int = 0, levels: Sequence[int] = (1, 2, 3, 4, 5)) -> list[Problem]:
    """``size`` arithmetic questions ("What is 12 * 7 + 5?") spread evenly over ``levels``.

    Levels (see :data:`ARITHMETIC_LEVELS`) add terms and bigger operands; answers are integers.
    Problem ``i`` has level ``levels[i % len(levels)]`` (its ``difficulty``), id
    ``"arith:<seed>:<i>"``, and is graded by answer equivalence. The same arguments give the same
    questions.
    """
    if size < 1:
        raise DatasetError(f"size must be at least 1, got {size}")
    levels = list(levels)
    unknown = [level for level in levels if level not in ARITHMETIC_LEVELS]
    if not levels or unknown:
        raise DatasetError(f"levels must be a non-empty subset of 1-5, got {levels}")
    rng = random.Random(f"arith:{seed}")
    problems = []
    for index in range(size):
        level = levels[index % len(levels)]
        question, answer = _arithmetic_question(rng, level)
        problems.append(Problem(f"arith:{seed}:{index}", question, str(answer), level, {"level": level}))
    return problems


# ---------------------------------------------------------------------------------------------
# Dataset specs
# ---------------------------------------------------------------------------------------------

_DEFAULT_SIZE: Final = 100
_SPEC_FORMS: Final = (
    "a JSONL file, math500:PATH, gsm8k:PATH, rg:NAME?size=N&seed=S&key=value, or arith?size=N&seed=S&levels=1,2,3"
)


def _query(spec: str, query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        key, equals, value = part.partition("=")
        key = unquote(key).strip()
        if not equals or not key:
            raise DatasetError(f"dataset spec {spec!r}: {part!r} is not key=value")
        if key in params:
            raise DatasetError(f"dataset spec {spec!r}: {key!r} is given twice")
        params[key] = unquote(value).strip()
    return params


def _int_param(spec: str, params: dict[str, str], key: str, default: int) -> int:
    if key not in params:
        return default
    text = params.pop(key)
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"dataset spec {spec!r}: {key}={text!r} is not an integer") from None


def _rg_spec(spec: str, rest: str) -> list[Problem]:
    name, _, query = rest.partition("?")
    name = name.strip()
    if not name:
        raise DatasetError(f"dataset spec {spec!r}: no generator name after 'rg:'")
    params = _query(spec, query)
    size = _int_param(spec, params, "size", _DEFAULT_SIZE)
    seed = _int_param(spec, params, "seed", 0)
    pass_score = 1.0
    if "pass_score" in params:
        text = params.pop("pass_score")
        try:
            pass_score = float(text)
        except ValueError:
            raise DatasetError(f"dataset spec {spec!r}: pass_score={text!r} is not a number") from None
    fields = _config_types(name)
    config: dict[str, Any] = {}
    for key, text in params.items():
        if key not in fields:
            accepted = ", ".join(sorted({*fields, "pass_score"}))
            raise DatasetError(f"dataset spec {spec!r}: {name} has no setting {key!r}; accepted: {accepted}")
        try:
            config[key] = _coerce(text, fields[key])
        except ValueError as exc:
            raise DatasetError(f"dataset spec {spec!r}: {key}={text!r}: {exc}") from None
    return reasoning_gym_problems(name, size=size, seed=seed, pass_score=pass_score, **config)


def _arith_spec(spec: str, query: str) -> list[Problem]:
    params = _query(spec, query)
    size = _int_param(spec, params, "size", _DEFAULT_SIZE)
    seed = _int_param(spec, params, "seed", 0)
    levels: Iterable[int] = ARITHMETIC_LEVELS
    if "levels" in params:
        text = params.pop("levels")
        try:
            levels = _levels(text)
        except ValueError:
            raise DatasetError(f"dataset spec {spec!r}: levels={text!r} is not a list like 1,2,3 or 1-5") from None
    if params:
        unknown = next(iter(params))
        raise DatasetError(f"dataset spec {spec!r}: unknown setting {unknown!r}; accepted: size, seed, levels")
    return arithmetic_problems(size, seed, tuple(levels))


def _levels(text: str) -> list[int]:
    levels: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        levels.extend(range(int(low), int(high) + 1) if dash else [int(low)])
    return levels


def load_problems(spec: str) -> list[Problem]:
    """The problems a dataset spec names (see the module docstring for the forms).

    Raises :class:`DatasetError` naming the bad part: a missing file, an unknown generator or
    setting, a value of the wrong type, or a set with no problems.
    """
    text = spec.strip()
    if text.startswith("rg:"):
        problems = _rg_spec(spec, text[3:])
    elif text == "arith" or text.startswith("arith?"):
        problems = _arith_spec(spec, text.partition("?")[2])
    elif text.startswith(("math500:", "gsm8k:")):
        kind, _, rest = text.partition(":")
        path = Path(rest.strip()).expanduser()
        if not path.is_file():
            raise DatasetError(f"dataset spec {spec!r}: no such file {str(path)!r}")
        problems = load_math500(path) if kind == "math500" else load_gsm8k(path)
    else:
        try:
            path = Path(text).expanduser()
        except RuntimeError:  # "~user/..." for an unknown user
            path = Path(text)
        if not path.is_file():
            raise DatasetError(f"dataset spec {spec!r}: no such file; expected {_SPEC_FORMS}")
        problems = load_jsonl(path)
    if not problems:
        raise DatasetError(f"dataset {spec!r} has no problems")
    return problems
