"""Helpers shared by the integrations (ChatTTC, the LiteLLM provider, LangGraph Server, the subgraph
wrapper): a conversation as (question, context), a graph's run name, config and result facts.
Running a coroutine from synchronous code is :func:`ttc_agents._llm.sync.run_sync` (the graphs use it
too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig

from ttc_agents._core.budget import LedgerSnapshot

__all__ = [
    "TOOLS_MESSAGE",
    "graph_label",
    "result_metadata",
    "run_config",
    "split_conversation",
]

TOOLS_MESSAGE = (
    "ttc-agents does not call tools: it samples several answers to the last user turn and selects one "
    "with a verifier (test-time compute), so it cannot emit tool calls or structured output. Use a "
    "tool-calling chat model for the steps that call tools, and ttc-agents for the steps that must "
    "produce an answer (for example the final answer node of your graph)."
)


def _text(content: Any) -> str:
    """The text of an OpenAI-style message content: a string, or the text parts of a list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
        return "\n".join(parts)
    return str(content)


def _context_turn(message: Mapping[str, Any]) -> dict[str, Any]:
    """One earlier turn as a plain ``{"role", "content"}`` message any chat backend accepts.

    Tool traffic from other steps of a pipeline is kept as text: an assistant turn's tool calls are
    appended to its content, and a tool result becomes a user turn ``Tool result (id): ...``.
    """
    role = str(message.get("role", "user"))
    content = _text(message.get("content"))
    if role == "assistant" and message.get("tool_calls"):
        calls = "; ".join(
            f"{call.get('function', {}).get('name')}({call.get('function', {}).get('arguments')})"
            for call in message["tool_calls"]
        )
        content = f"{content}\n[called tools: {calls}]".strip()
    if role in ("tool", "function"):
        return {
            "role": "user",
            "content": f"Tool result ({message.get('tool_call_id') or message.get('name')}): {content}",
        }
    if role == "developer":
        role = "system"
    return {"role": role, "content": content}


def split_conversation(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """``(question, context)`` of OpenAI-style chat ``messages``.

    The question is the text of the last message, which must be a user turn; the context is every
    earlier turn as ``{"role", "content"}`` dicts (see :func:`_context_turn` for tool traffic).
    Raises ValueError for an empty conversation or one that does not end with a user turn.
    """
    if not messages:
        raise ValueError("ChatTTC needs at least one message: the user's question")
    last = messages[-1]
    if last.get("role") != "user":
        raise ValueError(
            f"the conversation must end with a user turn (the question to answer); it ends with a "
            f"{last.get('role')!r} message"
        )
    question = _text(last.get("content")).strip()
    if not question:
        raise ValueError("the last user turn is empty: there is no question to answer")
    return question, [_context_turn(m) for m in messages[:-1]]


def graph_label(graph: Any) -> str:
    """A short name for a graph's runs: its compiled name (``best_of_n``, ``router``, ...)."""
    name = getattr(graph, "name", None)
    if isinstance(name, str) and name and name != "LangGraph":
        return name
    bound = getattr(graph, "bound", None)  # a RunnableBinding around a compiled graph
    return graph_label(bound) if bound is not None else type(graph).__name__


def run_config(
    label: str,
    *,
    workflow: str | None = None,
    callbacks: Any = None,
    tags: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> RunnableConfig:
    """The RunnableConfig of one graph run: LangSmith-friendly name, tags and metadata.

    Run name ``ttc:<label>``; tags ``ttc-agents``, ``<label>`` (and ``workflow:<name>``); metadata
    ``ttc_strategy`` and ``ttc_workflow``. Tracing happens only when the environment enables it
    (``LANGSMITH_TRACING=true`` with a key); this function never connects anywhere.
    """
    all_tags = ["ttc-agents", label, *([f"workflow:{workflow}"] if workflow else []), *tags]
    config: RunnableConfig = {
        "run_name": f"ttc:{label}",
        "tags": list(dict.fromkeys(all_tags)),
        "metadata": {"ttc_strategy": label, "ttc_workflow": workflow, **(metadata or {})},
    }
    if callbacks is not None:
        config["callbacks"] = callbacks
    return config


def result_metadata(result: Mapping[str, Any], label: str) -> dict[str, Any]:
    """JSON-ready facts of a graph result: strategy, bin (router), ledger, stopped_by, answer."""
    ledger = result.get("ledger")
    trace = result.get("trace")
    out: dict[str, Any] = {
        "model_name": f"ttc/{label}",
        "graph": label,
        "answer": result.get("answer"),
        "strategy": result.get("strategy"),
        "bin": trace.get("bin") if isinstance(trace, Mapping) else None,
        "ledger": ledger.as_dict() if isinstance(ledger, LedgerSnapshot) else None,
        "stopped_by": result.get("stopped_by"),
        "candidates": len(result.get("candidates") or ()),
    }
    if isinstance(trace, Mapping):
        out["trace"] = dict(trace)
    return out
