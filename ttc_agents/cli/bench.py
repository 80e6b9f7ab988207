"""``ttc bench --dataset D --model M --verifier V --out DIR``: accuracy-vs-compute curves in one command.

Measures every strategy at every generation budget on the dataset for several sampling seeds (and
the compute-optimal router at each budget when ``--policy`` is given), then writes
``results.jsonl``, ``summary.json``, PNG plots and ``report.md`` into ``--out`` and prints the
summary table (see :mod:`ttc_agents._apps.bench`). Runs resume: finished (question, seed) units are
skipped and recorded samples are replayed from ``DIR/responses.sqlite``.
"""

from __future__ import annotations

import argparse
import sys

from ttc_agents.cli._errors import integer, positive_int

__all__ = ["register"]

DESCRIPTION = """\
Measure every strategy at every generation budget N on a dataset, for several sampling seeds (and
the compute-optimal router at each N when --policy is given), print the summary table, and write
into DIR:
  results.jsonl       one line per question x setting x seed: answer, correctness, cost, difficulty
  summary.json        accuracy and cost per setting (strategy x N), overall and per difficulty bin,
                      with 95% intervals over seeds and over questions
  *.png               accuracy against tokens and against N, per strategy and difficulty bin
  report.md           the tables and the plots
  responses.sqlite    recorded samples (--no-store: none)
  bench.json          what DIR measures; a run with another dataset, model or verifier is refused
Runs resume: finished (question, seed) units are skipped and recorded samples are replayed, so
adding seeds or questions runs only the new units."""

EPILOG = """\
examples:
  ttc bench --dataset 'arith?size=20&seed=0&levels=1-5' --model scripted/arith --out bench-out
  ttc bench --dataset gsm8k:test.jsonl --model openai/gpt-4o-mini --verifier orm:openai/gpt-4o-mini \\
      --budgets 1,4,16 --seeds 2 --limit 50 --out gsm8k-bench
  ttc bench --dataset data.jsonl --model M --policy policy.json --out with-router
  ttc bench --dataset 'arith?size=40&seed=0&levels=1-5' --model scripted/arith --thinking default,low,high \\
      --strategies best_of_n --out thinking-bench"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="accuracy vs compute per strategy and difficulty on a dataset: results, summary, plots, report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="SPEC",
        help="a JSONL file (question/answer rows, MATH-500 rows or GSM8K rows), math500:PATH, gsm8k:PATH, "
        "rg:NAME?size=N&seed=S&key=value (reasoning-gym) or arith?size=N&seed=S&levels=1-5",
    )
    parser.add_argument("--model", required=True, help="a LiteLLM model string (or scripted/..., local/...)")
    parser.add_argument("--api-base", default=None, help="api_base of an OpenAI-compatible server for --model")
    parser.add_argument(
        "--parameters", type=float, default=None, help="the model's parameter count, for FLOPs (e.g. 1.5e9)"
    )
    parser.add_argument(
        "--verifier", default="none", help="none | arithmetic | confidence | prm:MODEL | orm:MODEL | reward:URL#MODEL"
    )
    parser.add_argument(
        "--strategies",
        default="best_of_n,beam_search,revision",
        help="of best_of_n, beam_search, dvts, revision, hybrid, adaptive, particle_filter, router "
        "(default best_of_n,beam_search,revision; the router runs whenever --policy is given)",
    )
    parser.add_argument("--budgets", default="1,2,4,8,16", help="generation budgets N (default 1,2,4,8,16)")
    parser.add_argument(
        "--thinking",
        default=None,
        metavar="LEVELS",
        help="thinking settings every strategy runs at, each its own curve: effort levels (none, minimal, low, "
        "medium, high) and/or thinking-token budgets, e.g. low,medium,high or default,1024,4096 (default: the "
        "model's own setting only)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created; reused to resume)")
    parser.add_argument("--policy", default=None, help="a policy from `ttc calibrate`: adds the router at every N")
    parser.add_argument("--force", action="store_true", help="use a policy fitted for another model or verifier")
    parser.add_argument("--seeds", type=positive_int, default=3, help="sampling seeds per question (default 3)")
    parser.add_argument("--seed", type=integer, default=0, help="the first sampling seed (default 0)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N problems")
    parser.add_argument(
        "--concurrency", type=positive_int, default=4, help="(question, seed) units in flight (default 4)"
    )
    parser.add_argument(
        "--probe-samples", type=positive_int, default=4, help="samples of the difficulty probe (default 4)"
    )
    parser.add_argument(
        "--bins",
        choices=("auto", "level", "oracle"),
        default="auto",
        help="difficulty bins: the data's levels or pass@1 quintiles (default auto: levels if every problem has one)",
    )
    parser.add_argument(
        "--on-bad-line",
        choices=("skip", "fail"),
        default="fail",
        help="a bad line of a dataset file: report it and skip it, or fail (default fail)",
    )
    parser.add_argument("--no-store", action="store_true", help="no record/replay store (DIR/responses.sqlite)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import shlex
    import warnings

    from ttc_agents._apps.bench import BenchConfig, format_summary, run_bench
    from ttc_agents._apps.datasets import DatasetWarning
    from ttc_agents._apps.loaders import load_bench_problems
    from ttc_agents._core.gc import freeze_after_imports
    from ttc_agents._llm.models import ModelSpec
    from ttc_agents._routing.policy import PolicyMismatchError
    from ttc_agents.cli.calibrate import parse_budgets, parse_thinking_levels

    freeze_after_imports()
    strategies = [part.strip() for part in args.strategies.split(",") if part.strip()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DatasetWarning)
        problems = load_bench_problems(args.dataset, on_bad_line=args.on_bad_line)
    for warning in caught:
        print(f"ttc bench: warning: {warning.message}", file=sys.stderr)
    config = BenchConfig(
        dataset=args.dataset,
        model=ModelSpec(name=args.model, api_base=args.api_base, parameters=args.parameters),
        verifier=args.verifier,
        strategies=strategies,
        budgets=parse_budgets(args.budgets),
        seeds=args.seeds,
        seed=args.seed,
        policy=args.policy,
        force=args.force,
        limit=args.limit,
        concurrency=args.concurrency,
        probe_samples=args.probe_samples,
        on_bad_line=args.on_bad_line,
        store=not args.no_store,
        bins=args.bins,
        thinking=parse_thinking_levels(args.thinking),
    )
    command = shlex.join(["ttc", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("ttc") else None
    try:
        result = asyncio.run(
            run_bench(config, args.out, problems=problems, progress=not args.no_progress, command=command)
        )
    except PolicyMismatchError as exc:
        raise PolicyMismatchError(str(exc).replace("pass force=True", "pass --force")) from None
    for note in result.notes:
        print(f"ttc bench: {note}", file=sys.stderr)
    print(format_summary(result.summary))
    print(
        f"\n{result.units_run} units run, {result.units_skipped} resumed from {args.out}/results.jsonl, "
        f"in {result.seconds:.1f} s"
    )
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0
