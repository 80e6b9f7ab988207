"""Orchestration speed side by side with peers, against one loopback OpenAI-compatible server.

The server (:mod:`ttc_agents.bench._canned`: canned step-by-step replies honouring ``n`` and ``stop``, no
model work) runs in its own process, and so does every client, so each client's CPU and peak RSS are its
own (the ttc-agents client imports only ttc-agents: no LiteLLM on this path, see
:mod:`ttc_agents._llm.openai_http`). Clients:

    openai     the raw openai AsyncOpenAI client, one request with n=N per question (best-of-N only)
    aiohttp    bare aiohttp, one request with n=N per question: the transport floor (best-of-N only)
    ttc        ttc-agents: best-of-N (one request with n) and beam search (width 4, 4 rounds) graphs
    its_hub    its_hub: BestOfN and BeamSearch (beam_width N/4, so N/4 beams are kept and each is
               expanded by 4, as in ttc-agents), on its OpenAI-compatible aiohttp client, unbounded
               orchestrator concurrency (its fastest setting)

Both frameworks score with the same cheap Python scorer (a CRC of the step text). For every method, N
and number of questions in flight, the clients take turns (interleaved repetitions; the order rotates),
and the table reports medians: client CPU ms per question, questions/s, and the ratios the goal names.

    pip install 'ttc-agents[peers]'
    python -m ttc_agents.bench.peers --out bench-peers [--n 4,16,64] [--concurrency 1,16] [--reps 3]

Writes ``peers.json`` (every measurement, medians, peak RSS per client) and ``peers.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from ttc_agents.bench._common import drive

__all__ = ["CLIENTS", "main", "score_text"]

CLIENTS: dict[str, tuple[str, ...]] = {
    "openai": ("best_of_n",),
    "aiohttp": ("best_of_n",),
    "ttc": ("best_of_n", "beam"),
    "its_hub": ("best_of_n", "beam"),
}
"""Each client and the methods it runs."""

WIDTH = 4
ROUNDS = 4
MAX_TOKENS = 256
PEERS_EXTRA = "pip install 'ttc-agents[peers]'"


def score_text(text: str) -> float:
    """The cheap scorer both frameworks use: a step's (or solution's last line's) CRC, in [0, 1)."""
    return (zlib.crc32(text.encode()) % 997) / 997


def _question(i: int) -> str:
    return f"What is {i} * 7 + {i % 13}?"


One = Callable[[int], Awaitable[int]]
"""Answers question i; returns the samples it generated."""


# -- the clients (each runs in a worker process of its own) ------------------------------------------------


async def _openai_client(url: str, method: str, n: int) -> One:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)

    async def one(i: int) -> int:
        response = await client.chat.completions.create(
            model="canned", messages=[{"role": "user", "content": _question(i)}], n=n, max_tokens=MAX_TOKENS
        )
        texts = [c.message.content or "" for c in response.choices]
        max(texts, key=score_text)
        return len(texts)

    return one


async def _aiohttp_client(url: str, method: str, n: int) -> One:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    endpoint = url + "/chat/completions"

    async def one(i: int) -> int:
        body = {"model": "canned", "messages": [{"role": "user", "content": _question(i)}], "n": n}
        async with session.post(endpoint, json={**body, "max_tokens": MAX_TOKENS}) as response:
            data = json.loads(await response.read())
        texts = [c["message"]["content"] or "" for c in data["choices"]]
        max(texts, key=score_text)
        return len(texts)

    return one


async def _ttc_client(url: str, method: str, n: int) -> One:
    from pydantic import SecretStr

    from ttc_agents import BeamSearchSpec, BestOfNSpec, ModelSpec, build_strategy_graph

    def scorer(question: str, steps: Sequence[Sequence[str]]) -> list[list[float]]:
        return [[score_text(step) for step in candidate] for candidate in steps]

    model = ModelSpec(name="openai/canned", api_base=url, api_key=SecretStr("none"), max_tokens=MAX_TOKENS)
    spec = (
        BestOfNSpec(n=n, seed=0)
        if method == "best_of_n"
        else BeamSearchSpec(n=n, width=min(WIDTH, n), max_rounds=ROUNDS, seed=0)
    )
    graph = build_strategy_graph(spec, model=model, verifier=scorer)

    async def one(i: int) -> int:
        result = await graph.ainvoke({"question": _question(i)})
        return int(result["ledger"].total.samples)

    return one


async def _its_hub_client(url: str, method: str, n: int) -> One:
    import warnings

    warnings.simplefilter("ignore")  # its_hub's step generation warns (deprecated API) on every round
    from its_hub.api import AbstractOutcomeRewardModel, AbstractProcessRewardModel
    from its_hub.core.algorithms.beam_search import BeamSearch
    from its_hub.core.algorithms.bon import BestOfN
    from its_hub.core.lms.openai_lm import OpenAICompatibleLanguageModel
    from its_hub.core.lms.step_generation import StepGeneration
    from its_hub.core.orchestrator import LMOrchestrator

    class Outcome(AbstractOutcomeRewardModel):  # type: ignore[misc]
        def score(self, conversations: Any, *args: Any, **kwargs: Any) -> list[float]:
            return [score_text(str(c[-1].content or "").rsplit("\n", 1)[-1]) for c in conversations]

        async def ascore(self, conversations: Any, *args: Any, **kwargs: Any) -> list[float]:
            return self.score(conversations)

    class Process(AbstractProcessRewardModel):  # type: ignore[misc]
        def score(self, prompt: Any, steps: list[str]) -> list[float]:
            return [score_text(text.rsplit("\n", 1)[-1]) for text in steps]

        async def ascore(self, prompt: Any, steps: list[str]) -> list[float]:
            return self.score(prompt, steps)

    lm = OpenAICompatibleLanguageModel(endpoint=url, api_key="none", model_name="canned", max_tokens=MAX_TOKENS)
    if method == "best_of_n":
        algorithm: Any = BestOfN(Outcome(), orchestrator=LMOrchestrator(max_concurrency=-1))
    else:
        generation = StepGeneration(max_steps=ROUNDS, step_token="\n", stop_token="\\boxed")
        algorithm = BeamSearch(generation, Process(), beam_width=max(1, n // WIDTH))

    async def one(i: int) -> int:
        await algorithm.ainfer(lm, _question(i), budget=n)
        return n if method == "best_of_n" else 0  # beam: counted by the server

    return one


_FACTORIES: dict[str, Callable[[str, str, int], Coroutine[Any, Any, One]]] = {
    "openai": _openai_client,
    "aiohttp": _aiohttp_client,
    "ttc": _ttc_client,
    "its_hub": _its_hub_client,
}


async def _measure(one: One, questions: int, concurrency: int) -> dict[str, float]:
    await one(0)  # warm up: imports, connections, compiled graphs
    cpu, wall = time.process_time(), time.perf_counter()
    samples = await drive(range(1, questions + 1), concurrency, one)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_s": cpu, "wall_s": wall, "samples": samples}


def _worker(kind: str, url: str) -> None:
    """The child side: read one JSON command per line, answer one JSON line; the peak RSS at EOF."""
    import resource

    clients: dict[tuple[str, int], One] = {}
    with asyncio.Runner() as runner:
        for line in sys.stdin:
            command = json.loads(line)
            key = (command["method"], command["n"])
            if key not in clients:
                clients[key] = runner.run(_FACTORIES[kind](url, *key))
            result = runner.run(_measure(clients[key], command["questions"], command["concurrency"]))
            print(json.dumps(result), flush=True)
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


class _Worker:
    """One client in a process of its own; what it writes to stderr goes to ``log``."""

    def __init__(self, kind: str, url: str, log: Path) -> None:
        self.kind = kind
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ttc_agents.bench.peers", "--worker", kind, "--url", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.kind} client exited (exit code {self.process.wait()}); see {self.log.name}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> float | None:
        """End the worker; its peak RSS in MB."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        line = self.process.stdout.readline()
        self.process.wait(timeout=30)
        self.log.close()
        return float(json.loads(line)["rss_mb"]) if line else None


def _server_requests(url: str, reset: bool = False) -> int:
    import urllib.request

    base = url.removesuffix("/v1")
    request = urllib.request.Request(base + ("/stats/reset" if reset else "/stats"), method="POST" if reset else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.loads(response.read())["requests"])


def run(
    ns: Sequence[int], concurrencies: Sequence[int], reps: int, questions: int, clients: Sequence[str], out: Path
) -> dict[str, Any]:
    """Every (method, N, concurrency) cell for every client, ``reps`` interleaved rounds; raw rows."""
    from tqdm import tqdm

    from ttc_agents.bench._canned import CannedServer

    rows: list[dict[str, Any]] = []
    cells = [(c, m, n, q) for c in clients for m in CLIENTS[c] for n in ns for q in concurrencies]
    with CannedServer() as server:
        workers = {kind: _Worker(kind, server.url, out / f"client-{kind}.log") for kind in clients}
        try:
            with tqdm(total=reps * len(cells), desc="peers", unit="run") as bar:
                for rep in range(reps):
                    for n in ns:
                        for concurrency in concurrencies:
                            turn = [(c, m) for c, m, cn, cq in cells if cn == n and cq == concurrency]
                            shift = rep % len(turn)
                            for kind, method in turn[shift:] + turn[:shift]:  # the order rotates per round
                                count = questions if concurrency > 1 else max(4, questions // 2)
                                _server_requests(server.url, reset=True)
                                command = {"method": method, "n": n, "concurrency": concurrency, "questions": count}
                                measured = workers[kind].ask(command)
                                requests = _server_requests(server.url) * count / (count + 1)  # less the warm-up's
                                rows.append(
                                    {"client": kind, **command, "rep": rep, **measured, "server_requests": requests}
                                )
                                bar.update(1)
        finally:
            rss = {kind: worker.close() for kind, worker in workers.items()}
    return {"rows": rows, "rss_mb": rss}


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (client, method, N, concurrency): CPU ms per question, questions/s, samples/s."""
    groups: dict[tuple[str, str, int, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["client"], row["method"], row["n"], row["concurrency"]), []).append(row)
    out = []
    for (client, method, n, concurrency), runs in groups.items():
        out.append(
            {
                "client": client,
                "method": method,
                "n": n,
                "concurrency": concurrency,
                "cpu_ms_per_question": statistics.median(1000 * r["cpu_s"] / r["questions"] for r in runs),
                "questions_per_s": statistics.median(r["questions"] / r["wall_s"] for r in runs),
                "samples_per_s": statistics.median(n * r["questions"] / r["wall_s"] for r in runs),
                "requests_per_question": statistics.median(r["server_requests"] / r["questions"] for r in runs),
                "reps": len(runs),
            }
        )
    return out


def _table(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (method, N, concurrency) with the goal's ratios."""
    by = {(s["client"], s["method"], s["n"], s["concurrency"]): s for s in summary}
    lines = []
    for method, n, concurrency in sorted({(s["method"], s["n"], s["concurrency"]) for s in summary}):
        ttc, hub = by.get(("ttc", method, n, concurrency)), by.get(("its_hub", method, n, concurrency))
        raw = by.get(("openai", method, n, concurrency))
        floor = by.get(("aiohttp", method, n, concurrency))
        line: dict[str, Any] = {"method": method, "n": n, "concurrency": concurrency}
        for name, row in (("ttc", ttc), ("its_hub", hub), ("openai", raw), ("aiohttp", floor)):
            if row is not None:
                line[f"{name}_cpu_ms"] = row["cpu_ms_per_question"]
                line[f"{name}_qps"] = row["questions_per_s"]
                line[f"{name}_requests"] = row["requests_per_question"]
        if ttc and hub:
            line["cpu_ttc_over_its_hub"] = ttc["cpu_ms_per_question"] / hub["cpu_ms_per_question"]
            line["qps_ttc_over_its_hub"] = ttc["questions_per_s"] / hub["questions_per_s"]
        if ttc and raw:
            line["samples_ttc_over_openai"] = ttc["samples_per_s"] / raw["samples_per_s"]
        lines.append(line)
    return lines


_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ttc CPU ms/q", "ttc_cpu_ms", ".2f"),
    ("its_hub CPU ms/q", "its_hub_cpu_ms", ".2f"),
    ("CPU ttc/its_hub", "cpu_ttc_over_its_hub", ".2f"),
    ("ttc q/s", "ttc_qps", ".1f"),
    ("its_hub q/s", "its_hub_qps", ".1f"),
    ("q/s ttc/its_hub", "qps_ttc_over_its_hub", ".2f"),
    ("openai CPU ms/q", "openai_cpu_ms", ".2f"),
    ("aiohttp CPU ms/q", "aiohttp_cpu_ms", ".2f"),
    ("samples/s ttc/openai", "samples_ttc_over_openai", ".2f"),
    ("requests/q ttc", "ttc_requests", ".0f"),
    ("requests/q its_hub", "its_hub_requests", ".0f"),
)
"""The table's columns after method, N and questions in flight: (header, key, format)."""


def _format(lines: Sequence[dict[str, Any]], rss: dict[str, float | None]) -> str:
    """The table as markdown, then each client's peak RSS."""
    header = ["method", "N", "in flight", *(title for title, _, _ in _COLUMNS)]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for line in lines:
        cells = [str(line["method"]), str(line["n"]), str(line["concurrency"])]
        cells += ["-" if line.get(key) is None else format(line[key], spec) for _, key, spec in _COLUMNS]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("peak RSS (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items() if v is not None))
    return "\n".join(out)


def _plot(summary: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concurrencies = sorted({s["concurrency"] for s in summary})
    fig, axes = plt.subplots(2, len(concurrencies), figsize=(5.5 * len(concurrencies), 8), squeeze=False)
    for col, concurrency in enumerate(concurrencies):
        for row, (metric, title) in enumerate(
            (
                ("cpu_ms_per_question", "client CPU ms per question (lower is better)"),
                ("questions_per_s", "questions/s"),
            )
        ):
            ax = axes[row][col]
            for client, method in sorted({(s["client"], s["method"]) for s in summary}):
                points = sorted(
                    (s["n"], s[metric])
                    for s in summary
                    if s["client"] == client and s["method"] == method and s["concurrency"] == concurrency
                )
                ax.plot(*zip(*points, strict=True), marker="o", label=f"{client} {method}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("N")
            ax.set_title(f"{title}, {concurrency} in flight", fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _check_peers(clients: Sequence[str]) -> None:
    import importlib.util

    missing = [name for name in ("openai", "its_hub", "aiohttp") if importlib.util.find_spec(name) is None]
    wanted = [m for m in missing if m in clients or m == "aiohttp"]
    if wanted:
        raise SystemExit(f"missing {', '.join(wanted)}: {PEERS_EXTRA}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-peers")
    parser.add_argument("--n", default="4,16,64", help="sample budgets N (comma-separated)")
    parser.add_argument("--concurrency", default="1,16", help="questions in flight (comma-separated)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--questions", type=int, default=32, help="questions per run (half that at 1 in flight)")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.url)
        return 0
    clients = [c for c in args.clients.split(",") if c]
    unknown = [c for c in clients if c not in CLIENTS]
    if unknown:
        parser.error(f"unknown client(s) {', '.join(unknown)}; choose from {', '.join(CLIENTS)}")
    _check_peers(clients)
    if args.reps < 1 or args.questions < 1:
        parser.error("--reps and --questions must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ns = [int(x) for x in args.n.split(",")]
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    result = run(ns, concurrencies, args.reps, args.questions, clients, out)
    summary = summarise(result["rows"])
    lines = _table(summary)
    (out / "peers.json").write_text(
        json.dumps({"summary": summary, "table": lines, "rss_mb": result["rss_mb"], "rows": result["rows"]}, indent=2)
    )
    _plot(summary, out / "peers.png")
    print(_format(lines, result["rss_mb"]))
    print(f"wrote {out / 'peers.json'} and {out / 'peers.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
