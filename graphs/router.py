"""The compute-optimal router: estimate difficulty, look up the policy, run the chosen strategy.

    START -> start -> estimate -> lookup -> run -> answer -> END

``estimate`` puts the question in a difficulty bin (by default with a few probe samples scored by
the verifier, pass@1 predicted from them by the policy's fitted predictor); at a generation budget
whose setting is the same in every bin it draws nothing (the probe could not change the choice). ``lookup`` asks the
calibrated policy for its setting (strategy, hyperparameters and model): at a generation budget N,
the bin's entry of the matched-compute plan for N; under a hard budget, the most accurate eligible
setting whose cost for this question (probe already paid) fits the question's whole budget. ``run``
executes that strategy's graph with the rest of the budget. ``answer`` applies the rule the policy
was calibrated with (:func:`routed_answer`): best-of-N counts the probe samples among its N and
draws only the rest, with another seed; any other strategy answers on its own, as calibration
measured it. The trace says the bin and its evidence, the chosen setting and why, and what each
stage spent.

Samples get the ``max_tokens`` calibration measured for their model (``Policy.completion_caps``)
unless the model spec sets one, and an effort level the thinking allowance calibration measured
(``Policy.thinking_caps``) unless the spec sets ``thinking_tokens``, so that worst-case reservations
under a hard budget are close to what calls really use.

:class:`Router` also answers many questions under ONE total budget: it estimates every question
first, then gives each its share by greedy marginal gain on its bin's accuracy-vs-cost curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, Required, TypedDict, cast

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from ttc_agents._core.budget import Budget, Ledger, LedgerSnapshot, Usage
from ttc_agents._core.candidates import Candidate, select_answer
from ttc_agents._core.specs import BestOfNSpec
from ttc_agents._llm.gateway import Gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents._llm.sync import run_sync
from ttc_agents._routing.allocation import Allocation, estimate_allocate_run
from ttc_agents._routing.difficulty import (
    DifficultyEstimate,
    DifficultyEstimator,
    ProbeEstimator,
    ProbePredictor,
    rest_seed,
)
from ttc_agents._routing.moves import (
    SearchContext,
    StrategyInput,
    StrategyOutput,
    StrategyState,
    dual_node,
    sample_solutions,
    score_candidates,
)
from ttc_agents._routing.policy import (
    BudgetUnit,
    Cost,
    Policy,
    PolicyAction,
    PolicyEntry,
)
from ttc_agents.verifiers._base import ScoreFunction, Verifier, as_verifier

from . import build_strategy_graph

__all__ = ["Router", "RouterInput", "RouterOutput", "RouterState", "build_router_graph", "routed_answer"]


class RouterInput(TypedDict, total=False):
    """The question, optional earlier turns and budget; a precomputed estimate or action is honoured.

    ``generation_budget`` (the paper's N) picks the policy's table entry for N instead of the
    cost-based lookup; the hard limits in ``budget`` still hold.
    """

    question: Required[str]
    context: list[dict[str, Any]]
    budget: Budget | dict[str, Any] | None
    generation_budget: int | None
    estimate: DifficultyEstimate | None
    action: PolicyEntry | None


class RouterOutput(StrategyOutput, total=False):
    """A strategy's output (answer, candidates, ledger, stopped_by, strategy) and the trace of the
    router's decisions."""

    trace: dict[str, Any]


class RouterState(RouterOutput, total=False):
    strategy_answer: str | None
    question: str
    context: list[dict[str, Any]]
    budget: Budget | dict[str, Any] | None
    generation_budget: int | None
    estimate: DifficultyEstimate | None
    action: PolicyEntry | None


class _ChildRun(NamedTuple):
    """The router's ``run`` node about to run its chosen strategy (see ``Router._build``)."""

    action: PolicyAction
    ledger: Ledger
    trace: dict[str, Any]
    request: StrategyInput


def build_router_graph(
    policy: Policy,
    *,
    models: Mapping[str, ModelSpec | str] | None = None,
    verifier: Verifier | ScoreFunction | None = None,
    verifier_name: str | None = None,
    estimator: DifficultyEstimator | None = None,
    gateway: Gateway | None = None,
    prompts: Mapping[str, str] | None = None,
    budget: Budget | None = None,
    unit: BudgetUnit | None = None,
    force: bool = False,
) -> CompiledStateGraph[RouterState, None, RouterInput, RouterOutput]:
    """Compile the router for ``policy``.

    ``models`` maps the policy's model names to specs (default: the names themselves).
    ``verifier_name`` is checked against the policy's (refused on mismatch unless ``force``).
    """
    return Router(
        policy,
        models=models,
        verifier=verifier,
        verifier_name=verifier_name,
        estimator=estimator,
        gateway=gateway,
        prompts=prompts,
        budget=budget,
        unit=unit,
        force=force,
    ).graph


class Router:
    """The router graph plus batch allocation under one total budget.

    ``probe_seed`` seeds the probe (default: a hash of the question). ``skip_idle_probe``: at a
    generation budget N whose policy setting is the same in every difficulty bin (as when no plan
    beat best-of-N held out), a probe could not change the choice, so the router skips it and runs
    that setting directly (best-of-N in one request, with the probe's seed; the trace's ``bin`` is
    None). Under a hard budget the router always probes. Set it False to always probe, for the
    difficulty in the trace.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        models: Mapping[str, ModelSpec | str] | None = None,
        verifier: Verifier | ScoreFunction | None = None,
        verifier_name: str | None = None,
        estimator: DifficultyEstimator | None = None,
        gateway: Gateway | None = None,
        prompts: Mapping[str, str] | None = None,
        budget: Budget | None = None,
        unit: BudgetUnit | None = None,
        force: bool = False,
        probe_seed: int | None = None,
        skip_idle_probe: bool = True,
    ) -> None:
        specs = {name: ModelSpec.of(m) for name, m in (models or {}).items()}
        for name in policy.models:
            specs.setdefault(name, ModelSpec(name=name))
        for name, cap in policy.completion_caps.items():
            if name in specs and "max_tokens" not in specs[name].model_fields_set:
                specs[name] = specs[name].model_copy(update={"max_tokens": cap})
        for name, allowances in policy.thinking_caps.items():
            if name in specs and "thinking_tokens" not in specs[name].model_fields_set:
                specs[name] = specs[name].model_copy(update={"thinking_tokens": allowances})
        name = verifier_name if verifier_name is not None else as_verifier(verifier).name if verifier else "none"
        policy.check_compatible(list(specs), name, force=force)
        self.policy = policy
        self.models = specs
        self.unit = unit
        self.ctx = SearchContext.create(  # the probe (and best-of-N after it) at the probe's thinking setting
            specs[policy.models[0]],
            verifier,
            gateway=gateway,
            prompts=prompts,
            budget=budget,
            thinking=policy.probe_thinking,
        )
        predictor = None if policy.probe_model is None else ProbePredictor.from_dict(policy.probe_model)
        self.estimator = estimator or ProbeEstimator(
            policy.thresholds, samples=policy.probe_samples, predictor=predictor, seed=probe_seed
        )
        self.skip_idle_probe = skip_idle_probe
        self._graphs: dict[str, CompiledStateGraph[Any, None, Any, Any]] = {}
        self._bin_free: dict[int, PolicyEntry | None] = {}
        self.graph = self._build()

    def bin_free_choice(self, generations: int) -> PolicyEntry | None:
        """The policy's entry at generation budget ``generations`` when it is the same action in every
        difficulty bin (then a probe could not change the choice), else None."""
        if generations not in self._bin_free:
            entries = []
            for bin_ in range(1, len(self.policy.thresholds) + 2):
                try:
                    entries.append(self.policy.choose(bin_, generations))
                except LookupError:
                    entries = []
                    break
            same = bool(entries) and len({e.action.key for e in entries}) == 1
            self._bin_free[generations] = entries[0] if same else None
        return self._bin_free[generations]

    def _strategy_graph(self, action: PolicyAction) -> CompiledStateGraph[Any, None, Any, Any]:
        if action.key not in self._graphs:
            self._graphs[action.key] = build_strategy_graph(
                action.strategy,
                model=self.models[action.model],
                verifier=self.ctx.verifier,
                gateway=self.ctx.gateway,
                prompts=self.ctx.prompts,
            )
        return self._graphs[action.key]

    async def _rest_of_best_of_n(
        self, state: RouterState, ledger: Ledger, probes: list[Candidate], trace: dict[str, Any]
    ) -> RouterState:
        """Best-of-N after its own probe: the probe samples are N's first samples, so draw only the
        rest (with another seed, or a seeded backend would return the probe's samples again; with
        the prompt size the probe's answer reported, so the request is sized to what it costs) and
        score them as best-of-N does. :func:`routed_answer` selects over all of them."""
        entry = state.get("action")
        assert entry is not None
        spec = entry.action.strategy
        assert isinstance(spec, BestOfNSpec)
        rest = spec.n - len(probes)
        trace = {**trace, "probe_reused": len(probes)}
        if rest <= 0:
            return {"trace": {**trace, "run_spent": Usage().as_dict()}}
        estimate_ = state.get("estimate")
        seed = spec.seed
        if estimate_ is not None and estimate_.seed is not None and (seed is None or seed == estimate_.seed):
            seed = rest_seed(estimate_.seed, len(probes))
        elif estimate_ is None and seed is None and isinstance(self.estimator, ProbeEstimator):
            seed = self.estimator.seed_for(state["question"])  # no probe: best-of-N draws what it would have
        before = ledger.total
        question: StrategyState = {"question": state["question"], "context": state.get("context", [])}
        ctx = self.ctx
        fresh = await sample_solutions(
            ctx,
            ledger,
            ctx.messages(question, "generate"),
            rest,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            seed=seed,
            node="best_of_n/generate",
            prompt_tokens=None if estimate_ is None else estimate_.prompt_tokens,
        )
        scored = await score_candidates(ctx, ledger, state["question"], fresh, spec.aggregation)
        earlier = before.as_dict()
        run_spent = {k: v - earlier[k] for k, v in ledger.total.as_dict().items()}
        return {"candidates": probes + scored, "ledger": ledger.snapshot(), "trace": {**trace, "run_spent": run_spent}}

    def _choice_without_probe(self, state: RouterState) -> PolicyEntry | None:
        # Only at a generation budget. Under a hard budget a probe-less best-of-N of the next size up
        # spent the budget on samples and left the verifier short (pop-search, T(N=8): -0.07).
        generations = state.get("generation_budget")
        return None if generations is None else self.bin_free_choice(generations)

    def _build(self) -> CompiledStateGraph[RouterState, None, RouterInput, RouterOutput]:
        ctx, policy = self.ctx, self.policy

        def start(state: RouterState) -> RouterState:
            return {
                "ledger": ctx.fresh_ledger(state.get("budget")),
                "candidates": [],
                "answer": None,
                "stopped_by": None,
                "trace": {},
            }

        async def estimate(state: RouterState) -> RouterState:
            given = state.get("estimate")
            ledger = Ledger.resume(state["ledger"])
            if (
                given is None
                and state.get("action") is None
                and self.skip_idle_probe
                and isinstance(self.estimator, ProbeEstimator)
                and self._choice_without_probe(state) is not None
            ):
                return {
                    "estimate": None,
                    "trace": {
                        "bin": None,
                        "evidence": {"estimator": "skipped: the choice is the same in every bin"},
                        "estimate_spent": Usage().as_dict(),
                        "estimate_reused": False,
                    },
                }
            if given is None:
                question: StrategyState = {"question": state["question"], "context": state.get("context", [])}
                result = await self.estimator.estimate(ctx, question, ledger)
            else:  # estimated earlier (batch allocation): book what the estimate cost
                result = given
                for item in given.spent.entries if given.spent is not None else ():
                    ledger.settle(None, item.usage, node=item.node, model=item.model)
            spent = ledger.total
            return {
                "estimate": result,
                "candidates": list(result.candidates),
                "ledger": ledger.snapshot(),
                "trace": {
                    "bin": result.bin,
                    "evidence": result.evidence,
                    "estimate_spent": spent.as_dict(),
                    "estimate_reused": given is not None,
                },
            }

        def lookup(state: RouterState) -> RouterState:
            snapshot = state["ledger"]
            ledger = Ledger.resume(snapshot)
            estimate_ = state["estimate"]
            left = ledger.budget.remaining(ledger.total, ledger.elapsed())
            given = state.get("action")
            generations = state.get("generation_budget")
            if given is not None:
                entry, why = given, "allocated by the batch router"
            elif estimate_ is None:  # the probe was skipped: the choice does not depend on the bin
                free = self._choice_without_probe(state)
                assert free is not None
                entry = free
                why = "the policy's choice is the same in every bin, so no probe was drawn"
            elif generations is not None:
                entry = policy.choose(estimate_.bin, generations)
                why = (
                    f"the policy's most accurate setting for bin {estimate_.bin} at generation budget N<={generations}"
                )
            elif left is None:
                return {
                    "action": None,
                    "trace": {**state["trace"], "choice": None, "why": "budget used up by the estimate"},
                }
            elif left.unlimited:
                entry = policy.choose(estimate_.bin, max(e.budget for e in policy.table))
                why = f"no budget limit: the table's entry at the largest budget N={entry.budget}"
            else:
                probe = Cost.of(ledger.total)
                entry = policy.choose(estimate_.bin, ledger.budget, self.unit, probe_spent=probe)
                limits = ledger.budget.model_dump(exclude_none=True)
                why = (
                    f"the most accurate eligible setting measured for bin {estimate_.bin} whose cost for this "
                    f"question, probe included ({probe.tokens:.0f} tokens spent), fits its budget {limits}"
                )
            return {
                "action": entry,
                "strategy": entry.action.strategy.model_dump(),
                "trace": {
                    **state["trace"],
                    "choice": {
                        "action": entry.action.key,
                        "model": entry.action.model,
                        "strategy": entry.action.strategy.model_dump(),
                        "budget": entry.budget,
                        "expected_accuracy": entry.accuracy,
                        "expected_cost": entry.cost.model_dump(),
                    },
                    "why": why,
                },
            }

        def child_run(state: RouterState) -> RouterState | _ChildRun:
            """What ``run`` does first: the update when nothing is left to run, else what to run."""
            entry = state.get("action")
            ledger = Ledger.resume(state["ledger"])
            left = ledger.budget.remaining(ledger.total, ledger.elapsed())
            if entry is None or left is None:
                if left is None and ledger.stopped_by is None:
                    ledger.stop(ledger.budget.exhausted_by(ledger.total, ledger.elapsed()) or "max_seconds")
                return {"ledger": ledger.snapshot()}
            request: StrategyInput = {
                "question": state["question"],
                "context": state.get("context", []),
                "budget": left,
            }
            return _ChildRun(entry.action, ledger, {**state["trace"], "probe_reused": 0}, request)

        def absorb(state: RouterState, child: _ChildRun, result: Mapping[str, Any]) -> RouterState:
            spent: LedgerSnapshot = result["ledger"]
            child.ledger.absorb(spent, prefix=child.action.strategy.strategy)
            return {
                "candidates": state["candidates"] + list(result["candidates"]),
                "strategy_answer": result.get("answer"),
                "ledger": child.ledger.snapshot(),
                "trace": {**child.trace, "run_spent": spent.total.as_dict()},
            }

        async def run(state: RouterState) -> RouterState:
            child = child_run(state)
            if not isinstance(child, _ChildRun):
                return child
            if policy.reuses_probe(child.action):
                return await self._rest_of_best_of_n(state, child.ledger, state["candidates"], child.trace)
            return absorb(state, child, await self._strategy_graph(child.action).ainvoke(child.request))

        def run_blocking(state: RouterState) -> RouterState:
            """``run`` under the sync API: the strategy graph runs with its own ``invoke``."""
            child = child_run(state)
            if not isinstance(child, _ChildRun):
                return child
            if policy.reuses_probe(child.action):
                return run_sync(self._rest_of_best_of_n(state, child.ledger, state["candidates"], child.trace))
            return absorb(state, child, self._strategy_graph(child.action).invoke(child.request))

        def answer(state: RouterState) -> RouterState:
            entry = state.get("action")
            candidates = state["candidates"]
            chosen, rule = routed_answer(policy, entry, candidates, state.get("strategy_answer"))
            snapshot = state["ledger"]
            return {
                "answer": chosen,
                "stopped_by": snapshot.stopped_by,
                "trace": {**state["trace"], "selection": rule, "spent": snapshot.total.as_dict()},
            }

        graph = StateGraph(RouterState, input_schema=RouterInput, output_schema=RouterOutput)
        graph.add_node("start", start)
        graph.add_node("estimate", dual_node(estimate))
        graph.add_node("lookup", lookup)
        graph.add_node("run", dual_node(run, sync=run_blocking))
        graph.add_node("answer", answer)
        graph.add_edge(START, "start")
        graph.add_edge("start", "estimate")
        graph.add_edge("estimate", "lookup")
        graph.add_edge("lookup", "run")
        graph.add_edge("run", "answer")
        graph.add_edge("answer", END)
        return graph.compile(name="router")

    async def estimate(self, question: str, budget: Budget | None = None) -> tuple[DifficultyEstimate, LedgerSnapshot]:
        """The difficulty estimate of one question, and what it cost."""
        ledger = Ledger(budget=budget or Budget())
        result = await self.estimator.estimate(self.ctx, {"question": question}, ledger)
        snapshot = ledger.snapshot()
        return replace(result, spent=snapshot), snapshot

    async def abatch(
        self,
        questions: Sequence[str],
        *,
        total: float,
        unit: BudgetUnit = "tokens",
        max_concurrency: int = 8,
    ) -> list[RouterOutput]:
        """Answer ``questions`` under ONE total budget of ``total`` in ``unit``.

        Every question is estimated first; the probes' spend counts against the total, and
        :func:`allocate_budgets` splits the rest (a best-of-N choice reuses its probe samples). Each
        question runs its allocated setting with its share (probe included) as a hard limit, so the
        batch never spends more than ``total``.
        """

        async def estimate(question: str) -> DifficultyEstimate:
            return (await self.estimate(question))[0]

        async def run(question: str, estimate_: DifficultyEstimate, share: Allocation) -> RouterOutput:
            request: RouterInput = {
                "question": question,
                "estimate": estimate_,
                "action": share.entry,
                "budget": share.budget(unit),
            }
            return cast(RouterOutput, await self.graph.ainvoke(request))

        return await estimate_allocate_run(
            questions,
            estimate=estimate,
            run=run,
            policy=self.policy,
            unit=unit,
            total=total,
            max_concurrency=max_concurrency,
        )

    def batch(
        self,
        questions: Sequence[str],
        *,
        total: float,
        unit: BudgetUnit = "tokens",
        max_concurrency: int = 8,
    ) -> list[RouterOutput]:
        """:meth:`abatch` from synchronous code (also inside a running event loop)."""
        return run_sync(self.abatch(questions, total=total, unit=unit, max_concurrency=max_concurrency))


def routed_answer(
    policy: Policy, entry: PolicyEntry | None, candidates: Sequence[Candidate], strategy_answer: str | None
) -> tuple[str | None, str]:
    """The router's answer, by the rule its policy was calibrated with; returns (answer, rule).

    Best-of-N that reuses the probe (:meth:`Policy.reuses_probe`) selects over the probe samples and
    the rest together, with its own selection (calibration read it from the first N samples of one
    pool, the probe's first). Any other strategy's answer is its own, as its graph selected it
    (revision's hierarchical rule, beam search's weighted vote over finished beams): calibration ran
    that graph alone. With no strategy run (the estimate used up the budget), the probe samples are
    all there is: weighted vote.
    """
    if entry is None:
        return select_answer(candidates, "weighted").answer, "weighted (probe only)"
    strategy = entry.action.strategy
    if policy.reuses_probe(entry.action):
        assert isinstance(strategy, BestOfNSpec)
        return select_answer(candidates, strategy.selection).answer, strategy.selection
    return strategy_answer, f"{strategy.strategy}'s own"
