"""``ttc solve QUESTION --model M [--strategy ...]``: answer one question with one strategy."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ttc_agents._core.budget import Budget
from ttc_agents._core.specs import parse_strategy
from ttc_agents.cli._errors import (
    integer,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

__all__ = ["register"]

STRATEGIES = ("best_of_n", "beam_search", "dvts", "revision", "hybrid")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("solve", help="answer one question with a test-time compute strategy")
    parser.add_argument("question")
    parser.add_argument("--model", help="LiteLLM model, scripted/<profile> or local/<model>")
    parser.add_argument("--workflow", help="a named workflow of --config (instead of --model/--strategy)")
    parser.add_argument("--config", default="workflows.yaml", help="workflow YAML file (default: workflows.yaml)")
    parser.add_argument("--api-base", default=None)
    parser.add_argument("--strategy", choices=STRATEGIES, default="best_of_n")
    parser.add_argument("--n", type=positive_int, default=None, help="samples / beams / attempts in all")
    parser.add_argument("--width", type=positive_int, default=None, help="beam width M (beam_search, dvts)")
    parser.add_argument("--lookahead", type=non_negative_int, default=None, help="lookahead steps (beam_search)")
    parser.add_argument("--max-rounds", type=positive_int, default=None)
    parser.add_argument("--attempts", type=positive_int, default=None, help="attempts per chain (revision)")
    parser.add_argument("--chains", type=positive_int, default=None, help="parallel chains (revision)")
    parser.add_argument("--ratio", type=positive_float, default=None, help="sequential/parallel ratio (hybrid)")
    parser.add_argument("--selection", default=None, help="naive|weighted|majority or hierarchical|majority")
    parser.add_argument("--temperature", type=non_negative_float, default=None)
    parser.add_argument("--seed", type=integer, default=None)
    parser.add_argument(
        "--verifier", default="arithmetic", help="none | arithmetic | prm:MODEL | orm:MODEL | reward:URL#MODEL"
    )
    parser.add_argument("--max-samples", type=positive_int, default=None)
    parser.add_argument("--max-tokens", type=positive_int, default=None, help="token budget (prompt + completion)")
    parser.add_argument("--max-usd", type=positive_float, default=None)
    parser.add_argument("--max-seconds", type=positive_float, default=None)
    parser.add_argument("--record", default=None, metavar="STORE", help="record/replay store (SQLite file)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def strategy_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy spec dict the flags describe (unset flags keep the spec's defaults)."""
    fields: dict[str, Any] = {"strategy": args.strategy}
    names = {
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
    for flag, field in names.items():
        value = getattr(args, flag)
        if value is not None:
            fields[field] = value
    if args.strategy == "revision" and args.n is not None:
        del fields["n"]
        fields.setdefault("attempts", args.n)
    return fields


def run(args: argparse.Namespace) -> int:
    if args.model and not (args.workflow or args.api_base or args.record):
        from ttc_agents._llm.errors import PROVIDER_KEYS, check_model_config

        # A hosted model without its key fails here, before LiteLLM and LangGraph load (seconds); the
        # gateway checks every other name before its first call. A --record store may replay without a key.
        if args.model.partition("/")[0] in PROVIDER_KEYS:
            check_model_config(args.model)
    from dataclasses import replace
    from pathlib import Path

    from ttc_agents._apps.workflow import load_workflow
    from ttc_agents._core.gc import freeze_after_imports
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
    if args.workflow:
        workflow = load_workflow(args.config, args.workflow)
        graph = workflow.build(gateway=gateway, base_dir=Path(args.config).parent)
        if not budget.unlimited:
            request["budget"] = budget
    else:
        if not args.model:
            raise ValueError("give --model (or --workflow with --config)")
        spec = parse_strategy(strategy_from_args(args))
        verifier = make_verifier(args.verifier, gateway=gateway)
        model = ModelSpec(name=args.model, api_base=args.api_base)
        graph = build_strategy_graph(spec, model=model, verifier=verifier, gateway=gateway, budget=budget)
    return _report(args, asyncio.run(graph.ainvoke(request)))


def _report(args: argparse.Namespace, result: dict[str, Any]) -> int:
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
        strategy = (result.get("strategy") or {}).get("strategy", "?")
        stop = f", stopped by {result['stopped_by']}" if result["stopped_by"] else ""
        print(
            f"[{strategy}: {total.samples} samples, {total.calls} calls, "
            f"{total.total_tokens} tokens, ${total.usd:.6f}{stop}]"
        )
    return 0
