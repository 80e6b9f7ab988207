"""Held-out evidence for the router, at matched compute, across a family of populations.

For every setting (a model of the scripted double: ``arith`` or a synthetic population
``pop-<name>``, see :mod:`ttc_agents._llm.population`), it calibrates a policy on one half of a problem set
and, on the other half:

1. measures best-of-N weighted's accuracy-vs-tokens curve (N = 1 ... 64, one seeded pool per
   question, each N charged what a best-of-N run alone costs, verifier included), the policy having
   been calibrated on the same best-of-N budgets and the other strategies at ``--search-budgets``.
   The router's probe draws with the pool's seed, and where the policy's setting at N is best-of-N
   in every bin the router skips the probe and draws best-of-N in one request with that seed: its
   samples are then the curve's at N (common random numbers), so a difference shows the router's
   decisions, not a luckier seed;
2. runs the router at generation budgets N (probe and verifier counted in its tokens) and compares
   it with best-of-N weighted **at the router's own mean tokens** (interpolated on the curve, linear
   in log tokens), and reports the *compute factor*: the tokens best-of-N weighted needs to reach the
   router's accuracy over the router's tokens. Intervals are paired bootstrap intervals over the
   held-out questions (95%);
3. runs both under a **hard** ``Budget(max_tokens=T)`` per question (T = best-of-N weighted's mean
   cost at N on the development half): the router against best-of-N weighted at the largest N whose
   development mean cost fits T, with the same per-sample ``max_tokens`` (the calibrated cap), and
   reports the accuracy difference and the share of T each used.

The held-out runs are repeated ``--replicates`` times (default 3) with independent seeds, and each
question's outcomes and tokens are averaged over them before the bootstrap: one draw per question
leaves enough sampling noise that a single unlucky seed can look like a significant difference.

It prints one table for all settings, writes ``router_eval.json`` and a plot per setting
(``router_eval.png``: the curve, the router's points, the hard-budget points)::

    python -m ttc_agents.bench.router_eval --settings arith,pop-mathlike,pop-revise,pop-search,pop-weakprm \\
        --size 300 --budgets 4,8,16 --out bench-router
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ttc_agents._core.matched import CURVE_BUDGETS, matched_compute, paired_difference

__all__ = ["format_report", "main"]


def _setting_model(setting: str) -> tuple[str, str]:
    """(LiteLLM model, verifier spec) of a setting name."""
    if setting.startswith("pop-"):
        model = f"scripted/{setting}"
        return model, f"prm:{model}"
    return f"scripted/{setting}", "arithmetic"


async def _evaluate_setting(setting: str, args: argparse.Namespace, bar: tqdm) -> dict[str, Any]:
    from ttc_agents import BestOfNSpec, Budget, ModelSpec, build_strategy_graph
    from ttc_agents._apps.calibrate import calibrate, run_grid
    from ttc_agents._apps.datasets import grade, load_problems
    from ttc_agents.graphs.router import Router
    from ttc_agents.verifiers import make_verifier
    from ttc_agents.verifiers._base import fresh_verifier

    model_name, verifier_spec = _setting_model(setting)
    problems = load_problems(f"arith?size={args.size}&seed={args.data_seed}")
    random.Random(args.seed).shuffle(problems)
    half = len(problems) // 2
    dev, held_out = problems[:half], problems[half:]
    budgets = [int(b) for b in args.budgets.split(",")]
    model = ModelSpec(name=model_name)
    verifier = make_verifier(verifier_spec)
    result = await calibrate(
        dev,
        models=[model],
        verifier=verifier,
        budgets=sorted({*CURVE_BUDGETS[: CURVE_BUDGETS.index(args.max_n) + 1]} | set(budgets)),
        search_budgets=[int(b) for b in args.search_budgets.split(",")],
        strategies=args.strategies.split(","),
        dataset=f"arith?size={args.size}&seed={args.data_seed} (dev half)",
        progress=False,
        verifier_name=verifier_spec,
        seed=args.seed,
    )
    bar.update(1)
    policy = result.policy
    cap = policy.completion_caps.get(model_name)
    capped = model if cap is None else model.model_copy(update={"max_tokens": cap})
    curve_budgets = [n for n in CURVE_BUDGETS if n <= args.max_n]
    ids = [p.id for p in held_out]
    position = {q: i for i, q in enumerate(ids)}
    limit = asyncio.Semaphore(args.concurrency)
    dev_bon = {row["N"]: row["best_of_n_cost"] for row in policy.diagnostics.get("plans", [])}
    dev_curve = _dev_curve(result.grid)
    hard_limits: dict[int, tuple[int, int]] = {}  # N -> (T, the largest N whose development mean cost fits T)
    for n in budgets:
        limit_tokens = math.ceil(dev_bon.get(n) or dev_curve[n])
        fits = [m for m, cost in dev_curve.items() if cost <= limit_tokens] or [min(dev_curve)]
        hard_limits[n] = (limit_tokens, max(fits))
    # Every replicate draws everything anew (the pool, the router's probe and the rest of its samples,
    # the hard-budget runs) with its own seed; per question, outcomes and tokens are averaged over the
    # replicates before the paired bootstrap over questions. One draw per question is noisy: on
    # pop-weakprm, best-of-8 made of the probe's 4 samples and 4 more scored 0.53 to 0.60 over 20
    # seeds of the 4 more, so one unlucky seed alone looked like a significant loss.
    bon_tokens = np.zeros((len(ids), len(curve_budgets)))
    bon_correct = np.zeros((len(ids), len(curve_budgets)))
    router_tokens = {n: np.zeros(len(ids)) for n in budgets}
    router_correct = {n: np.zeros(len(ids)) for n in budgets}
    hard_sums: dict[int, dict[str, np.ndarray]] = {
        n: {k: np.zeros(len(ids)) for k in ("r_correct", "r_tokens", "b_correct", "b_tokens")} for n in budgets
    }
    router_max_tokens = dict.fromkeys(budgets, 0.0)
    chosen: dict[str, list[str]] = {}
    details: dict[str, list[dict[str, Any]]] = {}

    async def run(
        graph: Any, inputs: dict[str, Any], problem: Any, tag: str = "", *, keep_details: bool = True
    ) -> tuple[float, bool]:
        async with limit:
            out = await graph.ainvoke(inputs)
        correct = bool(grade(problem, out["answer"]))
        choice = (out.get("trace") or {}).get("choice")
        if tag and choice:
            chosen.setdefault(tag, []).append(_strategy_label(choice["strategy"]))
        if tag and keep_details:
            total = out["ledger"].total
            details.setdefault(tag, []).append(
                {
                    "question": problem.id,
                    "correct": correct,
                    "samples": total.samples,
                    "calls": total.calls,
                    "tokens": total.total_tokens,
                    "candidates": [(c.answer, round(c.score, 3)) for c in out.get("candidates", [])],
                    "stopped_by": out.get("stopped_by"),
                }
            )
        return float(out["ledger"].total.total_tokens), correct

    for replicate in range(args.replicates):
        seed = args.seed + 1 + 1000 * replicate
        first = replicate == 0  # per-question details are kept for the first replicate only
        pool = await run_grid(
            held_out,
            models=[model],
            verifier=verifier,
            budgets=curve_budgets,
            strategies=["best_of_n"],
            probe_samples=1,
            progress=False,
            seed=seed,
        )
        for cell in pool.cells:
            o = cell.outcome
            if getattr(o.action.strategy, "selection", None) == "weighted":
                column = curve_budgets.index(o.budget)
                bon_tokens[position[o.question_id], column] += o.cost.tokens
                bon_correct[position[o.question_id], column] += o.correct
        bar.update(1)

        def router_graph(seed: int = seed) -> Any:
            # Every run gets a verifier with an empty score cache, so that it pays for all it judges:
            # an LLM judge's cache would otherwise hand later runs the scores earlier ones paid for.
            # Common random numbers: the probe draws with the held-out pool's seed (its samples ARE the
            # pool's first samples), and a router that skips an idle probe draws best-of-N at N with it:
            # the very samples of the curve's best-of-N at N.
            return Router(
                policy,
                models={model_name: model},
                verifier=fresh_verifier(verifier),
                verifier_name=verifier_spec,
                probe_seed=seed,
            ).graph

        for n in budgets:
            runs = await asyncio.gather(
                *(run(router_graph(), {"question": p.question, "generation_budget": n}, p) for p in held_out)
            )
            router_tokens[n] += [t for t, _ in runs]
            router_correct[n] += [c for _, c in runs]
            bar.update(1)
        for n in budgets:
            limit_tokens, fitting_n = hard_limits[n]
            spec = BestOfNSpec(n=fitting_n, selection="weighted", seed=seed)
            budget = Budget(max_tokens=limit_tokens)

            def bon_graph(spec: BestOfNSpec = spec) -> Any:
                return build_strategy_graph(spec, model=capped, verifier=fresh_verifier(verifier))

            routed, plain = await asyncio.gather(
                asyncio.gather(
                    *(
                        run(router_graph(), {"question": p.question, "budget": budget}, p, f"T{n}", keep_details=first)
                        for p in held_out
                    )
                ),
                asyncio.gather(
                    *(
                        run(bon_graph(), {"question": p.question, "budget": budget}, p, f"B{n}", keep_details=first)
                        for p in held_out
                    )
                ),
            )
            sums = hard_sums[n]
            sums["r_tokens"] += [t for t, _ in routed]
            router_max_tokens[n] = max(router_max_tokens[n], *(t for t, _ in routed))
            sums["r_correct"] += [c for _, c in routed]
            sums["b_tokens"] += [t for t, _ in plain]
            sums["b_correct"] += [c for _, c in plain]
            bar.update(1)

    reps = args.replicates
    bon_tokens, bon_correct = bon_tokens / reps, bon_correct / reps
    matched = [
        {
            "N": n,
            **matched_compute(
                bon_tokens, bon_correct, router_tokens[n] / reps, router_correct[n] / reps, seed=args.seed
            ),
        }
        for n in budgets
    ]
    hard = []
    for n in budgets:
        limit_tokens, fitting_n = hard_limits[n]
        sums = {k: v / reps for k, v in hard_sums[n].items()}
        delta, ci = paired_difference(sums["r_correct"], sums["b_correct"], seed=args.seed)
        hard.append(
            {
                "T": limit_tokens,
                "best_of_n": fitting_n,
                "router_accuracy": float(sums["r_correct"].mean()),
                "router_used": float(sums["r_tokens"].mean() / limit_tokens),
                "router_max_used": router_max_tokens[n] / limit_tokens,
                "best_of_n_accuracy": float(sums["b_correct"].mean()),
                "best_of_n_used": float(sums["b_tokens"].mean() / limit_tokens),
                "delta": delta,
                "delta_ci": ci,
                "router_chose": dict(Counter(chosen.get(f"T{n}", [])).most_common()),
                "per_question": {"router": details.get(f"T{n}", []), "best_of_n": details.get(f"B{n}", [])},
            }
        )
    curve = [
        {"N": n, "tokens": float(bon_tokens[:, i].mean()), "accuracy": float(bon_correct[:, i].mean())}
        for i, n in enumerate(curve_budgets)
    ]
    return {
        "setting": setting,
        "model": model_name,
        "verifier": verifier_spec,
        "dev": len(dev),
        "held_out": len(held_out),
        "policy_table": result.format_table(),
        "difficulty": policy.diagnostics.get("difficulty"),
        "curve": curve,
        "matched": matched,
        "hard": hard,
    }


def _dev_curve(grid: Any) -> dict[int, float]:
    """Best-of-N weighted's mean tokens per N on the development half."""
    sums: dict[int, list[float]] = {}
    for cell in grid.cells:
        o = cell.outcome
        if o.action.strategy.strategy == "best_of_n" and getattr(o.action.strategy, "selection", None) == "weighted":
            sums.setdefault(o.budget, []).append(o.cost.tokens)
    return {n: sum(v) / len(v) for n, v in sorted(sums.items())}


def _strategy_label(strategy: dict[str, Any]) -> str:
    """``best_of_n/weighted@16``-style label of a chosen strategy's spec (as dumped in the router's trace)."""
    name = strategy.get("strategy", "?")
    size = strategy.get("n", strategy.get("max_n", strategy.get("attempts", "")))
    selection = strategy.get("selection")
    return f"{name}{'/' + selection if selection else ''}@{size}"


def _ci(values: Sequence[float], digits: int = 2) -> str:
    return f"[{values[0]:+.{digits}f}, {values[1]:+.{digits}f}]"


def _factor(value: float) -> str:
    return ">max" if math.isinf(value) or value >= 1e6 else f"{value:.2f}x"


def format_report(results: Sequence[dict[str, Any]]) -> str:
    """The matched-compute and hard-budget tables for every setting, as text."""
    lines = ["matched mean tokens (router at generation budget N vs best-of-N weighted at the router's tokens)"]
    lines.append(
        f"{'setting':<14} {'N':>3} {'router acc':>10} {'tokens':>7} {'bon-w@tok':>9} {'delta':>7} "
        f"{'95% CI':>16} {'compute factor':>14} {'95% CI':>16}"
    )
    for result in results:
        for row in result["matched"]:
            factor_ci = row["compute_factor_ci"]
            lines.append(
                f"{result['setting']:<14} {row['N']:>3} {row['accuracy']:>10.3f} {row['tokens']:>7.0f} "
                f"{row['best_of_n_at_tokens']:>9.3f} {row['delta']:>+7.3f} {_ci(row['delta_ci'], 3):>16} "
                f"{_factor(row['compute_factor']):>14} {f'[{_factor(factor_ci[0])}, {_factor(factor_ci[1])}]':>16}"
            )
    lines.append("")
    lines.append("hard per-question Budget(max_tokens=T): router vs best-of-N weighted at the largest N that fits T")
    lines.append(
        f"{'setting':<14} {'T':>6} {'router acc':>10} {'used':>5} {'bon-w N':>7} {'bon-w acc':>9} {'used':>5} "
        f"{'delta':>7} {'95% CI':>16}"
    )
    for result in results:
        for row in result["hard"]:
            lines.append(
                f"{result['setting']:<14} {row['T']:>6} {row['router_accuracy']:>10.3f} {row['router_used']:>5.0%} "
                f"{row['best_of_n']:>7} {row['best_of_n_accuracy']:>9.3f} {row['best_of_n_used']:>5.0%} "
                f"{row['delta']:>+7.3f} {_ci(row['delta_ci'], 3):>16}"
            )
            picks = row.get("router_chose") or {}
            if picks:
                lines.append(f"{'':<14}   router chose: " + ", ".join(f"{k} x{v}" for k, v in picks.items()))
    lines.append("")
    lines.append("difficulty estimate (development half): Spearman with oracle pass@1, bin agreement of two probes")
    for result in results:
        quality = result.get("difficulty") or {}
        if "spearman_predicted_vs_oracle" in quality:
            lines.append(
                f"{result['setting']:<14} predicted {quality['spearman_predicted_vs_oracle']:.2f}  "
                f"mean score {quality['spearman_mean_score_vs_oracle']:.2f}  "
                f"agreement {quality.get('bin_agreement_of_two_probes', float('nan')):.0%}"
            )
    return "\n".join(lines)


def _plot(results: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(results))
    rows = math.ceil(len(results) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False)
    for ax, result in zip(axes.flat, results, strict=False):
        curve = result["curve"]
        ax.plot([c["tokens"] for c in curve], [c["accuracy"] for c in curve], "o--", label="best-of-N weighted")
        ax.plot(
            [m["tokens"] for m in result["matched"]],
            [m["accuracy"] for m in result["matched"]],
            "s-",
            label="router @N (probe incl.)",
        )
        ax.plot(
            [h["T"] * h["router_used"] for h in result["hard"]],
            [h["router_accuracy"] for h in result["hard"]],
            "^",
            label="router, hard budget T",
        )
        ax.plot(
            [h["T"] * h["best_of_n_used"] for h in result["hard"]],
            [h["best_of_n_accuracy"] for h in result["hard"]],
            "v",
            label="best-of-N w., hard budget T",
        )
        ax.set_xscale("log", base=2)
        ax.set_title(result["setting"])
        ax.set_xlabel("mean tokens per question")
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(results) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default="arith,pop-mathlike,pop-revise,pop-search,pop-weakprm,pop-uniform")
    parser.add_argument("--size", type=int, default=300, help="questions per setting (half dev, half held out)")
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--strategies", default="best_of_n,beam_search,revision")
    parser.add_argument("--budgets", default="4,8,16")
    parser.add_argument("--max-n", type=int, default=64, choices=CURVE_BUDGETS, help="best-of-N curve up to this N")
    parser.add_argument(
        "--search-budgets", default="2,4,8,16", help="budgets the strategies other than best-of-N are calibrated at"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--replicates",
        type=int,
        default=3,
        help="independent draws of the held-out runs (pool, router, hard budgets), averaged per question",
    )
    parser.add_argument("--out", default="bench-router")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    budgets = args.budgets.split(",")
    if args.replicates < 1:
        parser.error(f"--replicates must be at least 1, got {args.replicates}")
    steps_per_setting = 1 + args.replicates * (1 + 2 * len(budgets))

    async def everything() -> list[dict[str, Any]]:
        results = []
        with tqdm(total=steps_per_setting * len(settings), desc="router eval", unit="step") as bar:
            for setting in settings:
                bar.set_postfix_str(setting)
                results.append(await _evaluate_setting(setting, args, bar))
                (out / "router_eval.json").write_text(json.dumps(results, indent=2))
        return results

    results = asyncio.run(everything())
    _plot(results, out / "router_eval.png")
    print(format_report(results))
    print(f"wrote {out / 'router_eval.json'} and {out / 'router_eval.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
