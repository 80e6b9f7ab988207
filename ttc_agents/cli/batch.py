"""``ttc batch IN.jsonl OUT.jsonl --workflow NAME``: answer a JSONL file of questions, resumably.

Every line of IN (``question``, optional ``id``, ``answer``, ``context``) becomes one JSON record in
OUT, written as it finishes. Run the same command again after a crash or a ``kill -9`` and it
finishes only what has no record yet (see :mod:`ttc_agents.integrations.batch` for the guarantee).
Per-item limits (``--max-*``) and batch limits (``--total-*``) override the workflow's ``budget``
and ``batch_budget`` field by field.

``--engine ray`` runs the items on a Ray cluster (``--address``; the ``ray`` extra) with the same
records, budgets and resume; this process stays the one writer of OUT (see
:mod:`ttc_agents.integrations.ray_engine`).

Exit status (also in ``ttc batch --help``): see :data:`EXIT_STATUS`.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ttc_agents._core.budget import Budget
    from ttc_agents.integrations.batch import BatchSummary

__all__ = ["EXIT_STATUS", "INPUT_FORMAT", "register"]

INPUT_FORMAT = """input (IN.jsonl): one JSON object per line, e.g.
  {"id": "q1", "question": "What is 12*7?", "answer": "84"}
  question  required: a non-empty string
  id        a non-empty string or an integer (default: the line number); resuming skips recorded ids
  answer    the reference answer, a string or a number (a GSM8K "... #### 72" keeps what follows ####):
            the record says whether the answer matched, and the summary reports accuracy
  context   earlier chat messages, a list of {"role": ..., "content": ...}
  any other key is kept and copied into the record's "metadata"; blank lines are skipped, and a bad
  line becomes an error record (--strict: the run stops at it instead)"""

EXIT_STATUS = """exit status:
  0  every item of IN has an answer in OUT
  1  the run finished, and some items of IN have an error record (written by this run, or by an
     earlier one and skipped: --retry-errors runs them again)
  2  a usage or configuration error found before the batch fanned out (a missing IN, a bad line
     with --strict, OUT not a batch file or in use, an unknown provider, a USD budget without a
     price, a workflow that does not validate, or the first item failing with HTTP 401/403/404):
     OUT is unchanged
  3  the run stopped on an error of its own after it started (OUT could not be written): the
     records in OUT are kept, and the same command resumes
  130  interrupted (Ctrl-C): the running items finished and wrote their records"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="answer a JSONL file of questions with a workflow; streamed, resumable, under one budget",
        description="Answer every line of IN with a workflow; one JSON record per item is appended to OUT as it "
        "finishes. Run the same command again to resume after a crash or kill -9. A total budget "
        "(--total-*) holds across restarts (OUT.journal records the grants in flight).",
        epilog=INPUT_FORMAT + "\n\n" + EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="IN.jsonl", help="questions: one JSON object per line (keys below)")
    parser.add_argument("output", metavar="OUT.jsonl", help="results: one JSON record per line (appended)")
    parser.add_argument("--workflow", required=True, help="a named workflow of --config")
    parser.add_argument("--config", default="workflows.yaml", help="workflow YAML file (default: workflows.yaml)")
    parser.add_argument("--max-concurrency", type=int, default=8, help="items in flight (default 8)")
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="where items run: this process, or Ray workers"
    )
    engine.add_argument(
        "--address",
        default=None,
        help="Ray cluster: auto, HOST:6379 or ray://HOST:10001 (default: start a local one); --engine ray only",
    )
    engine.add_argument(
        "--workers", type=int, default=None, help="Ray workers (default: one per CPU of the cluster); --engine ray only"
    )
    per_item = parser.add_argument_group("per-item budget (overrides the workflow's budget)")
    per_item.add_argument("--max-samples", type=int, default=None, help="samples generated per item")
    per_item.add_argument("--max-tokens", type=int, default=None, help="prompt + completion tokens per item")
    per_item.add_argument("--max-usd", type=float, default=None, help="US dollars per item (needs prices)")
    per_item.add_argument("--max-seconds", type=float, default=None, help="wall-clock seconds per item")
    total = parser.add_argument_group("budget for the whole batch (overrides the workflow's batch_budget)")
    total.add_argument("--total-samples", type=int, default=None, help="samples generated in all")
    total.add_argument("--total-tokens", type=int, default=None, help="prompt + completion tokens in all")
    total.add_argument("--total-usd", type=float, default=None, help="US dollars in all (needs prices)")
    total.add_argument("--total-seconds", type=float, default=None, help="stop starting items after this long")
    parser.add_argument("--no-resume", action="store_true", help="overwrite OUT instead of skipping recorded ids")
    parser.add_argument("--retry-errors", action="store_true", help="run again the ids whose record is an error")
    parser.add_argument("--strict", action="store_true", help="fail on a bad input line instead of recording it")
    parser.add_argument("--record", default=None, metavar="STORE", help="record/replay store (SQLite file)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(func=run)


def _merged(base: Budget | None, **limits: float | None) -> Budget | None:
    """``base`` with the given limits replacing its fields; None when nothing is limited."""
    from ttc_agents._core.budget import Budget

    fields = base.model_dump() if base is not None else {}
    fields.update({name: value for name, value in limits.items() if value is not None})
    merged = Budget.model_validate(fields)
    return None if merged.unlimited else merged


def run(args: argparse.Namespace) -> int:
    """The command; returns the exit status of :data:`EXIT_STATUS`."""
    import sys

    from ttc_agents.integrations.batch import BatchAborted

    try:
        summary = _run(args)
    except BatchAborted as exc:
        if getattr(args, "debug", False):
            raise
        print(f"ttc batch: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 3
    except Exception as exc:
        if getattr(args, "debug", False):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"ttc batch: error: {message}", file=sys.stderr)
        return 2
    _report(args, summary)
    return 1 if summary.failed else 0


def _run(args: argparse.Namespace) -> BatchSummary:
    import asyncio
    from dataclasses import replace
    from pathlib import Path

    from ttc_agents._apps.workflow import load_workflow
    from ttc_agents._core.gc import freeze_after_imports
    from ttc_agents._llm.gateway import get_default_gateway, set_default_gateway
    from ttc_agents.integrations.batch import run_batch

    if args.engine != "ray" and (args.address is not None or args.workers is not None):
        raise ValueError("--address and --workers need --engine ray")
    if args.engine == "ray" and args.record:
        raise ValueError("--record needs --engine local (a record store is one SQLite file on this machine)")
    freeze_after_imports()
    workflow = load_workflow(args.config, args.workflow)
    per_item = _merged(
        workflow.budget,
        max_samples=args.max_samples,
        max_tokens=args.max_tokens,
        max_usd=args.max_usd,
        max_seconds=args.max_seconds,
    )
    total = _merged(
        workflow.batch_budget,
        max_samples=args.total_samples,
        max_tokens=args.total_tokens,
        max_usd=args.total_usd,
        max_seconds=args.total_seconds,
    )
    if args.engine == "ray":
        from ttc_agents.integrations.ray_engine import run_batch_ray

        summary = asyncio.run(
            run_batch_ray(
                Path(args.input),
                workflow,
                out=args.output,
                address=args.address,
                workers=args.workers,
                max_concurrency=args.max_concurrency,
                per_item_budget=per_item,
                total_budget=total,
                progress=not args.no_progress,
                resume=not args.no_resume,
                retry_errors=args.retry_errors,
                strict=args.strict,
                base_dir=Path(args.config).parent,
            )
        )
        return summary
    gateway = get_default_gateway()
    if args.record:
        from ttc_agents._llm.store import ResponseStore

        gateway = replace(gateway, store=ResponseStore(args.record))
        set_default_gateway(gateway)
    summary = asyncio.run(
        run_batch(
            Path(args.input),
            workflow,
            out=args.output,
            max_concurrency=args.max_concurrency,
            per_item_budget=per_item,
            total_budget=total,
            progress=not args.no_progress,
            resume=not args.no_resume,
            retry_errors=args.retry_errors,
            strict=args.strict,
            gateway=gateway,
            base_dir=Path(args.config).parent,
        )
    )
    return summary


def _report(args: argparse.Namespace, summary: BatchSummary) -> None:
    if args.json:
        print(json.dumps(summary.as_dict()))
        return
    usage = summary.usage
    details: list[str] = []
    if summary.exhausted:
        details.append(f"{summary.exhausted} batch budget exhausted")
    if summary.bad_input:
        details.append(f"{summary.bad_input} bad input lines")
    errors = f"{summary.errors} errors" + (f" ({', '.join(details)})" if details else "")
    skipped = f"{summary.skipped} skipped as already done"
    if summary.errors_before:
        skipped += f" ({summary.errors_before} of them error records: --retry-errors runs them again)"
    lines: list[str] = [
        f"{summary.written} items done: {summary.answered} answered, {errors}; {skipped}",
        f"spend: {usage.samples} samples, {usage.calls} calls, {usage.total_tokens} tokens, ${usage.usd:.6f}",
    ]
    if summary.usage_before.calls:
        before = summary.usage_before
        lines.append(
            f"spent by earlier runs: {before.samples} samples, {before.total_tokens} tokens, ${before.usd:.6f}"
        )
    if summary.accuracy is not None:
        lines.append(f"accuracy: {summary.accuracy:.3f} ({summary.correct}/{summary.graded} graded)")
    lines.append(f"wrote {summary.out} in {summary.seconds:.1f} s ({summary.items_per_second:.1f} items/s)")
    print("\n".join(lines))
