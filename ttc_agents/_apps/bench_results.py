"""``ttc bench``'s ``results.jsonl`` and the names of its output files: rows appended per unit, a
resumed run's finished units, a cut or bad line repaired (see :mod:`ttc_agents._apps.bench`)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ttc_agents._apps.datasets import jsonl_lines

__all__ = [
    "MANIFEST",
    "PLOTS",
    "REPORT",
    "RESULTS",
    "STORE",
    "SUMMARY",
    "Row",
    "append_rows",
    "finished_units",
    "load_results",
    "row_key",
]


RESULTS: Final = "results.jsonl"
SUMMARY: Final = "summary.json"
REPORT: Final = "report.md"
MANIFEST: Final = "bench.json"
STORE: Final = "responses.sqlite"
PLOTS: Final = (
    "accuracy_vs_tokens.png",
    "accuracy_vs_samples.png",
    "difficulty_vs_tokens.png",
    "difficulty_vs_samples.png",
)


_ROW_FIELDS: Final = ("question_id", "seed", "setting", "budget", "correct", "usage")

Row = dict[str, Any]


def row_key(row: Mapping[str, Any]) -> tuple[str, int]:
    """A row's setting and budget; router rows also carry the policy they ran (a changed policy reruns them)."""
    setting = str(row["setting"])
    if setting == "router":
        setting = f"router#{row.get('policy')}"
    return setting, int(row["budget"])


def load_results(path: str | os.PathLike[str]) -> tuple[list[Row], list[str]]:
    """The rows of a ``results.jsonl``, repairing it in place, and notes on what was repaired.

    A partial last line (a run killed while writing) is cut off the file. A line that is not a
    row (invalid JSON in the middle of the file, missing fields) is reported and left out; the
    next run rewrites the file without it.
    """
    rows, notes, _ = _read_rows(Path(path))
    return rows, notes


def _read_rows(path: Path) -> tuple[list[Row], list[str], int]:
    """:func:`load_results`, plus how many lines were not rows."""
    notes: list[str] = []
    bad = 0
    if not path.exists():
        return [], notes, bad
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as file:
            file.truncate(keep)
        notes.append(f"{path.name}: removed a partial last line ({len(data) - keep} bytes)")
        data = data[:keep]
    rows: list[Row] = []
    for number, line in jsonl_lines(data.decode("utf-8", errors="replace")):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            notes.append(f"{path.name}:{number}: not JSON ({exc.msg}); dropped")
            bad += 1
            continue
        if not isinstance(row, dict) or any(name not in row for name in _ROW_FIELDS):
            notes.append(f"{path.name}:{number}: not a result row; dropped")
            bad += 1
            continue
        rows.append(row)
    return rows, notes, bad


def _write_rows(path: Path, rows: Iterable[Row]) -> None:
    """Replace ``path`` with ``rows`` atomically (write a sibling, then rename)."""
    partial = path.with_name(path.name + ".tmp")
    with partial.open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)
    os.replace(partial, path)


def append_rows(path: Path, rows: Sequence[Row]) -> None:
    """Append one unit's rows in one write, flushed: a unit is on disk completely or detectably not."""
    with path.open("a", encoding="utf-8") as out:
        out.write("".join(json.dumps(row) + "\n" for row in rows))
        out.flush()


def finished_units(
    path: Path, wanted: set[tuple[str, int]], expected: set[tuple[str, int]]
) -> tuple[dict[tuple[str, int], list[Row]], list[str]]:
    """Finished units among ``wanted`` (question id, seed), after dropping the rows of unfinished ones.

    A unit is finished when its rows cover every ``expected`` (setting, budget). Rows of wanted but
    unfinished units are removed from the file (the unit runs again, replaying from the store);
    units outside ``wanted`` (other questions or seeds of earlier runs) are kept untouched.
    """
    rows, notes, bad = _read_rows(path)
    units: dict[tuple[str, int], dict[tuple[str, int], Row]] = defaultdict(dict)
    for row in rows:
        units[(str(row["question_id"]), int(row["seed"]))][row_key(row)] = row  # a repeat: the last wins
    finished = {unit: list(cells.values()) for unit, cells in units.items() if expected <= cells.keys()}
    kept = [row for unit, cells in units.items() if unit in finished or unit not in wanted for row in cells.values()]
    dropped = len(rows) - len(kept)
    if dropped or bad:
        if dropped:
            notes.append(f"{path.name}: {dropped} rows of unfinished or repeated units removed; they run again")
        _write_rows(path, kept)
    return {unit: cells for unit, cells in finished.items() if unit in wanted}, notes
