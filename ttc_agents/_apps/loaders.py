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

The two loaders live in :mod:`ttc_agents._apps.datasets` (with the one JSONL reader,
:func:`~ttc_agents._apps.datasets.read_jsonl_objects`) and are re-exported here.
Both report a bad line with the file name and line number (:class:`DatasetError`), or
skip it with a :class:`DatasetWarning` saying the same when ``on_error="skip"``.

:func:`load_bench_problems` reads every dataset spec of :func:`~ttc_agents._apps.datasets.load_problems`
plus ``math500:PATH`` and ``gsm8k:PATH``; a bare JSONL path is sniffed from its first row (MATH
rows have ``problem`` and ``solution``, GSM8K rows ``question`` and an answer with ``####``;
anything else goes to the generic loader).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from ttc_agents._apps.datasets import (
    DatasetError,
    OnError,
    Problem,
    jsonl_lines,
    load_gsm8k,
    load_jsonl,
    load_math500,
    load_problems,
)

__all__ = ["OnError", "load_bench_problems", "load_gsm8k", "load_math500"]


def _sniff(path: Path) -> Literal["math500", "gsm8k", "jsonl"]:
    """The format of the first line that is a JSON object: ``math500`` (``problem`` with ``solution``
    or ``answer``), ``gsm8k`` (``question`` and an ``answer`` with ``####``), else ``jsonl``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return "jsonl"
    for _, line in jsonl_lines(text):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(data, dict):
            if "problem" in data and ("solution" in data or "answer" in data):
                return "math500"
            if "question" in data and "####" in str(data.get("answer", "")):
                return "gsm8k"
            return "jsonl"
    return "jsonl"


def load_bench_problems(spec: str, *, on_bad_line: OnError = "fail") -> list[Problem]:
    """The problems of a benchmark dataset spec.

    ``math500:PATH`` and ``gsm8k:PATH`` use the loaders above; an existing file is sniffed
    (MATH rows, GSM8K rows, else the generic JSONL loader; all with ``on_bad_line``); anything else
    (``rg:NAME?...``, ``arith?...``) goes to :func:`~ttc_agents._apps.datasets.load_problems`.
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
