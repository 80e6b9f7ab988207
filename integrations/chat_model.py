"""``ChatTTC``: a LangChain chat model that answers with a ttc-agents graph.

Put it wherever a pipeline has a chat model on a step that must produce an *answer* (not a tool
call): it runs a strategy graph (or the compute-optimal router) on the conversation's last user
turn, with the earlier turns as ``context``, and returns the selected answer as an ``AIMessage``::

    from ttc_agents import BestOfNSpec
    from ttc_agents.integrations.chat_model import ChatTTC

    llm = ChatTTC(model="openai/gpt-4o-mini", strategy=BestOfNSpec(n=8), verifier="prm:openai/gpt-4o-mini")
    llm = ChatTTC(workflow="math-support", config="workflows.yaml")     # a named workflow (router or fixed)
    llm = ChatTTC(graph=build_router_graph(policy, ...))               # any compiled ttc-agents graph

Supported: ``invoke`` (sync; safe inside a running event loop), ``ainvoke``, ``batch``,
``abatch``, ``stream``/``astream`` (the selected answer as chunks once it is selected: text word by
word, tool calls as ``tool_call_chunks``, then a last chunk with usage and metadata; the same chunks
reach streaming callbacks, so an agent's ``stream_mode="messages"`` streams them; progress shows in
``astream_events``: LangGraph's events of every graph node, plus custom events ``ttc_progress`` per
stage and ``ttc_result`` at the end), ``with_retry``, ``with_fallbacks``, LCEL chains and agents. The
message carries ``usage_metadata`` (tokens of EVERY call of the turn, verifier calls included) and
``response_metadata`` (``strategy``, ``bin`` for the router, ``ledger``, ``stopped_by``, ``answer``).
A per-call budget: ``llm.invoke(msgs, budget=Budget(max_usd=0.01))``; ``stop`` sequences cut the
returned text.

Tools: ``bind_tools`` (and so ``with_structured_output``, ``create_agent(tools=...)``, a ToolNode
loop) on a ChatTTC with a model (``model=``/``strategy=`` or ``workflow=``): each turn samples N
responses with the tools in ONE request through the gateway and selects by voting over normalised
tool calls, or over final answers for a text turn (:mod:`._tool_turns`); malformed or invalid calls
cannot win. ``run_budget`` is one budget for every call of an agent run, keyed by ``thread_id``
(:mod:`._runs`); a turn whose N samples no longer fit falls back to one sample
(``response_metadata["ttc_fallback"]``), and the run never overspends. v1 uses FIXED per-turn
settings (the same N, temperature and seed offset every turn): no per-turn difficulty estimate.

Not supported: sampling parameters per call (``temperature`` etc.: they belong to the strategy
spec); tool calls recorded in a ``ResponseStore`` (tool-bound requests are always sampled).

Every graph run is named ``ttc:<strategy>`` (``ttc:router`` for the router) and tagged
``ttc-agents`` and ``<strategy>``, with metadata naming the strategy and workflow, so LangSmith
traces are easy to filter; nothing is sent anywhere unless the environment enables tracing.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManager, AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.callbacks.base import BaseCallbackManager
from langchain_core.callbacks.manager import adispatch_custom_event
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_openai_messages
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.pregel import Pregel
from pydantic import ConfigDict, Field, PositiveInt, PrivateAttr, model_validator

from ttc_agents._core.answers import extract_answer, split_steps
from ttc_agents._core.budget import Budget, Ledger, LedgerSnapshot, Usage
from ttc_agents._core.candidates import Candidate, select_answer
from ttc_agents._core.specs import StrategySpec, parse_strategy
from ttc_agents._llm.models import ModelSpec
from ttc_agents._llm.sync import run_sync

from ._common import (
    TOOLS_MESSAGE,
    graph_label,
    result_metadata,
    run_config,
    split_conversation,
)
from ._runs import RunLedgers, RunState, run_key
from ._tool_turns import ToolBinding, TurnVote, bind_tool_specs, vote_turn

__all__ = [
    "TOOLS_MESSAGE",
    "ChatTTC",
    "ToolCallingNotSupportedError",
    "child_callbacks",
    "graph_label",
    "result_metadata",
    "run_config",
    "run_graph",
    "split_conversation",
]


class ToolCallingNotSupportedError(NotImplementedError):
    """Raised by :meth:`ChatTTC.bind_tools` (and so ``with_structured_output``) on a ChatTTC of ``graph=``
    alone: there is no model to sample tool calls from."""


# ---------------------------------------------------------------------------------------------------
# Running a graph as a run nested under the chat model's (shared helpers: ._common)
# ---------------------------------------------------------------------------------------------------


def child_callbacks(run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None) -> Any:
    """A callback manager for runs nested under a chat model's run (LLM run managers lack ``get_child``)."""
    if run_manager is None:
        return None
    manager = AsyncCallbackManager(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return manager


def _has_parent_run(callbacks: Any) -> bool:
    return isinstance(callbacks, BaseCallbackManager) and callbacks.parent_run_id is not None


def _progress(namespace: Sequence[str], node: str, update: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"stage": "/".join([*(part.split(":")[0] for part in namespace), node])}
    ledger = update.get("ledger") if isinstance(update, Mapping) else None
    if isinstance(ledger, LedgerSnapshot):
        data["spent"] = ledger.total.as_dict()
        data["stopped_by"] = ledger.stopped_by
    if isinstance(update, Mapping) and isinstance(update.get("trace"), Mapping) and "bin" in update["trace"]:
        data["bin"] = update["trace"]["bin"]
    return data


async def run_graph(graph: Runnable[Any, Any], inputs: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
    """Run ``graph`` on ``inputs`` as a run of its own and return its output.

    The graph does not become a LangGraph subgraph of a graph that happens to call this (an agent
    whose model is ``ChatTTC``): it runs outside the caller's LangGraph context (no shared
    checkpointer or stream), while ``config``'s callbacks still nest its runs under the caller's.
    When ``config`` carries a callback manager with a parent run (a chat model's run), every node's
    update is also reported as a custom event ``ttc_progress`` (``{"stage", "spent", "bin"?}``),
    nested strategy graphs of the router included, so ``astream_events`` shows progress.
    """
    context = contextvars.copy_context()
    context.run(var_child_runnable_config.set, None)
    return await asyncio.create_task(_run_graph(graph, dict(inputs), config), context=context)


async def _run_graph(graph: Runnable[Any, Any], inputs: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    callbacks = config.get("callbacks")
    if not isinstance(graph, Pregel) or not _has_parent_run(callbacks):
        return dict(await graph.ainvoke(inputs, config))
    final: dict[str, Any] | None = None
    async for namespace, mode, chunk in graph.astream(
        inputs, config, stream_mode=["updates", "values"], subgraphs=True
    ):
        if mode == "values" and not namespace and isinstance(chunk, Mapping):
            final = dict(chunk)
        elif mode == "updates" and isinstance(chunk, Mapping):
            for node, update in chunk.items():
                await adispatch_custom_event(
                    "ttc_progress", _progress(namespace, node, update), config={"callbacks": callbacks}
                )
    if final is None:
        raise RuntimeError(f"graph {graph_label(graph)!r} produced no output")
    keys = graph.output_channels
    return {k: v for k, v in final.items() if k in keys} if isinstance(keys, Sequence) else final


def _chosen(candidates: Sequence[Candidate], answer: str | None) -> Candidate | None:
    """The best-scored candidate that reached ``answer``."""
    matching = [c for c in candidates if answer is not None and c.answer == answer]
    if not matching:
        return None
    return max(matching, key=lambda c: float("-inf") if c.score is None else c.score)


def _usage(result: Mapping[str, Any]) -> UsageMetadata:
    ledger = result.get("ledger")
    if not isinstance(ledger, LedgerSnapshot):
        return UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)
    total = ledger.total
    return UsageMetadata(
        input_tokens=total.prompt_tokens, output_tokens=total.completion_tokens, total_tokens=total.total_tokens
    )


def _cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    cuts = [i for s in stop or () if s and (i := text.find(s)) >= 0]
    return text[: min(cuts)] if cuts else text


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _tighter(a: Budget | None, b: Budget | None) -> Budget | None:
    """Each limit of ``a`` and ``b``, the smaller where both set one."""
    if a is None or b is None:
        return a if b is None else b
    merged = {
        name: min(x, y) if x is not None and y is not None else (x if y is None else y)
        for name in Budget.model_fields
        for x, y in [(getattr(a, name), getattr(b, name))]
    }
    return Budget.model_validate(merged)


def _openai_tool_choice(tool_choice: Any, binding: ToolBinding) -> Any:
    """LangChain's ``tool_choice`` forms in OpenAI's: ``any``/True -> ``required``, a tool name -> that tool."""
    if tool_choice is None or tool_choice in ("auto", "none", "required"):
        return tool_choice
    if tool_choice in ("any", True):
        return "required"
    if isinstance(tool_choice, str):
        if tool_choice not in binding.names:
            raise ValueError(f"tool_choice {tool_choice!r} names no bound tool; bound: {sorted(binding.names)}")
        return {"type": "function", "function": {"name": tool_choice}}
    if isinstance(tool_choice, Mapping):
        return dict(tool_choice)
    raise ValueError(f"unsupported tool_choice {tool_choice!r}")


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """The fixed per-turn settings of a tool-bound ChatTTC (v1: every turn samples the same way)."""

    model: ModelSpec
    n: int
    temperature: float = 0.8
    seed: int | None = None
    max_tokens: int | None = None
    verifier: Any = None
    aggregation: Any = "last"


_WORDS = re.compile(r"\S+\s*|\s+")


def _message_chunks(message: AIMessage) -> list[AIMessageChunk]:
    """``message`` as stream chunks: its text word by word, each tool call as one ``tool_call_chunk``,
    then a last chunk with ``usage_metadata`` and ``response_metadata``."""
    chunks = [AIMessageChunk(content=piece, id=message.id) for piece in _WORDS.findall(str(message.content or ""))]
    if message.tool_calls:
        chunks.append(
            AIMessageChunk(
                content="",
                id=message.id,
                tool_call_chunks=[
                    tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call.get("id"), index=i)
                    for i, call in enumerate(message.tool_calls)
                ],
            )
        )
    chunks.append(
        AIMessageChunk(
            content="",
            id=message.id,
            usage_metadata=message.usage_metadata,
            response_metadata=dict(message.response_metadata),
            chunk_position="last",
        )
    )
    return chunks


def _with_run_metadata(config: RunnableConfig | None) -> RunnableConfig:
    """``config`` with ``configurable``'s ``thread_id``/``ttc_run_id`` also in its metadata (where the
    chat model's run sees them), as LangGraph does for its nodes."""
    config = ensure_config(config)
    configurable = config.get("configurable") or {}
    lifted: dict[str, Any] = {k: configurable[k] for k in ("ttc_run_id", "thread_id") if k in configurable}
    if lifted:
        config["metadata"] = {**lifted, **(config.get("metadata") or {})}
    return config


# ---------------------------------------------------------------------------------------------------
# The chat model
# ---------------------------------------------------------------------------------------------------


class ChatTTC(BaseChatModel):
    """A chat model whose every answer is the output of a ttc-agents graph.

    Give exactly one of:

    - ``graph``: a compiled strategy or router graph (any Runnable taking ``{"question",
      "context", "budget"?}`` and returning ``answer`` and ``ledger``);
    - ``workflow`` and ``config``: a named workflow of a workflow YAML file (router or fixed strategy);
    - ``model`` and ``strategy`` (and optionally ``verifier``: a Verifier, a scoring function, or a
      spec string such as ``"arithmetic"`` or ``"prm:openai/gpt-4o-mini"``).

    ``budget`` is the default per-call budget (a call's ``budget=`` keyword overrides it);
    ``output="solution"`` returns the chosen sample's full text instead of the bare final answer.

    ``run_budget`` is ONE budget for every model call of one agent run (all turns, verifier calls
    included), keyed by the run (``thread_id``; see :mod:`ttc_agents.integrations._runs`); read a run's
    spend with :meth:`run_ledger`. A per-call ``budget`` then tightens a call further.

    Tools (``bind_tools``, and so ``with_structured_output``) need a model: ``model=`` or
    ``workflow=`` (its fixed strategy's model, else its first model). Every tool-bound turn samples
    ``turn_samples`` responses (default: the strategy's ``n``, else 8) in one request at the
    strategy's temperature and seed and selects by voting (see :mod:`._tool_turns`). v1 uses these
    FIXED per-turn settings: no per-turn difficulty estimate or policy decides what a turn spends.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    graph: Any = Field(default=None, exclude=True, description="a compiled ttc-agents graph")
    workflow: str | None = Field(default=None, description="name of a workflow in `config`")
    config: str | os.PathLike[str] | None = Field(default=None, description="workflow YAML file")
    model: ModelSpec | str | None = Field(default=None, description="LiteLLM model for `strategy`")
    strategy: StrategySpec | None = Field(default=None, description="a fixed strategy to run on `model`")
    verifier: Any = Field(default=None, exclude=True, description="Verifier, callable or verifier spec string")
    gateway: Any = Field(default=None, exclude=True, description="a ttc_agents.Gateway (default: the shared one)")
    budget: Budget | None = Field(default=None, description="default budget per call")
    output: Literal["answer", "solution"] = "answer"
    run_budget: Budget | None = Field(default=None, description="one budget for every call of one agent run")
    turn_samples: PositiveInt | None = Field(default=None, description="samples per tool-bound turn")
    max_runs: PositiveInt = Field(default=1024, description="run ledgers kept (least recently used go first)")
    turns: Any = Field(default=None, exclude=True, description="TurnSettings of tool-bound turns (derived)")

    _runs: RunLedgers = PrivateAttr(default_factory=RunLedgers)
    _bindings: dict[str, ToolBinding] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _parse_strategy(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("strategy"), Mapping):
            data = {**data, "strategy": parse_strategy(dict(data["strategy"]))}
        return data

    @model_validator(mode="after")
    def _build_graph(self) -> ChatTTC:
        given = [
            name
            for name, present in (
                ("graph", self.graph is not None),
                ("workflow/config", self.workflow is not None or self.config is not None),
                ("model/strategy", self.model is not None or self.strategy is not None),
            )
            if present
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of: graph=<compiled graph>, workflow=<name> with config=<yaml path>, "
                f"or model=<LiteLLM model> with strategy=<spec> (got: {', '.join(given) or 'none'})"
            )
        if self.graph is not None:
            if not isinstance(self.graph, Runnable):
                raise TypeError(f"graph must be a compiled graph (a Runnable), got {type(self.graph).__name__}")
            return self
        from ttc_agents.verifiers._base import as_verifier
        from ttc_agents.verifiers._factory import make_verifier

        if given == ["workflow/config"]:
            if self.workflow is None or self.config is None:
                raise ValueError("workflow= and config= go together: the workflow's name and its YAML file")
            from ttc_agents._apps.workflow import load_workflow

            path = Path(self.config)
            loaded = load_workflow(path, self.workflow)
            self.graph = loaded.build(gateway=self.gateway, base_dir=path.parent)
            main = loaded.models[loaded.model] if loaded.model is not None else next(iter(loaded.models.values()))
            self.turns = self._turn_settings(
                main, loaded.strategy, make_verifier(loaded.verifier, gateway=self.gateway)
            )
            return self
        if self.model is None or self.strategy is None:
            raise ValueError("model= and strategy= go together: a LiteLLM model and a strategy spec")
        from ttc_agents.graphs import build_strategy_graph

        verifier = (
            make_verifier(self.verifier, gateway=self.gateway) if isinstance(self.verifier, str) else self.verifier
        )
        self.graph = build_strategy_graph(self.strategy, model=self.model, verifier=verifier, gateway=self.gateway)
        self.turns = self._turn_settings(
            ModelSpec.of(self.model), self.strategy, None if verifier is None else as_verifier(verifier)
        )
        return self

    def _turn_settings(self, model: ModelSpec, strategy: StrategySpec | None, verifier: Any) -> TurnSettings:
        n = self.turn_samples or getattr(strategy, "n", None) or getattr(strategy, "max_n", None) or 8
        return TurnSettings(
            model=model,
            n=int(n),
            temperature=float(getattr(strategy, "temperature", 0.8)),
            seed=getattr(strategy, "seed", None),
            max_tokens=getattr(strategy, "max_tokens", None),
            verifier=verifier,
            aggregation=getattr(strategy, "aggregation", "last"),
        )

    # -- LangChain plumbing ---------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "ttc"

    @property
    def label(self) -> str:
        """What this model runs: the graph's name (``router``, ``best_of_n``, ...)."""
        return graph_label(self.graph)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"graph": self.label, "workflow": self.workflow, "output": self.output}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "ttc"
        params["ls_model_name"] = self.workflow or self.label
        return params

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind ``tools`` (anything LangChain's ``convert_to_openai_tool`` takes): every turn then samples
        N responses with the tools in ONE request and selects by voting over normalised tool calls
        (or over final answers for a text turn); malformed or invalid calls cannot win.

        ``tool_choice``: ``None``/``"auto"``, ``"none"``, ``"required"``/``"any"``/True, or a tool's name.
        An empty tool list is accepted (and ignored). Raises :class:`ToolCallingNotSupportedError` for a
        ChatTTC built from ``graph=`` alone (there is no model to sample tool calls from).
        """
        if not tools:
            return self
        if self.turns is None:
            raise ToolCallingNotSupportedError(
                "ChatTTC.bind_tools needs a model to sample tool calls from: build it with model= and "
                "strategy=, or workflow= and config= (a ChatTTC of graph= alone cannot call tools)"
            )
        binding = bind_tool_specs(tools)
        key = hashlib.sha256(json.dumps(binding.tools, sort_keys=True, default=str).encode()).hexdigest()[:16]
        if key not in self._bindings and len(self._bindings) >= 256:
            self._bindings.pop(next(iter(self._bindings)))
        self._bindings[key] = binding
        choice = _openai_tool_choice(tool_choice, binding)
        return self.bind(tools=list(binding.tools), tool_choice=choice, ttc_tools=key, **kwargs)

    def run_ledger(self, key: str) -> LedgerSnapshot | None:
        """What one run has spent so far: ``key`` is its ``thread_id`` (or ``ttc_run_id``, or root
        ``run_id``), None when no such run is kept."""
        for prefix in ("", "thread_id:", "ttc_run_id:", "run_id:"):
            snapshot = self._runs.snapshot(prefix + key)
            if snapshot is not None:
                return snapshot
        return None

    def reset_runs(self, key: str | None = None) -> None:
        """Forget one run's ledger (``key`` as in :meth:`run_ledger`), or every run's."""
        if key is None:
            self._runs.reset()
            return
        for prefix in ("", "thread_id:", "ttc_run_id:", "run_id:"):
            self._runs.reset(prefix + key)

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        return super().invoke(input, _with_run_metadata(config), **kwargs)

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        return await super().ainvoke(input, _with_run_metadata(config), **kwargs)

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        """The selected answer as chunks, once the turn has selected it (see :func:`_message_chunks`)."""
        yield from _message_chunks(self.invoke(input, config, **kwargs))

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        """The selected answer as chunks, once the turn has selected it: text word by word, tool calls
        as ``tool_call_chunks``, then a last chunk with the usage and metadata. Progress per stage shows
        in ``astream_events`` (custom ``ttc_progress`` events)."""
        for chunk in _message_chunks(await self.ainvoke(input, config, **kwargs)):
            yield chunk

    # -- generation -----------------------------------------------------------------------------

    async def _arun(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        callbacks: Any,
        key: tuple[str | None, object | None] = (None, None),
        **kwargs: Any,
    ) -> AIMessage:
        budget = kwargs.pop("budget", None) or self.budget
        kwargs.pop("stream", None)
        tools = kwargs.pop("tools", None)
        tool_choice = kwargs.pop("tool_choice", None)
        binding_key = kwargs.pop("ttc_tools", None)
        for ignored in ("parallel_tool_calls", "strict", "ls_structured_output_format"):
            kwargs.pop(ignored, None)
        if kwargs:
            raise TypeError(
                f"ChatTTC got unsupported call arguments {sorted(kwargs)}: sampling parameters belong to the "
                "strategy spec; per call only `budget` and `stop` are accepted"
            )
        call_budget = (
            None if budget is None else budget if isinstance(budget, Budget) else Budget.model_validate(budget)
        )
        binding = None
        if tools:
            binding = self._bindings.get(str(binding_key)) or bind_tool_specs(tools)
        if self.run_budget is None:
            message = await self._turn(messages, stop, callbacks, call_budget, binding, tool_choice, None)
            meta = {k: v for k, v in message.response_metadata.items() if k != "ttc_turn_ledger"}
            return message.model_copy(update={"response_metadata": meta})
        run = self._runs.get(key[0], self.run_budget, max_runs=self.max_runs, anchor=key[1])
        async with run.lock():
            ledger = run.ledger
            left = ledger.budget.remaining(ledger.total, ledger.elapsed())
            limit = ledger.budget.exhausted_by(ledger.total, ledger.elapsed())
            if left is None or ledger.overrun_tokens:
                ledger.stop(limit or "server_ignored_max_tokens")
                message = self._exhausted(limit or "server_ignored_max_tokens")
            else:
                message = await self._turn(
                    messages, stop, callbacks, _tighter(left, call_budget), binding, tool_choice, run
                )
            turn_ledger = message.response_metadata.get("ttc_turn_ledger")
            if isinstance(turn_ledger, LedgerSnapshot):
                ledger.absorb(turn_ledger, prefix="tools" if binding is not None else self.label)
            run.turns += 1
            if message.response_metadata.get("ttc_fallback"):
                run.fallbacks += 1
            meta = {k: v for k, v in message.response_metadata.items() if k != "ttc_turn_ledger"}
            snapshot = ledger.snapshot()
            meta["ttc_run"] = {
                "key": key[0],
                "turns": run.turns,
                "fallbacks": run.fallbacks,
                "spent": snapshot.total.as_dict(),
                "budget": ledger.budget.model_dump(exclude_none=True),
                "stopped_by": snapshot.stopped_by,
            }
            return message.model_copy(update={"response_metadata": meta})

    def _exhausted(self, limit: str) -> AIMessage:
        """The answer of a turn the run's budget leaves no sample for: empty, saying why."""
        return AIMessage(
            content="",
            usage_metadata=UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0),
            response_metadata={
                "model_name": f"ttc/{self.label}",
                "finish_reason": "stop",
                "stopped_by": limit,
                "ttc_fallback": f"the run's budget is spent ({limit}): no sample was drawn",
            },
        )

    async def _turn(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        callbacks: Any,
        budget: Budget | None,
        binding: ToolBinding | None,
        tool_choice: Any,
        run: RunState | None,
    ) -> AIMessage:
        if binding is not None:
            return await self._tool_turn(messages, stop, budget, binding, tool_choice, run, callbacks)
        return await self._graph_turn(messages, stop, callbacks, budget)

    async def _graph_turn(
        self, messages: list[BaseMessage], stop: list[str] | None, callbacks: Any, budget: Budget | None
    ) -> AIMessage:
        question, context = split_conversation(convert_to_openai_messages(messages))
        inputs: dict[str, Any] = {"question": question, "context": context}
        if budget is not None:
            inputs["budget"] = budget
        label = self.label
        metadata: dict[str, Any] = {"ttc_output": self.output}
        if inputs.get("budget") is not None:
            metadata["ttc_budget"] = inputs["budget"].model_dump(exclude_none=True)
        config = run_config(label, workflow=self.workflow, callbacks=callbacks, metadata=metadata)
        result = await run_graph(self.graph, inputs, config)
        facts = result_metadata(result, label)
        if _has_parent_run(callbacks):
            await adispatch_custom_event(
                "ttc_result",
                {k: facts[k] for k in ("graph", "answer", "strategy", "bin", "stopped_by", "ledger")},
                config={"callbacks": callbacks},
            )
        answer = result.get("answer")
        if self.output == "solution":
            chosen = _chosen(result.get("candidates") or (), answer)
            text = chosen.text if chosen is not None else (answer or "")
        else:
            text = answer or ""
        meta: dict[str, Any] = {**facts, "finish_reason": "stop"}
        if isinstance(result.get("ledger"), LedgerSnapshot):
            meta["ttc_turn_ledger"] = result["ledger"]
        return AIMessage(content=_cut_at_stop(text, stop), usage_metadata=_usage(result), response_metadata=meta)

    async def _tool_turn(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        budget: Budget | None,
        binding: ToolBinding,
        tool_choice: Any,
        run: RunState | None,
        callbacks: Any = None,
    ) -> AIMessage:
        """One tool-bound turn: N samples in one request, then the vote (see :mod:`._tool_turns`).
        Progress: custom events ``ttc_progress`` with stages ``tools/sample`` and ``tools/select``."""
        from ttc_agents._llm.gateway import get_default_gateway, prompt_token_bound, tools_token_bound

        settings: TurnSettings = self.turns
        gateway = self.gateway or get_default_gateway()
        spec = settings.model
        conversation = convert_to_openai_messages(messages)
        ledger = Ledger(budget=budget or Budget())
        max_tokens = settings.max_tokens or spec.max_tokens
        in_price, out_price = gateway.prices(spec)
        bound = prompt_token_bound(conversation) + tools_token_bound(binding.tools, tool_choice)
        fits, limit = ledger.grantable(
            settings.n,
            prompt_tokens=bound,
            max_completion_tokens=max_tokens,
            usd_per_prompt_token=in_price,
            usd_per_completion_token=out_price,
            flops_per_token=None if spec.parameters is None else 2.0 * spec.parameters,
        )
        fallback = None
        if fits == 0:
            ledger.stop(limit or "max_samples")
            message = self._exhausted(limit or "max_samples")
            return message.model_copy(
                update={"response_metadata": {**message.response_metadata, "ttc_turn_ledger": ledger.snapshot()}}
            )
        k = settings.n
        if fits < settings.n:
            k = 1
            ledger.stop(limit or "max_samples")  # a limit cut the turn short, as a shrunk reservation records
            fallback = f"the budget is nearly spent ({limit}): this turn drew one sample instead of {settings.n}"
        params: dict[str, Any] = {"tools": list(binding.tools)}
        if tool_choice is not None:
            params["tool_choice"] = tool_choice
        seed = None if settings.seed is None else settings.seed + (run.turns if run is not None else 0)
        batch = await gateway.sample(
            spec,
            conversation,
            k,
            ledger=ledger,
            node="turn",
            max_tokens=max_tokens,
            temperature=settings.temperature,
            seed=seed,
            **params,
        )
        progress = _has_parent_run(callbacks)
        if progress:
            await adispatch_custom_event(
                "ttc_progress",
                {"stage": "tools/sample", "samples": len(batch.samples), "spent": ledger.total.as_dict()},
                config={"callbacks": callbacks},
            )
        require = tool_choice == "required" or isinstance(tool_choice, Mapping)
        vote = vote_turn(batch.samples, binding, require_call=require)
        content, tool_calls = "", []
        chosen_answer: str | None = None
        if vote.kind == "tool_calls":
            tool_calls = [
                {
                    "name": call.name,
                    "args": call.args,
                    "id": call.id or f"call_{hashlib.sha256(repr((call.key, i)).encode()).hexdigest()[:16]}",
                    "type": "tool_call",
                }
                for i, call in enumerate(vote.calls)
            ]
        elif vote.kind == "text":
            content, chosen_answer = await self._select_text(conversation, batch.samples, vote, ledger)
        snapshot = ledger.snapshot()
        total = snapshot.total
        if progress:
            await adispatch_custom_event(
                "ttc_progress",
                {"stage": "tools/select", "kind": vote.kind, "votes": vote.votes, "spent": total.as_dict()},
                config={"callbacks": callbacks},
            )
        turn = {
            "kind": vote.kind,
            "requested": settings.n,
            "samples": len(batch.samples),
            "invalid": vote.invalid,
            "tool_samples": vote.tool_samples,
            "votes": vote.votes,
        }
        meta: dict[str, Any] = {
            "model_name": f"ttc/{self.label}",
            "graph": self.label,
            "finish_reason": "tool_calls" if tool_calls else "stop",
            "answer": chosen_answer,
            "ttc_turn": turn,
            "ledger": snapshot.as_dict(),
            "stopped_by": snapshot.stopped_by,
            "ttc_turn_ledger": snapshot,
        }
        if fallback is not None:
            meta["ttc_fallback"] = fallback
        return AIMessage(
            content=_cut_at_stop(content, stop),
            tool_calls=tool_calls,
            usage_metadata=_usage_of(total),
            response_metadata=meta,
        )

    async def _select_text(
        self, conversation: Sequence[Mapping[str, Any]], samples: Sequence[Any], vote: TurnVote, ledger: Ledger
    ) -> tuple[str, str | None]:
        """A text turn: best-of-N weighted over the text samples' final answers (verifier scores when
        one is configured, else majority). Returns the content and the selected answer."""
        settings: TurnSettings = self.turns
        texts = [str(samples[i].text) for i in vote.text]
        candidates = [Candidate(steps=tuple(split_steps(t)), answer=extract_answer(t), finished=True) for t in texts]
        if settings.verifier is not None and candidates:
            question = _last_user_text(conversation)
            scores = await settings.verifier.score(question, [c.steps for c in candidates], ledger=ledger)
            candidates = [c.scored(s, settings.aggregation) for c, s in zip(candidates, scores, strict=True)]
        selection = select_answer(candidates, "weighted")
        index = selection.index if selection.index is not None else 0
        if self.output == "answer" and selection.answer is not None:
            return selection.answer, selection.answer
        return texts[index], selection.answer

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        callbacks = child_callbacks(run_manager)
        key = run_key(run_manager.metadata if run_manager is not None else None)
        message = await self._arun(messages, stop, callbacks, key, **kwargs)
        if run_manager is not None and run_manager.handlers:
            message = message.model_copy(update={"id": message.id or f"lc_run-{run_manager.run_id}"})
            for chunk in _message_chunks(message)[:-1]:
                await run_manager.on_llm_new_token(str(chunk.content), chunk=ChatGenerationChunk(message=chunk))
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=dict(message.response_metadata))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        callbacks = child_callbacks(run_manager)
        key = run_key(run_manager.metadata if run_manager is not None else None)
        message = run_sync(self._arun(messages, stop, callbacks, key, **kwargs))
        if run_manager is not None and run_manager.handlers:
            message = message.model_copy(update={"id": message.id or f"lc_run-{run_manager.run_id}"})
            for chunk in _message_chunks(message)[:-1]:
                run_manager.on_llm_new_token(str(chunk.content), chunk=ChatGenerationChunk(message=chunk))
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=dict(message.response_metadata))


def _usage_of(total: Usage) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=total.prompt_tokens, output_tokens=total.completion_tokens, total_tokens=total.total_tokens
    )
