"""Token confidence (DeepConf) as a verifier, against majority vote on the same samples.

For every model of the scripted double (``scripted/arith`` or a synthetic population
``scripted/pop-<name>``), every question of the graded arithmetic set and every seed, best-of-N runs
once per selection rule with the same seed, so every rule reads the same N samples (common random
numbers): majority vote, the vote weighted by :class:`~ttc_agents.verifiers.TokenConfidenceVerifier`
(``keep`` = the most confident share of each batch that votes) and the single most confident sample.
Prints one line per (model, rule) with the accuracy and its paired difference to majority::

    python -m ttc_agents.bench.confidence --models scripted/arith,scripted/pop-mathlike --size 100 --n 8
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from ttc_agents.bench._common import paired_interval

__all__ = ["main"]

_RULES: tuple[tuple[str, str, float | None], ...] = (
    ("majority", "majority", None),
    ("confidence-weighted, keep 1.0", "weighted", 1.0),
    ("confidence-weighted, keep 0.5", "weighted", 0.5),
    ("confidence-weighted, keep 0.25", "weighted", 0.25),
    ("most confident sample", "naive", 1.0),
)


async def _measure(model: str, args: argparse.Namespace, bar: tqdm[Any]) -> list[str]:
    from ttc_agents import BestOfNSpec, build_strategy_graph
    from ttc_agents._apps.datasets import arithmetic_problems, grade
    from ttc_agents.verifiers import TokenConfidenceVerifier

    problems = arithmetic_problems(args.size, seed=args.problem_seed)
    semaphore = asyncio.Semaphore(args.concurrency)

    async def one(problem: Any, seed: int, selection: str, keep: float | None) -> float:
        async with semaphore:
            verifier = TokenConfidenceVerifier(keep=keep if keep is not None else 1.0)
            spec = BestOfNSpec(n=args.n, seed=seed, selection=selection)  # type: ignore[arg-type]
            out = await build_strategy_graph(spec, model=model, verifier=verifier).ainvoke(
                {"question": problem.question}
            )
            bar.update(1)
            return float(bool(grade(problem, out["answer"])))

    seeds = range(args.seed, args.seed + args.seeds)
    results = {
        name: await asyncio.gather(*(one(p, s, selection, keep) for p in problems for s in seeds))
        for name, selection, keep in _RULES
    }
    base = results["majority"]
    lines = []
    for name, correct in results.items():
        diff, half = paired_interval([a - b for a, b in zip(correct, base, strict=True)])
        lines.append(
            f"{model:<22} {args.n:>3} {name:<32} {sum(correct) / len(correct):>6.3f} "
            f"{diff:+.3f} [{diff - half:+.3f}, {diff + half:+.3f}]"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ttc_agents.bench.confidence", description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="scripted/arith,scripted/pop-mathlike")
    parser.add_argument("--size", type=int, default=100, help="questions of the graded arithmetic set")
    parser.add_argument("--problem-seed", type=int, default=3)
    parser.add_argument("--n", type=int, default=8, help="samples per question")
    parser.add_argument("--seeds", type=int, default=2, help="sampling seeds per question")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    with tqdm(total=len(models) * len(_RULES) * args.size * args.seeds, desc="confidence", unit="run") as bar:
        lines = [line for model in models for line in asyncio.run(_measure(model, args, bar))]
    print(f"{'model':<22} {'N':>3} {'rule':<32} {'acc':>6} diff vs majority [95% CI, paired]")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
