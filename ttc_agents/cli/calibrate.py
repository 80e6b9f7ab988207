"""``ttc calibrate --dataset D --model M --verifier V --out policy.json``: measure and fit a policy.

Runs every strategy at every budget on the dataset (:func:`ttc_agents._apps.calibrate.run_grid`), fits
the compute-optimal policy, writes it to ``--out`` and every measured cell to ``outcomes.jsonl``
next to it, and prints the table per difficulty bin with the grid's cost against the naive sum.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ttc_agents.cli._errors import integer, positive_int

if TYPE_CHECKING:
    from ttc_agents._core.thinking import Thinking

__all__ = ["parse_budgets", "parse_strategies", "parse_thinking_levels", "register"]

DESCRIPTION = """\
Run every strategy (--strategies) at every generation budget (--budgets) on the questions of a
dataset with each --model, estimate each question's difficulty, and fit the compute-optimal policy:
for each difficulty bin and budget, the model and strategy that measured best there. Writes the
policy to --out (JSON, for `ttc bench --policy`, workflows and ttc_agents.Router) and every measured
cell to outcomes.jsonl next to it, then prints the table per difficulty bin (with cross-validated
accuracy) and what the grid cost against running every cell on its own."""

EPILOG = """\
examples:
  ttc calibrate --dataset 'arith?size=40&seed=0&levels=1,2,3' --model scripted/arith \\
      --verifier arithmetic --out policy.json
  ttc calibrate --dataset train.jsonl --model openai/gpt-4o-mini --verifier prm:openai/gpt-4o-mini \\
      --budgets 1,4,16 --record calib.sqlite --out policies/gpt-4o-mini.json"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``calibrate`` subcommand; its parser's ``func`` default is :func:`run`."""
    parser = subparsers.add_parser(
        "calibrate",
        help="measure strategies x budgets on a dataset and fit the compute-optimal policy",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="FILE_OR_GENERATOR",
        help="a JSONL file, rg:NAME?size=N&seed=S&key=value (reasoning-gym) or arith?size=N&seed=S&levels=1,2,3",
    )
    parser.add_argument("--model", action="append", required=True, help="a model to calibrate (repeat for several)")
    parser.add_argument("--api-base", default=None, help="api_base for every --model (an OpenAI-compatible server)")
    parser.add_argument(
        "--verifier", required=True, help="none | arithmetic | confidence | prm:MODEL | orm:MODEL | reward:URL#MODEL"
    )
    parser.add_argument("--budgets", default="1,2,4,8,16", help="generation budgets N (default 1,2,4,8,16)")
    parser.add_argument(
        "--strategies",
        default="best_of_n,beam_search,revision",
        help="of best_of_n, beam_search, dvts, revision, hybrid, adaptive, particle_filter "
        "(default best_of_n,beam_search,revision)",
    )
    parser.add_argument(
        "--thinking",
        default=None,
        metavar="LEVELS",
        help="thinking settings to sweep, each action at each: effort levels (none, minimal, low, medium, high) "
        "and/or thinking-token budgets, e.g. default,low,high (default: the model's own setting only); the "
        "first is the difficulty probe's; levels a model does not honour are left out of the policy",
    )
    parser.add_argument("--out", required=True, help="where to write the policy (JSON)")
    parser.add_argument(
        "--probe-samples", type=positive_int, default=4, help="samples of the difficulty probe (default 4)"
    )
    parser.add_argument("--concurrency", type=positive_int, default=8, help="questions in flight (default 8)")
    parser.add_argument("--seed", type=integer, default=0, help="sampling seed (default 0)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N problems")
    parser.add_argument(
        "--estimator",
        choices=("probe", "oracle"),
        default="probe",
        help="difficulty statistic: pass@1 predicted from a few verifier-scored probe samples (what the router "
        "sees at run time), or pass@1 against the reference answers (for evaluation); default probe",
    )
    parser.add_argument("--record", default=None, metavar="STORE", help="record/replay store (SQLite file)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def parse_budgets(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; anything but positive integers is a ValueError naming the part."""
    budgets = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"--budgets: {part!r} is not a positive integer")
        budgets.append(int(part))
    if not budgets:
        raise ValueError("--budgets: give at least one budget, e.g. 1,2,4,8")
    return budgets


def parse_thinking_levels(text: str | None) -> list[Thinking | None]:
    """``"default,low,1024"`` -> ``[None, "low", 1024]`` (None alone without text); a bad part is a
    ValueError naming it."""
    from ttc_agents._core.thinking import parse_thinking

    if text is None:
        return [None]
    levels: list[Thinking | None] = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            levels.append(parse_thinking(part))
        except ValueError as exc:
            raise ValueError(f"--{exc}") from None
    if not levels:
        raise ValueError("--thinking: give at least one level, e.g. default,low,high")
    return list(dict.fromkeys(levels))


def parse_strategies(text: str) -> list[str]:
    """``"best_of_n,beam_search"`` -> names; an unknown name is a ValueError naming it."""
    from ttc_agents._apps.calibrate import STRATEGY_NAMES

    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if name not in STRATEGY_NAMES:
            raise ValueError(f"--strategies: unknown strategy {name!r}; use {', '.join(STRATEGY_NAMES)}")
    if not names:
        raise ValueError("--strategies: give at least one strategy")
    return names


def run(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import replace
    from pathlib import Path

    from ttc_agents._apps.calibrate import calibrate
    from ttc_agents._apps.datasets import load_problems
    from ttc_agents._llm.gateway import get_default_gateway, set_default_gateway
    from ttc_agents._llm.models import ModelSpec
    from ttc_agents.verifiers._factory import make_verifier

    budgets = parse_budgets(args.budgets)
    strategies = parse_strategies(args.strategies)
    thinking = parse_thinking_levels(args.thinking)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    out = Path(args.out)
    outcomes_path = out.with_name("outcomes.jsonl")
    if out.resolve() == outcomes_path.resolve():
        raise ValueError("--out must not be named outcomes.jsonl: the outcomes are written next to the policy")
    if not out.parent.is_dir():
        raise ValueError(f"--out: directory {str(out.parent)!r} does not exist")
    problems = load_problems(args.dataset)
    dataset = args.dataset
    if args.limit is not None:
        problems = problems[: args.limit]
        dataset = f"{dataset} [first {len(problems)}]"
    gateway = get_default_gateway()
    if args.record:
        from ttc_agents._llm.store import ResponseStore

        gateway = replace(gateway, store=ResponseStore(args.record))
        set_default_gateway(gateway)
    verifier = make_verifier(args.verifier, gateway=gateway)
    models = [ModelSpec(name=name, api_base=args.api_base) for name in args.model]
    result = asyncio.run(
        calibrate(
            problems,
            models=models,
            verifier=verifier,
            budgets=budgets,
            strategies=strategies,
            dataset=dataset,
            estimator=args.estimator,
            gateway=gateway,
            probe_samples=args.probe_samples,
            concurrency=args.concurrency,
            progress=not args.no_progress,
            seed=args.seed,
            thinking=thinking,
        )
    )
    result.policy.save(out)
    result.grid.write_outcomes(outcomes_path, result.policy)
    print(result.format_table())
    print(
        f"wrote {out} ({len(result.policy.table)} table entries) and {outcomes_path} "
        f"({len(result.grid.cells)} outcomes on {len(problems)} questions)"
    )
    return 0
