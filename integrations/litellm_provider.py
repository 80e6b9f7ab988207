"""A LiteLLM provider ``ttc``: ``litellm.acompletion(model="ttc/<workflow>", messages=...)`` runs a workflow.

The workflow (router or fixed strategy) answers the last user message, with the earlier messages
as context, and the reply is an ordinary ``ModelResponse``: one choice with the selected answer,
and ``usage`` summing the tokens of EVERY model call the workflow made (samples, probes and
verifier calls). ``response._hidden_params["response_cost"]`` is the workflow's USD spend and
``response._hidden_params["ttc"]`` holds strategy, difficulty bin, ledger and ``stopped_by``.

In code::

    from ttc_agents.integrations.litellm_provider import register_ttc_provider

    register_ttc_provider("workflows.yaml")             # or a dict {name: compiled graph}
    response = await litellm.acompletion(model="ttc/offline", messages=[{"role": "user", "content": "..."}])

``completion`` (sync) and ``stream=True`` (the answer as one chunk, with usage) work too. A per-request
budget goes in the body: ``budget={"max_usd": 0.01}`` (or ``extra_body={"budget": ...}`` from the
OpenAI client). Tools are refused with a 400 error: the provider selects among sampled answers and
never calls tools.

LiteLLM proxy (``config.yaml``; the workflows file comes from ``TTC_WORKFLOWS``)::

    model_list:
      - model_name: math-support                 # what clients ask for
        litellm_params:
          model: ttc/math-support                # ttc/<workflow name in TTC_WORKFLOWS>
    litellm_settings:
      custom_provider_map:
        - {"provider": "ttc", "custom_handler": ttc_agents.integrations.litellm_provider.ttc_provider}

    TTC_WORKFLOWS=/path/to/workflows.yaml litellm --config config.yaml
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable
from litellm.types.utils import ModelResponse, Usage

from ttc_agents._apps.workflow import Workflow, WorkflowConfigError, load_workflow, load_workflows
from ttc_agents._core.budget import Budget, LedgerSnapshot
from ttc_agents._llm.custom_llm import StreamingCustomLLMAdapter, custom_llm_error
from ttc_agents._llm.litellm import litellm
from ttc_agents._llm.sync import run_sync

from ._common import (
    TOOLS_MESSAGE,
    graph_label,
    result_metadata,
    run_config,
    split_conversation,
)

__all__ = ["PROVIDER", "TTCProvider", "register_ttc_provider", "ttc_provider"]

PROVIDER = "ttc"

WorkflowSource = str | os.PathLike[str] | Mapping[str, Runnable[Any, Any] | Workflow]
"""A workflow YAML file, or a mapping from names to compiled graphs or :class:`Workflow` objects."""


class TTCProvider(StreamingCustomLLMAdapter):
    """The LiteLLM handler of the ``ttc`` provider: ``ttc/<name>`` runs the workflow ``name``.

    ``workflows`` is a workflow YAML file or a mapping ``{name: compiled graph | Workflow}``; None
    reads the file named by the ``TTC_WORKFLOWS`` environment variable when the first request comes.
    Graphs are built once per name and reused.
    """

    def __init__(self, workflows: WorkflowSource | None = None, *, gateway: Any = None) -> None:
        super().__init__()
        self._source = workflows
        self._gateway = gateway
        self._graphs: dict[str, Runnable[Any, Any]] = {}
        self._lock = threading.Lock()

    def configure(self, workflows: WorkflowSource | None = None, *, gateway: Any = None) -> None:
        """Point the provider at other workflows (forgetting graphs built so far)."""
        with self._lock:
            self._source = workflows
            self._gateway = gateway
            self._graphs.clear()

    def names(self) -> list[str]:
        """The workflow names this provider serves."""
        source = self._resolved_source()
        if isinstance(source, Mapping):
            return sorted(source)
        return sorted(load_workflows(source))

    def _resolved_source(self) -> WorkflowSource:
        if self._source is not None:
            return self._source
        path = os.environ.get("TTC_WORKFLOWS")
        if not path:
            raise custom_llm_error(
                500,
                "ttc provider: no workflows configured; set TTC_WORKFLOWS to a workflow YAML file or call "
                "register_ttc_provider(workflows=...)",
            )
        return path

    def graph(self, name: str) -> Runnable[Any, Any]:
        """The compiled graph of workflow ``name`` (built on first use)."""
        with self._lock:
            if name in self._graphs:
                return self._graphs[name]
            source = self._resolved_source()
            if isinstance(source, Mapping):
                if name not in source:
                    known = ", ".join(sorted(source))
                    raise custom_llm_error(404, f"ttc provider: no workflow {name!r}; known: {known}")
                item = source[name]
                graph = item.build(gateway=self._gateway) if isinstance(item, Workflow) else item
            else:
                path = Path(source)
                try:
                    graph = load_workflow(path, name).build(gateway=self._gateway, base_dir=path.parent)
                except WorkflowConfigError as exc:
                    raise custom_llm_error(404 if f"no workflow {name!r}" in str(exc) else 500, str(exc)) from exc
            self._graphs[name] = graph
            return graph

    # -- one request ----------------------------------------------------------------------------

    async def respond(
        self, model: str, messages: list[Any], optional_params: Mapping[str, Any], model_response: ModelResponse
    ) -> ModelResponse:
        """Run workflow ``model`` (``name`` or ``ttc/name``) on ``messages``; fill ``model_response``."""
        name = model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model
        if optional_params.get("tools") or optional_params.get("functions"):
            raise custom_llm_error(400, TOOLS_MESSAGE)
        try:
            question, context = split_conversation([_as_dict(m) for m in messages])
        except ValueError as exc:
            raise custom_llm_error(400, f"ttc provider: {exc}") from exc
        graph = self.graph(name)
        label = graph_label(graph)
        inputs: dict[str, Any] = {"question": question, "context": context}
        budget = _budget(optional_params)
        if budget is not None:
            inputs["budget"] = budget
        config = run_config(label, workflow=name, metadata={"ttc_entrypoint": "litellm"})
        result = dict(await graph.ainvoke(inputs, config))

        facts = result_metadata(result, label)
        ledger = result.get("ledger")
        total = ledger.total if isinstance(ledger, LedgerSnapshot) else None
        choice = model_response.choices[0]
        choice.message.content = result.get("answer") or ""
        choice.finish_reason = "stop"
        model_response.model = f"{PROVIDER}/{name}"
        model_response.usage = Usage(  # type: ignore[attr-defined]  # set dynamically, as LiteLLM's providers do
            prompt_tokens=total.prompt_tokens if total else 0,
            completion_tokens=total.completion_tokens if total else 0,
            total_tokens=total.total_tokens if total else 0,
        )
        model_response._hidden_params["response_cost"] = total.usd if total else 0.0
        model_response._hidden_params["ttc"] = facts
        return model_response

    def respond_sync(
        self, model: str, messages: list[Any], optional_params: Mapping[str, Any], model_response: ModelResponse
    ) -> ModelResponse:
        """Answer synchronously (safe inside a running event loop)."""
        response: ModelResponse = run_sync(self.respond(model, messages, optional_params, model_response))
        return response


def _as_dict(message: Any) -> dict[str, Any]:
    if isinstance(message, Mapping):
        return dict(message)
    dump = getattr(message, "model_dump", None)
    if callable(dump):
        return dict(dump())
    raise custom_llm_error(400, f"ttc provider: not a chat message: {message!r}")


def _budget(optional_params: Mapping[str, Any]) -> Budget | None:
    raw = optional_params.get("budget")
    extra = optional_params.get("extra_body")
    if raw is None and isinstance(extra, Mapping):
        raw = extra.get("budget")
    if raw is None:
        return None
    try:
        return raw if isinstance(raw, Budget) else Budget.model_validate(raw)
    except ValueError as exc:
        raise custom_llm_error(400, f"ttc provider: invalid budget: {exc}") from exc


ttc_provider = TTCProvider()
"""The handler the LiteLLM proxy config names; it reads ``TTC_WORKFLOWS`` on first use."""


def register_ttc_provider(
    workflows: WorkflowSource | None = None, *, gateway: Any = None, provider: str = PROVIDER
) -> TTCProvider:
    """Register the ``ttc`` provider with LiteLLM (idempotent) and return its handler.

    ``workflows``: a workflow YAML file or ``{name: compiled graph | Workflow}``; None keeps
    reading ``TTC_WORKFLOWS``. Afterwards ``litellm.acompletion(model="ttc/<name>", ...)`` runs
    workflow ``name``. ``provider`` registers the same handler under another prefix.

    A workflow file is read and validated here: a missing, unreadable or invalid file raises
    :class:`~ttc_agents.WorkflowConfigError` naming the path, and nothing is registered.
    """
    if isinstance(workflows, str | os.PathLike):
        _check_workflow_file(workflows)
    handler = ttc_provider if provider == PROVIDER else TTCProvider()
    handler.configure(workflows, gateway=gateway)
    litellm.custom_provider_map[:] = [item for item in litellm.custom_provider_map if item.get("provider") != provider]
    litellm.custom_provider_map.append({"provider": provider, "custom_handler": handler})
    return handler


def _check_workflow_file(path: str | os.PathLike[str]) -> None:
    """Every workflow of the file at ``path``, read and validated now (errors name the path)."""
    file = Path(path)
    if not file.is_file():
        problem = "is a directory, not a workflow YAML file" if file.is_dir() else "does not exist"
        raise WorkflowConfigError(
            f"register_ttc_provider: workflow file {os.fspath(path)!r} {problem} ({file.resolve()})"
        )
    load_workflows(file)
