"""ttc-agents graphs as subgraphs of your own LangGraph graphs.

Schema of every graph (strategy graphs and the router): see :mod:`ttc_agents.integrations.server`.

Mounting a graph directly as a node
    ``parent.add_node("ttc", graph)`` works: the graph reads only ``question``, ``context`` and
    ``budget`` from the parent state and writes back only its output keys. Its state declares no
    reducers, so a parent key ``candidates: Annotated[list, operator.add]`` receives each new
    candidate exactly once and the parent's ``messages`` are never copied. The parent's keys named
    like the output (``answer``, ``ledger``, ``strategy``, ...) are overwritten, and two such nodes
    cannot run in parallel branches (both write ``answer``).

Both ways work in sync parents (``invoke``, ``batch``, ``stream``) as in async ones.

Mounting through :func:`as_node`
    ``parent.add_node("ttc", as_node(graph, output_key="ttc", messages_key="messages"))`` reads the
    question from any key (or from the last user message of a message list), writes the whole
    result under ONE key of your choice, and optionally appends the answer as an ``AIMessage`` to
    your message list and the new candidates to a list key. Use it for message-based parents,
    for parallel branches, and whenever the parent already uses ``answer``/``ledger``/... names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import merge_configs

from ttc_agents._routing.moves import dual_node

from ._common import graph_label, result_metadata, run_config, split_conversation

__all__ = ["as_node"]


def as_node(
    graph: Runnable[Any, Any],
    *,
    input_key: str = "question",
    output_key: str | None = "ttc",
    messages_key: str | None = None,
    context_key: str | None = None,
    budget_key: str | None = None,
    candidates_key: str | None = None,
    name: str | None = None,
) -> Runnable[Any, Any]:
    """A node that runs ``graph`` on a parent state without sharing any key with it.

    The question is ``state[input_key]``, or, with ``messages_key``, the last message of
    ``state[messages_key]`` (LangChain messages or OpenAI dicts; it must be a user turn), the
    earlier messages becoming ``context``. ``context_key`` and ``budget_key`` name optional parent
    keys holding earlier turns and a budget.

    The node returns only NEW values: the graph's output under ``output_key`` (skipped when None),
    one ``AIMessage`` with the answer (``usage_metadata`` and ``response_metadata`` as ``ChatTTC``
    sets them) appended to ``messages_key``, and the new candidates appended to
    ``candidates_key``. So reducers such as ``operator.add`` or ``add_messages`` add each item once.

    The node runs under both LangGraph APIs: ``graph.ainvoke`` when the parent runs async, and
    ``graph.invoke`` when it runs sync (``invoke``, ``batch``, ``stream``), so a sync parent stays sync
    all the way down (its checkpointer included). Its name is ``name`` or ``ttc_<graph's name>``.
    """
    label = graph_label(graph)

    def request(state: Mapping[str, Any]) -> dict[str, Any]:
        if messages_key is not None:
            messages = list(state.get(messages_key) or ())
            dicts = [convert_to_openai_messages(m) if isinstance(m, BaseMessage) else dict(m) for m in messages]
            question, context = split_conversation(dicts)
        else:
            question = str(state[input_key])
            context = []
        if context_key is not None:
            context = [*list(state.get(context_key) or ()), *context]
        inputs: dict[str, Any] = {"question": question, "context": context}
        if budget_key is not None and state.get(budget_key) is not None:
            inputs["budget"] = state[budget_key]
        return inputs

    def update_of(result: dict[str, Any]) -> dict[str, Any]:
        update: dict[str, Any] = {}
        if output_key is not None:
            update[output_key] = result
        if messages_key is not None:
            ledger = result.get("ledger")
            total = ledger.total if ledger is not None else None
            update[messages_key] = [
                AIMessage(
                    content=result.get("answer") or "",
                    response_metadata=result_metadata(result, label),
                    usage_metadata={
                        "input_tokens": total.prompt_tokens if total else 0,
                        "output_tokens": total.completion_tokens if total else 0,
                        "total_tokens": total.total_tokens if total else 0,
                    },
                )
            ]
        if candidates_key is not None:
            update[candidates_key] = list(result.get("candidates") or ())
        return update

    async def node(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return update_of(dict(await graph.ainvoke(request(state), merge_configs(config, run_config(label)))))

    def node_sync(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return update_of(dict(graph.invoke(request(state), merge_configs(config, run_config(label)))))

    return dual_node(node, sync=node_sync, name=name or f"ttc_{label}")
