"""What every strategy graph shares: its state, its context, and the moves of a search.

The graph modules in ``ttc_agents.graphs`` wire these moves into LangGraph state machines: sample
full solutions, extend partial solutions by one step, score candidates with the verifier, select
the answer. Each move books its model calls in the run's ledger, which travels in the state as an
immutable snapshot. The nodes that call models are async; :func:`dual_node` gives each a sync path
too, so every graph also runs under LangGraph's sync API (``invoke``, ``batch``, ``stream``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, Required, TypedDict

from langchain_core.runnables import Runnable
from langgraph._internal._runnable import RunnableCallable
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from ttc_agents._core.answers import extract_answer, split_steps
from ttc_agents._core.budget import Budget, BudgetLimit, Ledger, LedgerSnapshot
from ttc_agents._core.candidates import Aggregation, Candidate, Selection, UnjudgedScore, aggregate_scores
from ttc_agents._core.specs import TreeSearchSpec
from ttc_agents._core.thinking import Thinking
from ttc_agents._llm.gateway import Gateway, Message, Sample, gather_or_cancel, get_default_gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents._llm.sync import run_sync
from ttc_agents._routing.direct import compile_direct
from ttc_agents.prompts import render_prompt
from ttc_agents.verifiers._base import CandidateVerifier, ScoreFunction, Verifier, as_verifier
from ttc_agents.verifiers._confidence import TOKENS_META_KEY, token_trace

__all__ = [
    "SearchContext",
    "StrategyInput",
    "StrategyOutput",
    "StrategyState",
    "best_so_far",
    "dual_node",
    "extend_by_one_step",
    "finish",
    "grow_tree",
    "has_final_answer",
    "roll_out",
    "sample_solutions",
    "score_candidates",
    "score_fresh",
    "start_run",
    "tree_search_graph",
]


class StrategyInput(TypedDict, total=False):
    """What a strategy graph takes: the question, optional earlier turns, an optional budget."""

    question: Required[str]
    context: list[dict[str, Any]]
    budget: Budget | dict[str, Any] | None


class StrategyOutput(TypedDict, total=False):
    """What a strategy graph returns."""

    answer: str | None
    candidates: list[Candidate]
    ledger: LedgerSnapshot
    stopped_by: BudgetLimit | None
    strategy: dict[str, Any]


class StrategyState(StrategyOutput, total=False):
    """Input, output, and the search's working keys (all optional in a node's update)."""

    question: str
    context: list[dict[str, Any]]
    budget: Budget | dict[str, Any] | None
    frontier: list[Candidate]
    fresh: list[Candidate]
    round: int


@dataclass(frozen=True, slots=True)
class SearchContext:
    """The run-independent things a strategy needs: model, verifier, gateway, prompt overrides."""

    model: ModelSpec
    verifier: Verifier | None = None
    gateway: Gateway = field(default_factory=get_default_gateway)
    prompts: Mapping[str, str] = field(default_factory=dict)
    budget: Budget | None = None

    @classmethod
    def create(
        cls,
        model: ModelSpec | str,
        verifier: Verifier | ScoreFunction | None = None,
        *,
        gateway: Gateway | None = None,
        prompts: Mapping[str, str] | None = None,
        budget: Budget | None = None,
        thinking: Thinking | None = None,
    ) -> SearchContext:
        """The context of one strategy graph; ``thinking`` (a strategy spec's) overrides the model's own."""
        spec = ModelSpec.of(model)
        if thinking is not None:
            spec = spec.model_copy(update={"thinking": thinking})
        return cls(
            model=spec,
            verifier=None if verifier is None else as_verifier(verifier),
            gateway=gateway or get_default_gateway(),
            prompts=dict(prompts or {}),
            budget=budget,
        )

    def fresh_ledger(self, budget: Budget | dict[str, Any] | None) -> LedgerSnapshot:
        """A new run's ledger: under the input's budget, else the context's, else none."""
        chosen = budget or self.budget or Budget()
        return Ledger(budget=Budget.model_validate(chosen) if isinstance(chosen, dict) else chosen).snapshot()

    def messages(self, state: StrategyState, prompt: str, **values: str) -> list[Message]:
        """The earlier turns of the conversation, then the filled prompt as the user's turn."""
        content = render_prompt(prompt, dict(self.prompts), question=state["question"], **values)
        return [*state.get("context", ()), {"role": "user", "content": content}]


_FINAL = re.compile(r"\\boxed\s*\{|\banswer is\b|^\s*####", re.IGNORECASE | re.MULTILINE)


def has_final_answer(step: str) -> bool:
    """True when a step states the final answer (boxed, 'the answer is', or '#### X')."""
    return _FINAL.search(step) is not None


def start_run(ctx: SearchContext, spec: BaseModel) -> RunStart:
    """The first node of every strategy graph: a fresh ledger under the run's budget, empty pools."""
    return RunStart(ctx, spec.model_dump())


@dataclass(frozen=True, slots=True)
class RunStart:
    """The ``start`` node: see :func:`start_run`."""

    ctx: SearchContext
    spec_dump: dict[str, Any]

    def __call__(self, state: StrategyState) -> StrategyState:
        return {
            "ledger": self.ctx.fresh_ledger(state.get("budget")),
            "candidates": [],
            "frontier": [],
            "fresh": [],
            "round": 0,
            "answer": None,
            "stopped_by": None,
            "strategy": self.spec_dump,
        }


def best_so_far(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Unfinished candidates with whatever answer their text gives, for a search cut short."""
    return [c if c.answer is not None else replace(c, answer=extract_answer(c.text)) for c in candidates]


async def sample_solutions(
    ctx: SearchContext,
    ledger: Ledger,
    messages: Sequence[Message],
    k: int,
    *,
    temperature: float,
    max_tokens: int | None,
    seed: int | None,
    node: str,
    attempt: int | None = None,
    prompt_tokens: int | None = None,
) -> list[Candidate]:
    """``k`` full solutions of one prompt in one request (fewer when the budget says so).

    ``prompt_tokens``: the size a server reported for these messages before (see :meth:`Gateway.sample`).
    When the verifier scores the model's own tokens (a ``top_logprobs`` attribute, e.g.
    :class:`~ttc_agents.verifiers.TokenConfidenceVerifier`), the request asks for logprobs and each
    candidate keeps its token trace in ``meta["tokens"]``."""
    top_logprobs = getattr(ctx.verifier, "top_logprobs", None)
    wants_tokens = isinstance(top_logprobs, int)
    extra: dict[str, Any] = {"logprobs": True, "top_logprobs": top_logprobs or None} if wants_tokens else {}
    batch = await ctx.gateway.sample(
        ctx.model,
        messages,
        k,
        ledger=ledger,
        node=node,
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        prompt_tokens=prompt_tokens,
        **extra,
    )
    return [
        Candidate(
            steps=tuple(split_steps(s.text)),
            answer=_solution_answer(s),
            finished=True,
            attempt=attempt,
            meta={
                **({TOKENS_META_KEY: token_trace(s.logprobs)} if wants_tokens and s.logprobs else {}),
                **({"truncated": True} if s.truncated else {}),
            },
        )
        for s in batch.samples
    ]


def _solution_answer(sample: Sample) -> str | None:
    """The final answer of a full solution. One cut by the length limit ends mid-step, so the number
    it happens to end with is no answer: it has one only when a complete line before the cut states it
    (so a sample whose reasoning used the whole cap, :attr:`Sample.truncated`, has none)."""
    if sample.finish_reason != "length":
        return extract_answer(sample.text)
    complete = sample.text.rpartition("\n")[0]
    return extract_answer(complete) if has_final_answer(complete) else None


async def extend_by_one_step(
    ctx: SearchContext,
    ledger: Ledger,
    state: StrategyState,
    prefixes: Sequence[Candidate],
    per_prefix: int,
    *,
    temperature: float,
    delimiter: str,
    max_tokens: int,
    seed: int | None,
    node: str = "expand",
) -> list[Candidate]:
    """Each prefix extended by ``per_prefix`` sampled next steps: one request (with n) per prefix."""

    async def extend(prefix: Candidate) -> list[Candidate]:
        steps_text = "\n".join(prefix.steps) if prefix.steps else "(none)"
        batch = await ctx.gateway.sample(
            ctx.model,
            ctx.messages(state, "step_generate", steps=steps_text),
            per_prefix,
            ledger=ledger,
            node=node,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            stop=[delimiter] if delimiter else None,
        )
        out = []
        for s in batch.samples:
            new_steps = [step for step in split_steps(s.text, delimiter or None) if step]
            steps = prefix.steps + tuple(new_steps)
            finished = not new_steps or any(has_final_answer(step) for step in new_steps)
            # A step the reasoning left empty at max_tokens ends the beam without an answer: it never wins.
            answer = extract_answer("\n".join(steps)) if finished and not s.truncated else None
            out.append(prefix.evolve(steps=steps, finished=finished, answer=answer, step_scores=(), score=None))
        return out

    groups = await gather_or_cancel(*(extend(p) for p in prefixes))  # one failure cancels the siblings
    return [c for group in groups for c in group]


async def roll_out(
    ctx: SearchContext,
    ledger: Ledger,
    state: StrategyState,
    candidates: Sequence[Candidate],
    steps: int,
    *,
    delimiter: str,
    max_tokens: int,
) -> list[Candidate]:
    """Each candidate continued ``steps`` steps greedily (temperature 0): the lookahead of beam search.

    Costs one sample per unfinished candidate per step, N x k in all. A rollout the budget refuses
    stays where it is.
    """
    rollouts = list(candidates)
    for _ in range(steps):
        open_positions = [i for i, c in enumerate(rollouts) if not c.finished]
        if not open_positions or ledger.stopped_by is not None:
            break
        extended = await extend_by_one_step(
            ctx,
            ledger,
            state,
            [rollouts[i] for i in open_positions],
            1,
            temperature=0.0,
            delimiter=delimiter,
            max_tokens=max_tokens,
            seed=None,
            node="lookahead",
        )
        if len(extended) != len(open_positions):
            break
        for position, rollout in zip(open_positions, extended, strict=True):
            rollouts[position] = rollout
    return rollouts


async def grow_tree(ctx: SearchContext, ledger: Ledger, state: StrategyState, spec: TreeSearchSpec) -> list[Candidate]:
    """One round of tree search: N first steps from the root in ONE request at round 0, then every
    frontier beam extended by ``width`` next steps (one request with n=width per beam)."""
    round_ = state["round"]
    prefixes, per_prefix = ([Candidate(steps=())], spec.n) if round_ == 0 else (state["frontier"], spec.width)
    return await extend_by_one_step(
        ctx,
        ledger,
        state,
        prefixes,
        per_prefix,
        temperature=spec.temperature,
        delimiter=spec.step_delimiter,
        max_tokens=spec.step_max_tokens,
        seed=None if spec.seed is None else spec.seed + round_,
    )


async def score_fresh(
    ctx: SearchContext, ledger: Ledger, state: StrategyState, spec: TreeSearchSpec, *, lookahead: int = 0
) -> list[Candidate]:
    """The round's new candidates scored by the verifier, after a ``lookahead``-step greedy rollout."""
    fresh = state["fresh"]
    rollouts = None
    if lookahead:
        rollouts = await roll_out(
            ctx, ledger, state, fresh, lookahead, delimiter=spec.step_delimiter, max_tokens=spec.step_max_tokens
        )
    return await score_candidates(ctx, ledger, state["question"], fresh, spec.aggregation, rollouts=rollouts)


async def score_candidates(
    ctx: SearchContext,
    ledger: Ledger,
    question: str,
    candidates: Sequence[Candidate],
    aggregation: Aggregation,
    *,
    rollouts: Sequence[Candidate] | None = None,
) -> list[Candidate]:
    """Candidates with their verifier scores (unchanged when there is no verifier).

    With ``rollouts`` (lookahead), each candidate is scored by the steps of its rollout instead.
    """
    if ctx.verifier is None or not candidates:
        return list(candidates)
    judged = rollouts if rollouts is not None else candidates
    if isinstance(ctx.verifier, CandidateVerifier):  # scores more than the text (token logprobs)
        scores = await ctx.verifier.score_candidates(question, judged, ledger=ledger)
    else:
        scores = await ctx.verifier.score(question, [c.steps for c in judged], ledger=ledger)
    out = []
    for candidate, step_scores in zip(candidates, scores, strict=True):  # a rollout's scores judge its start
        judged_scores = tuple(map(float, step_scores))
        update: dict[str, Any] = {
            "step_scores": judged_scores[: len(candidate.steps)],
            "score": aggregate_scores(judged_scores, aggregation),
        }
        if any(isinstance(s, UnjudgedScore) for s in step_scores):  # the budget refused the verifier
            update["meta"] = {**candidate.meta, "unjudged": True}
        elif "unjudged" in candidate.meta:
            update["meta"] = {k: v for k, v in candidate.meta.items() if k != "unjudged"}
        out.append(candidate.evolve(**update))
    return out


def finish(state: StrategyState, candidates: list[Candidate], choice: Selection) -> StrategyState:
    """The last node's update: the selected answer, all candidates, and why the run stopped."""
    return {"answer": choice.answer, "candidates": candidates, "stopped_by": state["ledger"].stopped_by}


class AsyncNode(Protocol):
    """A graph node that calls models: the state in, its update out."""

    def __call__(self, state: StrategyState) -> Awaitable[StrategyState]: ...


class SyncNode(Protocol):
    """A graph node that only computes: the state in, its update out."""

    def __call__(self, state: StrategyState) -> StrategyState: ...


def dual_node(
    node: Callable[..., Awaitable[Any]], *, sync: Callable[..., Any] | None = None, name: str | None = None
) -> Runnable[Any, Any]:
    """The async graph node ``node`` with a synchronous path too: what ``StateGraph.add_node`` is given
    for every node that calls a model.

    LangGraph runs a node's async function under ``ainvoke``/``abatch``/``astream`` and its sync one
    under ``invoke``/``batch``/``stream``; a plain ``async def`` has no sync one, so a sync run (or a sync
    parent graph that mounts this one) fails with ``No synchronous function provided``. The sync path
    runs the same coroutine with :func:`~ttc_agents._llm.sync.run_sync` (on the library's background
    event loop, in a copy of the caller's context: safe inside a running loop and from any thread), so
    both paths make the same calls and bookings. A node that runs a graph of its own passes ``sync``, a
    path that calls that graph's ``invoke``: a sync run stays sync all the way down (a sync-only
    checkpointer such as ``SqliteSaver``, inherited by the inner graph, refuses async calls). The async
    path is ``node`` itself, wrapped as LangGraph wraps an ``async def`` (``RunnableCallable``, no extra
    trace run); LangGraph injects ``config``/``runtime`` into either path as their signatures ask.
    """
    if sync is None:

        @functools.wraps(node)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return run_sync(_awaited(node(*args, **kwargs)))

        sync = blocking
    return RunnableCallable(sync, node, name=name or getattr(node, "__name__", None), trace=False)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def tree_search_graph(
    name: str,
    ctx: SearchContext,
    spec: TreeSearchSpec,
    *,
    expand: AsyncNode,
    verify: AsyncNode,
    prune: SyncNode,
    route: Callable[[StrategyState], Literal["expand", "select"]],
    select: AsyncNode,
) -> CompiledStateGraph[StrategyState, None, StrategyInput, StrategyOutput]:
    """The wiring beam search and DVTS share, around their own moves::

    START -> start -> expand -> verify -> prune --route--> expand | select -> END
    """
    graph = StateGraph(StrategyState, input_schema=StrategyInput, output_schema=StrategyOutput)
    graph.add_node("start", start_run(ctx, spec))
    graph.add_node("expand", dual_node(expand))
    graph.add_node("verify", dual_node(verify))
    graph.add_node("prune", prune)
    graph.add_node("select", dual_node(select))
    graph.add_edge(START, "start")
    graph.add_edge("start", "expand")
    graph.add_edge("expand", "verify")
    graph.add_edge("verify", "prune")
    graph.add_conditional_edges("prune", route)
    graph.add_edge("select", END)
    return compile_direct(graph, name=name).with_config(recursion_limit=3 * spec.max_rounds + 10)
