"""``ttc demo``: every strategy, at a few budgets, on a real model, on a seeded graded task set.

The demo answers a built-in set of arithmetic questions from reasoning-gym's generators (three
levels: one-digit sums, one-digit products, two-digit sums; 10 questions each, graded by each
generator's own ``score_answer``) with

* best-of-N, weighted by the verifier and by majority vote,
* beam search against the verifier,
* sequential revisions (answer selected hierarchically by the verifier),
* and the compute-optimal router: a policy fitted on half of the questions (calibration split)
  from the outcomes above, evaluated on the other half (held-out split),

at generation budgets N = 1, 2, 4 (``--quick``: 2 questions per level, N = 1 and 4). It prints a
table (strategy x N -> accuracy, samples, tokens, seconds), and writes ``summary.json`` and
``accuracy_vs_tokens.png`` (accuracy against generated tokens per question, one line per strategy).

Why these choices. Measured on SmolLM2-135M-Instruct (llama.cpp, 2 shared cores), 8 samples per
question at T = 0.8; pass@1 is the share of correct samples, pass@8 "any correct":

* **Prompt format** (10 one-digit sums)::

      format                                               pass@1  pass@8  majority@8  tokens
      library default (step by step, \\boxed{})              0.33    0.80    0.70        38
      "Answer with just the number."                         0.20    0.50    0.30        18
      few-shot Q/A in one message, just the number           0.04    0.30    0.00         9
      few-shot in one message, one calculation per line      0.45    0.90    0.60        19
      multi-turn few-shot, one calculation per line          0.93    1.00    1.00        16
      multi-turn few-shot, just the number                   0.05    0.20    0.10         2

  So the demo shows three solved examples as earlier chat turns (the graphs' ``context`` input),
  in the generator's own phrasing, each answer one calculation per line then ``The answer is N.``;
  the overrides in :data:`DEMO_PROMPTS` keep the user turn in the same shape.
* **Levels** (with that format; 12 questions, seed 0): one-digit sums pass@1 0.93-0.97 (easy);
  one-digit products 0.64 -> pass@8 0.83, weighted@8 0.75, majority@8 0.67 (medium); two-digit sums
  0.12 -> pass@8 0.33, weighted@8 0.25, majority@8 0.08 (hard). Rejected: two-digit sums and
  differences (chain_sum: mostly negative results, 0.00), three one-digit terms (0.25 -> 0.42),
  mixed operators (0.06 -> 0.20), two-digit products (0.20 -> 0.30).
* **Beam search** writes one step per request, which the model does poorly with any prompt (beam
  N=4 on 8 products / 8 two-digit sums: plain examples 0.25 / 0.00, step-by-step examples only
  0.25 / 0.00, both 0.38 / 0.12). Showing everyone the step examples cut best-of-N's pass@1 on
  products from 0.78 to 0.48, so only beam search's conversation carries them.
* **Revise prompt** (revision N=4, 6 products): question first and "Check the calculation and
  answer again" 0.17 (the model writes "The answer is indeed 18", read as "indeed 18"); asking for
  the same form 0.83; the earlier attempts first, then "Solve it again: <question>" 1.00 (chosen).
* **Verifier.** The 135M model is no usable judge (AUC ~0.5 as an LLM-judge PRM), so the demo uses
  :class:`~ttc_agents.verifiers.ArithmeticStepVerifier`, a pure-CPU process verifier that checks
  every ``a op b = c`` claim of a step. It knows nothing of the question: a correct calculation of
  the wrong numbers scores 1.0. Majority vote needs no verifier at all.
* **Sizes.** 30 questions at N = 1, 2, 4 took 7m20s at load average 5.5-7.4 on 2 cores (3m56s with
  24 questions at load 3-4.5); N = 8 doubled that. ``--quick`` takes about a minute.

Every model call goes through the gateway with a record/replay :class:`~ttc_agents.ResponseStore`
(``OUT/responses.sqlite`` by default). Within a run this is also the sample pool: the largest N
runs first and smaller N read its first samples, majority reads weighted's samples, revision's
first attempt is best-of-N's first sample, and the router replays the calibrated strategies. A
second run replays everything: the same numbers (``summary.json`` outside ``timing``), no request
reaches the model, and no server is started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import SecretStr

from ttc_agents._apps.bench_report import draw_curves
from ttc_agents._apps.bench_stats import setting_order
from ttc_agents._apps.datasets import Problem, grade, reasoning_gym_problems
from ttc_agents._apps.demo_sizes import BUDGETS, QUESTIONS_PER_LEVEL, QUICK_BUDGETS, QUICK_QUESTIONS_PER_LEVEL
from ttc_agents._core.budget import Ledger, LedgerSnapshot, Usage
from ttc_agents._core.candidates import Candidate
from ttc_agents._core.specs import BeamSearchSpec, BestOfNSpec, RevisionSpec, StrategySpec
from ttc_agents._llm.gateway import Gateway, gather_or_cancel, get_default_gateway
from ttc_agents._llm.local import (
    LOCAL_PREFIX,
    LOCAL_SUPPORTS_N,
    LocalServerInfo,
    resolve_local_model,
    start_local_server,
    stop_local_server,
)
from ttc_agents._llm.models import ModelSpec
from ttc_agents._llm.store import ResponseStore
from ttc_agents._routing.difficulty import DifficultyEstimate, DifficultyEstimator
from ttc_agents._routing.moves import SearchContext, StrategyState
from ttc_agents.verifiers import ArithmeticStepVerifier

__all__ = [
    "DEMO_PROMPTS",
    "LEVELS",
    "METHODS",
    "CellRecord",
    "DemoResult",
    "DemoSettings",
    "Level",
    "Method",
    "SummaryRow",
    "demo_model",
    "format_table",
    "plot_accuracy_vs_tokens",
    "run_demo",
    "summarize",
    "write_outputs",
]

DEFAULT_MODEL: Final = "local/smollm2-135m"

#: Prompt overrides: the user turn is the question itself, as in the few-shot conversation.
DEMO_PROMPTS: Final[Mapping[str, str]] = {
    "generate": "$question",
    "step_generate": "$question\n\nSteps so far:\n$steps\n\nNext step:",
    "revise": "Earlier attempts, which may contain mistakes:\n\n$attempts\n\nSolve it again: $question",
}

LOW_SCORE_NOTE: Final = (
    "SmolLM2-135M is a 135-million-parameter model: it cannot do grade-school math, and it scores low here. "
    "This demo proves that the pipeline runs end to end on real model output (sampling, verifier, search, "
    "revisions, calibration, routing, budgets, record/replay), not that test-time compute buys accuracy on "
    "real benchmarks: that needs a capable model (see the README: --model openai/gpt-4o-mini, or a vLLM server)."
)


# -- task set -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Level:
    """One difficulty level of the task set: a reasoning-gym generator, its config, and few-shot examples.

    Attributes:
        key: Short name (``add1``), used in ids and tables.
        title: What the questions look like.
        generator: reasoning-gym generator name.
        config: The generator's config fields.
        shots: Solved examples (question, solution) in the generator's phrasing, one calculation per
            line, ending with ``The answer is N.``.
    """

    key: str
    title: str
    generator: str
    config: Mapping[str, Any]
    shots: tuple[tuple[str, str], ...]

    def problems(self, size: int, seed: int) -> list[Problem]:
        """``size`` seeded questions of this level, graded by the generator's ``score_answer``."""
        problems = reasoning_gym_problems(self.generator, size=size, seed=seed, **dict(self.config))
        return [dataclasses.replace(p, id=f"{self.key}:{p.id}", difficulty=LEVELS.index(self) + 1) for p in problems]

    def context(self, *, stepwise: bool = False) -> list[dict[str, str]]:
        """The few-shot conversation: each example as a user turn and the assistant's solution.

        With ``stepwise`` (beam search), the first example is also shown solved one step per turn,
        through the ``step_generate`` prompt the search uses.
        """
        turns: list[dict[str, str]] = []
        for question, solution in self.shots:
            turns += [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
        if stepwise:
            question, solution = self.shots[0]
            steps = solution.split("\n")
            for i, step in enumerate(steps):
                prompt = DEMO_PROMPTS["step_generate"].replace("$question", question)
                prompt = prompt.replace("$steps", "\n".join(steps[:i]) or "(none)")
                turns += [{"role": "user", "content": prompt}, {"role": "assistant", "content": step}]
        return turns


def _shots(template: str, *examples: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((template.format(expression), solution) for expression, solution in examples)


_PRODUCT = "Solve the following multiplication: {}. Give only the result as your final answer."

LEVELS: Final[tuple[Level, ...]] = (
    Level(
        key="add1",
        title="a + b, one digit (basic_arithmetic)",
        generator="basic_arithmetic",
        config={
            "min_terms": 2,
            "max_terms": 2,
            "min_digits": 1,
            "max_digits": 1,
            "operators": ("+",),
            "allow_parentheses": False,
            "allow_negation": False,
        },
        shots=_shots(
            "Calculate {}.",
            ("3 + 4 + 5", "3 + 4 = 7\n7 + 5 = 12\nThe answer is 12."),
            ("9 - 5", "9 - 5 = 4\nThe answer is 4."),
            ("6 * 3", "6 * 3 = 18\nThe answer is 18."),
        ),
    ),
    Level(
        key="mul1",
        title="a * b, one digit (products)",
        generator="products",
        config={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        shots=_shots(
            _PRODUCT,
            ("4 * 7", "4 * 7 = 28\nThe answer is 28."),
            ("6 * 3", "6 * 3 = 18\nThe answer is 18."),
            ("9 * 2", "9 * 2 = 18\nThe answer is 18."),
        ),
    ),
    Level(
        key="add2",
        title="a + b, two digits (basic_arithmetic)",
        generator="basic_arithmetic",
        config={
            "min_terms": 2,
            "max_terms": 2,
            "min_digits": 2,
            "max_digits": 2,
            "operators": ("+",),
            "allow_parentheses": False,
            "allow_negation": False,
        },
        shots=_shots(
            "Calculate {}.",
            ("3 + 4 + 5", "3 + 4 = 7\n7 + 5 = 12\nThe answer is 12."),
            ("9 - 5", "9 - 5 = 4\nThe answer is 4."),
            ("23 + 41", "23 + 41 = 64\nThe answer is 64."),
        ),
    ),
)


# -- methods --------------------------------------------------------------------------------------------


MethodName = Literal["best_of_n/weighted", "best_of_n/majority", "beam_search", "revision"]


@dataclass(frozen=True, slots=True)
class Method:
    """A strategy as the demo runs it: its spec at each generation budget N, and its conversation.

    Attributes:
        name: Row label of the table.
        make: The strategy spec for budget N and seed.
        stepwise: Whether it writes one step per request (and gets the step-by-step examples).
        routable: Whether the router may choose it. The router hands one conversation to whichever
            strategy it picks, so only the strategies calibrated with the plain few-shot conversation
            are on its menu.
    """

    name: MethodName
    make: Callable[[int, int], StrategySpec]
    stepwise: bool = False
    routable: bool = True


def _beam(budget: int, seed: int) -> StrategySpec:
    # N beams of width min(N, 4), as calibration uses. Every question takes two steps (one
    # calculation, then "The answer is N."), so two rounds; a beam still open then is cut.
    return BeamSearchSpec(n=budget, width=min(budget, 4), max_rounds=2, step_max_tokens=24, seed=seed)


METHODS: Final[tuple[Method, ...]] = (
    Method("best_of_n/weighted", lambda n, seed: BestOfNSpec(n=n, selection="weighted", seed=seed)),
    Method("best_of_n/majority", lambda n, seed: BestOfNSpec(n=n, selection="majority", seed=seed)),
    Method("beam_search", _beam, stepwise=True, routable=False),
    Method("revision", lambda n, seed: RevisionSpec(attempts=n, chains=1, seed=seed)),
)
ROUTER: Final = "router"


# -- settings and results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """How big the demo is.

    Attributes:
        questions_per_level: Questions drawn from each level's generator.
        budgets: Generation budgets N.
        seed: Seeds the task set and every strategy's sampling.
        router: Fit a policy on the calibration split and run the router on the held-out split.
        questions_in_flight: Questions answered side by side.
    """

    questions_per_level: int = QUESTIONS_PER_LEVEL
    budgets: tuple[int, ...] = BUDGETS
    seed: int = 0
    router: bool = True
    questions_in_flight: int = 4

    @classmethod
    def quick(cls) -> DemoSettings:
        """The ~1-minute version: 2 questions per level, N = 1 and 4."""
        return cls(questions_per_level=QUICK_QUESTIONS_PER_LEVEL, budgets=QUICK_BUDGETS)

    def __post_init__(self) -> None:
        if self.questions_per_level < 1:
            raise ValueError(f"questions_per_level must be at least 1, got {self.questions_per_level}")
        if self.questions_in_flight < 1:
            raise ValueError(f"questions_in_flight must be at least 1, got {self.questions_in_flight}")
        if not self.budgets or any(b < 1 for b in self.budgets):
            raise ValueError(f"budgets must be positive integers, got {self.budgets}")


Split = Literal["calibration", "held-out"]


@dataclass(frozen=True, slots=True)
class CellRecord:
    """One question answered by one method at one generation budget.

    ``replayed`` counts samples answered from the response store; ``seconds`` is this run's wall time
    for the cell (near zero when everything was replayed).
    """

    method: str
    budget: int
    question_id: str
    level: str
    split: Split
    answer: str | None
    reference: str
    correct: bool
    samples: int
    completion_tokens: int
    total_tokens: int
    replayed: int
    seconds: float
    choice: str | None = None  # the router's chosen action

    def deterministic(self) -> dict[str, Any]:
        """Everything a replayed run reproduces exactly: all but the wall time and the replay count."""
        out = dataclasses.asdict(self)
        del out["seconds"], out["replayed"]
        return out


@dataclass(frozen=True, slots=True)
class QuestionStats:
    """pass@1 and pass@N of one question, from best-of-N's pool at the largest budget."""

    question_id: str
    level: str
    pool: int
    correct: int

    @property
    def pass_at_1(self) -> float:
        return self.correct / self.pool if self.pool else 0.0


@dataclass(slots=True)
class DemoResult:
    """Everything a demo run measured."""

    model: str
    settings: DemoSettings
    verifier: str
    records: list[CellRecord] = field(default_factory=list)
    questions: list[QuestionStats] = field(default_factory=list)
    policy_table: list[dict[str, Any]] | None = None
    router_note: str = ""
    wall_seconds: float = 0.0
    server: str | None = None


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """A (method, budget) cell of the table, averaged over its questions."""

    method: str
    budget: int
    split: str  # "all" or "held-out"
    questions: int
    accuracy: float
    samples: float  # per question
    generated_tokens: float  # per question
    tokens: float  # per question, prompts included
    seconds: float  # total wall time of this run
    replayed: float  # share of samples answered from the store
    by_level: dict[str, float]


def summarize(records: Sequence[CellRecord], *, split: Split | None = "held-out") -> list[SummaryRow]:
    """One row per (method, budget) over the questions of ``split`` (``None``: all questions), in the
    order of the methods and budgets.

    The demo compares every line on the held-out split, the questions the router's policy was not
    fitted on; over all questions only the strategies have rows (the router runs on held-out ones).
    """
    groups: dict[tuple[str, int], list[CellRecord]] = {}
    for record in records:
        if split is None or record.split == split:
            groups.setdefault((record.method, record.budget), []).append(record)
    rows = []
    for (method, budget), group in sorted(groups.items(), key=lambda kv: (_method_order(kv[0][0]), kv[0][1])):
        count = len(group)
        samples = sum(r.samples for r in group)
        levels: dict[str, list[bool]] = defaultdict(list)
        for r in group:
            levels[r.level].append(r.correct)
        rows.append(
            SummaryRow(
                method=method,
                budget=budget,
                split="held-out" if all(r.split == "held-out" for r in group) else "all",
                questions=count,
                accuracy=sum(r.correct for r in group) / count,
                samples=samples / count,
                generated_tokens=sum(r.completion_tokens for r in group) / count,
                tokens=sum(r.total_tokens for r in group) / count,
                seconds=sum(r.seconds for r in group),
                replayed=sum(r.replayed for r in group) / samples if samples else 0.0,
                by_level={level: sum(v) / len(v) for level, v in levels.items()},
            )
        )
    return rows


def _method_order(name: str) -> tuple[int, float]:
    return setting_order(_setting(name))


def _setting(method: str) -> str:
    """The bench's setting name of a demo method (``best_of_n/weighted`` -> ``best_of_n_weighted``)."""
    return method.replace("/", "_")


# -- model and gateway ----------------------------------------------------------------------------------


def demo_model(name: str = DEFAULT_MODEL, *, api_base: str | None = None, api_key: str | None = None) -> ModelSpec:
    """The demo's :class:`ModelSpec` for ``name``.

    Answers are a line or two, so completions are capped at 48 tokens. A local model gets at most
    four requests in flight (the server's slots: it decodes them together) and the placeholder key
    its OpenAI-compatible route needs, as does a server given by ``api_base`` without a key.
    """
    local = name.startswith(LOCAL_PREFIX)
    key = api_key if api_key is not None else ("none" if local or api_base else None)
    return ModelSpec(
        name=name,
        api_base=api_base,
        api_key=None if key is None else SecretStr(key),
        max_tokens=48,
        max_concurrency=4 if local else 8,
        parameters=1.35e8 if name == DEFAULT_MODEL else None,
    )


class _LocalServers:
    """Resolves ``local/NAME`` for the demo's gateway: starts the server on first use (so a fully
    replayed run never starts one) and remembers the servers it started, to stop them at the end."""

    supports_n = LOCAL_SUPPORTS_N  # see ttc_agents._llm.providers.LocalResolver

    def __init__(self, n_threads: int | None) -> None:
        self.n_threads = n_threads
        self.started: list[LocalServerInfo] = []
        self.used: list[LocalServerInfo] = []
        self._lock = threading.Lock()

    def __call__(self, name: str) -> tuple[str, str | None]:
        with self._lock:
            if not any(f"{LOCAL_PREFIX}{info.model}" == name for info in self.used):
                info = start_local_server(name, n_threads=self.n_threads)
                self.used.append(info)
                if not info.reused:
                    self.started.append(info)
        model, api_base = resolve_local_model(name, start=True)  # cached; restarts a server that died
        return model, api_base

    def stop_started(self) -> None:
        for info in self.started:
            stop_local_server(info.model)
        self.started.clear()


@contextmanager
def _demo_gateway(store_path: Path | None, n_threads: int | None) -> Iterator[tuple[Gateway, _LocalServers]]:
    """The default gateway with a record/replay store (a temporary one when ``store_path`` is None,
    so that strategies still share their samples within the run) and the demo's local resolver."""
    servers = _LocalServers(n_threads)
    base = get_default_gateway()
    with tempfile.TemporaryDirectory(prefix="ttc-demo-") as scratch:
        store = ResponseStore(store_path if store_path is not None else Path(scratch) / "responses.sqlite")
        try:
            yield dataclasses.replace(base, store=store, resolvers={**base.resolvers, "local": servers}), servers
        finally:
            store.close()
            servers.stop_started()


# -- running --------------------------------------------------------------------------------------------


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="ttc demo", unit="run", disable=not enabled, dynamic_ncols=True)


def _split_of(index: int) -> Split:
    return "calibration" if index % 2 == 0 else "held-out"


async def run_demo(
    settings: DemoSettings,
    *,
    model: ModelSpec,
    store_path: Path | None = None,
    n_threads: int | None = None,
    progress: bool = True,
) -> DemoResult:
    """Run every method at every budget on the task set, then calibrate and evaluate the router.

    Args:
        settings: Sizes and seed.
        model: The model (see :func:`demo_model`).
        store_path: The record/replay store; ``None`` for a temporary one (nothing is kept).
        n_threads: llama.cpp threads for a local server this run starts.
        progress: Show a tqdm progress bar on stderr.
    """
    from ttc_agents.graphs import build_strategy_graph

    started = time.monotonic()
    verifier = ArithmeticStepVerifier()
    result = DemoResult(model=model.name, settings=settings, verifier=verifier.name)
    problems: list[tuple[Level, Split, Problem]] = []
    for level in LEVELS:
        for index, problem in enumerate(level.problems(settings.questions_per_level, settings.seed)):
            problems.append((level, _split_of(index), problem))
    budgets = sorted(set(settings.budgets), reverse=True)  # largest first: smaller N replay its samples
    held_out = [item for item in problems if item[1] == "held-out"]
    router_runs = len(held_out) * len(budgets) if settings.router else 0
    with _demo_gateway(store_path, n_threads) as (gateway, servers):
        graphs = {
            (method.name, n): build_strategy_graph(
                method.make(n, settings.seed), model=model, verifier=verifier, gateway=gateway, prompts=DEMO_PROMPTS
            )
            for method in METHODS
            for n in budgets
        }
        bar = _progress(len(problems) * len(METHODS) * len(budgets) + router_runs, progress)
        # Questions run side by side (the local server decodes several requests together); within a
        # question the order matters, since later cells replay earlier cells' samples from the store.
        in_flight = asyncio.Semaphore(settings.questions_in_flight)

        async def answer(level: Level, split: Split, problem: Problem) -> list[CellRecord]:
            records: list[CellRecord] = []
            async with in_flight:
                for method in METHODS:
                    bar.set_postfix_str(f"{level.key} {method.name}", refresh=False)
                    for n in budgets:
                        inputs = {"question": problem.question, "context": level.context(stepwise=method.stepwise)}
                        output, seconds = await _timed(graphs[(method.name, n)].ainvoke(inputs))
                        records.append(_record(method.name, n, level, split, problem, output, seconds))
                        if method.name == "best_of_n/weighted" and n == budgets[0]:
                            result.questions.append(_pool_stats(level, problem, output["candidates"]))
                        bar.update(1)
            return records

        try:
            answered = await gather_or_cancel(*(answer(*item) for item in problems))
            result.records.extend(record for records in answered for record in records)
            order = {problem.id: i for i, (_, _, problem) in enumerate(problems)}
            result.questions.sort(key=lambda stats: order[stats.question_id])
            if settings.router:
                await _route(result, problems, budgets, model, verifier, gateway, bar)
            else:
                result.router_note = "router: skipped (--no-router)"
        finally:
            bar.close()
        result.server = ", ".join(f"{i.model} on {i.api_base} (pid {i.pid})" for i in servers.used) or None
    result.wall_seconds = time.monotonic() - started
    return result


async def _timed(awaitable: Any) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    output = await awaitable
    return output, time.monotonic() - start


def _record(
    method: str,
    budget: int,
    level: Level,
    split: Split,
    problem: Problem,
    output: Mapping[str, Any],
    seconds: float,
    choice: str | None = None,
) -> CellRecord:
    ledger: LedgerSnapshot = output["ledger"]
    usage: Usage = ledger.total
    answer = output.get("answer")
    return CellRecord(
        method=method,
        budget=budget,
        question_id=problem.id,
        level=level.key,
        split=split,
        answer=answer,
        reference=problem.answer,
        correct=grade(problem, answer),
        samples=usage.samples,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        replayed=usage.replayed,
        seconds=round(seconds, 3),
        choice=choice,
    )


def _pool_stats(level: Level, problem: Problem, candidates: Sequence[Candidate]) -> QuestionStats:
    correct = sum(grade(problem, c.answer) for c in candidates)
    return QuestionStats(problem.id, level.key, len(candidates), correct)


async def _route(
    result: DemoResult,
    problems: Sequence[tuple[Level, Split, Problem]],
    budgets: Sequence[int],
    model: ModelSpec,
    verifier: ArithmeticStepVerifier,
    gateway: Gateway,
    bar: Any,
) -> None:
    """Fit the policy on the calibration split, then run the router on the held-out split.

    Difficulty: the oracle pass@1 of each calibration question (from best-of-N's pool) is the
    statistic the policy bins on, and a question-only ridge regression learns to predict it from the
    question text, so the router's estimate costs no generation.
    """
    from ttc_agents._routing.difficulty import QuestionOnlyEstimator
    from ttc_agents._routing.policy import Cost, Outcome, PolicyAction, fit_policy
    from ttc_agents.graphs.router import Router

    routable = {m.name: m for m in METHODS if m.routable}
    held_out = [item for item in problems if item[1] == "held-out"]
    calibration_ids = {p.id for _, split, p in problems if split == "calibration"}
    outcomes = [
        Outcome(
            question_id=r.question_id,
            action=PolicyAction(model=model.name, strategy=routable[r.method].make(r.budget, result.settings.seed)),
            budget=r.budget,
            correct=r.correct,
            cost=Cost(samples=r.samples, tokens=r.total_tokens),
        )
        for r in result.records
        if r.split == "calibration" and r.method in routable
    ]
    calibration = {s.question_id: s.pass_at_1 for s in result.questions if s.question_id in calibration_ids}
    questions = {p.id: p.question for _, _, p in problems}
    try:
        policy = fit_policy(
            outcomes,
            calibration,
            models=[model.name],
            verifier=verifier.name,
            dataset="ttc demo task set",
            estimator="question",
        )
        ids = sorted(calibration)
        estimator = QuestionOnlyEstimator.fit(
            [questions[q] for q in ids], [calibration[q] for q in ids], policy.thresholds
        )
    except (ValueError, ArithmeticError) as error:  # e.g. too few questions to fit anything
        result.router_note = f"router: skipped, no policy could be fitted ({error})"
        bar.update(len(held_out) * len(budgets))
        return
    router = Router(
        policy,
        models={model.name: model},
        verifier=verifier,
        verifier_name=verifier.name,
        estimator=_NearestFittedBin(estimator, tuple(sorted({e.bin for e in policy.table}))),
        gateway=gateway,
        prompts=DEMO_PROMPTS,
    )
    result.policy_table = [
        {
            "bin": e.bin,
            "budget": e.budget,
            "action": e.action.key,
            "accuracy": e.accuracy,
            "cv_accuracy": e.cv_accuracy,
            "questions": e.questions,
        }
        for e in policy.table
    ]
    in_flight = asyncio.Semaphore(result.settings.questions_in_flight)

    async def route(level: Level, split: Split, problem: Problem) -> list[CellRecord]:
        records = []
        async with in_flight:
            bar.set_postfix_str(f"{level.key} router", refresh=False)
            for n in budgets:
                inputs = {"question": problem.question, "context": level.context(), "generation_budget": n}
                output, seconds = await _timed(router.graph.ainvoke(inputs))
                choice = output.get("trace", {}).get("choice") or {}
                records.append(_record(ROUTER, n, level, split, problem, output, seconds, choice.get("action")))
                bar.update(1)
        return records

    for records in await gather_or_cancel(*(route(*item) for item in held_out)):
        result.records.extend(records)
    result.router_note = (
        f"router: policy fitted on the calibration split ({len(calibration)} questions: best-of-N weighted/majority "
        f"and revision at N = {', '.join(map(str, sorted(budgets)))}), difficulty predicted from the question text "
        f"(no generation), evaluated on the held-out split ({len(held_out)} questions). Beam search is not on its "
        "menu: it was run with a different (step-by-step) few-shot conversation."
    )


@dataclass(frozen=True, slots=True)
class _NearestFittedBin:
    """A difficulty estimator moved to the nearest bin that the policy has entries for.

    Bins are quantiles of the calibration questions' statistic; with few questions and tied values
    (pass@1 of 0 or 1) some bins stay empty, and the policy has nothing to say about them.
    """

    inner: DifficultyEstimator
    bins: tuple[int, ...]
    name: str = "question"

    async def estimate(self, ctx: SearchContext, state: StrategyState, ledger: Ledger) -> DifficultyEstimate:
        estimate = await self.inner.estimate(ctx, state, ledger)
        nearest = min(self.bins, key=lambda b: (abs(b - estimate.bin), b))
        evidence = {**estimate.evidence, "estimated_bin": estimate.bin, "fitted_bins": list(self.bins)}
        return dataclasses.replace(estimate, bin=nearest, evidence=evidence)


# -- reporting ------------------------------------------------------------------------------------------


def format_table(rows: Sequence[SummaryRow]) -> str:
    """The strategy x N table as fixed-width text."""
    levels = list(dict.fromkeys(level for row in rows for level in row.by_level))
    header = (
        f"{'strategy':<20} {'N':>3} {'questions':>9} {'accuracy':>8} {'samples/q':>9} {'gen tok/q':>9} "
        f"{'tok/q':>7} {'seconds':>8} {'replayed':>8}  " + " ".join(f"{level:>5}" for level in levels)
    )
    lines = [header, "-" * len(header)]
    previous = None
    for row in rows:
        if previous is not None and row.method != previous:
            lines.append("")
        previous = row.method
        label = row.method
        per_level = " ".join(
            f"{row.by_level[level]:>5.2f}" if level in row.by_level else f"{'-':>5}" for level in levels
        )
        lines.append(
            f"{label:<20} {row.budget:>3} {row.questions:>9} {row.accuracy:>8.2f} {row.samples:>9.1f} "
            f"{row.generated_tokens:>9.1f} {row.tokens:>7.0f} {row.seconds:>8.1f} {row.replayed:>8.0%}  {per_level}"
        )
    return "\n".join(lines)


def format_levels(result: DemoResult) -> str:
    """Per level: pass@1 and pass@N of best-of-N's pool, and the best-of-N answers at the largest N."""
    n = max(result.settings.budgets)
    lines = [
        f"{'level':<6} {'questions':>9} {'pass@1':>7} {f'pass@{n}':>7} {f'weighted@{n}':>11} {f'majority@{n}':>11}"
    ]
    for level in LEVELS:
        stats = [s for s in result.questions if s.level == level.key]
        if not stats:
            continue
        cells = {
            method: [r.correct for r in result.records if r.method == method and r.budget == n and r.level == level.key]
            for method in ("best_of_n/weighted", "best_of_n/majority")
        }
        pass_1 = sum(s.pass_at_1 for s in stats) / len(stats)
        pass_n = sum(s.correct > 0 for s in stats) / len(stats)
        weighted, majority = (sum(v) / len(v) if v else math.nan for v in cells.values())
        lines.append(
            f"{level.key:<6} {len(stats):>9} {pass_1:>7.2f} {pass_n:>7.2f} {weighted:>11.2f} {majority:>11.2f}"
            f"   {level.title}"
        )
    return "\n".join(lines)


def summary_dict(result: DemoResult) -> dict[str, Any]:
    """The JSON summary. Everything outside ``timing`` (wall time, what was replayed) is reproduced
    exactly by a replayed run."""
    rows = summarize(result.records)
    everything = summarize(result.records, split=None)  # the router ran on the held-out questions only
    new_samples = sum(r.samples - r.replayed for r in result.records)
    return {
        "model": result.model,
        "verifier": {
            "name": result.verifier,
            "what": "ArithmeticStepVerifier: checks every 'a op b = c' claim of each step (pure CPU). "
            "No model judge: a 135M model judges at chance (AUC ~0.5). It does not read the question.",
        },
        "settings": dataclasses.asdict(result.settings),
        "levels": [
            {"key": level.key, "title": level.title, "generator": level.generator, "config": dict(level.config)}
            for level in LEVELS
        ],
        "prompts": dict(DEMO_PROMPTS),
        "few_shot": {level.key: [list(shot) for shot in level.shots] for level in LEVELS},
        "results": [
            {k: v for k, v in dataclasses.asdict(row).items() if k not in ("seconds", "replayed")} for row in rows
        ],
        "results_all_questions": [
            {k: v for k, v in dataclasses.asdict(row).items() if k not in ("seconds", "replayed")}
            for row in everything
            if row.method != ROUTER
        ],
        "questions": [
            {**dataclasses.asdict(s), "pass_at_1": s.pass_at_1, "pass_at_n": s.correct > 0} for s in result.questions
        ],
        "router": {"note": result.router_note, "policy_table": result.policy_table},
        "cells": [r.deterministic() for r in result.records],
        "note": LOW_SCORE_NOTE,
        "timing": {
            "wall_seconds": round(result.wall_seconds, 1),
            "new_samples": new_samples,
            "replayed_samples": sum(r.replayed for r in result.records),
            "seconds_by_row": {f"{row.method}@{row.budget}": round(row.seconds, 2) for row in everything},
            "replayed_share_by_row": {f"{row.method}@{row.budget}": round(row.replayed, 3) for row in everything},
            "server": result.server,
        },
    }


def plot_accuracy_vs_tokens(rows: Sequence[SummaryRow], path: Path, *, title: str = "") -> None:
    """Accuracy against generated tokens per question, one line per strategy (drawn as ``ttc bench``
    draws its curves), points labelled N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    settings = [
        {
            "setting": _setting(r.method),
            "budget": r.budget,
            "tokens": {"mean": max(r.generated_tokens, 1e-3)},
            "accuracy": {"mean": r.accuracy},
        }
        for r in rows
    ]
    draw_curves(ax, settings, "tokens", band=False, labels={_setting(r.method): r.method for r in rows})
    labelled: set[tuple[float, float, str]] = set()
    for method in dict.fromkeys(row.method for row in rows):
        points = sorted((r for r in rows if r.method == method), key=lambda r: (r.generated_tokens, r.budget))
        budgets_at: dict[tuple[float, float], list[int]] = {}
        for r in points:
            budgets_at.setdefault((round(max(r.generated_tokens, 1e-3), 6), round(r.accuracy, 6)), []).append(r.budget)
        for (x, y), budgets in budgets_at.items():  # one label per point: "N=2,4" where budgets coincide
            text = "N=" + ",".join(map(str, budgets))
            if (x, y, text) not in labelled:  # and not twice where several strategies coincide
                labelled.add((x, y, text))
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("generated tokens per question (log scale)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.set_title(title or "accuracy vs generated tokens", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(result: DemoResult, out: Path) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``accuracy_vs_tokens.png`` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary_dict(result), indent=2) + "\n", encoding="utf-8")
    plot_path = out / "accuracy_vs_tokens.png"
    rows = summarize(result.records)
    questions = max((row.questions for row in rows), default=0)
    plot_accuracy_vs_tokens(
        rows,
        plot_path,
        title=f"{result.model}: every line on the same {questions} held-out arithmetic questions (ttc demo)",
    )
    return summary_path, plot_path


def format_policy(result: DemoResult) -> list[str]:
    """The fitted policy's table, one line per (bin, N): the chosen action and its calibration accuracy."""
    if not result.policy_table:
        return []
    lines = ["policy (bin 1 = easiest; accuracy on the calibration split, 2-fold cross-validated in brackets):"]
    for entry in sorted(result.policy_table, key=lambda e: (e["bin"], e["budget"])):
        action = str(entry["action"]).removeprefix(f"{result.model}:")
        lines.append(
            f"  bin {entry['bin']}  N={entry['budget']:<2} -> {action:<44} "
            f"{entry['accuracy']:.2f} ({entry['cv_accuracy']:.2f}), {entry['questions']} questions"
        )
    return lines


def format_report(result: DemoResult) -> str:
    """What ``ttc demo`` prints after the run."""
    rows = summarize(result.records)
    timing = summary_dict(result)["timing"]
    lines = [
        f"model: {result.model}" + (f"  [{result.server}]" if result.server else ""),
        "verifier: arithmetic step checker (checks each 'a op b = c' claim of a step, pure CPU; not a model "
        "judge: the 135M model judges at chance). Majority vote uses no verifier.",
        "",
        f"every line on the same {max((row.questions for row in rows), default=0)} held-out questions (the other "
        "half of the task set only fits the router's policy; summary.json has the strategies on all questions)",
        format_table(rows),
        "",
        "columns: accuracy over the questions; samples, generated and all tokens (prompts included) per question;",
        "seconds: this run's wall time for the row; replayed: share of samples answered from the response store",
        "(larger N runs first, so smaller N and majority reuse its samples and take ~0 s; compare compute by tokens).",
        "",
        "per level, from best-of-N's samples: pass@1 (share of correct samples), pass@N (any correct), and what",
        "weighted and majority selection made of them",
        format_levels(result),
        "",
        result.router_note,
        *format_policy(result),
        "",
        f"wall time {timing['wall_seconds']:.0f} s; {timing['new_samples']} samples from the model, "
        f"{timing['replayed_samples']} replayed from the store.",
    ]
    if result.model == DEFAULT_MODEL:
        lines += ["", "NOTE: " + LOW_SCORE_NOTE]
    return "\n".join(lines)
