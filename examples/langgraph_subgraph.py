"""ttc-agents graphs as subgraphs of your own LangGraph graph, offline on the scripted test double.

    python examples/langgraph_subgraph.py

1. A compiled strategy graph mounted directly as a node: it reads `question` (and `context`,
   `budget`) and writes `answer`, `candidates`, `ledger`, ... back; the parent's `operator.add`
   lists receive each new item once.
2. The router and a strategy graph in parallel branches of a message-based graph through `as_node`,
   which writes each result under its own key and appends the answers as AIMessages.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from ttc_agents import ArithmeticStepVerifier, BeamSearchSpec, BestOfNSpec, Budget, build_strategy_graph
from ttc_agents.graphs.router import build_router_graph
from ttc_agents.integrations import as_node, example_policy

QUESTION = "What is 48 * 17 - 23 * 9 + 310?"


class Pipeline(TypedDict, total=False):
    question: str
    budget: Budget
    candidates: Annotated[list[Any], operator.add]
    log: Annotated[list[str], operator.add]
    answer: str | None
    ledger: Any
    stopped_by: str | None
    strategy: dict[str, Any]


class Chat(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    search: dict[str, Any]
    routed: dict[str, Any]


async def main() -> None:
    verifier = ArithmeticStepVerifier()
    search = build_strategy_graph(BeamSearchSpec(n=8, width=2, seed=0), model="scripted/arith", verifier=verifier)

    # 1. Mounted directly.
    builder = StateGraph(Pipeline)
    builder.add_node("intake", lambda state: {"log": [f"got: {state['question']}"]})
    builder.add_node("solve", search)
    builder.add_node(
        "report", lambda state: {"log": [f"answer {state['answer']} from {len(state['candidates'])} candidates"]}
    )
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "solve")
    builder.add_edge("solve", "report")
    builder.add_edge("report", END)
    result = await builder.compile().ainvoke({"question": QUESTION, "budget": Budget(max_samples=64)})
    print("direct mount:", result["log"], "| spent:", result["ledger"].total.as_dict())

    # 2. Through as_node, in parallel branches of a chat graph.
    router = build_router_graph(example_policy(), verifier=verifier, verifier_name="arithmetic")
    quick = build_strategy_graph(BestOfNSpec(n=8, seed=0), model="scripted/arith", verifier=verifier)
    chat = StateGraph(Chat)
    chat.add_node("search", as_node(quick, messages_key="messages", output_key="search"))
    chat.add_node("route", as_node(router, messages_key="messages", output_key="routed"))
    chat.add_edge(START, "search")
    chat.add_edge(START, "route")
    chat.add_edge(["search", "route"], END)
    state = await chat.compile().ainvoke({"messages": [HumanMessage(QUESTION)]})
    for message in state["messages"][1:]:
        meta = message.response_metadata
        print(f"as_node: {meta['graph']:10} -> {message.content}  bin={meta['bin']}  tokens={message.usage_metadata}")


if __name__ == "__main__":
    asyncio.run(main())
