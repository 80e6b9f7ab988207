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
``abatch``, ``stream``/``astream`` (the final answer arrives as one message when the graph is done;
progress shows in ``astream_events``: LangGraph's events of every graph node, plus custom events
``ttc_progress`` per stage and ``ttc_result`` at the end), ``with_retry``, ``with_fallbacks``, LCEL chains and
prebuilt agents that call no tools. The message carries ``usage_metadata`` (tokens of EVERY call
the graph made, verifier calls included) and ``response_metadata`` (``strategy``, ``bin`` for the
router, ``ledger``, ``stopped_by``, ``answer``). A per-call budget: ``llm.invoke(msgs,
budget=Budget(max_usd=0.01))``; ``stop`` sequences cut the returned text.

Not supported: tool calling (``bind_tools`` raises :class:`ToolCallingNotSupportedError`) and
therefore ``with_structured_output``; sampling parameters per call (``temperature`` etc.: they
belong to the strategy spec). ChatTTC *selects* among sampled answers; it never emits tool calls.

Every graph run is named ``ttc:<strategy>`` (``ttc:router`` for the router) and tagged
``ttc-agents`` and ``<strategy>``, with metadata naming the strategy and workflow, so LangSmith
traces are easy to filter; nothing is sent anywhere unless the environment enables tracing.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManager, AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.callbacks.base import BaseCallbackManager
from langchain_core.callbacks.manager import adispatch_custom_event
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.pregel import Pregel
from pydantic import ConfigDict, Field, model_validator

from ttc_agents._core.budget import Budget, LedgerSnapshot
from ttc_agents._core.candidates import Candidate
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
    """Raised by :meth:`ChatTTC.bind_tools` (and so ``with_structured_output``)."""


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
        if given == ["workflow/config"]:
            if self.workflow is None or self.config is None:
                raise ValueError("workflow= and config= go together: the workflow's name and its YAML file")
            from ttc_agents._apps.workflow import load_workflow

            path = Path(self.config)
            self.graph = load_workflow(path, self.workflow).build(gateway=self.gateway, base_dir=path.parent)
            return self
        if self.model is None or self.strategy is None:
            raise ValueError("model= and strategy= go together: a LiteLLM model and a strategy spec")
        from ttc_agents.graphs import build_strategy_graph
        from ttc_agents.verifiers._factory import make_verifier

        verifier = (
            make_verifier(self.verifier, gateway=self.gateway) if isinstance(self.verifier, str) else self.verifier
        )
        self.graph = build_strategy_graph(self.strategy, model=self.model, verifier=verifier, gateway=self.gateway)
        return self

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

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Refuse tools: ChatTTC selects among sampled answers and never emits tool calls.

        An empty tool list is accepted (and ignored), as agent frameworks sometimes bind one.
        """
        if not tools:
            return self
        raise ToolCallingNotSupportedError(f"ChatTTC.bind_tools: {TOOLS_MESSAGE}")

    # -- generation -----------------------------------------------------------------------------

    async def _arun(
        self, messages: list[BaseMessage], stop: list[str] | None, callbacks: Any, **kwargs: Any
    ) -> AIMessage:
        budget = kwargs.pop("budget", None) or self.budget
        kwargs.pop("stream", None)
        if kwargs:
            raise TypeError(
                f"ChatTTC got unsupported call arguments {sorted(kwargs)}: sampling parameters belong to the "
                "strategy spec; per call only `budget` and `stop` are accepted"
            )
        question, context = split_conversation(convert_to_openai_messages(messages))
        inputs: dict[str, Any] = {"question": question, "context": context}
        if budget is not None:
            inputs["budget"] = budget if isinstance(budget, Budget) else Budget.model_validate(budget)
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
        return AIMessage(
            content=_cut_at_stop(text, stop),
            usage_metadata=_usage(result),
            response_metadata={**facts, "finish_reason": "stop"},
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        callbacks = child_callbacks(run_manager)
        message = await self._arun(messages, stop, callbacks, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=dict(message.response_metadata))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        callbacks = child_callbacks(run_manager)
        message = run_sync(self._arun(messages, stop, callbacks, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=dict(message.response_metadata))
