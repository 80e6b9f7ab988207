"""The Ray batch engine against three loopback model servers: the local engine's results, budgets, resume.

Ray probes the network when it starts (cloud metadata, public DNS), so these tests start a local Ray
cluster (2 CPUs, no dashboard) only inside a loopback-only network namespace. Run anywhere else, the
first test re-runs this module under ``unshare -n`` when the machine allows it; where it does not,
everything is skipped and the reason is printed. The servers serve the scripted test double over an
OpenAI-compatible API (``python -m ttc_agents.bench.scale serve``), so a Router group of them answers
exactly as ``scripted/arith`` does in process. Everything started here is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ttc_agents._apps.workflow import load_workflow
from ttc_agents._core.budget import Budget
from ttc_agents._core.specs import BeamSearchSpec, BestOfNSpec
from ttc_agents._routing.policy import Cost, Policy, PolicyAction, PolicyEntry
from ttc_agents.bench.scale import arithmetic_rows, group_spec
from ttc_agents.integrations.batch import BatchConfigError, run_batch
from ttc_agents.integrations.ray_engine import import_ray, run_batch_ray
from ttc_agents.testing import ServerProcess

GROUP = "openai/arith"  # the scripted servers answer as the `arith` profile
IN_NAMESPACE = "TTC_RAY_TESTS_IN_NAMESPACE"


def loopback_only() -> bool:
    """True inside a network namespace whose only interface is the loopback one."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def unshare_allowed() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30).returncode == 0


pytestmark = pytest.mark.slow

LOOPBACK_ONLY = loopback_only()
HAVE_RAY = importlib.util.find_spec("ray") is not None
NO_RAY = 'Ray is not installed (pip install -e ".[dev,ray]")'
REASON = (
    "Ray probes the network on start: its tests run only inside a loopback-only namespace "
    "(here: in the `unshare -n` re-run of test_the_ray_tests_run_in_a_loopback_only_namespace, where permitted)"
)
needs_namespace = pytest.mark.skipif(not (LOOPBACK_ONLY and HAVE_RAY), reason=REASON if HAVE_RAY else NO_RAY)


def test_the_ray_tests_run_in_a_loopback_only_namespace() -> None:
    """Here already: the tests below run in this process. Elsewhere: this module again, under `unshare -n`."""
    if not HAVE_RAY:
        print(f"\n{__name__}: {NO_RAY}: the Ray tests are skipped", file=sys.__stderr__)
        pytest.skip(NO_RAY)
    if LOOPBACK_ONLY:
        pytest.skip("already in a loopback-only network namespace: the Ray tests run directly")
    if os.environ.get(IN_NAMESPACE):
        pytest.fail("re-run under `unshare -n`, but interfaces other than lo are visible")
    if not unshare_allowed():
        reason = f"{REASON}; `unshare -n` is not permitted here, so they are skipped"
        print(f"\n{__name__}: {reason}", file=sys.__stderr__)
        pytest.skip(reason)
    command = 'ip link set lo up && exec "$0" -m pytest -q -p no:cacheprovider -rs "$1"'
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", command, sys.executable, __file__],
        env={**os.environ, IN_NAMESPACE: "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-3000:]}"


# -- fixtures: a local Ray cluster, three scripted servers, the workflows -------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = import_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def servers() -> Iterator[list[ServerProcess]]:
    started = [ServerProcess("scripted"), ServerProcess("scripted"), ServerProcess("scripted", latency=0.01)]
    with contextlib.ExitStack() as stack:
        for server in started:
            stack.callback(server.stop)
            server.launch()
        for server in started:
            server.wait_ready()
        yield started


def make_policy(model: str) -> Policy:
    def entry(bin_: int, budget: int, strategy: BestOfNSpec | BeamSearchSpec, accuracy: float, tokens: float) -> Any:
        return PolicyEntry(
            bin=bin_,
            budget=budget,
            action=PolicyAction(model=model, strategy=strategy),
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
        models=[model],
        verifier="arithmetic",
        dataset="synthetic",
        thresholds=[0.5, 0.7, 0.85, 0.95],
        table=table,
        candidates=table,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, servers: list[ServerProcess]) -> Path:
    folder = tmp_path_factory.mktemp("ray-engine")
    urls = [s.url for s in servers]
    # The scripted provider's prices, so that USD agrees with the in-process model as well.
    prices = {"usd_per_input_token": 1e-7, "usd_per_output_token": 2e-7}
    group = {**group_spec(GROUP, urls), **prices}
    best_of_8 = {"strategy": "best_of_n", "n": 8, "seed": 0}
    workflows = {
        "inprocess": {"models": {"main": "scripted/arith"}, "verifier": "arithmetic", "strategy": best_of_8},
        "servers": {"models": {"main": group}, "verifier": "arithmetic", "strategy": best_of_8},
        "router": {
            "models": {"main": {**group, "max_tokens": 128}},
            "verifier": "arithmetic",
            "policy": "policy.json",
            "budget_unit": "tokens",
        },
        "unknown-model": {
            "models": {"main": group_spec("openai/no-such-profile", urls)},
            "verifier": "arithmetic",
            "strategy": {"strategy": "best_of_n", "n": 2, "seed": 0},
        },
    }
    make_policy(GROUP).save(folder / "policy.json")
    path = folder / "workflows.yaml"
    path.write_text(json.dumps({"workflows": workflows}))  # JSON is YAML
    return path


def write_questions(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in arithmetic_rows(count)))
    return path


def by_id(path: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = {row["id"]: row for row in rows}
    assert len(records) == len(rows), "an id was written twice"
    return records


def assert_same_results(expected: dict[str, Any], got: dict[str, Any]) -> None:
    """Answers, strategy, stop reason, grade and per-item usage agree (USD to rounding)."""
    assert expected.keys() == got.keys()
    for key, want in expected.items():
        have = got[key]
        for name in ("answer", "strategy", "stopped_by", "correct", "error"):
            assert have.get(name) == want.get(name), (key, name)
        usage, wanted = have.get("usage") or {}, want.get("usage") or {}
        assert {k: v for k, v in usage.items() if k != "usd"} == {k: v for k, v in wanted.items() if k != "usd"}, key
        assert usage.get("usd", 0.0) == pytest.approx(wanted.get("usd", 0.0), rel=1e-9, abs=1e-15), key


def spent_tokens(records: dict[str, dict[str, Any]]) -> int:
    total = 0
    for row in records.values():
        usage = row.get("usage") or {}
        total += usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        total += (row.get("charged") or {}).get("max_tokens", 0)
    return total


# -- the engine ------------------------------------------------------------------------------------------


@needs_namespace
async def test_a_thousand_questions_give_the_local_engines_results(
    tmp_path: Path, ray_cluster: Any, config: Path
) -> None:
    questions = write_questions(tmp_path / "questions.jsonl", 1000)
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    local = await run_batch(
        questions, load_workflow(config, "inprocess"), out=local_out, max_concurrency=64, progress=False
    )
    remote = await run_batch_ray(
        questions, load_workflow(config, "servers"), out=ray_out, max_concurrency=64, progress=False
    )
    assert (remote.answered, remote.errors) == (local.answered, local.errors) == (1000, 0)
    assert_same_results(by_id(local_out), by_id(ray_out))
    assert remote.usage.samples == local.usage.samples == 8000
    print(
        f"\n1000 questions, best-of-8: local engine (in-process scripted model) {local.seconds:.1f} s "
        f"({local.items_per_second:.0f} items/s); Ray engine (2 workers, Router group of 3 loopback servers) "
        f"{remote.seconds:.1f} s ({remote.items_per_second:.0f} items/s)"
    )


@needs_namespace
async def test_the_total_budget_is_split_across_workers_without_overspending(
    tmp_path: Path, ray_cluster: Any, config: Path
) -> None:
    questions = write_questions(tmp_path / "questions.jsonl", 300)
    out = tmp_path / "out.jsonl"
    total = Budget(max_tokens=40_000)
    summary = await run_batch_ray(
        questions, load_workflow(config, "servers"), out=out, max_concurrency=16, total_budget=total, progress=False
    )
    records = by_id(out)
    assert len(records) == 300  # every item has a record: answered, or out of budget
    assert spent_tokens(records) <= 40_000
    assert summary.answered > 0 and summary.exhausted > 0
    exhausted = [r for r in records.values() if r.get("error", "").startswith("BatchBudgetExhausted")]
    assert len(exhausted) == summary.exhausted


@needs_namespace
async def test_resume_finishes_only_the_items_without_a_record(tmp_path: Path, ray_cluster: Any, config: Path) -> None:
    questions = write_questions(tmp_path / "questions.jsonl", 200)
    reference = tmp_path / "local.jsonl"
    await run_batch(questions, load_workflow(config, "inprocess"), out=reference, max_concurrency=32, progress=False)
    kept = reference.read_bytes().splitlines(keepends=True)[:80]
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(kept) + b'{"id": "q1')  # a killed run's complete lines and its unfinished write
    summary = await run_batch_ray(
        questions, load_workflow(config, "servers"), out=out, max_concurrency=32, progress=False
    )
    assert (summary.skipped, summary.answered) == (80, 120)
    assert out.read_bytes().startswith(b"".join(kept))
    assert_same_results(by_id(reference), by_id(out))


@needs_namespace
async def test_a_router_workflow_allocates_the_total_as_the_local_engine_does(
    tmp_path: Path, ray_cluster: Any, config: Path
) -> None:
    questions = write_questions(tmp_path / "questions.jsonl", 120)
    total = Budget(max_tokens=60_000)
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    router = load_workflow(config, "router")
    base = config.parent
    local = await run_batch(
        questions, router, out=local_out, total_budget=total, max_concurrency=16, progress=False, base_dir=base
    )
    remote = await run_batch_ray(
        questions, router, out=ray_out, total_budget=total, max_concurrency=16, progress=False, base_dir=base
    )
    local_records, ray_records = by_id(local_out), by_id(ray_out)
    assert len(ray_records) == 120 and spent_tokens(ray_records) <= 60_000
    assert remote.answered == local.answered
    assert_same_results(local_records, ray_records)
    for key, row in ray_records.items():  # the probes ran on the workers, the allocation on the driver
        if "trace" in row:
            assert row["trace"]["bin"] == local_records[key]["trace"]["bin"]
            assert row["trace"]["estimate_reused"] is True


@needs_namespace
async def test_an_items_error_reads_as_in_the_local_engine(tmp_path: Path, ray_cluster: Any, config: Path) -> None:
    questions = write_questions(tmp_path / "questions.jsonl", 4)
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    workflow = load_workflow(config, "unknown-model")
    # The local engine's first item runs alone and a 404 (every item would hit it) refuses the batch.
    with pytest.raises(BatchConfigError) as refused:
        await run_batch(questions, workflow, out=local_out, progress=False)
    summary = await run_batch_ray(questions, workflow, out=ray_out, progress=False)
    assert summary.errors == 4
    ray_records = by_id(ray_out)
    assert all("unknown scripted profile" in row["error"] for row in ray_records.values())
    assert all(row["error"] in str(refused.value) for row in ray_records.values())  # the same text


# -- the command line: --engine ray --address, kill -9, resume ------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), to stop what a killed command left running."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@needs_namespace
async def test_the_cli_on_a_running_cluster_resumes_after_kill_9(
    tmp_path: Path, ray_cluster: Any, config: Path
) -> None:
    questions = write_questions(tmp_path / "questions.jsonl", 400)
    out = tmp_path / "out.jsonl"
    address = ray_cluster.get_runtime_context().gcs_address
    command = [
        sys.executable,
        "-c",
        "import sys; from ttc_agents.cli import main; sys.exit(main())",
        "batch",
        str(questions),
        str(out),
        "--workflow",
        "servers",
        "--config",
        str(config),
        "--engine",
        "ray",
        "--address",
        address,
        "--max-concurrency",
        "8",
        "--no-progress",
        "--json",
    ]
    killed = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(6000):  # until some records are written (bounded: at most ~120 s)
            if out.exists() and out.read_bytes().count(b"\n") >= 30:
                break
            assert killed.poll() is None, killed.stderr.read() if killed.stderr else ""
            await asyncio.sleep(0.02)
    finally:  # kill -9: the command's process group, then anything of it still running, by PID
        left = descendants(killed.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if killed.stderr is not None:
            killed.stderr.close()
    before = out.read_bytes()
    complete = before[: before.rfind(b"\n") + 1]
    written = complete.count(b"\n")
    assert 30 <= written < 400

    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["skipped"] == written and summary["answered"] == 400 - written
    assert out.read_bytes().startswith(complete)  # the lines written before the kill are untouched
    records = by_id(out)  # one record per id: nothing lost, nothing twice
    assert sorted(records) == sorted(f"q{i}" for i in range(400))
    assert all("answer" in row for row in records.values())
