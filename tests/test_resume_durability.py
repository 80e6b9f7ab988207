"""Resume and durability: runs killed with SIGKILL at random points resume to the same final output, and
the record store, the checkpoints and the batch output are never left corrupt.

- A batch (``ttc batch`` with the record store on) is killed several times at seeded random points,
  resumed with the same command each time, then run to the end: every item has exactly one record,
  the answers equal those of an uninterrupted run, and after every kill the store passes SQLite's
  integrity check and the output holds only complete JSON lines (plus at most one cut-off line that
  the next run removes).
- Strategy graphs with a SQLite checkpointer (and the record store) are killed mid-graph several
  times; each killed thread resumes from its last checkpoint (``ainvoke(None, config)``) to the same
  answer and candidates as an uninterrupted run, and both databases pass the integrity check after
  every kill.
- Stopping a graph after every round and resuming it from the checkpointer gives the same result.

The runs that get killed are forked from one helper process that imported the package once (so a
trial does not pay the import again); each is a real process killed with SIGKILL. The scripted
provider answers (seeded, deterministic), so what a run answers does not depend on when it was killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from suite_totals import count

from ttc_agents import ArithmeticStepVerifier, BeamSearchSpec, DVTSSpec, RevisionSpec, build_strategy_graph
from ttc_agents._apps.workflow import load_workflow
from ttc_agents.integrations.batch import abatch
from ttc_agents.testing import FakeOpenAIServer, FakeServerConfig

CONFIG = """
workflows:
  beam:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: beam_search, n: 4, width: 2, seed: 0}
"""
ITEMS = 100
TRIALS = 3
BOUND = 120.0
"""Seconds a run may take: a bound on the test, not a timing assertion."""
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true"}
GRAPH_SPEC = BeamSearchSpec(n=4, width=2, max_rounds=8, seed=3)
GRAPH_MODEL = "scripted/arith-hard"


def graph_questions(count: int) -> list[str]:
    return [f"What is {3 + i} * {7 + i % 5} + {11 * i} - {i % 4} * 6?" for i in range(count)]


FORK_SERVER = textwrap.dedent(
    """
    import asyncio, json, os, sys, traceback

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    import ttc_agents.integrations.batch  # what `ttc batch` imports, loaded once before forking
    from ttc_agents import ArithmeticStepVerifier, BeamSearchSpec, Gateway, build_strategy_graph, checkpoint_serializer
    from ttc_agents._llm.gateway import get_default_gateway
    from ttc_agents._llm.store import ResponseStore
    from ttc_agents.cli import main as cli

    SPEC, MODEL = BeamSearchSpec.model_validate_json(sys.argv[1]), sys.argv[2]

    async def run_graphs(checkpoints, store_path, questions):
        store = ResponseStore(store_path)
        gateway = Gateway(store=store, resolvers=get_default_gateway().resolvers)
        async with AsyncSqliteSaver.from_conn_string(checkpoints) as saver:
            saver.serde = checkpoint_serializer()
            graph = build_strategy_graph(SPEC, model=MODEL, verifier=ArithmeticStepVerifier(), gateway=gateway)
            graph = graph.copy({"checkpointer": saver})
            for i, question in enumerate(questions):
                config = {"configurable": {"thread_id": f"t{i}"}}
                state = await graph.aget_state(config)
                # Finished when the last checkpoint has no tasks left. (`next` alone does not tell: a run
                # killed after a task saved its writes, before the next checkpoint, has a checkpoint whose
                # tasks all have results, so `next` is empty, but the thread is not done.)
                if state.values and not state.tasks:
                    continue
                print(f"start {i} {'resume' if state.tasks else 'new'}", flush=True)
                await graph.ainvoke(None if state.tasks else {"question": question}, config)
                print(f"done {i}", flush=True)
        store.close()

    def child(job):
        fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        code = 0
        try:
            if job["kind"] == "cli":
                code = cli(job["argv"])
            else:
                asyncio.run(run_graphs(*job["args"]))
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "start":
            pid = os.fork()
            if pid == 0:
                child(command)
            reply = {"pid": pid}
        else:  # "poll" (without waiting) or "wait"
            pid, status = os.waitpid(command["pid"], os.WNOHANG if command["op"] == "poll" else 0)
            reply = {"running": pid == 0}
            if pid:
                reply["signal"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
                reply["code"] = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        print(json.dumps(reply), flush=True)
    """
)


class ForkServer:
    """A helper process that imported the package once and forks the runs this test kills."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER, GRAPH_SPEC.model_dump_json(), GRAPH_MODEL],
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the fork server died"
        reply: dict[str, Any] = json.loads(line)
        return reply

    def start(self, log: Path, **job: Any) -> int:
        return int(self.ask(op="start", log=str(log), **job)["pid"])

    def finished(self, pid: int) -> dict[str, Any] | None:
        reply = self.ask(op="poll", pid=pid)
        return None if reply["running"] else reply

    def wait(self, pid: int) -> dict[str, Any]:
        return self.ask(op="wait", pid=pid)

    def run(self, log: Path, **job: Any) -> dict[str, Any]:
        """Start a run and wait for its end (bounded: a run that takes too long is killed)."""
        pid = self.start(log, **job)
        deadline = time.monotonic() + 3 * BOUND
        while (ended := self.finished(pid)) is None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                return self.wait(pid)
            time.sleep(0.05)
        return ended

    def kill_when(self, pid: int, ready: Callable[[], bool], extra_delay: float) -> dict[str, Any] | None:
        """SIGKILL run ``pid`` once ``ready()`` holds (then ``extra_delay`` s later); None if it ended first."""
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline and not ready():
            if self.finished(pid) is not None:
                return None
            time.sleep(0.01)
        time.sleep(extra_delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover - it ended on its own and was already reaped
            return None
        ended = self.wait(pid)
        return ended if ended["signal"] == signal.SIGKILL else None

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def forks() -> Iterator[ForkServer]:
    server = ForkServer()
    try:
        yield server
    finally:
        server.close()


def integrity(path: Path) -> str:
    """SQLite's verdict on a database file (its WAL included)."""
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def complete_lines(path: Path) -> list[dict[str, Any]]:
    """The records of OUT; every complete line must be one JSON record (a cut-off last line is allowed)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def batch_rows(count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        a, b, c = 3 + i % 47, 2 + (i * 7) % 13, 5 + (i * 11) % 89
        out.append({"id": f"q{i}", "question": f"What is {a} * {b} + {c} - {i % 9} * 3?"})
    return out


async def test_a_batch_killed_at_random_points_resumes_to_the_same_output(tmp_path: Path, forks: ForkServer) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in batch_rows(ITEMS)), encoding="utf-8")
    config = tmp_path / "workflows.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    out, store, log = tmp_path / "out.jsonl", tmp_path / "store.sqlite", tmp_path / "log.txt"
    argv = [
        "batch",
        str(source),
        str(out),
        "--workflow",
        "beam",
        "--config",
        str(config),
        "--max-concurrency",
        "2",
        "--record",
        str(store),
        "--no-progress",
        "--json",
    ]

    rng = random.Random(7)
    kills, written = 0, 0
    for trial in range(TRIALS):
        # Kill after a random number of new records (the first time: possibly before any), plus a random
        # part of an item's time, so that the kill lands anywhere: mid-item, mid-write, mid-commit.
        target = written + rng.randint(0 if trial == 0 else 5, 30)
        pid = forks.start(log, kind="cli", argv=argv)
        if (
            forks.kill_when(
                pid, lambda t=target: out.exists() and out.read_bytes().count(b"\n") >= t, rng.uniform(0, 0.05)
            )
            is None
        ):
            break  # it finished first
        kills += 1
        records = complete_lines(out)  # complete lines parse; at most the last line is cut off
        written = len(records)
        assert len({r["id"] for r in records}) == written  # no id twice
        if store.exists():
            assert integrity(store) == "ok"
    assert kills >= 2, "the batch finished before it could be killed twice"

    ended = forks.run(log, kind="cli", argv=argv)
    assert ended["code"] == 0, log.read_text()[-3000:]
    assert out.read_bytes().endswith(b"\n")
    records = complete_lines(out)
    assert sorted(r["id"] for r in records) == sorted(f"q{i}" for i in range(ITEMS))  # every item exactly once
    assert all("answer" in r for r in records)
    assert integrity(store) == "ok"

    # The same answers as a run that was never killed (no store: nothing replayed).
    reference = await abatch(batch_rows(ITEMS), load_workflow(config, "beam"), max_concurrency=4)
    assert {r["id"]: r["answer"] for r in records} == {r["id"]: r["answer"] for r in reference}
    count("kill/resume", "items", ITEMS)
    count("kill/resume", "kills", kills)
    count("kill/resume", "lost", ITEMS - len({r["id"] for r in records}))


SERVED = """
workflows:
  served:
    models: {{main: {{name: openai/fake, api_base: '{url}', api_key: none, max_tokens: 64, timeout: 10}}}}
    strategy: {{strategy: best_of_n, n: 2, seed: 0}}
"""
TOTAL_TOKENS = 8000


def test_kills_and_resumes_never_spend_past_the_total(tmp_path: Path, forks: ForkServer) -> None:
    """Two SIGKILLs mid-batch and a resume, under a total token budget, against a loopback server that
    bills every answer it sends (also to a client that was killed). Before the grant journal, the
    spend of the items in flight at each kill was known to no later run: the runs together billed
    more than the total. Now every grant in flight is journaled before it is spent, and a resumed run
    counts an unfinished grant as spent, so the server's bill over all runs stays within the total."""
    rows = batch_rows(80)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    out, log = tmp_path / "out.jsonl", tmp_path / "log.txt"
    with FakeOpenAIServer(FakeServerConfig(completion_tokens=60, latency=0.05)) as server:
        config = tmp_path / "served.yaml"
        config.write_text(SERVED.format(url=server.url), encoding="utf-8")
        argv = [
            "batch", str(source), str(out), "--workflow", "served", "--config", str(config),
            "--max-concurrency", "4", "--max-tokens", "400", "--total-tokens", str(TOTAL_TOKENS),
            "--no-progress", "--json",
        ]  # fmt: skip
        rng = random.Random(5)
        kills, written = 0, 0
        for _ in range(2):
            target = written + rng.randint(4, 10)
            pid = forks.start(log, kind="cli", argv=argv)
            ready = lambda t=target: out.exists() and out.read_bytes().count(b"\n") >= t  # noqa: E731
            if forks.kill_when(pid, ready, rng.uniform(0.0, 0.04)) is None:
                break
            kills += 1
            written = len(complete_lines(out))
        ended = forks.run(log, kind="cli", argv=argv)
        assert server.wait_idle(timeout=30)
        billed = server.billed.total_tokens
    assert kills == 2, "the batch finished before it could be killed twice"
    assert ended["code"] in (0, 1), log.read_text()[-3000:]  # 1: some items were out of budget
    records = complete_lines(out)
    ids = [r["id"] for r in records]
    lost = len({row["id"] for row in rows} - set(ids))
    recorded = sum((r.get("usage") or {}).get("prompt_tokens", 0) + (r.get("usage") or {}).get("completion_tokens", 0)
                   for r in records)  # fmt: skip
    count("kill/resume", "items", len(rows))
    count("kill/resume", "kills", kills)
    count("kill/resume", "lost", lost)
    count("kill/resume", "overruns", int(billed > TOTAL_TOKENS))
    count("kill/resume", "tokens billed past the total", max(0, billed - TOTAL_TOKENS))
    count("kill/resume", "tokens billed, not in any record", billed - recorded)
    assert lost == 0 and len(ids) == len(set(ids))
    assert recorded <= billed <= TOTAL_TOKENS  # the total is a hard limit over all the runs
    assert any("BatchBudgetExhausted" in r.get("error", "") for r in records)  # the total did bind


async def test_graphs_killed_mid_run_resume_from_their_checkpoints(tmp_path: Path, forks: ForkServer) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from ttc_agents import checkpoint_serializer

    questions = graph_questions(8)
    checkpoints, store, log = tmp_path / "checkpoints.sqlite", tmp_path / "store.sqlite", tmp_path / "log.txt"
    job = {"kind": "graphs", "args": [str(checkpoints), str(store), questions]}

    rng = random.Random(11)
    kills = 0
    for _ in range(TRIALS + 1):
        starts = log.read_text().count("start ") if log.exists() else 0
        pid = forks.start(log, **job)
        wanted = starts + rng.randint(1, 3)

        def started(wanted: int = wanted) -> bool:
            return log.exists() and log.read_text(errors="replace").count("start ") >= wanted

        if forks.kill_when(pid, started, rng.uniform(0.0, 0.02)) is None:
            break
        kills += 1
        for database in (checkpoints, store):
            if database.exists():
                assert integrity(database) == "ok"
    ended = forks.run(log, **job)
    assert ended["code"] == 0, log.read_text()[-3000:]
    assert kills >= 2
    assert integrity(checkpoints) == "ok" and integrity(store) == "ok"
    resumed = log.read_text().count("resume")

    # Every thread finished, with the answer and candidates of a run that was never killed.
    graph = build_strategy_graph(GRAPH_SPEC, model=GRAPH_MODEL, verifier=ArithmeticStepVerifier())
    async with AsyncSqliteSaver.from_conn_string(str(checkpoints)) as saver:
        saver.serde = checkpoint_serializer()
        checkpointed = graph.copy({"checkpointer": saver})
        for i, question in enumerate(questions):
            state = await checkpointed.aget_state({"configurable": {"thread_id": f"t{i}"}})
            assert state.values and not state.next and not state.tasks, f"thread t{i} did not finish"
            alone = await graph.ainvoke({"question": question})
            assert state.values["answer"] == alone["answer"]
            assert [c.steps for c in state.values["candidates"]] == [c.steps for c in alone["candidates"]]
    count("kill/resume", "graph kills", kills)
    count("kill/resume", "graph threads resumed", resumed)


@pytest.mark.parametrize(
    ("spec", "node"),
    [
        (BeamSearchSpec(n=4, width=2, max_rounds=6, seed=3), "prune"),
        (DVTSSpec(n=4, width=2, max_rounds=6, seed=3), "prune"),
        (RevisionSpec(attempts=4, chains=2, seed=3), "verify"),
    ],
    ids=["beam_search", "dvts", "revision"],
)
async def test_a_graph_stopped_after_any_round_resumes_from_its_checkpoint(
    tmp_path: Path, spec: Any, node: str
) -> None:
    """Stop after every round (``interrupt_after``), resume from the checkpoint each time: the same answer
    and candidates as an uninterrupted run. Before the fix, candidates came back from the checkpoint with
    list steps and the next expansion failed (list + tuple)."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from ttc_agents import checkpoint_serializer

    graph = build_strategy_graph(spec, model="scripted/arith-hard", verifier=ArithmeticStepVerifier())
    question = "What is 48 * 17 - 23 * 9 + 310?"
    alone = await graph.ainvoke({"question": question})
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "checkpoints.sqlite")) as saver:
        saver.serde = checkpoint_serializer()
        stepped = graph.copy({"checkpointer": saver})
        config = {"configurable": {"thread_id": "stepped"}}
        result = await stepped.ainvoke({"question": question}, config, interrupt_after=[node])
        stops = 0
        while (await stepped.aget_state(config)).next:
            stops += 1
            result = await stepped.ainvoke(None, config, interrupt_after=[node])
    assert stops >= 2
    assert result["answer"] == alone["answer"]
    assert [c.steps for c in result["candidates"]] == [c.steps for c in alone["candidates"]]
    assert result["ledger"].total.samples == alone["ledger"].total.samples
