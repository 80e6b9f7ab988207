"""Every strategy on one question, offline, on the scripted test double (no key, no network).

python examples/quickstart_offline.py
"""

from __future__ import annotations

import asyncio

from ttc_agents import (
    ArithmeticStepVerifier,
    BeamSearchSpec,
    BestOfNSpec,
    Budget,
    DVTSSpec,
    HybridSpec,
    RevisionSpec,
    StrategySpec,
    build_strategy_graph,
)

QUESTION = "What is 48 * 17 - 23 * 9 + 310?"
SPECS: list[StrategySpec] = [
    BestOfNSpec(n=16, selection="weighted", seed=0),
    BestOfNSpec(n=16, selection="majority", seed=0),
    BeamSearchSpec(n=16, width=4, seed=0),
    BeamSearchSpec(n=8, width=2, lookahead=1, seed=0),
    DVTSSpec(n=16, width=4, seed=0),
    RevisionSpec(attempts=8, context=4, seed=0),
    HybridSpec(n=16, sequential_ratio=1.0, seed=0),
]


async def main() -> None:
    print(f"question: {QUESTION}  (true answer: {48 * 17 - 23 * 9 + 310})")
    for spec in SPECS:
        graph = build_strategy_graph(spec, model="scripted/arith-hard", verifier=ArithmeticStepVerifier())
        result = await graph.ainvoke({"question": QUESTION, "budget": Budget(max_samples=200)})
        usage = result["ledger"].total
        print(
            f"{spec.strategy:12} -> {result['answer']!s:>6}   samples={usage.samples:3}  "
            f"tokens={usage.total_tokens:5}  stopped_by={result['stopped_by']}"
        )


if __name__ == "__main__":
    asyncio.run(main())
