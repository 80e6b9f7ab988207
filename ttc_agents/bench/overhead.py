"""Orchestration overhead: how close ttc-agents runs to the model server's limit.

Starts a loopback OpenAI-compatible server that does no model work (:mod:`ttc_agents.bench._canned`:
a canned four-step solution, one step per line, continued after the last step the request shows and
cut at ``stop``, honouring ``n``, so beam search really runs its rounds) in a SEPARATE process, then
measures, at several concurrencies, samples per second and client CPU seconds per sample for:

    raw        openai.AsyncOpenAI, one request with n=16 per question
    litellm    litellm.acompletion, one request with n=16 per question
    best_of_n  ttc-agents best_of_n N=16 through the full graph (gateway, ledger, selection)
    beam       ttc-agents beam_search N=16 M=4 (rounds of n=4 requests per beam; the 4-step solution)

    python -m ttc_agents.bench.overhead --out bench-overhead [--questions 200] [--concurrency 1,16,128]

Writes ``overhead.json`` and ``overhead.png`` into ``--out`` and prints the ratios to the raw client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ttc_agents.bench._common import drive

__all__ = ["main", "measure"]

N = 16


def _question(i: int) -> str:
    return f"What is {i} * 7 + {i % 13}?"


def _clients(base_url: str) -> dict[str, Callable[[], Callable[[int], Awaitable[int]]]]:
    """Per variant, a factory (called inside the event loop) of a coroutine answering question i."""

    def raw() -> Callable[[int], Awaitable[int]]:
        import openai

        client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)

        async def one(i: int) -> int:
            response = await client.chat.completions.create(
                model="fake", messages=[{"role": "user", "content": _question(i)}], n=N, max_tokens=64
            )
            return len(response.choices)

        one.close = client.close  # type: ignore[attr-defined]
        return one

    def via_litellm() -> Callable[[int], Awaitable[int]]:
        from ttc_agents._llm.litellm import litellm

        async def one(i: int) -> int:
            response = await litellm.acompletion(
                model="openai/fake",
                api_base=base_url,
                api_key="none",
                messages=[{"role": "user", "content": _question(i)}],
                n=N,
                max_tokens=64,
                num_retries=0,
            )
            return len(response.choices)

        return one

    def graph(spec: Any) -> Callable[[], Callable[[int], Awaitable[int]]]:
        def make() -> Callable[[int], Awaitable[int]]:
            from pydantic import SecretStr

            from ttc_agents import ModelSpec, build_strategy_graph

            model = ModelSpec(name="openai/fake", api_base=base_url, api_key=SecretStr("none"), max_tokens=64)
            compiled = build_strategy_graph(spec, model=model)

            async def one(i: int) -> int:
                result = await compiled.ainvoke({"question": _question(i)})
                return int(result["ledger"].total.samples)

            return one

        return make

    from ttc_agents import BeamSearchSpec, BestOfNSpec

    return {
        "raw": raw,
        "litellm": via_litellm,
        "best_of_n": graph(BestOfNSpec(n=N, seed=0)),
        "beam": graph(BeamSearchSpec(n=N, width=4, max_rounds=4, seed=0)),
    }


async def _timed(
    factory: Callable[[], Callable[[int], Awaitable[int]]], questions: int, concurrency: int, bar: tqdm[Any]
) -> tuple[int, float, float]:
    """(samples, client CPU seconds, wall seconds) of one variant at one concurrency."""
    one = factory()
    await one(0)  # warm up imports and connections outside the measurement
    cpu, wall = time.process_time(), time.perf_counter()
    samples = await drive(questions, concurrency, one, bar)
    measured = samples, time.process_time() - cpu, time.perf_counter() - wall
    close = getattr(one, "close", None)
    if close is not None:
        await close()
    return measured


def measure(base_url: str, questions: int, concurrencies: list[int]) -> list[dict[str, Any]]:
    """Run every variant at every concurrency; one row per (variant, concurrency)."""
    rows = []
    clients = _clients(base_url)
    with tqdm(total=len(clients) * len(concurrencies) * questions, desc="overhead", unit="q") as bar:
        for concurrency in concurrencies:
            for name, factory in clients.items():
                samples, cpu, wall = asyncio.run(_timed(factory, questions, concurrency, bar))
                rows.append(
                    {
                        "variant": name,
                        "concurrency": concurrency,
                        "questions": questions,
                        "samples": samples,
                        "seconds": wall,
                        "samples_per_second": samples / wall,
                        "cpu_ms_per_sample": 1000 * cpu / samples,
                    }
                )
    return rows


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(dict.fromkeys(r["variant"] for r in rows))
    concurrencies = sorted({r["concurrency"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(variants)
    for k, variant in enumerate(variants):
        xs = [i + k * width for i in range(len(concurrencies))]
        by_c = {r["concurrency"]: r for r in rows if r["variant"] == variant}
        axes[0].bar(xs, [by_c[c]["samples_per_second"] for c in concurrencies], width, label=variant)
        axes[1].bar(xs, [by_c[c]["cpu_ms_per_sample"] for c in concurrencies], width, label=variant)
    for ax, title in zip(axes, ("samples per second (higher is better)", "client CPU ms per sample"), strict=True):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(concurrencies))], [f"c={c}" for c in concurrencies])
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-overhead")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--concurrency", default="1,16,128")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _clients("http://127.0.0.1:1/v1")  # import every variant's dependencies before freezing them
    from ttc_agents._core.gc import freeze_after_imports
    from ttc_agents.bench._canned import CannedServer

    freeze_after_imports()
    with CannedServer() as server:
        rows = measure(server.url, args.questions, [int(c) for c in args.concurrency.split(",")])
    raw = {r["concurrency"]: r for r in rows if r["variant"] == "raw"}
    for row in rows:
        row["throughput_vs_raw"] = row["samples_per_second"] / raw[row["concurrency"]]["samples_per_second"]
    (out / "overhead.json").write_text(json.dumps(rows, indent=2))
    _plot(rows, out / "overhead.png")
    print(f"{'variant':10} {'conc':>5} {'samples/s':>10} {'cpu ms/sample':>14} {'vs raw':>7}")
    for row in rows:
        print(
            f"{row['variant']:10} {row['concurrency']:>5} {row['samples_per_second']:>10.0f} "
            f"{row['cpu_ms_per_sample']:>14.3f} {row['throughput_vs_raw']:>7.2f}"
        )
    print(f"wrote {out / 'overhead.json'} and {out / 'overhead.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
