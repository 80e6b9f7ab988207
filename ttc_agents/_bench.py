"""``ttc bench``: the paper's accuracy-vs-compute curves on your own model and data.

For every question and every sampling seed (a *unit*), :func:`run_bench` measures every strategy at
every generation budget N through :func:`~ttc_agents._calibrate.run_grid` (one sample pool per
question: best-of-N at every N is read from it and charged what a best-of-N run alone would
cost), and, when a calibrated policy is given, the compute-optimal router at each N (the router's
``generation_budget`` input; its difficulty probe is included in its cost). It writes, in the
output directory:

``results.jsonl``
    one line per question x setting x seed: the answer, the reference, correctness, what it cost
    (samples, tokens, USD, FLOPs), and the question's difficulty statistics. Lines are appended
    per finished unit, so an interrupted run resumes where it stopped: finished units are skipped,
    a unit whose lines were cut short is run again, and a partial last line is removed.
``summary.json``
    per setting (strategy x N): accuracy and mean samples, tokens, USD and FLOPs per question,
    each as the mean over seeds with a 95% t-interval over seeds (``ci``, null with one seed),
    and for accuracy also a 95% bootstrap interval over questions (``ci_questions``, which stays
    informative with few seeds); the same per difficulty bin; and what the run cost against
    running every cell on its own.
``accuracy_vs_tokens.png``, ``accuracy_vs_samples.png``, ``difficulty_vs_tokens.png``, ``difficulty_vs_samples.png``
    accuracy against tokens per question and against the generation budget N, per strategy,
    overall and with one panel per difficulty bin, in the style of the paper's figures.
``report.md``
    the tables and the plots.
``responses.sqlite``
    the record/replay store (unless ``store=False``): a re-run or a resumed unit replays every
    recorded sample instead of paying for it again. Adding seeds or questions runs only the new
    units; adding a budget re-runs every unit, replaying what the recorded runs share with it (a
    budget above the largest draws a new, larger sample pool).
``bench.json``
    what the directory measures (dataset, model, verifier, probe size); a run with other values
    is refused, so results of different setups never mix.

Difficulty bins are the data's levels when every problem has one (MATH's ``level``, the graded
arithmetic set's level), else five quantile bins of each question's pass@1 in its sample pools
(the paper's oracle difficulty), bin 1 being the easiest.

Seeds: unit seed ``s`` runs the grid with sampling seed ``s``. The router's strategies use the
same seed (so its search and best-of-N runs replay the grid's samples from the store, a paired
comparison), and its difficulty probe uses ``s + ROUTER_PROBE_SEED_OFFSET``, so that the probe
samples, which join best-of-N's candidates, are not copies of the samples drawn after them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from tqdm import tqdm

from ttc_agents._calibrate import (
    STRATEGY_NAMES,
    CalibrationError,
    CellResult,
    QuestionDifficulty,
    actions_for,
    run_grid,
)
from ttc_agents._datasets import Problem, grade, jsonl_lines
from ttc_agents._gateway import Gateway, get_default_gateway
from ttc_agents._loaders import OnError, load_bench_problems
from ttc_agents._models import ModelSpec
from ttc_agents._policy import Cost, Policy, PolicyAction, PolicyEntry, bin_of, quantile_thresholds

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ttc_agents._difficulty import DifficultyEstimator
    from ttc_agents.graphs.router import Router
    from ttc_agents.verifiers._base import Verifier

__all__ = [
    "BENCH_STRATEGIES",
    "ROUTER_PROBE_SEED_OFFSET",
    "BenchConfig",
    "BenchError",
    "BenchResult",
    "BenchUnitError",
    "format_summary",
    "load_results",
    "run_bench",
    "setting_of",
    "summarize",
    "write_outputs",
]

BENCH_STRATEGIES: Final = (*STRATEGY_NAMES, "router")
"""Strategy names ``ttc bench`` accepts: the grid's, plus ``router`` (needs a policy)."""

ROUTER_PROBE_SEED_OFFSET: Final = 1_000_003
"""The router's difficulty probe at unit seed ``s`` samples with seed ``s + ROUTER_PROBE_SEED_OFFSET``."""

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

_MANIFEST_VERSION: Final = 1
_METRICS: Final = ("samples", "tokens", "usd", "flops")
_BOOTSTRAP_RESAMPLES: Final = 2000
_ROW_FIELDS: Final = ("question_id", "seed", "setting", "budget", "correct", "usage")
_T975: Final = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
"""The 97.5% quantile of Student's t for 1-30 degrees of freedom (two-sided 95% intervals)."""

# Plot order, label, colour and marker of every setting.
_STYLE: Final[Mapping[str, tuple[str, str, str]]] = {
    "best_of_n_weighted": ("best-of-N weighted", "tab:blue", "o"),
    "best_of_n_majority": ("majority vote", "tab:orange", "v"),
    "beam_search": ("beam search (PRM)", "tab:green", "s"),
    "dvts": ("DVTS", "tab:purple", "D"),
    "revision": ("sequential revisions", "tab:red", "^"),
    "hybrid": ("parallel x sequential", "tab:brown", "P"),
    "router": ("compute-optimal router", "black", "*"),
}

Row = dict[str, Any]
BinMode = Literal["auto", "level", "oracle"]


class BenchError(ValueError):
    """A benchmark that cannot run as configured; the message says why."""


class BenchUnitError(RuntimeError):
    """A (question, seed) unit failed; the message names the question, the setting and the seed."""


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What to measure. ``strategies`` are names from :data:`BENCH_STRATEGIES`; the router runs
    whenever ``policy`` is given (listing ``router`` is optional, and an error without a policy).
    ``seeds`` sampling seeds ``seed, seed + 1, ...`` are run; ``limit`` keeps the first problems;
    ``concurrency`` bounds the units (question x seed) in flight."""

    dataset: str
    model: ModelSpec | str
    verifier: str = "none"
    strategies: Sequence[str] = ("best_of_n", "beam_search", "revision")
    budgets: Sequence[int] = (1, 2, 4, 8, 16)
    seeds: int = 3
    seed: int = 0
    policy: str | os.PathLike[str] | None = None
    force: bool = False
    limit: int | None = None
    concurrency: int = 4
    probe_samples: int = 4
    on_bad_line: OnError = "fail"
    store: bool = True
    bins: BinMode = "auto"


@dataclass(frozen=True, slots=True)
class BenchResult:
    """The summary (as written to ``summary.json``), where everything was written, and what ran."""

    summary: dict[str, Any]
    out: Path
    files: tuple[Path, ...]
    units_run: int
    units_skipped: int
    seconds: float
    notes: tuple[str, ...] = ()


def setting_of(action: PolicyAction) -> str:
    """The setting name of a grid action: its strategy, and the selection rule for best-of-N."""
    spec = action.strategy
    if spec.strategy == "best_of_n":
        return f"best_of_n_{spec.selection}"
    return spec.strategy


# ---------------------------------------------------------------------------------------------
# results.jsonl: append per unit, resume, repair
# ---------------------------------------------------------------------------------------------


def _row_key(row: Mapping[str, Any]) -> tuple[str, int]:
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


def _append_rows(path: Path, rows: Sequence[Row]) -> None:
    """Append one unit's rows in one write, flushed: a unit is on disk completely or detectably not."""
    with path.open("a", encoding="utf-8") as out:
        out.write("".join(json.dumps(row) + "\n" for row in rows))
        out.flush()


def _resume(
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
        units[(str(row["question_id"]), int(row["seed"]))][_row_key(row)] = row  # a repeat: the last wins
    finished = {unit: list(cells.values()) for unit, cells in units.items() if expected <= cells.keys()}
    kept = [row for unit, cells in units.items() if unit in finished or unit not in wanted for row in cells.values()]
    dropped = len(rows) - len(kept)
    if dropped or bad:
        if dropped:
            notes.append(f"{path.name}: {dropped} rows of unfinished or repeated units removed; they run again")
        _write_rows(path, kept)
    return {unit: cells for unit, cells in finished.items() if unit in wanted}, notes


# ---------------------------------------------------------------------------------------------
# Running the units
# ---------------------------------------------------------------------------------------------


def _seeded(policy: Policy, seed: int) -> Policy:
    """``policy`` with every strategy's sampling seed set to ``seed``."""

    def entry_with_seed(entry: PolicyEntry) -> PolicyEntry:
        action = entry.action.model_copy(update={"strategy": entry.action.strategy.model_copy(update={"seed": seed})})
        return entry.model_copy(update={"action": action})

    return policy.model_copy(
        update={
            "table": [entry_with_seed(e) for e in policy.table],
            "candidates": [entry_with_seed(e) for e in policy.candidates],
        }
    )


@dataclass(slots=True)
class _Runner:
    """Runs one unit (question x seed): the grid, then the router at every budget."""

    model: ModelSpec
    verifier: Verifier | None
    verifier_name: str
    grid_strategies: list[str]
    budgets: list[int]
    probe_samples: int
    gateway: Gateway
    policy: Policy | None
    policy_tag: str | None
    force: bool
    answers: dict[str, str]
    routers: dict[int, Router] = field(default_factory=dict)

    def expected(self) -> set[tuple[str, int]]:
        keys = {
            (setting_of(action), budget)
            for strategy in self.grid_strategies
            for budget in self.budgets
            for action in actions_for(strategy, self.model.name, budget)
        }
        if self.policy is not None:
            keys |= {(f"router#{self.policy_tag}", budget) for budget in self.budgets}
        return keys

    def router(self, seed: int) -> Router:
        """The router for unit seed ``seed`` (strategies seeded ``seed``, probe seeded apart)."""
        from ttc_agents.graphs.router import Router

        assert self.policy is not None
        if seed not in self.routers:
            self.routers[seed] = Router(
                _seeded(self.policy, seed),
                models={self.model.name: self.model},
                verifier=self.verifier,
                verifier_name=self.verifier_name,
                estimator=self._estimator(seed + ROUTER_PROBE_SEED_OFFSET),
                gateway=self.gateway,
                force=self.force,
            )
        return self.routers[seed]

    def _estimator(self, seed: int) -> DifficultyEstimator:
        from ttc_agents._difficulty import OracleEstimator, ProbeEstimator, QuestionOnlyEstimator

        assert self.policy is not None
        policy = self.policy
        if policy.estimator == "question" and policy.question_model is not None:
            return QuestionOnlyEstimator.from_dict(policy.question_model)
        if policy.estimator == "oracle":
            return OracleEstimator(self.answers, policy.thresholds, seed=seed)
        return ProbeEstimator(policy.thresholds, samples=policy.probe_samples, seed=seed)

    async def unit(self, problem: Problem, seed: int) -> list[Row]:
        rows: list[Row] = []
        spent = Cost()
        difficulty: QuestionDifficulty | None = None
        if self.grid_strategies:
            try:
                grid = await run_grid(
                    [problem],
                    models=[self.model],
                    verifier=self.verifier,
                    budgets=self.budgets,
                    strategies=self.grid_strategies,
                    gateway=self.gateway,
                    probe_samples=self.probe_samples,
                    concurrency=1,
                    progress=False,
                    seed=seed,
                )
            except CalibrationError as exc:
                raise BenchUnitError(f"seed {seed}, {exc}") from exc
            difficulty = grid.difficulty[problem.id]
            spent = grid.grid_cost
            rows.extend(_grid_row(problem, seed, cell) for cell in grid.cells)
        if self.policy is not None:
            router = self.router(seed)
            for budget in self.budgets:
                try:
                    output = await router.graph.ainvoke({"question": problem.question, "generation_budget": budget})
                except Exception as exc:
                    raise BenchUnitError(f"question {problem.id!r}, router at N={budget}, seed {seed}: {exc}") from exc
                answer = output.get("answer")
                cost = Cost.of(output["ledger"].total)
                trace = output.get("trace", {})
                choice = trace.get("choice") or {}
                rows.append(
                    {
                        "question_id": problem.id,
                        "seed": seed,
                        "setting": "router",
                        "budget": budget,
                        "action": choice.get("action"),
                        "answer": answer,
                        "reference": problem.answer,
                        "correct": await asyncio.to_thread(grade, problem, answer),
                        "usage": cost.model_dump(),
                        "pooled": False,
                        "stopped_by": output.get("stopped_by"),
                        "policy": self.policy_tag,
                        "router_bin": trace.get("bin"),
                    }
                )
                spent = spent + cost
        oracle = None if difficulty is None else difficulty.oracle
        probe = None if difficulty is None else difficulty.probe
        for row in rows:
            row.update(level=problem.difficulty, oracle=oracle, probe=probe, unit_spent=spent.model_dump())
        return rows


def _grid_row(problem: Problem, seed: int, cell: CellResult) -> Row:
    outcome = cell.outcome
    return {
        "question_id": problem.id,
        "seed": seed,
        "setting": setting_of(outcome.action),
        "budget": outcome.budget,
        "action": outcome.action.key,
        "answer": cell.answer,
        "reference": problem.answer,
        "correct": outcome.correct,
        "usage": outcome.cost.model_dump(),
        "pooled": cell.pooled,
        "stopped_by": cell.stopped_by,
    }


def _check_manifest(out: Path, config: BenchConfig, model: ModelSpec) -> None:
    """Refuse to mix results of another dataset, model, verifier or probe size into ``out``."""
    manifest = {
        "format_version": _MANIFEST_VERSION,
        "dataset": config.dataset.strip(),
        "model": model.name,
        "verifier": config.verifier.strip(),
        "probe_samples": config.probe_samples,
    }
    path = out / MANIFEST
    if path.exists():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BenchError(f"{path}: not JSON ({exc.msg}); delete it or use another --out") from None
        differences = [
            f"{key} {recorded.get(key)!r} (now {value!r})"
            for key, value in manifest.items()
            if recorded.get(key) != value
        ]
        if differences:
            raise BenchError(
                f"{out} holds a benchmark of other settings: {'; '.join(differences)}. Use another output directory."
            )
        return
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _validate(config: BenchConfig, problems: Sequence[Problem]) -> tuple[list[str], list[int]]:
    """The grid strategies and the sorted budgets (the router runs when a policy is given)."""
    unknown = [s for s in config.strategies if s not in BENCH_STRATEGIES]
    if unknown:
        raise BenchError(f"unknown strategy {unknown[0]!r}; use {', '.join(BENCH_STRATEGIES)}")
    grid = [s for s in dict.fromkeys(config.strategies) if s != "router"]
    router = config.policy is not None
    if "router" in config.strategies and not router:
        raise BenchError("the router needs a calibrated policy: pass --policy (see `ttc calibrate`)")
    if not grid and not router:
        raise BenchError("give at least one strategy")
    if not config.budgets or any(not isinstance(b, int) or b < 1 for b in config.budgets):
        raise BenchError(f"budgets must be positive integers, got {list(config.budgets)}")
    for name, value in (("seeds", config.seeds), ("concurrency", config.concurrency)):
        if value < 1:
            raise BenchError(f"{name} must be at least 1, got {value}")
    if config.limit is not None and config.limit < 1:
        raise BenchError(f"limit must be at least 1, got {config.limit}")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        repeated = next(i for i in ids if ids.count(i) > 1)
        raise BenchError(f"problem ids must be unique; {repeated!r} repeats")
    if config.bins == "level" and any(p.difficulty is None for p in problems):
        raise BenchError("bins='level' needs a difficulty level on every problem")
    if config.bins == "oracle" and not grid:
        raise BenchError("bins='oracle' needs a grid strategy (the pass@1 comes from its sample pool)")
    return grid, sorted(set(config.budgets))


async def run_bench(
    config: BenchConfig,
    out: str | os.PathLike[str],
    *,
    problems: Sequence[Problem] | None = None,
    gateway: Gateway | None = None,
    progress: bool = True,
    command: str | None = None,
) -> BenchResult:
    """Measure every (question, setting, seed), write the outputs to ``out``; see the module docstring.

    ``problems`` replaces loading ``config.dataset`` (which is still recorded). ``gateway``
    defaults to the default gateway, with the record/replay store ``out/responses.sqlite`` unless
    ``config.store`` is false (a given gateway is used as it is). ``command`` is quoted in the
    report. Raises :class:`BenchError` for a configuration that cannot run, and the first failing
    unit's error (finished units stay in ``results.jsonl``; the next run resumes after them).
    """
    started = time.perf_counter()
    directory = Path(out)
    model = ModelSpec.of(config.model)
    if problems is None:
        problems = load_bench_problems(config.dataset, on_bad_line=config.on_bad_line)
    problems = list(problems)[: config.limit] if config.limit is not None else list(problems)
    if not problems:
        raise BenchError("no problems to benchmark")
    grid_strategies, budgets = _validate(config, problems)
    policy, policy_tag = (None, None) if config.policy is None else _load_policy(Path(config.policy))
    seeds = [config.seed + i for i in range(config.seeds)]
    results_path = directory / RESULTS
    own_store = None
    if gateway is None:
        gateway = get_default_gateway()
        if config.store:
            from ttc_agents._store import ResponseStore

            own_store = ResponseStore(directory / STORE)  # the file is created on the first write
            gateway = replace(gateway, store=own_store)
    try:
        runner = _runner(config, model, problems, grid_strategies, budgets, gateway, policy, policy_tag)
        if policy is not None:
            runner.router(seeds[0])  # refuses a mismatched policy before anything is written or spent
        directory.mkdir(parents=True, exist_ok=True)
        _check_manifest(directory, config, model)
        wanted = {(p.id, s) for s in seeds for p in problems}
        finished, notes = _resume(results_path, wanted, runner.expected())
        todo = [(p, s) for s in seeds for p in problems if (p.id, s) not in finished]
        await _run_units(runner, todo, results_path, config.concurrency, progress, len(wanted))
    finally:
        if own_store is not None:
            await own_store.aclose()
    summary = _summary(config, model, problems, seeds, runner, results_path)
    files = write_outputs(directory, summary, command=command)
    return BenchResult(
        summary=summary,
        out=directory,
        files=(results_path, *files),
        units_run=len(todo),
        units_skipped=len(wanted) - len(todo),
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )


def _load_policy(path: Path) -> tuple[Policy, str]:
    """The policy and a fingerprint of its file (router rows of another policy are run again)."""
    return Policy.load(path), hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _runner(
    config: BenchConfig,
    model: ModelSpec,
    problems: Sequence[Problem],
    grid_strategies: list[str],
    budgets: list[int],
    gateway: Gateway,
    policy: Policy | None,
    policy_tag: str | None,
) -> _Runner:
    from ttc_agents.verifiers._base import as_verifier
    from ttc_agents.verifiers._factory import make_verifier

    verifier = make_verifier(config.verifier, gateway=gateway)
    verifier_name = "none" if verifier is None else as_verifier(verifier).name
    if policy is not None and policy.verifier == config.verifier.strip():
        verifier_name = policy.verifier  # a policy may record the spec string rather than the verifier's name
    return _Runner(
        model=model,
        verifier=verifier,
        verifier_name=verifier_name,
        grid_strategies=grid_strategies,
        budgets=budgets,
        probe_samples=config.probe_samples,
        gateway=gateway,
        policy=policy,
        policy_tag=policy_tag,
        force=config.force,
        answers={p.question: p.answer for p in problems},
    )


def _summary(
    config: BenchConfig,
    model: ModelSpec,
    problems: Sequence[Problem],
    seeds: Sequence[int],
    runner: _Runner,
    results_path: Path,
) -> dict[str, Any]:
    """The summary of this configuration's rows of ``results.jsonl`` (earlier runs may hold more)."""
    rows, _ = load_results(results_path)
    expected = runner.expected()
    ids = {p.id for p in problems}
    current = [r for r in rows if r["question_id"] in ids and int(r["seed"]) in seeds and _row_key(r) in expected]
    source, bins, labels = _bins(problems, current, config.bins, bool(runner.grid_strategies))
    summary = summarize(current, bins=bins, bin_labels=labels)
    summary["run"] = {
        "dataset": config.dataset,
        "model": model.name,
        "verifier": config.verifier,
        "strategies": [*runner.grid_strategies, *(["router"] if runner.policy is not None else [])],
        "budgets": runner.budgets,
        "seeds": list(seeds),
        "questions": len(problems),
        "policy": None if config.policy is None else str(config.policy),
        "policy_dataset": None if runner.policy is None else runner.policy.dataset,
        "difficulty": source,
        "interval": (
            "ci: 95% Student-t interval over seeds (null with one seed); ci_questions (accuracy): 95% "
            "percentile bootstrap over questions of the per-question accuracy averaged over seeds"
        ),
    }
    return summary


async def _run_units(
    runner: _Runner,
    todo: Sequence[tuple[Problem, int]],
    path: Path,
    concurrency: int,
    progress: bool,
    total: int,
) -> None:
    """Run the units with bounded concurrency, appending each unit's rows as it finishes."""
    limit = asyncio.Semaphore(concurrency)
    spent = [Cost()]
    bar = tqdm(total=total, initial=total - len(todo), desc="bench", unit="unit", disable=not progress, file=sys.stderr)

    async def one(problem: Problem, seed: int) -> None:
        async with limit:
            rows = await runner.unit(problem, seed)
        _append_rows(path, rows)
        spent[0] = spent[0] + Cost.model_validate(rows[0]["unit_spent"]) if rows else Cost()
        bar.set_postfix_str(_spend_text(spent[0]), refresh=False)
        bar.update(1)

    try:
        async with asyncio.TaskGroup() as group:
            for problem, seed in todo:
                group.create_task(one(problem, seed))
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
    finally:
        bar.close()


def _spend_text(cost: Cost) -> str:
    text = f"{cost.samples:,.0f} samples, {cost.tokens:,.0f} tok, ${cost.usd:.4f}"
    return text + (f", {cost.flops:.3g} FLOPs" if cost.flops else "")


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------


def _t975(df: int) -> float:
    """The 97.5% quantile of Student's t (table to 30 degrees of freedom, Cornish-Fisher beyond)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def _interval(values: Sequence[float], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """Mean over seeds, the 95% t-interval (None with one value), and the per-seed values."""
    mean = math.fsum(values) / len(values)
    ci: list[float] | None = None
    if len(values) > 1:
        half = _t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        low, high = mean - half, mean + half
        if bounds is not None:
            low, high = max(bounds[0], low), min(bounds[1], high)
        ci = [low, high]
    return {"mean": mean, "ci": ci, "per_seed": list(values)}


def _bootstrap_questions(rows: Sequence[Row], resamples: int = _BOOTSTRAP_RESAMPLES) -> list[float] | None:
    """95% percentile bootstrap interval of the accuracy over questions (each question's accuracy
    averaged over its seeds); None with fewer than two questions. Seeded, so summaries repeat."""
    import numpy as np

    per_question: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        per_question[str(row["question_id"])].append(float(bool(row["correct"])))
    if len(per_question) < 2:
        return None
    values = np.array([math.fsum(v) / len(v) for _, v in sorted(per_question.items())])
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(low), float(high)]


def _setting_order(setting: str) -> int:
    order = list(_STYLE)
    return order.index(setting) if setting in order else len(order)


def _group_stats(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per (setting, budget): accuracy and mean cost per question, each over seeds."""
    groups: dict[tuple[str, int], dict[int, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[(str(row["setting"]), int(row["budget"]))][int(row["seed"])].append(row)
    out = []
    for (setting, budget), by_seed in sorted(groups.items(), key=lambda kv: (_setting_order(kv[0][0]), kv[0][1])):
        seeds = sorted(by_seed)
        accuracy = _interval([sum(bool(r["correct"]) for r in by_seed[s]) / len(by_seed[s]) for s in seeds], (0.0, 1.0))
        accuracy["ci_questions"] = _bootstrap_questions([r for s in seeds for r in by_seed[s]])
        entry: dict[str, Any] = {
            "setting": setting,
            "budget": budget,
            "questions": max(len({r["question_id"] for r in by_seed[s]}) for s in seeds),
            "seeds": len(seeds),
            "accuracy": accuracy,
        }
        for metric in _METRICS:
            entry[metric] = _interval(
                [math.fsum(float(r["usage"][metric]) for r in by_seed[s]) / len(by_seed[s]) for s in seeds]
            )
        out.append(entry)
    return out


def summarize(
    rows: Sequence[Row],
    *,
    bins: Mapping[str, int] | None = None,
    bin_labels: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The summary of result rows: per setting, per difficulty bin (question id -> bin), and cost.

    Every number is a mean over seeds of the per-seed mean over questions, with its 95% t-interval.
    ``cost.grid`` is what the units spent (sample pools shared), ``cost.cells`` the sum of every
    cell's cost as if each ran alone.
    """
    bins = bins or {}
    labels = dict(bin_labels or {})
    per_bin = []
    for bin_ in sorted({bins[r["question_id"]] for r in rows if r["question_id"] in bins}):
        members = [r for r in rows if bins.get(r["question_id"]) == bin_]
        per_bin.append(
            {
                "bin": bin_,
                "label": labels.get(bin_, f"bin {bin_}"),
                "questions": len({r["question_id"] for r in members}),
                "settings": _group_stats(members),
            }
        )
    units: dict[tuple[str, int], Cost] = {}
    cells = Cost()
    for row in rows:
        cells = cells + Cost.model_validate(row["usage"])
        if "unit_spent" in row:
            units[(str(row["question_id"]), int(row["seed"]))] = Cost.model_validate(row["unit_spent"])
    grid = Cost()
    for cost in units.values():
        grid = grid + cost
    return {
        "settings": _group_stats(rows),
        "bins": per_bin,
        "matched": matched_rows(rows),
        "cost": {
            "grid": grid.model_dump(),
            "cells": cells.model_dump(),
            "saved_tokens": 1 - grid.tokens / cells.tokens if cells.tokens else 0.0,
            "units": len(units),
        },
        "rows": len(rows),
    }


def matched_rows(rows: Sequence[Row], *, seed: int = 0) -> list[dict[str, Any]]:
    """Per router budget N: the router against best-of-N weighted at the router's own mean tokens
    (:func:`~ttc_agents._matched.matched_compute`; per question means over seeds; questions that
    have both). Empty without router rows or a best-of-N weighted curve."""
    import numpy as np

    from ttc_agents._matched import matched_compute

    def per_question(setting: str) -> dict[int, dict[str, tuple[float, float]]]:
        groups: dict[int, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
        for row in rows:
            if row["setting"] == setting:
                pair = (float(row["usage"]["tokens"]), float(bool(row["correct"])))
                groups[int(row["budget"])][str(row["question_id"])].append(pair)
        return {
            n: {q: (statistics.fmean(t for t, _ in v), statistics.fmean(c for _, c in v)) for q, v in by_q.items()}
            for n, by_q in groups.items()
        }

    router, bon = per_question("router"), per_question("best_of_n_weighted")
    if not router or not bon:
        return []
    curve_budgets = sorted(bon)
    out = []
    for n in sorted(router):
        questions = sorted(q for q in router[n] if all(q in bon[b] for b in curve_budgets))
        if len(questions) < 2:
            continue
        bon_tokens = np.array([[bon[b][q][0] for b in curve_budgets] for q in questions])
        bon_correct = np.array([[bon[b][q][1] for b in curve_budgets] for q in questions])
        tokens = np.array([router[n][q][0] for q in questions])
        correct = np.array([router[n][q][1] for q in questions])
        out.append(
            {
                "N": n,
                "questions": len(questions),
                **matched_compute(bon_tokens, bon_correct, tokens, correct, seed=seed),
            }
        )
    return out


def _bins(
    problems: Sequence[Problem], rows: Sequence[Row], mode: BinMode, pooled: bool
) -> tuple[str, dict[str, int], dict[int, str]]:
    """The difficulty source, question id -> bin, and bin labels."""
    if mode == "level" or (mode == "auto" and all(p.difficulty is not None for p in problems)):
        levels = {p.id: int(p.difficulty) for p in problems if p.difficulty is not None}
        return "level", levels, {level: f"level {level}" for level in sorted(set(levels.values()))}
    if not pooled:
        return "none", {}, {}
    passes: dict[str, list[float]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for row in rows:
        unit = (str(row["question_id"]), int(row["seed"]))
        if row.get("oracle") is not None and unit not in seen:
            seen.add(unit)
            passes[unit[0]].append(float(row["oracle"]))
    if not passes:
        return "none", {}, {}
    statistic = {q: math.fsum(v) / len(v) for q, v in passes.items()}
    thresholds = quantile_thresholds([statistic[q] for q in sorted(statistic)])
    bins = {q: bin_of(value, thresholds) for q, value in statistic.items()}
    labels = {}
    for bin_ in sorted(set(bins.values())):
        values = [statistic[q] for q, b in bins.items() if b == bin_]
        labels[bin_] = f"bin {bin_} (pass@1 {min(values):.2f}-{max(values):.2f})"
    return "oracle pass@1 quintiles (bin 1 easiest)", bins, labels


# ---------------------------------------------------------------------------------------------
# Text, plots, report
# ---------------------------------------------------------------------------------------------


def _label(setting: str) -> str:
    return _STYLE.get(setting, (setting, "gray", "x"))[0]


def _ci_text(stat: Mapping[str, Any], key: str = "ci", digits: int = 2) -> str:
    ci = stat.get(key)
    return "-" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _best_per_budget(settings: Sequence[Mapping[str, Any]]) -> set[tuple[str, int]]:
    best: dict[int, float] = {}
    for s in settings:
        best[s["budget"]] = max(best.get(s["budget"], -1.0), s["accuracy"]["mean"])
    return {(s["setting"], s["budget"]) for s in settings if math.isclose(s["accuracy"]["mean"], best[s["budget"]])}


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as text: one line per setting (``*`` marks the most accurate at its N), then
    accuracy per difficulty bin, then the run's cost against the naive sum."""
    settings = summary["settings"]
    best = _best_per_budget(settings)
    seeds = max((s["seeds"] for s in settings), default=0)
    lines = [
        f"{'setting':<24} {'N':>4}  {'accuracy':>8}  {'CI seeds':<12}  {'CI questions':<12} {'samples/q':>9} "
        f"{'tokens/q':>9} {'USD/q':>9} {'FLOPs/q':>9}"
    ]
    for s in settings:
        mark = "*" if (s["setting"], s["budget"]) in best else " "
        lines.append(
            f"{_label(s['setting']):<24} {s['budget']:>4} {mark}{s['accuracy']['mean']:>8.3f}  "
            f"{_ci_text(s['accuracy']):<12}  {_ci_text(s['accuracy'], 'ci_questions'):<12} "
            f"{s['samples']['mean']:>9.1f} {s['tokens']['mean']:>9.0f} {s['usd']['mean']:>9.2e} "
            f"{s['flops']['mean']:>9.2e}"
        )
    lines.append(
        f"(* most accurate at its N. Means over {seeds} seed(s); 95% intervals: Student-t over seeds, "
        "bootstrap over questions)"
    )
    if summary["bins"]:
        source = summary.get("run", {}).get("difficulty", "")
        heads = [b["label"].split(" (")[0] for b in summary["bins"]]
        lines.append("")
        lines.append(f"accuracy per difficulty bin ({source}; questions: {[b['questions'] for b in summary['bins']]})")
        lines.append(f"{'setting':<24} {'N':>4}  " + " ".join(f"{h:>8}" for h in heads))
        table = {(b["bin"], s["setting"], s["budget"]): s for b in summary["bins"] for s in b["settings"]}
        for s in settings:
            cells = []
            for b in summary["bins"]:
                cell = table.get((b["bin"], s["setting"], s["budget"]))
                cells.append(f"{cell['accuracy']['mean']:>8.3f}" if cell else f"{'-':>8}")
            lines.append(f"{_label(s['setting']):<24} {s['budget']:>4}  " + " ".join(cells))
    if summary.get("matched"):
        lines.append("")
        lines.append("router vs best-of-N weighted at the router's own mean tokens (95% bootstrap over questions)")
        lines.append(
            f"{'N':>4} {'router':>7} {'tokens/q':>9} {'bon-w@tokens':>12} {'delta':>7} {'CI':<18} "
            f"{'compute factor':>14}"
        )
        for m in summary["matched"]:
            factor = m["compute_factor"]
            factor_text = ">max" if math.isinf(factor) or factor >= 1e6 else f"{factor:.2f}x"
            lines.append(
                f"{m['N']:>4} {m['accuracy']:>7.3f} {m['tokens']:>9.0f} {m['best_of_n_at_tokens']:>12.3f} "
                f"{m['delta']:>+7.3f} [{m['delta_ci'][0]:+.3f}, {m['delta_ci'][1]:+.3f}] {factor_text:>14}"
            )
    cost = summary["cost"]
    grid, cells_cost = Cost.model_validate(cost["grid"]), Cost.model_validate(cost["cells"])
    lines.append("")
    lines.append(f"run cost (pools shared): {_spend_text(grid)}")
    lines.append(f"every cell on its own:   {_spend_text(cells_cost)}  (pool reuse saved {cost['saved_tokens']:.0%})")
    return "\n".join(lines)


def _curve(ax: Axes, settings: Sequence[Mapping[str, Any]], x: Literal["tokens", "budget"], band: bool) -> None:
    """One line per setting through its budgets; ``band``: shade the bootstrap interval over questions."""
    by_setting: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for s in settings:
        by_setting[s["setting"]].append(s)
    for setting in sorted(by_setting, key=_setting_order):
        points = sorted(by_setting[setting], key=lambda s: s["budget"])
        label, colour, marker = _STYLE.get(setting, (setting, "gray", "x"))
        xs = [s["tokens"]["mean"] if x == "tokens" else s["budget"] for s in points]
        ys = [s["accuracy"]["mean"] for s in points]
        size = 11 if marker == "*" else 6
        style = "--" if setting == "best_of_n_majority" else "-"  # often on top of weighted: keep both visible
        ax.plot(xs, ys, style, marker=marker, color=colour, label=label, linewidth=1.8, markersize=size)
        cis = [s["accuracy"].get("ci_questions") for s in points]
        if band and all(ci is not None for ci in cis):
            ax.fill_between(xs, [c[0] for c in cis], [c[1] for c in cis], color=colour, alpha=0.10, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_ylim(-0.02, 1.02)
    if x == "budget":
        budgets = sorted({s["budget"] for s in settings})
        ax.set_xticks(budgets, [str(b) for b in budgets])


_X_LABELS: Final = {
    "tokens": "tokens per question (prompt + completion, generator + verifier)",
    "budget": "generation budget N (samples per question for best-of-N)",
}


def _plot_overall(summary: Mapping[str, Any], path: Path, x: Literal["tokens", "budget"]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    _curve(ax, summary["settings"], x, band=True)
    ax.set_xlabel(_X_LABELS[x])
    ax.set_ylabel("accuracy (mean over seeds)")
    run = summary.get("run", {})
    ax.set_title(f"{run.get('model', '')} on {run.get('dataset', '')}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.text(0.99, 0.005, "bands: 95% bootstrap interval over questions", ha="right", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _plot_bins(summary: Mapping[str, Any], path: Path, x: Literal["tokens", "budget"]) -> None:
    """One panel per difficulty bin, three to a row; the legend takes a spare panel when there is one."""
    import matplotlib.pyplot as plt

    bins = summary["bins"]
    if not bins:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no difficulty bins: the problems have no level\nand no sample pool was drawn", ha="center")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    columns = min(3, len(bins))
    rows = math.ceil(len(bins) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.1 * rows + 0.5), sharey=True, squeeze=False)
    panels = [ax for row in axes for ax in row]
    for ax, bin_ in zip(panels, bins, strict=False):
        _curve(ax, bin_["settings"], x, band=False)
        ax.set_title(f"{bin_['label']}, {bin_['questions']} questions", fontsize=9)
        ax.tick_params(labelsize=8)
    for row in axes:
        row[0].set_ylabel("accuracy")
    handles, labels = panels[0].get_legend_handles_labels()
    spare = panels[len(bins) :]
    for ax in spare:
        ax.axis("off")
    fig.supxlabel(_X_LABELS[x], fontsize=9)
    run = summary.get("run", {})
    fig.suptitle(f"{run.get('model', '')} on {run.get('dataset', '')}, by difficulty", fontsize=10)
    if spare:
        spare[0].legend(handles, labels, loc="center", fontsize=9, frameon=False)
        fig.tight_layout()
    else:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.94), ncol=4, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.86))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _markdown_tables(summary: Mapping[str, Any]) -> list[str]:
    settings = summary["settings"]
    best = _best_per_budget(settings)
    lines = [
        "| setting | N | accuracy | 95% CI (seeds) | 95% CI (questions) | samples/q | tokens/q | USD/q | FLOPs/q |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for s in settings:
        accuracy = f"{s['accuracy']['mean']:.3f}"
        if (s["setting"], s["budget"]) in best:
            accuracy = f"**{accuracy}**"
        lines.append(
            f"| {_label(s['setting'])} | {s['budget']} | {accuracy} | {_ci_text(s['accuracy'])} | "
            f"{_ci_text(s['accuracy'], 'ci_questions')} | "
            f"{s['samples']['mean']:.1f} | {s['tokens']['mean']:.0f} | {s['usd']['mean']:.3g} | "
            f"{s['flops']['mean']:.3g} |"
        )
    if summary["bins"]:
        bins = summary["bins"]
        table = {(b["bin"], s["setting"], s["budget"]): s for b in bins for s in b["settings"]}
        lines += ["", "Accuracy per difficulty bin:", ""]
        lines.append("| setting | N | " + " | ".join(f"{b['label']} ({b['questions']} q)" for b in bins) + " |")
        lines.append("|---|---:|" + "---:|" * len(bins))
        for s in settings:
            cells = []
            for b in bins:
                cell = table.get((b["bin"], s["setting"], s["budget"]))
                cells.append("-" if cell is None else f"{cell['accuracy']['mean']:.3f}")
            lines.append(f"| {_label(s['setting'])} | {s['budget']} | " + " | ".join(cells) + " |")
    return lines


def _matched_markdown(summary: Mapping[str, Any]) -> list[str]:
    if not summary.get("matched"):
        return []
    lines = [
        "## Router at matched compute",
        "",
        "The router at generation budget N against best-of-N weighted interpolated at the router's own mean "
        "tokens (probe and verifier included); compute factor: the tokens best-of-N weighted needs to reach the "
        "router's accuracy, over the router's. 95% paired bootstrap intervals over questions.",
        "",
        "| N | router accuracy | tokens/q | best-of-N w. at those tokens | difference (95% CI) "
        "| compute factor (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for m in summary["matched"]:
        low, high = m["compute_factor_ci"]
        lines.append(
            f"| {m['N']} | {m['accuracy']:.3f} | {m['tokens']:.0f} | {m['best_of_n_at_tokens']:.3f} | "
            f"{m['delta']:+.3f} [{m['delta_ci'][0]:+.3f}, {m['delta_ci'][1]:+.3f}] | "
            f"{m['compute_factor']:.2f}x [{low:.2f}x, {high:.2f}x] |"
        )
    return [*lines, ""]


def _report(summary: Mapping[str, Any], command: str | None) -> str:
    run = summary.get("run", {})
    cost = summary["cost"]
    lines = [
        f"# ttc bench: {run.get('model')} on {run.get('dataset')}",
        "",
        f"- verifier: `{run.get('verifier')}`; strategies: {', '.join(run.get('strategies', []))}",
        f"- budgets N: {run.get('budgets')}; seeds: {run.get('seeds')}; questions: {run.get('questions')}",
        f"- difficulty bins: {run.get('difficulty')}",
        f"- intervals: {run.get('interval')}",
    ]
    if command:
        lines.insert(2, f"`{command}`\n")
    if run.get("policy"):
        lines.append(f"- router policy: `{run['policy']}` (fitted on `{run.get('policy_dataset')}`)")
        if run.get("policy_dataset") and str(run["policy_dataset"]).split(" [")[0] == run.get("dataset"):
            lines.append(
                "  - **in-sample**: the policy was fitted on this dataset; held-out accuracy will be lower "
                "(see `python -m ttc_agents.bench.router_eval`)."
            )
    grid, cells = Cost.model_validate(cost["grid"]), Cost.model_validate(cost["cells"])
    lines += [
        f"- run cost (sample pools shared): {_spend_text(grid)}; every cell on its own: {_spend_text(cells)} "
        f"(pool reuse saved {cost['saved_tokens']:.0%} of the tokens)",
        "",
        "## Accuracy and cost per setting",
        "",
        "Bold: the most accurate setting at its N. Costs are means per question; best-of-N cells are read "
        "from one shared sample pool and charged what a best-of-N run alone would cost.",
        "",
        *_markdown_tables(summary),
        "",
        *_matched_markdown(summary),
        "## Accuracy vs compute",
        "",
        "![accuracy vs tokens](accuracy_vs_tokens.png)",
        "",
        "![accuracy vs generation budget](accuracy_vs_samples.png)",
        "",
        "## Per difficulty bin",
        "",
        "![accuracy vs tokens per difficulty bin](difficulty_vs_tokens.png)",
        "",
        "![accuracy vs generation budget per difficulty bin](difficulty_vs_samples.png)",
        "",
        "Notes: tokens count prompt and completion of every call (generation and an LLM verifier's); beam "
        "search counts every step expansion as a sample, so compare strategies by tokens, USD or FLOPs; the "
        "router's cost includes its difficulty probe, whose samples also join its candidates, so on the "
        "generation-budget axis router@N has had N plus the probe's samples (compare it on the tokens axis).",
        "",
    ]
    return "\n".join(lines)


def write_outputs(out: str | os.PathLike[str], summary: Mapping[str, Any], *, command: str | None = None) -> list[Path]:
    """Write ``summary.json``, the four PNG plots and ``report.md`` into ``out``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    directory = Path(out)
    paths = [directory / SUMMARY]
    paths[0].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    overall, per_bin = directory / PLOTS[0], directory / PLOTS[1]
    _plot_overall(summary, overall, "tokens")
    _plot_overall(summary, per_bin, "budget")
    _plot_bins(summary, directory / PLOTS[2], "tokens")
    _plot_bins(summary, directory / PLOTS[3], "budget")
    paths += [directory / name for name in PLOTS]
    report = directory / REPORT
    report.write_text(_report(summary, command), encoding="utf-8")
    paths.append(report)
    return paths
