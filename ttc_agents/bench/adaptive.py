"""Adaptive sampling against majority vote at the same maximum, on the scripted double and its populations.

For every setting (``arith``: ``scripted/arith``; ``pop-<name>``: a synthetic population of
:mod:`ttc_agents._llm.population`), every question of the graded arithmetic set and every seed:

1. **Paired.** One pool of ``max(max_n)`` samples in one request. Majority@M is the majority over the
   pool's first M samples; adaptive(M) is what :class:`~ttc_agents.AdaptiveSpec` (``max_n=M``) answers
   when its waves are the pool's consecutive slices (:func:`~ttc_agents.graphs.adaptive.replay_stop`:
   the graph's own stopping rule). Both read the same samples, so the accuracy difference is measured
   per question (a paired 95% interval), not drowned in sampling noise.
2. **The graph itself.** The adaptive graph run with its own seeds (one request per wave): its mean
   samples, tokens (one prompt per wave) and accuracy, against majority@M's tokens (a best-of-M request).

Prints one table and writes ``adaptive.json``::

    python -m ttc_agents.bench.adaptive --settings arith,pop-mathlike,pop-uniform,pop-hardtail \\
        --size 200 --seeds 3 --max-n 16,32,64 --out bench-adaptive
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttc_agents.bench._common import paired_interval

__all__ = ["format_report", "main"]

_GRAPH_SEED_OFFSET = 7919


def _model(setting: str) -> str:
    return f"scripted/{setting}"


async def _setting(setting: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from ttc_agents import AdaptiveSpec, Ledger, build_strategy_graph
    from ttc_agents._apps.calibrate import standalone_cost
    from ttc_agents._apps.datasets import arithmetic_problems, grade
    from ttc_agents._core.candidates import select_answer
    from ttc_agents._llm.gateway import get_default_gateway
    from ttc_agents._routing.moves import SearchContext, StrategyState, sample_solutions
    from ttc_agents.graphs.adaptive import replay_stop

    gateway = get_default_gateway()
    model = _model(setting)
    ctx = SearchContext.create(model, gateway=gateway)
    problems = arithmetic_problems(args.size, seed=args.problem_seed)
    sizes = sorted(args.max_n)
    pool_size = sizes[-1]
    rows: dict[int, dict[str, list[float]]] = {m: {} for m in sizes}

    def add(m: int, key: str, value: float) -> None:
        rows[m].setdefault(key, []).append(value)

    semaphore = asyncio.Semaphore(args.concurrency)

    async def unit(problem: Any, seed: int) -> None:
        async with semaphore:
            state: StrategyState = {"question": problem.question}
            ledger = Ledger()
            pool = await sample_solutions(
                ctx,
                ledger,
                ctx.messages(state, "generate"),
                pool_size,
                temperature=0.8,
                max_tokens=None,
                seed=seed,
                node="generate",
            )
            snapshot = ledger.snapshot()
            verdicts: dict[str | None, bool] = {}

            def right(answer: str | None) -> bool:
                if answer not in verdicts:
                    verdicts[answer] = grade(problem, answer)
                return verdicts[answer]

            for m in sizes:
                spec = AdaptiveSpec(
                    max_n=m, wave=min(args.wave, m), threshold=args.threshold, rule=args.rule, seed=seed
                )
                prefix = pool[:m]
                majority = right(select_answer(prefix, "majority").answer)
                drawn = replay_stop(spec, prefix)
                adaptive = right(select_answer(prefix[:drawn], spec.selection).answer)
                add(m, "majority", float(majority))
                add(m, "adaptive", float(adaptive))
                add(m, "difference", float(adaptive) - float(majority))
                add(m, "samples", float(drawn))
                add(m, "majority_tokens", standalone_cost(snapshot, m / len(pool)).tokens)
                if args.no_graph:
                    continue
                graph = build_strategy_graph(
                    spec.model_copy(update={"seed": seed + _GRAPH_SEED_OFFSET}), model=model, gateway=gateway
                )
                output = await graph.ainvoke({"question": problem.question})
                total = output["ledger"].total
                add(m, "graph_samples", float(total.samples))
                add(m, "graph_calls", float(total.calls))
                add(m, "graph_tokens", float(total.total_tokens))
                add(m, "graph_accuracy", float(right(output["answer"])))

    await asyncio.gather(*(unit(p, args.seed + s) for p in problems for s in range(args.seeds)))
    out = []
    for m in sizes:
        r = rows[m]
        mean = {k: math.fsum(v) / len(v) for k, v in r.items()}
        for key in ("graph_samples", "graph_calls", "graph_tokens", "graph_accuracy"):
            mean.setdefault(key, math.nan)
        difference, half_width = paired_interval(r["difference"])
        out.append(
            {
                "setting": setting,
                "max_n": m,
                "wave": min(args.wave, m),
                "threshold": args.threshold,
                "rule": args.rule,
                "runs": len(r["difference"]),
                "majority_accuracy": mean["majority"],
                "adaptive_accuracy": mean["adaptive"],
                "difference": difference,
                "difference_ci95": [difference - half_width, difference + half_width],
                "adaptive_samples": mean["samples"],
                "sample_saving": m / mean["samples"],
                "graph_samples": mean["graph_samples"],
                "graph_calls": mean["graph_calls"],
                "graph_sample_saving": m / mean["graph_samples"],
                "graph_accuracy": mean["graph_accuracy"],
                "graph_tokens": mean["graph_tokens"],
                "majority_tokens": mean["majority_tokens"],
                "token_saving": mean["majority_tokens"] / mean["graph_tokens"],
            }
        )
    return out


def format_report(results: Sequence[dict[str, Any]]) -> str:
    """One line per (setting, max_n)."""
    head = (
        f"{'setting':<14} {'M':>3} {'runs':>5} {'maj@M':>6} {'adapt':>6} {'diff [95% CI]':>22} "
        f"{'samples':>7} {'saving':>6} | {'graph':>6} {'waves':>5} {'acc':>6} {'tok saving':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        low, high = r["difference_ci95"]
        lines.append(
            f"{r['setting']:<14} {r['max_n']:>3} {r['runs']:>5} {r['majority_accuracy']:>6.3f} "
            f"{r['adaptive_accuracy']:>6.3f} {r['difference']:>+7.4f} [{low:+.4f}, {high:+.4f}] "
            f"{r['adaptive_samples']:>7.2f} {r['sample_saving']:>5.2f}x | {r['graph_samples']:>6.2f} "
            f"{r['graph_calls']:>5.2f} {r['graph_accuracy']:>6.3f} {r['token_saving']:>9.2f}x"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ttc_agents.bench.adaptive", description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default="arith,pop-mathlike,pop-uniform,pop-hardtail")
    parser.add_argument("--size", type=int, default=200, help="questions of the graded arithmetic set")
    parser.add_argument("--problem-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds per question")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-n", default="16,32,64", help="maxima M to compare at")
    parser.add_argument("--wave", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--rule", choices=("beta", "predictive"), default="beta")
    parser.add_argument("--no-graph", action="store_true", help="the paired replay only (no graph runs)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", default=None, help="directory for adaptive.json")
    args = parser.parse_args(argv)
    args.max_n = [int(x) for x in args.max_n.split(",")]
    from ttc_agents._llm.scripted import register_scripted_provider

    register_scripted_provider()
    results: list[dict[str, Any]] = []
    for setting in args.settings.split(","):
        results.extend(asyncio.run(_setting(setting.strip(), args)))
    print(format_report(results))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "adaptive.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
