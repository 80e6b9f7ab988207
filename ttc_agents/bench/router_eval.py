"""Held-out evidence for the router: router@N against best-of-N weighted at N, 2N and 4N.

Calibrates a policy on one split of a problem set, then on the held-out split runs, per question,
the router at generation budget N (difficulty probe included in its spend) and best-of-N weighted
at N, 2N and 4N, with the same model and verifier. Reports accuracy and tokens per difficulty bin
(the router's own estimate) and overall, writes ``router_eval.json`` and a plot of accuracy against
tokens.

    python -m ttc_agents.bench.router_eval --dataset 'arith?size=160&seed=1' --model scripted/arith \\
        --verifier arithmetic --budgets 2,4,8 --out bench-router
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

__all__ = ["main"]


async def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from ttc_agents import BestOfNSpec, ModelSpec, build_strategy_graph
    from ttc_agents._calibrate import calibrate
    from ttc_agents._datasets import grade, load_problems
    from ttc_agents.graphs.router import Router
    from ttc_agents.verifiers import make_verifier

    problems = load_problems(args.dataset)
    random.Random(args.seed).shuffle(problems)
    half = len(problems) // 2
    dev, held_out = problems[:half], problems[half:]
    budgets = [int(b) for b in args.budgets.split(",")]
    model = ModelSpec(name=args.model)
    verifier = make_verifier(args.verifier)
    grid_budgets = sorted({b for n in budgets for b in (1, 2, n, 2 * n, 4 * n)} | {4})
    result = await calibrate(
        dev,
        models=[model],
        verifier=verifier,
        budgets=grid_budgets,
        strategies=args.strategies.split(","),
        dataset=args.dataset,
        progress=True,
        verifier_name=args.verifier,
    )
    policy = result.policy
    router = Router(policy, models={model.name: model}, verifier=verifier, verifier_name=args.verifier)
    limit = asyncio.Semaphore(args.concurrency)
    rows: list[dict[str, Any]] = []
    total = len(held_out) * len(budgets) * 4
    with tqdm(total=total, desc="held-out", unit="run") as bar:

        async def run(problem: Any, method: str, n: int) -> None:
            async with limit:
                if method == "router":
                    out = await router.graph.ainvoke({"question": problem.question, "generation_budget": n})
                    bin_ = out["trace"]["bin"]
                else:
                    factor = {"bon@N": 1, "bon@2N": 2, "bon@4N": 4}[method]
                    graph = build_strategy_graph(
                        BestOfNSpec(n=factor * n, selection="weighted"), model=model, verifier=verifier
                    )
                    out = await graph.ainvoke({"question": problem.question})
                    bin_ = None
                rows.append(
                    {
                        "id": problem.id,
                        "method": method,
                        "N": n,
                        "bin": bin_,
                        "correct": grade(problem, out["answer"]),
                        "tokens": out["ledger"].total.total_tokens,
                        "samples": out["ledger"].total.samples,
                    }
                )
                bar.update(1)

        await asyncio.gather(
            *(run(p, m, n) for p in held_out for n in budgets for m in ("router", "bon@N", "bon@2N", "bon@4N"))
        )
    bins = {(r["id"], r["N"]): r["bin"] for r in rows if r["method"] == "router"}
    for row in rows:
        row["bin"] = bins[(row["id"], row["N"])]
    return {"dev": len(dev), "held_out": len(held_out), "policy_table": result.format_table(), "rows": rows}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy and mean tokens per (N, method, bin) and overall (bin None)."""
    groups: dict[tuple[int, str, int | None], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["N"], row["method"], row["bin"])].append(row)
        groups[(row["N"], row["method"], None)].append(row)
    out = []
    for (n, method, bin_), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        out.append(
            {
                "N": n,
                "method": method,
                "bin": bin_,
                "questions": len(group),
                "accuracy": sum(r["correct"] for r in group) / len(group),
                "tokens": sum(r["tokens"] for r in group) / len(group),
            }
        )
    return out


def _plot(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    overall = [s for s in summary if s["bin"] is None]
    router = sorted((s for s in overall if s["method"] == "router"), key=lambda s: s["tokens"])
    bon = sorted((s for s in overall if s["method"] != "router"), key=lambda s: s["tokens"])
    ax.plot([s["tokens"] for s in bon], [s["accuracy"] for s in bon], "o--", label="best-of-N weighted")
    ax.plot([s["tokens"] for s in router], [s["accuracy"] for s in router], "s-", label="router (incl. probe)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens per question")
    ax.set_ylabel("held-out accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="arith?size=160&seed=1")
    parser.add_argument("--model", default="scripted/arith")
    parser.add_argument("--verifier", default="arithmetic")
    parser.add_argument("--strategies", default="best_of_n,beam_search,revision")
    parser.add_argument("--budgets", default="2,4,8")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-router")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(_evaluate(args))
    summary = summarize(report["rows"])
    (out / "router_eval.json").write_text(json.dumps({**report, "summary": summary}, indent=2))
    _plot(summary, out / "router_eval.png")
    print(report["policy_table"])
    print(f"\nheld-out: {report['held_out']} questions (calibrated on {report['dev']})")
    print(f"{'N':>3} {'bin':>4} {'router':>14} {'bon@N':>14} {'bon@2N':>14} {'bon@4N':>14}   (accuracy / tokens)")
    keys = sorted({(s["N"], s["bin"] if s["bin"] is not None else 99) for s in summary})
    for n, bin_ in keys:
        cells = []
        for method in ("router", "bon@N", "bon@2N", "bon@4N"):
            match = [s for s in summary if s["N"] == n and s["method"] == method and (s["bin"] or 99) == bin_]
            cells.append(f"{match[0]['accuracy']:.2f}/{match[0]['tokens']:6.0f}" if match else "-")
        label = "all" if bin_ == 99 else str(bin_)
        print(f"{n:>3} {label:>4} " + " ".join(f"{c:>14}" for c in cells))
    print(f"wrote {out / 'router_eval.json'} and {out / 'router_eval.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
