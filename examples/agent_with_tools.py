"""An agent with tools whose model is ChatTTC, under ONE budget for the whole run, offline on the scripted
test double.

    python examples/agent_with_tools.py

Every model turn samples 8 responses in one request (the tools passed through LiteLLM) and votes over the
normalised tool calls; malformed or invalid calls cannot win. The run's budget (keyed by the LangGraph
``thread_id``) holds across every turn; when it is nearly spent a turn falls back to one sample and says
so. Then: accuracy of one sample vs the vote over 30 seeded questions on the double.
"""

from __future__ import annotations

import ast
import operator
import random
from fractions import Fraction

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from ttc_agents import BestOfNSpec, Budget
from ttc_agents.integrations import ChatTTC

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return Fraction(_OPS[type(node.op)](_eval(node.left), _eval(node.right)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand)
    raise ValueError("not arithmetic")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / and parentheses, e.g. 12 * 7 + 5."""
    try:
        value = _eval(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return "error: not an arithmetic expression"
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def main() -> None:
    # 1. One agent run, one budget: every turn of thread "demo" draws from the same 0.0003 USD.
    llm = ChatTTC(
        model="scripted/arith",
        strategy=BestOfNSpec(n=8, seed=0, max_tokens=64),
        verifier="arithmetic",
        run_budget=Budget(max_usd=0.0003),
    )
    agent = create_agent(model=llm, tools=[calculator])
    config = {"configurable": {"thread_id": "demo"}}
    state = agent.invoke({"messages": [HumanMessage("What is 48 * 17 + 310?")]}, config)
    for message in state["messages"]:
        if isinstance(message, AIMessage):
            turn = message.response_metadata["ttc_turn"]
            shown = message.tool_calls or message.content
            print(f"turn: {turn['kind']:<10} {turn['samples']} samples, {turn['invalid']} invalid -> {shown}")
    ledger = llm.run_ledger("demo")
    assert ledger is not None
    print(f"run spend: {ledger.total.samples} samples, {ledger.total.charged_usd:.6f} USD of 0.0003")

    # 2. More questions on the same thread: when the budget runs low a turn falls back to one sample
    #    (and says so) rather than overspend.
    for question in ("What is 7 * 8 + 3?", "What is 2 + 3 * 4?"):
        state = agent.invoke({"messages": [HumanMessage(question)]}, config)
        last = state["messages"][-1]
        note = last.response_metadata.get("ttc_fallback", "")
        print(f"{question} -> {last.content!r}  {note}")
    ledger = llm.run_ledger("demo")
    assert ledger is not None and ledger.total.charged_usd <= 0.0003
    print(f"run spend: {ledger.total.samples} samples, {ledger.total.charged_usd:.6f} USD (never above 0.0003)")

    # 3. Voting over tool calls vs one sample, on 30 seeded questions.
    rng = random.Random(16)
    questions = [(rng.randint(2, 40), rng.randint(2, 12), rng.randint(1, 99)) for _ in range(30)]
    for n in (1, 8):
        voter = ChatTTC(model="scripted/arith", strategy=BestOfNSpec(n=n, seed=0), run_budget=Budget(max_usd=0.001))
        loop = create_agent(model=voter, tools=[calculator])
        right = 0
        for i, (a, b, c) in enumerate(questions):
            out = loop.invoke(
                {"messages": [HumanMessage(f"What is {a} * {b} + {c}?")]}, {"configurable": {"thread_id": f"q{i}"}}
            )
            right += out["messages"][-1].content == str(a * b + c)
        print(f"{n} sample(s) per turn: accuracy {right / len(questions):.2f}")


if __name__ == "__main__":
    main()
