"""Scale-out measurements: LiteLLM Router groups against direct calls, and the batch engines.

Model servers run in their own processes on 127.0.0.1 (``serve``), so the client's CPU is measured
apart from theirs:

    fake      the fake OpenAI server (canned completions of a fixed token count; no model work)
    scripted  the scripted test double (``scripted/<profile>``) behind an OpenAI-compatible API:
              the same answers and usage as calling ``scripted/<profile>`` in process

Subcommands::

    python -m ttc_agents.bench.scale router  [--questions 300] [--n 1,4,16] [--concurrency 32] [--repeat 3]
        ttc best-of-N samples/s through ONE Router group of three fake servers, against direct calls
        to the same three servers (questions spread over them in turn); CPU ms per sample; the ratio.
    python -m ttc_agents.bench.scale engines [--questions 1000] [--workers 2] [--concurrency 64]
        a batch of graded arithmetic questions with best-of-8 against a Router group of three
        scripted servers, with the local engine and with the Ray engine (a local Ray cluster:
        run it where Ray may reach the network, or inside `unshare -n`); items/s of each.
    python -m ttc_agents.bench.scale serve --kind scripted|fake [--latency S]
        one server; prints its port, serves until stdin closes.

``--json PATH`` writes the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ttc_agents.bench._common import drive
from ttc_agents.testing import ServerProcess, serve_until_stdin_closes

__all__ = ["arithmetic_rows", "group_spec", "main", "measure_engines", "measure_router"]

FAKE_COMPLETION_TOKENS = 32


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------


def group_spec(name: str, urls: Sequence[str], **group: Any) -> dict[str, Any]:
    """A ModelSpec mapping (as in workflow YAML) for a Router group of the servers at ``urls``."""
    deployments = [{"api_base": url} for url in urls]
    return {"name": name, "api_key": "none", "group": {"deployments": deployments, **group}}


def arithmetic_rows(count: int, start: int = 0) -> list[dict[str, Any]]:
    """``count`` graded questions ``a * b + c`` with ids ``q<i>``."""
    rows = []
    for i in range(start, start + count):
        a, b, c = 3 + i % 47, 2 + (i * 7) % 13, 5 + (i * 11) % 89
        rows.append({"id": f"q{i}", "question": f"What is {a} * {b} + {c}?", "answer": a * b + c})
    return rows


# ---------------------------------------------------------------------------------------------
# Router group against direct calls
# ---------------------------------------------------------------------------------------------


async def _timed_variant(graphs: Sequence[Any], questions: int, concurrency: int) -> tuple[int, float, float]:
    async def one(i: int) -> int:
        result = await graphs[i % len(graphs)].ainvoke({"question": f"What is {i} * 7 + {i % 13}?"})
        return int(result["ledger"].total.samples)

    await drive(len(graphs) * 2, len(graphs) * 2, one)  # warm up: imports, Routers, connections
    cpu, wall = time.process_time(), time.perf_counter()
    samples = await drive(questions, concurrency, one)
    return samples, time.process_time() - cpu, time.perf_counter() - wall


def measure_router(
    urls: Sequence[str], questions: int, ns: Sequence[int], concurrency: int, repeat: int = 3
) -> list[dict[str, Any]]:
    """ttc best-of-N through one Router group of ``urls`` and directly to each of them, per N: the
    median of ``repeat`` runs of each variant (run in turn, so that both see the same machine)."""
    from pydantic import SecretStr

    from ttc_agents import BestOfNSpec, ModelSpec, build_strategy_graph
    from ttc_agents._llm.gateway import Gateway

    rows: list[dict[str, Any]] = []
    key = SecretStr("none")
    direct_specs = [ModelSpec(name="openai/fake", api_base=url, api_key=key, max_tokens=64) for url in urls]
    group = ModelSpec.model_validate({**group_spec("openai/fake", urls), "max_tokens": 64})
    for n in ns:
        strategy = BestOfNSpec(n=n, seed=0)
        variants = {
            "direct": [build_strategy_graph(strategy, model=s, gateway=Gateway()) for s in direct_specs],
            "router": [build_strategy_graph(strategy, model=group, gateway=Gateway())],
        }
        runs: dict[str, list[tuple[int, float, float]]] = {name: [] for name in variants}
        for _ in range(repeat):
            for name, graphs in variants.items():
                runs[name].append(asyncio.run(_timed_variant(graphs, questions, concurrency)))
        measured: dict[str, dict[str, Any]] = {}
        for name, timings in runs.items():
            samples = timings[0][0]
            wall = statistics.median(t[2] for t in timings)
            cpu = statistics.median(t[1] for t in timings)
            measured[name] = row = {
                "variant": name,
                "n": n,
                "questions": questions,
                "concurrency": concurrency,
                "repeat": repeat,
                "samples": samples,
                "seconds": wall,
                "samples_per_second": samples / wall,
                "cpu_ms_per_sample": 1000 * cpu / samples,
                "cpu_ms_per_call": 1000 * cpu / questions,
            }
            rows.append(row)
        ratio = measured["router"]["samples_per_second"] / measured["direct"]["samples_per_second"]
        measured["router"]["router_vs_direct"] = ratio
    return rows


# ---------------------------------------------------------------------------------------------
# The batch engines
# ---------------------------------------------------------------------------------------------


def _engine_workflows(urls: Sequence[str], n: int) -> str:
    group = {
        **group_spec("openai/arith", urls),
        "usd_per_input_token": 1e-7,  # the scripted provider's prices, so that USD matches too
        "usd_per_output_token": 2e-7,
    }
    strategy = {"strategy": "best_of_n", "n": n, "seed": 0}
    return json.dumps(
        {
            "workflows": {
                "inprocess": {"models": {"main": "scripted/arith"}, "verifier": "arithmetic", "strategy": strategy},
                "servers": {"models": {"main": group}, "verifier": "arithmetic", "strategy": strategy},
            }
        }
    )


def measure_engines(
    questions: int, *, workers: int, concurrency: int, n: int = 8, num_cpus: int = 2, latency: float = 0.0
) -> list[dict[str, Any]]:
    """The same batch with the local engine (in-process scripted model, and three scripted servers)
    and with the Ray engine (three scripted servers); items/s of each and whether records agree."""
    from ttc_agents._apps.workflow import load_workflow
    from ttc_agents.integrations.batch import run_batch
    from ttc_agents.integrations.ray_engine import run_batch_ray

    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        servers = [stack.enter_context(ServerProcess("scripted", latency=latency)) for _ in range(3)]
        folder = Path(tmp)
        config = folder / "workflows.yaml"
        config.write_text(_engine_workflows([s.url for s in servers], n))
        data = folder / "questions.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in arithmetic_rows(questions)))
        runs: list[tuple[str, str, Callable[[Path], Any]]] = [
            (
                "local",
                "inprocess",
                lambda out: run_batch(
                    data, load_workflow(config, "inprocess"), out=out, max_concurrency=concurrency, progress=False
                ),
            ),
            (
                "local",
                "servers",
                lambda out: run_batch(
                    data, load_workflow(config, "servers"), out=out, max_concurrency=concurrency, progress=False
                ),
            ),
            (
                "ray",
                "servers",
                lambda out: run_batch_ray(
                    data,
                    load_workflow(config, "servers"),
                    out=out,
                    workers=workers,
                    num_cpus=num_cpus,
                    max_concurrency=concurrency,
                    progress=False,
                ),
            ),
        ]
        outputs: dict[str, dict[str, Any]] = {}
        for engine, workflow, run in runs:
            out = folder / f"{engine}-{workflow}.jsonl"
            started = time.perf_counter()
            summary = asyncio.run(run(out))
            seconds = time.perf_counter() - started
            outputs[f"{engine}-{workflow}"] = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
            rows.append(
                {
                    "engine": engine,
                    "workflow": workflow,
                    "questions": questions,
                    "answered": summary.answered,
                    "errors": summary.errors,
                    "seconds": summary.seconds,  # the batch itself
                    "items_per_second": questions / summary.seconds,
                    "seconds_with_startup": seconds,  # plus starting Ray and its workers
                    "samples": summary.usage.samples,
                    "accuracy": summary.accuracy,
                }
            )
        reference = outputs["local-inprocess"]
        for row in rows:
            got = outputs[f"{row['engine']}-{row['workflow']}"]
            row["same_as_inprocess"] = all(_same(reference[key], got.get(key)) for key in reference)
    return rows


def _same(a: dict[str, Any], b: dict[str, Any] | None) -> bool:
    """Two records agree: answer, strategy, stop reason, grade, and usage (USD to rounding)."""
    if b is None:
        return False
    keys = ("answer", "strategy", "stopped_by", "correct")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    ua, ub = a.get("usage") or {}, b.get("usage") or {}
    exact = ("calls", "samples", "prompt_tokens", "completion_tokens", "failed_calls")
    return all(ua.get(k) == ub.get(k) for k in exact) and abs(ua.get("usd", 0) - ub.get("usd", 0)) < 1e-12


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _print_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    print("  ".join(f"{c:>18}" for c in columns))
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            cells.append(f"{value:>18.3f}" if isinstance(value, float) else f"{value!s:>18}")
        print("  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="one loopback model server (prints its port; stops when stdin closes)")
    serve.add_argument("--kind", choices=("scripted", "fake"), default="scripted")
    serve.add_argument("--latency", type=float, default=0.0)
    serve.add_argument("--completion-tokens", type=int, default=FAKE_COMPLETION_TOKENS)
    router = sub.add_parser("router", help="samples/s through a Router group against direct calls")
    router.add_argument("--questions", type=int, default=300)
    router.add_argument("--n", default="1,4,16", help="best-of-N sizes (samples per request)")
    router.add_argument("--concurrency", type=int, default=32)
    router.add_argument("--repeat", type=int, default=3, help="runs of each variant (the median is reported)")
    engines = sub.add_parser("engines", help="items/s of the local and the Ray batch engine")
    engines.add_argument("--questions", type=int, default=1000)
    engines.add_argument("--workers", type=int, default=2)
    engines.add_argument("--concurrency", type=int, default=64)
    engines.add_argument("--n", type=int, default=8)
    for command in (router, engines):
        command.add_argument("--json", default=None, metavar="PATH", help="write the rows as JSON")
    args = parser.parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve_until_stdin_closes(args.kind, args.latency, args.completion_tokens))
        return 0
    from ttc_agents._core.gc import freeze_after_imports

    if args.command == "router":
        with contextlib.ExitStack() as stack:
            servers = [stack.enter_context(ServerProcess("fake")) for _ in range(3)]
            freeze_after_imports()
            sizes = [int(n) for n in args.n.split(",")]
            rows = measure_router([s.url for s in servers], args.questions, sizes, args.concurrency, args.repeat)
        _print_rows(
            rows, ("variant", "n", "samples_per_second", "cpu_ms_per_sample", "cpu_ms_per_call", "router_vs_direct")
        )
    else:
        freeze_after_imports()
        rows = measure_engines(args.questions, workers=args.workers, concurrency=args.concurrency, n=args.n)
        columns = ("engine", "workflow", "answered", "seconds", "items_per_second", "seconds_with_startup")
        _print_rows(rows, (*columns, "same_as_inprocess"))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
