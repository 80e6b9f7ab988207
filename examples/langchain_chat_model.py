"""ChatTTC, a LangChain chat model backed by a ttc-agents graph, offline on the scripted test double.

    python examples/langchain_chat_model.py

Shows: invoke with usage and metadata, an LCEL chain, a prebuilt agent (no tools), progress through
astream_events, and the compute-optimal router as a chat model.
"""

from __future__ import annotations

import asyncio

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from ttc_agents import ArithmeticStepVerifier, BeamSearchSpec, Budget
from ttc_agents.graphs.router import build_router_graph
from ttc_agents.integrations import example_policy
from ttc_agents.integrations.chat_model import ChatTTC

QUESTION = "What is 48 * 17 - 23 * 9 + 310?"


async def main() -> None:
    # 1. A fixed strategy: beam search against the arithmetic step checker.
    llm = ChatTTC(model="scripted/arith", strategy=BeamSearchSpec(n=8, width=2, seed=0), verifier="arithmetic")
    message = await llm.ainvoke(QUESTION, budget=Budget(max_samples=64))
    meta = message.response_metadata
    print(f"ainvoke     -> {message.content}  usage={message.usage_metadata}  stopped_by={meta['stopped_by']}")

    # 2. Inside an LCEL chain.
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer with a number."), ("human", "What is {a} * {b} + 5?")]
    )
    chain = prompt | llm | StrOutputParser()
    print(f"LCEL chain  -> {await chain.ainvoke({'a': 12, 'b': 7})}")

    # 3. As the model of a prebuilt agent that calls no tools.
    agent = create_agent(model=llm, tools=[], system_prompt="You solve arithmetic.")
    state = await agent.ainvoke({"messages": [HumanMessage("What is 91 * 13 - 456?")]})
    print(f"agent       -> {state['messages'][-1].content}")

    # 4. Progress while it runs: custom events per graph stage (LangGraph's node events come too).
    async for event in llm.astream_events("What is 7 * 8 + 9?", version="v2"):
        if event["event"] == "on_custom_event" and event["name"] == "ttc_progress":
            spent = event["data"].get("spent", {})
            print(f"  progress: {event['data']['stage']:8} samples so far: {spent.get('samples', '-')}")

    # 5. The router: estimates difficulty, then runs what the policy says (an illustrative policy here).
    router = build_router_graph(example_policy(), verifier=ArithmeticStepVerifier(), verifier_name="arithmetic")
    routed = await ChatTTC(graph=router).ainvoke(QUESTION, budget=Budget(max_tokens=6000))
    meta = routed.response_metadata
    print(
        f"router      -> {routed.content}  bin={meta['bin']}  chose={meta['trace']['choice']['action']}  "
        f"tokens={routed.usage_metadata['total_tokens'] if routed.usage_metadata else 0}"
    )


def sync_calls() -> None:
    """The same model from synchronous code: invoke and batch."""
    llm = ChatTTC(model="scripted/arith", strategy=BeamSearchSpec(n=8, width=2, seed=0), verifier="arithmetic")
    print(f"invoke      -> {llm.invoke('What is 6 * 7 + 1?').content}")
    print(f"batch       -> {[m.content for m in llm.batch(['What is 2 + 3?', 'What is 9 * 9?'])]}")


if __name__ == "__main__":
    asyncio.run(main())
    sync_calls()
