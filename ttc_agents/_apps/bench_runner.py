"""``ttc bench``'s runner: every (question, seed) unit through the grid and the router, resumable,
with a manifest that keeps different setups apart (see :mod:`ttc_agents._apps.bench`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tqdm import tqdm

from ttc_agents._apps.bench_report import spend_text, write_outputs
from ttc_agents._apps.bench_results import (
    MANIFEST,
    RESULTS,
    STORE,
    Row,
    append_rows,
    finished_units,
    load_results,
    row_key,
)
from ttc_agents._apps.bench_stats import BinMode, difficulty_bins, summarize
from ttc_agents._apps.calibrate import (
    STRATEGY_NAMES,
    CalibrationError,
    CellResult,
    QuestionDifficulty,
    actions_for,
    run_grid,
)
from ttc_agents._apps.datasets import Problem, grade
from ttc_agents._apps.loaders import OnError, load_bench_problems
from ttc_agents._core.thinking import Thinking, thinking_label
from ttc_agents._llm.gateway import Gateway, get_default_gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents._routing.policy import Cost, Policy, PolicyAction, PolicyEntry

if TYPE_CHECKING:
    from ttc_agents._routing.difficulty import DifficultyEstimator
    from ttc_agents.graphs.router import Router
    from ttc_agents.verifiers._base import Verifier

__all__ = [
    "BENCH_STRATEGIES",
    "ROUTER_PROBE_SEED_OFFSET",
    "BenchConfig",
    "BenchError",
    "BenchResult",
    "BenchUnitError",
    "run_bench",
    "setting_of",
]


BENCH_STRATEGIES: Final = (*STRATEGY_NAMES, "router")
"""Strategy names ``ttc bench`` accepts: the grid's, plus ``router`` (needs a policy)."""

ROUTER_PROBE_SEED_OFFSET: Final = 1_000_003
"""The router's difficulty probe at unit seed ``s`` samples with seed ``s + ROUTER_PROBE_SEED_OFFSET``."""


_MANIFEST_VERSION: Final = 1


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
    thinking: Sequence[Thinking | None] = (None,)
    """Thinking settings every grid strategy runs at (each its own curve: ``best_of_n_weighted@high``)."""


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
    """The setting name of a grid action: its strategy, the selection rule for best-of-N, and
    ``@level`` for a thinking setting (``best_of_n_weighted@high``, ``beam_search@think=1024``)."""
    spec = action.strategy
    name = f"best_of_n_{spec.selection}" if spec.strategy == "best_of_n" else spec.strategy
    return name if spec.thinking is None else f"{name}@{thinking_label(spec.thinking)}"


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
    thinking: list[Thinking | None] = field(default_factory=lambda: [None])
    routers: dict[int, Router] = field(default_factory=dict)

    def expected(self) -> set[tuple[str, int]]:
        keys = {
            (setting_of(action), budget)
            for strategy in self.grid_strategies
            for budget in self.budgets
            for level in self.thinking
            for action in actions_for(strategy, self.model.name, budget, level)
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
        from ttc_agents._routing.difficulty import OracleEstimator, ProbeEstimator, QuestionOnlyEstimator

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
                    thinking=self.thinking,
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
            from ttc_agents._llm.store import ResponseStore

            own_store = ResponseStore(directory / STORE)  # the file is created on the first write
            gateway = replace(gateway, store=own_store)
    try:
        runner = _runner(config, model, problems, grid_strategies, budgets, gateway, policy, policy_tag)
        if policy is not None:
            runner.router(seeds[0])  # refuses a mismatched policy before anything is written or spent
        directory.mkdir(parents=True, exist_ok=True)
        _check_manifest(directory, config, model)
        wanted = {(p.id, s) for s in seeds for p in problems}
        finished, notes = finished_units(results_path, wanted, runner.expected())
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
        thinking=list(dict.fromkeys(config.thinking)) or [None],
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
    current = [r for r in rows if r["question_id"] in ids and int(r["seed"]) in seeds and row_key(r) in expected]
    source, bins, labels = difficulty_bins(problems, current, config.bins, bool(runner.grid_strategies))
    summary = summarize(current, bins=bins, bin_labels=labels)
    summary["run"] = {
        "dataset": config.dataset,
        "model": model.name,
        "verifier": config.verifier,
        "strategies": [*runner.grid_strategies, *(["router"] if runner.policy is not None else [])],
        "budgets": runner.budgets,
        "thinking": [thinking_label(level) for level in runner.thinking],
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
        append_rows(path, rows)
        spent[0] = spent[0] + Cost.model_validate(rows[0]["unit_spent"]) if rows else Cost()
        bar.set_postfix_str(spend_text(spent[0]), refresh=False)
        bar.update(1)

    try:
        async with asyncio.TaskGroup() as group:
            for problem, seed in todo:
                group.create_task(one(problem, seed))
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
    finally:
        bar.close()
