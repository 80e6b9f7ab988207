"""``ttc solve QUESTION --model M [--strategy ...]``: answer one question with one strategy."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ttc_agents.cli._errors import (
    integer,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["STRATEGIES", "STRATEGY_FLAGS", "register", "strategy_from_args"]

STRATEGIES = ("best_of_n", "beam_search", "dvts", "revision", "hybrid")

STRATEGY_FLAGS: dict[str, str] = {
    "n": "n",
    "width": "width",
    "lookahead": "lookahead",
    "max_rounds": "max_rounds",
    "attempts": "attempts",
    "chains": "chains",
    "ratio": "sequential_ratio",
    "selection": "selection",
    "temperature": "temperature",
    "seed": "seed",
}
"""The strategy flags (argparse dest) -> the spec field each sets (``--n`` sets ``attempts`` for revision)."""

DESCRIPTION = """\
Answer QUESTION with one test-time compute strategy on one model (--model, --strategy and the
strategy's flags), or with a named workflow of a YAML file (--workflow, --config). Prints the answer
and what it spent; --json prints one JSON object with the candidates and their scores. An unset
strategy flag keeps the strategy's default (below); a flag the strategy does not have is an error."""

EPILOG = """\
strategy flags (default in brackets; --temperature [0.8] and --seed apply to every strategy):
  best_of_n    --n [16] samples in one request, --selection naive|weighted|majority [weighted]
  beam_search  --n [16] beams, --width [4], --lookahead [0], --max-rounds [40]
  dvts         --n [16] beams, --width [4] (n/width subtrees), --max-rounds [40]
  revision     --n or --attempts [4] per chain, --chains [1], --selection hierarchical|majority
               [hierarchical]
  hybrid       --n [16] attempts in all, --ratio [1.0] = S/P: P chains of S attempts with P x S = N
               exactly, S/P the divisor pair of N nearest the ratio (N=8: ratio 1 -> 4 x 2, ratio 2
               -> 2 x 4), --selection hierarchical|majority [hierarchical]

examples:
  ttc solve "What is 12*7?" --model scripted/arith --strategy best_of_n --n 8
  ttc solve "What is 12*7?" --model openai/gpt-4o-mini --strategy hybrid --n 8 --ratio 2
  ttc solve "What is 12*7?" --workflow math --config workflows.yaml --max-usd 0.01"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``solve`` subcommand; its parser's ``func`` default is :func:`run`."""
    parser = subparsers.add_parser(
        "solve",
        help="answer one question with a test-time compute strategy",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("question", help="the question to answer")
    where = parser.add_argument_group("model or workflow")
    where.add_argument("--model", help="LiteLLM model string, scripted/<profile> (test double) or local/<model>")
    where.add_argument("--api-base", default=None, help="api_base of an OpenAI-compatible server for --model")
    where.add_argument("--workflow", help="a named workflow of --config (instead of --model and --strategy)")
    where.add_argument("--config", default="workflows.yaml", help="workflow YAML file (default: workflows.yaml)")
    where.add_argument(
        "--verifier",
        default="arithmetic",
        help="none | arithmetic | confidence | prm:MODEL | orm:MODEL | reward:URL#MODEL (default: arithmetic)",
    )
    strategy = parser.add_argument_group("strategy (see below for which flags each takes)")
    strategy.add_argument("--strategy", choices=STRATEGIES, default="best_of_n", help="default: best_of_n")
    strategy.add_argument("--n", type=positive_int, default=None, help="generation budget: samples, beams or attempts")
    strategy.add_argument("--width", type=positive_int, default=None, help="beam width M (beam_search, dvts)")
    strategy.add_argument("--lookahead", type=non_negative_int, default=None, help="lookahead steps (beam_search)")
    strategy.add_argument("--max-rounds", type=positive_int, default=None, help="search rounds (beam_search, dvts)")
    strategy.add_argument("--attempts", type=positive_int, default=None, help="attempts per chain (revision)")
    strategy.add_argument("--chains", type=positive_int, default=None, help="parallel chains (revision)")
    strategy.add_argument("--ratio", type=positive_float, default=None, help="sequential/parallel ratio S/P (hybrid)")
    strategy.add_argument(
        "--selection",
        default=None,
        help="naive|weighted|majority (best_of_n), hierarchical|majority (revision, hybrid)",
    )
    strategy.add_argument("--temperature", type=non_negative_float, default=None, help="sampling temperature")
    strategy.add_argument("--seed", type=integer, default=None, help="sampling seed (repeatable runs)")
    budget = parser.add_argument_group("budget (the run stops at the first limit reached; default: none)")
    budget.add_argument("--max-samples", type=positive_int, default=None, help="samples generated")
    budget.add_argument("--max-tokens", type=positive_int, default=None, help="tokens (prompt + completion)")
    budget.add_argument("--max-usd", type=positive_float, default=None, help="US dollars (needs the model's price)")
    budget.add_argument("--max-seconds", type=positive_float, default=None, help="wall-clock seconds")
    parser.add_argument("--record", default=None, metavar="STORE", help="record/replay store (SQLite file)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def strategy_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy spec dict the flags describe (unset flags keep the spec's defaults).

    A flag that the strategy has no field for is a ValueError naming the flag and the strategy's flags
    (``--attempts`` with ``--strategy hybrid``, whose chain shape comes from ``--n`` and ``--ratio``)."""
    from ttc_agents._core.specs import BeamSearchSpec, BestOfNSpec, DVTSSpec, HybridSpec, RevisionSpec

    classes: dict[str, type[BaseModel]] = {
        "best_of_n": BestOfNSpec,
        "beam_search": BeamSearchSpec,
        "dvts": DVTSSpec,
        "revision": RevisionSpec,
        "hybrid": HybridSpec,
    }
    spec_class = classes[args.strategy]
    fields: dict[str, Any] = {"strategy": args.strategy}
    for flag, field in STRATEGY_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            fields[field] = value
    if args.strategy == "revision" and args.n is not None:
        if args.attempts is not None and args.attempts != args.n:
            raise ValueError("--n and --attempts both set the attempts per chain of --strategy revision: give one")
        del fields["n"]
        fields["attempts"] = args.n
    unknown = [
        flag for flag, field in STRATEGY_FLAGS.items() if field in fields and field not in spec_class.model_fields
    ]
    if unknown:
        own = [flag for flag, field in STRATEGY_FLAGS.items() if field in spec_class.model_fields]
        if args.strategy == "revision":
            own.insert(0, "n")
        given = ", ".join("--" + flag.replace("_", "-") for flag in unknown)
        takes = ", ".join("--" + flag.replace("_", "-") for flag in own)
        raise ValueError(f"{given}: not a flag of --strategy {args.strategy}, which takes {takes}")
    return fields


def run(args: argparse.Namespace) -> int:
    if args.model and not (args.workflow or args.api_base or args.record):
        from ttc_agents._llm.errors import PROVIDER_KEYS, check_model_config

        # A hosted model without its key fails here, before LiteLLM and LangGraph load (seconds); the
        # gateway checks every other name before its first call. A --record store may replay without a key.
        if args.model.partition("/")[0] in PROVIDER_KEYS:
            check_model_config(args.model)
    import asyncio
    from dataclasses import replace
    from pathlib import Path

    from ttc_agents._apps.workflow import load_workflow
    from ttc_agents._core.budget import Budget
    from ttc_agents._core.gc import freeze_after_imports
    from ttc_agents._core.specs import HybridSpec, parse_strategy
    from ttc_agents._llm.gateway import get_default_gateway, set_default_gateway
    from ttc_agents._llm.models import ModelSpec
    from ttc_agents.graphs import build_strategy_graph
    from ttc_agents.verifiers._factory import make_verifier

    freeze_after_imports()
    budget = Budget(
        max_samples=args.max_samples,
        max_tokens=args.max_tokens,
        max_usd=args.max_usd,
        max_seconds=args.max_seconds,
    )
    gateway = get_default_gateway()
    if args.record:
        from ttc_agents._llm.store import ResponseStore

        gateway = replace(gateway, store=ResponseStore(args.record))
        set_default_gateway(gateway)
    request: dict[str, Any] = {"question": args.question}
    label = None
    if args.workflow:
        workflow = load_workflow(args.config, args.workflow)
        graph = workflow.build(gateway=gateway, base_dir=Path(args.config).parent)
        if not budget.unlimited:
            request["budget"] = budget
    else:
        if not args.model:
            raise ValueError("give --model (or --workflow with --config)")
        spec = parse_strategy(strategy_from_args(args))
        if isinstance(spec, HybridSpec):  # it runs as a revision spec: say which shape N became
            chains, attempts = spec.shape
            label = f"hybrid, {chains} chains x {attempts} attempts"
        verifier = make_verifier(args.verifier, gateway=gateway)
        model = ModelSpec(name=args.model, api_base=args.api_base)
        graph = build_strategy_graph(spec, model=model, verifier=verifier, gateway=gateway, budget=budget)
    return _report(args, asyncio.run(graph.ainvoke(request)), label=label)


def _report(args: argparse.Namespace, result: dict[str, Any], *, label: str | None = None) -> int:
    total = result["ledger"].total
    if args.json:
        payload = {
            "answer": result["answer"],
            "strategy": result.get("strategy"),
            "usage": {
                "samples": total.samples,
                "calls": total.calls,
                "prompt_tokens": total.prompt_tokens,
                "completion_tokens": total.completion_tokens,
                "usd": total.usd,
                "flops": total.flops,
            },
            "stopped_by": result["stopped_by"],
            "candidates": [c.as_dict() for c in result["candidates"]],
        }
        if "trace" in result:
            payload["trace"] = result["trace"]
        print(json.dumps(payload, indent=2))
    else:
        print(result["answer"] if result["answer"] is not None else "(no answer)")
        strategy = label or (result.get("strategy") or {}).get("strategy", "?")
        stop = f", stopped by {result['stopped_by']}" if result["stopped_by"] else ""
        print(
            f"[{strategy}: {total.samples} samples, {total.calls} calls, "
            f"{total.total_tokens} tokens, ${total.usd:.6f}{stop}]"
        )
    return 0
