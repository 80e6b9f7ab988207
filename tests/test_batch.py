"""The batch runner: streamed records, isolated errors, bad input, total budgets, resume after kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ttc_agents import BestOfNSpec, Budget, Gateway, LedgerSnapshot, ModelSpec, RetryPolicy, build_strategy_graph
from ttc_agents._apps.workflow import Workflow, load_workflow
from ttc_agents._core.budget import LedgerEntry, Usage
from ttc_agents._core.specs import BeamSearchSpec
from ttc_agents._routing.policy import Cost, Policy, PolicyAction, PolicyEntry
from ttc_agents.cli import main
from ttc_agents.integrations.batch import (
    BatchAborted,
    BatchInputError,
    BatchItem,
    BatchOutputError,
    abatch,
    journal_path,
    read_jsonl,
    run_batch,
)
from ttc_agents.testing import FakeOpenAIServer, FakeServerConfig, Fault

MODEL = "scripted/arith"

CONFIG = """
workflows:
  bon:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: best_of_n, n: 8, seed: 0}
  beam:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: beam_search, n: 8, width: 2, seed: 0}
  router:
    models: {main: {name: scripted/arith, max_tokens: 128}}
    verifier: arithmetic
    policy: policy.json
    budget_unit: tokens
"""


def arithmetic_rows(count: int, start: int = 0) -> list[dict[str, Any]]:
    rows = []
    for i in range(start, start + count):
        a, b, c = 3 + i % 47, 2 + (i * 7) % 13, 5 + (i * 11) % 89
        rows.append({"id": f"q{i}", "question": f"What is {a} * {b} + {c}?", "answer": a * b + c})
    return rows


def write_jsonl(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def spent(rows: Sequence[dict[str, Any]], unit: str) -> float:
    """What the records say was spent (answered items' usage plus failed items' charge)."""
    total = 0.0
    for row in rows:
        usage = row.get("usage") or {}
        if unit == "max_tokens":
            total += usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        else:
            total += usage.get(unit.removeprefix("max_"), 0)
        total += (row.get("charged") or {}).get(unit, 0)
    return total


def make_policy() -> Policy:
    def entry(bin_: int, budget: int, strategy: BestOfNSpec | BeamSearchSpec, accuracy: float, tokens: float) -> Any:
        return PolicyEntry(
            bin=bin_,
            budget=budget,
            action=PolicyAction(model=MODEL, strategy=strategy),
            accuracy=accuracy,
            cv_accuracy=accuracy,
            cost=Cost(samples=budget, tokens=tokens),
            questions=10,
        )

    table = []
    for bin_ in range(1, 6):
        table.append(entry(bin_, 4, BestOfNSpec(n=4, seed=0), 0.9 - 0.15 * bin_, 400))
        table.append(entry(bin_, 8, BestOfNSpec(n=8, seed=0), 0.92 - 0.12 * bin_, 800))
        table.append(entry(bin_, 8, BeamSearchSpec(n=8, width=2, seed=0), 0.95 - 0.05 * bin_, 2500))
    return Policy(
        models=[MODEL],
        verifier="arithmetic",
        dataset="synthetic",
        thresholds=[0.5, 0.7, 0.85, 0.95],
        table=table,
        candidates=table,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "workflows.yaml"
    path.write_text(CONFIG)
    make_policy().save(tmp_path / "policy.json")
    return path


class FakeGraph:
    """Answers with the question upper-cased, spending ``samples`` (or what its budget allows); ``hold``
    questions wait until released; counts calls."""

    def __init__(self, hold: Sequence[str] = (), samples: int = 1) -> None:
        self.release = asyncio.Event()
        self.hold = set(hold)
        self.samples = samples
        self.calls: list[str] = []

    async def ainvoke(self, request: dict[str, Any], config: Any = None) -> dict[str, Any]:
        self.calls.append(request["question"])
        if request["question"] in self.hold:
            await self.release.wait()
        budget = request.get("budget")
        samples = min(self.samples, budget.max_samples or self.samples) if budget is not None else self.samples
        usage = Usage(calls=1, samples=samples, prompt_tokens=10, completion_tokens=5)
        return {
            "answer": request["question"].upper(),
            "ledger": LedgerSnapshot(entries=(LedgerEntry("fake", "fake", usage),)),
            "stopped_by": None,
            "strategy": {"strategy": "fake"},
        }


async def wait_for_lines(path: Path, count: int, rounds: int = 2000) -> None:
    for _ in range(rounds):
        if path.exists() and len(records(path)) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{path} never reached {count} records")


# ---------------------------------------------------------------------------------------------


async def test_records_stream_as_items_finish_in_any_order(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    graph = FakeGraph(hold=["slow"])
    run = asyncio.create_task(run_batch(["slow", "a", "b", "c"], graph, out=out, max_concurrency=4, progress=False))
    await wait_for_lines(out, 3)  # the three fast items are on disk while the first one still runs
    assert {r["question"] for r in records(out)} == {"a", "b", "c"}
    assert not run.done()
    graph.release.set()
    summary = await run
    rows = records(out)
    assert [r["id"] for r in rows][-1] == "1" and sorted(r["id"] for r in rows) == ["1", "2", "3", "4"]
    assert all(r["answer"] == r["question"].upper() and r["usage"]["samples"] == 1 for r in rows)
    assert summary.answered == 4 and summary.errors == 0 and summary.usage.samples == 4


async def test_abatch_returns_records_in_input_order() -> None:
    graph = FakeGraph(hold=["first"])

    async def release_later() -> None:
        while len(graph.calls) < 3:
            await asyncio.sleep(0.001)
        graph.release.set()

    releaser = asyncio.create_task(release_later())
    results = await abatch(["first", "second", {"id": "x", "question": "third"}], graph, max_concurrency=3)
    await releaser
    assert [r["answer"] for r in results] == ["FIRST", "SECOND", "THIRD"]
    assert [r["id"] for r in results] == ["1", "2", "x"]


async def test_a_workflow_batch_grades_answers_and_reports_spend(tmp_path: Path, config: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", arithmetic_rows(12))
    out = tmp_path / "out.jsonl"
    summary = await run_batch(source, load_workflow(config, "bon"), out=out, max_concurrency=4, progress=False)
    rows = records(out)
    assert sorted(r["id"] for r in rows) == sorted(f"q{i}" for i in range(12))
    assert all(isinstance(r["correct"], bool) and r["usage"]["samples"] == 8 for r in rows)
    assert all(r["strategy"]["strategy"] == "best_of_n" for r in rows)
    assert summary.graded == 12 and summary.correct == sum(r["correct"] for r in rows)
    assert summary.usage.samples == 96 and summary.accuracy is not None


async def test_an_item_that_raises_gets_an_error_record_and_the_others_finish(tmp_path: Path) -> None:
    def verifier(question: str, candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        if "13" in question:
            raise RuntimeError("verifier is down for this one")
        return [[1.0] * len(steps) for steps in candidates]

    graph = build_strategy_graph(BestOfNSpec(n=4, seed=0), model=MODEL, verifier=verifier)
    questions = ["What is 2 + 3?", "What is 13 * 2?", "What is 7 * 8?", "What is 9 - 4?"]
    out = tmp_path / "out.jsonl"
    summary = await run_batch(
        questions, graph, out=out, max_concurrency=2, progress=False, total_budget=Budget(max_samples=100)
    )
    rows = {r["id"]: r for r in records(out)}
    assert set(rows) == {"1", "2", "3", "4"}
    assert rows["2"]["error"] == "RuntimeError: verifier is down for this one"
    assert rows["2"]["charged"]["max_samples"] > 0  # its spend is unknown: the total counts its whole share
    assert [rows[i]["answer"] for i in ("1", "3", "4")] == ["5", "56", "5"]
    assert summary.errors == 1 and summary.answered == 3


async def test_bad_input_lines_become_error_records_naming_the_line(tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "a", "question": "ok one"},
            "{not json",
            "[1, 2]",
            {"id": "b"},
            "",
            {"id": "c", "question": "q", "answer": True},
            {"id": "a", "question": "again"},
            {"question": "no id here", "source": "gsm8k"},
        ],
    )
    out = tmp_path / "out.jsonl"
    graph = FakeGraph()
    summary = await run_batch(source, graph, out=out, progress=False)
    rows = {r["id"]: r for r in records(out)}
    assert rows["a"]["answer"] == "OK ONE"
    assert rows["2"]["error"].startswith("BatchInputError: line 2: invalid JSON") and rows["2"]["line"] == 2
    assert "line 3: expected a JSON object, got list" in rows["3"]["error"]
    assert "line 4: field 'question': required" in rows["b"]["error"]
    assert "line 6: field 'answer': must be a string or a number, got bool" in rows["c"]["error"]
    assert "line 7: id 'a' repeats line 1" in rows["a@line7"]["error"]
    assert rows["8"]["answer"] == "NO ID HERE" and rows["8"]["metadata"] == {"source": "gsm8k"}
    assert summary.bad_input == 5 and summary.answered == 2 and sorted(graph.calls) == ["no id here", "ok one"]


async def test_strict_fails_on_the_first_bad_line_before_running_anything(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"question": "fine"}, "{not json", {"question": "also fine"}])
    graph = FakeGraph()
    with pytest.raises(BatchInputError, match="line 2: invalid JSON"):
        await run_batch(source, graph, out=tmp_path / "out.jsonl", progress=False, strict=True)
    assert graph.calls == [] and records(tmp_path / "out.jsonl") == []


def test_read_jsonl_is_lazy_and_numbers_lines(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"question": "x", "answer": "#### 72"}, {"question": "y"}])
    entries = read_jsonl(source)
    first = next(entries)
    assert isinstance(first, BatchItem) and first.line == 1 and first.id == "1" and first.answer == "72"


async def test_the_total_budget_holds_and_exhaustion_leaves_error_records(tmp_path: Path, config: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", arithmetic_rows(10))
    out = tmp_path / "out.jsonl"
    summary = await run_batch(
        source,
        load_workflow(config, "bon"),
        out=out,
        max_concurrency=3,
        per_item_budget=Budget(max_samples=8),
        total_budget=Budget(max_samples=36),
        progress=False,
    )
    rows = records(out)
    assert sorted(r["id"] for r in rows) == sorted(f"q{i}" for i in range(10))  # no item lost
    assert spent(rows, "max_samples") <= 36
    exhausted = [r for r in rows if "error" in r]
    assert exhausted and all("batch budget exhausted" in r["error"] for r in exhausted)
    assert summary.exhausted == len(exhausted) and summary.usage.samples <= 36


async def test_a_total_without_a_per_item_budget_is_shared(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "out.jsonl"
    rows_in = arithmetic_rows(16)
    await run_batch(
        rows_in,
        load_workflow(config, "beam"),
        out=out,
        max_concurrency=4,
        total_budget=Budget(max_tokens=9000),
        progress=False,
    )
    rows = records(out)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in rows_in)
    assert spent(rows, "max_tokens") <= 9000


async def test_the_router_allocates_the_total_by_marginal_gain(tmp_path: Path, config: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", arithmetic_rows(20))
    out = tmp_path / "out.jsonl"
    total = 12_000
    await run_batch(
        source,
        load_workflow(config, "router"),
        base_dir=config.parent,
        out=out,
        max_concurrency=4,
        total_budget=Budget(max_tokens=total),
        policy_window=8,
        progress=False,
    )
    rows = records(out)
    assert sorted(r["id"] for r in rows) == sorted(f"q{i}" for i in range(20))
    assert spent(rows, "max_tokens") <= total
    answered = [r for r in rows if "error" not in r]
    assert answered and all(r["trace"]["estimate_reused"] for r in answered)
    assert any(r["trace"].get("why") == "allocated by the batch router" for r in answered)


async def test_the_router_under_a_tiny_total_loses_no_item(tmp_path: Path, config: Path) -> None:
    out = tmp_path / "out.jsonl"
    await run_batch(
        arithmetic_rows(10),
        load_workflow(config, "router"),
        base_dir=config.parent,
        out=out,
        total_budget=Budget(max_tokens=700),
        progress=False,
    )
    rows = records(out)
    assert len(rows) == 10 and spent(rows, "max_tokens") <= 700
    assert any("batch budget exhausted" in r.get("error", "") for r in rows)


async def test_resume_skips_recorded_ids_and_cuts_a_partial_last_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    kept = (
        b'{"id": "1", "question": "a", "answer": "A", "usage": {"samples": 1}}\n'
        b'{"id": "2", "question": "b", "answer": "B", "usage": {"samples": 1}}\n'
        b'{"id": "3", "question": "c", "error": "RuntimeError: boom"}\n'
    )
    out.write_bytes(kept + b'{"id": "4", "quest')
    graph = FakeGraph()
    summary = await run_batch(["a", "b", "c", "d", "e"], graph, out=out, progress=False)
    assert sorted(graph.calls) == ["d", "e"]  # 1 and 2 answered, 3 recorded as an error
    assert out.read_bytes().startswith(kept)
    assert sorted(r["id"] for r in records(out)) == ["1", "2", "3", "4", "5"]
    assert summary.skipped == 3 and summary.usage_before.samples == 2

    graph = FakeGraph()
    summary = await run_batch(["a", "b", "c", "d", "e"], graph, out=out, progress=False, retry_errors=True)
    assert graph.calls == ["c"] and summary.answered == 1
    assert records(out)[-1]["id"] == "3" and records(out)[-1]["answer"] == "C"  # the last record of an id counts


async def test_resume_counts_earlier_spend_against_the_total(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    total = Budget(max_samples=10)
    graph = FakeGraph(samples=3)
    await run_batch(
        ["a", "b"], graph, out=out, total_budget=total, per_item_budget=Budget(max_samples=3), progress=False
    )
    summary = await run_batch(
        ["a", "b", "c", "d", "e"], graph, out=out, total_budget=total, per_item_budget=Budget(max_samples=3)
    )
    rows = records(out)
    assert len(rows) == 5 and summary.usage_before.samples == 6
    assert spent(rows, "max_samples") <= 10  # 6 earlier + 4 left: c gets 3, d what is left, e nothing
    assert sum("batch budget exhausted" in r.get("error", "") for r in rows) == 1


async def test_no_resume_starts_over_and_a_foreign_line_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "1", "answer": "old"}\n')
    await run_batch(["a"], FakeGraph(), out=out, progress=False, resume=False)
    assert [r["answer"] for r in records(out)] == ["A"]
    out.write_text("not a record\n")
    with pytest.raises(BatchOutputError, match=r"out\.jsonl:1: not a batch record"):
        await run_batch(["a"], FakeGraph(), out=out, progress=False)


async def test_two_runs_cannot_write_one_output(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    graph = FakeGraph(hold=["slow"])
    first = asyncio.create_task(run_batch(["slow"], graph, out=out, progress=False))
    while not graph.calls:
        await asyncio.sleep(0.001)
    with pytest.raises(BatchOutputError, match="another batch run is writing"):
        await run_batch(["other"], FakeGraph(), out=out, progress=False)
    graph.release.set()
    await first
    assert [r["answer"] for r in records(out)] == ["SLOW"]


def test_cli_batch_prints_a_summary(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [*arithmetic_rows(6), "{oops"])
    out = tmp_path / "out.jsonl"
    argv = ["batch", str(source), str(out), "--workflow", "bon", "--config", str(config), "--no-progress"]
    assert main([*argv, "--total-samples", "40", "--max-samples", "8"]) == 1  # error records: exit 1
    text = capsys.readouterr().out
    assert "7 items done: 5 answered, 2 errors (1 batch budget exhausted, 1 bad input lines)" in text
    assert "accuracy:" in text and "spend: 40 samples" in text
    assert main([*argv, "--json"]) == 1  # nothing new, but two items of IN still have error records
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == 7 and summary["answered"] == 0 and summary["errors_before"] == 2
    kept = out.read_bytes()
    assert main([*argv, "--strict", "--no-resume"]) == 2  # a bad line before anything ran
    assert "ttc batch: error: line 7: invalid JSON" in capsys.readouterr().err
    assert out.read_bytes() == kept


@pytest.mark.slow
def test_kill_9_mid_batch_then_the_same_command_finishes_exactly_the_rest(tmp_path: Path, config: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", arithmetic_rows(200))
    out = tmp_path / "out.jsonl"
    command = [
        sys.executable,
        "-c",
        "from ttc_agents.cli import main; raise SystemExit(main())",
        "batch",
        str(source),
        str(out),
        "--workflow",
        "bon",
        "--config",
        str(config),
        "--max-concurrency",
        "2",
        "--no-progress",
        "--json",
    ]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120  # a bound on the test, not a timing assertion
        while time.monotonic() < deadline and first.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.02)
        assert first.poll() is None, f"the batch ended before the kill: {first.stderr.read() if first.stderr else ''!r}"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
        if first.stderr is not None:
            first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    at_kill = out.read_bytes()
    before = at_kill[: at_kill.rfind(b"\n") + 1]  # complete lines; a partial one may follow
    done_before = before.count(b"\n")
    assert 10 <= done_before < 200

    second = subprocess.run(command, env=env, capture_output=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr.decode()
    summary = json.loads(second.stdout)
    assert summary["skipped"] == done_before and summary["answered"] == 200 - done_before
    after = out.read_bytes()
    assert after.startswith(before)  # what was written before the kill is unchanged
    ids = [r["id"] for r in records(out)]
    assert len(ids) == 200 and sorted(ids) == sorted(f"q{i}" for i in range(200))  # every item exactly once


# --- issue 12: nothing lost, failed items charged what they spent, the total holds across kills -------


class PlannedServer(FakeOpenAIServer):
    """The fake server with faults on given request indices (0-based, in arrival order)."""

    def __init__(self, config: FakeServerConfig, plan: dict[int, Fault] | None = None) -> None:
        super().__init__(config)
        self.plan = dict(plan or {})

    def _admit(self, path: str, body: dict[str, Any]) -> Fault | None:
        fault = super()._admit(path, body)
        with self._lock:
            index = len(self._records) - 1
        return self.plan.get(index, fault)


class IgnoresMaxTokens(FakeOpenAIServer):
    """A server that sends its whole completion whatever ``max_tokens`` says."""

    def _completion(self, text: str, body: dict[str, Any], reply: Any) -> Any:
        reply.max_tokens = None
        return super()._completion(text, body, reply)


FAST_RETRIES = RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=0.005, jitter=0.001)


def served_workflow(server: FakeOpenAIServer, **model: Any) -> Workflow:
    spec = ModelSpec(name="openai/fake", api_base=server.url, api_key="none", timeout=5.0, **model)
    return Workflow(models={"main": spec}, strategy=BestOfNSpec(n=1, seed=0))


def served_config(tmp_path: Path, server: FakeOpenAIServer, model: str = "", extra: str = "") -> Path:
    path = tmp_path / "served.yaml"
    path.write_text(
        "workflows:\n  w:\n"
        f"    models: {{main: {{name: openai/fake, api_base: '{server.url}', api_key: none{model}}}}}\n"
        f"    strategy: {{strategy: best_of_n, n: 1, seed: 0}}\n{extra}",
        encoding="utf-8",
    )
    return path


async def test_a_lone_surrogate_in_any_field_gets_an_error_record_and_resume_does_not_pay_again(
    tmp_path: Path,
) -> None:
    """Before: the record's UTF-8 encoding raised inside the item's task after the summary counted
    it, nothing was written, nothing said, and every resume ran (and paid for) the item again."""
    lines = [
        '{"id": "q0", "question": "What is 1 + 1?"}',
        '{"id": "q1", "question": "What is \\ud800 + 1?"}',
        '{"id": "q2\\udfff", "question": "What is 2 + 2?"}',
        '{"id": "q3", "question": "What is 3 + 3?", "source": {"note": ["ok", "\\ud83d"]}}',
        '{"id": "q4", "question": "What is 4 + 4?"}',
    ]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    graph = FakeGraph()
    summary = await run_batch(source, graph, out=out, max_concurrency=2, progress=False)
    rows = {r["id"]: r for r in records(out)}
    assert sorted(rows) == ["q0", "q1", "q2\udfff", "q3", "q4"]  # every item has exactly one record
    assert "field 'question'" in rows["q1"]["error"] and "U+D800" in rows["q1"]["error"]
    assert "field 'id'" in rows["q2\udfff"]["error"] and "U+DFFF" in rows["q2\udfff"]["error"]
    assert "field 'source'" in rows["q3"]["error"] and "U+D83D" in rows["q3"]["error"]
    assert summary.bad_input == 3 and summary.answered == 2 and summary.written == 5
    assert len(graph.calls) == 2  # nothing with a lone surrogate went to the model
    again = await run_batch(source, graph, out=out, max_concurrency=2, progress=False)
    assert again.skipped == 5 and again.written == 0 and len(graph.calls) == 2  # not paid for again


async def test_an_answer_that_is_not_valid_unicode_is_written_escaped_and_reads_back_the_same(tmp_path: Path) -> None:
    class Surrogates(FakeGraph):
        async def ainvoke(self, request: dict[str, Any], config: Any = None) -> dict[str, Any]:
            result = await super().ainvoke(request, config)
            return {**result, "answer": "x\udc80y é"}

    out = tmp_path / "out.jsonl"
    summary = await run_batch(["a", "b"], Surrogates(), out=out, progress=False)
    assert summary.answered == 2
    assert out.read_bytes().isascii()  # JSON escapes for the lines that are not valid UTF-8
    assert [r["answer"] for r in records(out)] == ["x\udc80y é"] * 2


def full_disk_after(monkeypatch: pytest.MonkeyPatch, lines: int) -> None:
    """The batch's record encoder fails like a full disk once ``lines`` records are written."""
    import ttc_agents.integrations._batch_output as batch_module

    real = batch_module._encode
    written: list[int] = []

    def encode(record: Any) -> bytes:
        if len(written) == lines and "question" in record:
            raise OSError(28, "No space left on device")
        if "question" in record:
            written.append(1)
        return real(record)

    monkeypatch.setattr(batch_module, "_encode", encode)


async def test_a_record_that_cannot_be_written_stops_the_run_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the sink's exception stayed in a task nobody read; the run 'succeeded' with items missing."""
    full_disk_after(monkeypatch, 3)
    out = tmp_path / "out.jsonl"
    graph = FakeGraph()
    with pytest.raises(BatchAborted, match="No space left on device"):
        await run_batch([f"q{i}" for i in range(40)], graph, out=out, max_concurrency=4, progress=False)
    assert len(records(out)) == 3 and len(graph.calls) < 40  # it stopped: no new items after the failure


def test_ttc_batch_exits_3_when_out_cannot_be_written(
    tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    full_disk_after(monkeypatch, 2)
    source = write_jsonl(tmp_path / "in.jsonl", arithmetic_rows(10))
    argv = ["batch", str(source), str(tmp_path / "o2.jsonl"), "--workflow", "bon", "--config", str(config)]
    assert main([*argv, "--no-progress"]) == 3
    assert "No space left on device" in capsys.readouterr().err


async def test_failed_items_are_charged_what_they_spent_and_retries_count_once(tmp_path: Path) -> None:
    """7 answers of 401 (nothing billed) used to cost 7 whole grants of the total, for good."""
    rows = arithmetic_rows(20)
    out = tmp_path / "out.jsonl"
    plan = {i: Fault.http_error(401) for i in range(1, 8)}
    with PlannedServer(FakeServerConfig(completion_tokens=40), plan) as server:
        workflow = served_workflow(server, max_tokens=64)
        per_item, total = Budget(max_tokens=1000), Budget(max_tokens=10_000)
        gateway = Gateway(retry=FAST_RETRIES)
        summary = await run_batch(
            rows, workflow, out=out, max_concurrency=1, progress=False, gateway=gateway,
            per_item_budget=per_item, total_budget=total,
        )  # fmt: skip
        first = records(out)
        failed = [r for r in first if "error" in r]
        assert len(failed) == 7 and all("AuthenticationError" in r["error"] for r in failed)
        assert not any("BatchBudgetExhausted" in r["error"] for r in failed)  # before: 11 items out of budget
        for record in failed:
            assert "charged" not in record
            assert record["usage"]["prompt_tokens"] == 0
            assert record["usage"]["failed_calls"] == 1 and record["usage"]["completion_tokens"] == 0
        assert summary.answered == 13 and summary.exhausted == 0
        billed = server.billed.total_tokens
        assert spent(first, "max_tokens") == billed  # the records hold exactly what was billed
        again = await run_batch(
            rows, workflow, out=out, max_concurrency=1, progress=False, gateway=gateway,
            per_item_budget=per_item, total_budget=total, retry_errors=True,
        )  # fmt: skip
        assert again.answered == 7 and again.skipped == 13
        # What the retry counted as spent before it: what was billed before it, once.
        assert again.usage_before.total_tokens == billed
        assert spent(records(out), "max_tokens") == server.billed.total_tokens <= 10_000


async def test_a_server_that_ignores_max_tokens_is_flagged_and_the_item_stopped(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with IgnoresMaxTokens(FakeServerConfig(completion_tokens=400)) as server:
        workflow = served_workflow(server, max_tokens=50)
        summary = await run_batch(
            arithmetic_rows(3), workflow, out=out, progress=False, gateway=Gateway(retry=FAST_RETRIES),
            per_item_budget=Budget(max_tokens=2000),
        )  # fmt: skip
        assert server.request_count == 3  # one call each: the item stopped at the first
    rows = records(out)
    assert summary.answered == 3 and len(rows) == 3
    for row in rows:  # before: answered "within" budget, nothing flagged
        assert row["max_tokens_ignored"] is True and row["stopped_by"] == "server_ignored_max_tokens"
        assert row["usage"]["completion_tokens"] == 400  # booked as billed, and flagged


async def test_no_resume_destroys_nothing_when_the_start_fails(tmp_path: Path) -> None:
    """Before: OUT was emptied first, then the missing input (or a strict bad line) failed the run."""
    out = tmp_path / "out.jsonl"
    await run_batch(["a", "b"], FakeGraph(), out=out, progress=False)
    kept = out.read_bytes()
    with pytest.raises(FileNotFoundError):
        await run_batch(tmp_path / "missing.jsonl", FakeGraph(), out=out, resume=False, progress=False)
    assert out.read_bytes() == kept
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"question": "fine"}', "{oops"])
    with pytest.raises(BatchInputError, match="line 2"):
        await run_batch(bad, FakeGraph(), out=out, resume=False, strict=True, progress=False)
    assert out.read_bytes() == kept
    await run_batch(["c"], FakeGraph(), out=out, resume=False, progress=False)  # a run that starts does start over
    assert [r["answer"] for r in records(out)] == ["C"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("provider", "LiteLLM knows no provider"),
        ("usd", "has no price"),
        ("placeholder", "placeholder"),
        ("unauthorized", "AuthenticationError"),
    ],
)
def test_configuration_errors_exit_2_before_the_batch_fans_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    """Before: every item failed, one error record each, and `ttc batch` exited 0."""
    source = write_jsonl(tmp_path / "in.jsonl", arithmetic_rows(12))
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    plan = {i: Fault.http_error(401) for i in range(100)} if case == "unauthorized" else {}
    with PlannedServer(FakeServerConfig(), plan) as server:
        model = {"provider": "", "usd": "", "placeholder": "", "unauthorized": ""}[case]
        extra = {
            "provider": "",
            "usd": "    budget: {max_usd: 0.01}\n",
            "placeholder": "    prompts: {generate: 'Solve $questoin'}\n",
            "unauthorized": "",
        }[case]
        config = served_config(tmp_path, server, model, extra)
        if case == "provider":
            config.write_text(config.read_text().replace("openai/fake", "nosuchprovider/fake"))
        argv = ["batch", str(source), str(out), "--workflow", "w", "--config", str(config), "--no-progress"]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert message in err
        assert out.read_bytes() == b""  # no record: fix the configuration and run the same command
        assert server.request_count == (1 if case == "unauthorized" else 0)  # one call at most, the first item's


async def test_an_unfinished_grant_in_the_journal_counts_as_spent(tmp_path: Path) -> None:
    """A run killed with items in flight: their grants are in the journal, never finished. Before, the
    resumed run knew nothing of them and could spend the whole total again."""
    out = tmp_path / "out.jsonl"
    journal = journal_path(out)
    out.write_text(json.dumps({"id": "q0", "answer": "A", "usage": {"samples": 4}}) + "\n", encoding="utf-8")
    journal.write_text(
        json.dumps({"carried": {}})
        + "\n"
        + json.dumps({"start": 1, "id": "q0", "grant": {"max_samples": 8}})
        + "\n"
        + json.dumps({"end": 1})
        + "\n"
        + json.dumps({"start": 2, "id": "q1", "grant": {"max_samples": 8}})
        + "\n"
        + '{"start": 3, "id": "q2", "gr',  # cut off by the kill
        encoding="utf-8",
    )
    graph = FakeGraph(samples=2)
    summary = await run_batch(
        [BatchItem(f"q{i}", f"q{i}") for i in range(12)], graph, out=out, progress=False,
        per_item_budget=Budget(max_samples=2), total_budget=Budget(max_samples=20),
    )  # fmt: skip
    # 20 - 4 (recorded) - 8 (q1's unfinished grant) = 8 samples: 4 items of 2, the rest exhausted.
    assert summary.answered == 4 and summary.exhausted == 7 and summary.skipped == 1
    assert sum(r.get("usage", {}).get("samples", 0) for r in records(out)) == 4 + 8
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines[0] == {"carried": {"max_samples": 8.0}}  # compacted at the start of the run
    starts = {line["start"] for line in lines if "start" in line}
    ends = {line["end"] for line in lines if "end" in line}
    assert starts and starts == ends  # every grant of a run that ended is finished


def test_batch_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["batch", "--help"])
    text = capsys.readouterr().out
    assert "exit status:" in text and "  2  a usage or configuration error" in text and "  3  " in text
