"""Tests of ``ttc demo`` (ttc_agents/_demo.py, ttc_agents/cli/demo.py).

* The table, summary and plot code on canned results: no model, no network.
* The whole demo offline on the scripted provider, twice: the second run replays everything.
* ``ttc demo --quick`` on the real embedded model (marked ``local_model``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

from ttc_agents._apps.demo import (
    LEVELS,
    CellRecord,
    DemoResult,
    DemoSettings,
    QuestionStats,
    demo_model,
    format_levels,
    format_report,
    format_table,
    run_demo,
    summarize,
    summary_dict,
    write_outputs,
)
from ttc_agents._llm.local import LocalServerInfo
from ttc_agents.cli import main
from ttc_agents.testing import local_server_fixture

needs_reasoning_gym = pytest.mark.skipif(
    importlib.util.find_spec("reasoning_gym") is None, reason="the demo's task set needs reasoning-gym"
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A server of this module's own (private state directory): a server in the shared default state
# directory can be stopped or replaced by another process while the demo runs.
private_server = local_server_fixture("smollm2-135m", scope="module", private=True)


def record(method: str, budget: int, question: str, correct: bool, **changes: Any) -> CellRecord:
    fields: dict[str, Any] = {
        "method": method,
        "budget": budget,
        "question_id": question,
        "level": question.split(":")[0],
        "split": "calibration",
        "answer": "12" if correct else "13",
        "reference": "12",
        "correct": correct,
        "samples": budget,
        "completion_tokens": 10 * budget,
        "total_tokens": 100 * budget,
        "replayed": 0,
        "seconds": 0.5 * budget,
    }
    return CellRecord(**{**fields, **changes})


def canned() -> DemoResult:
    held_out = {"split": "held-out"}
    records = [
        record("best_of_n/weighted", 1, "add1:a", True),
        record("best_of_n/weighted", 1, "add2:b", False, **held_out),
        record("best_of_n/weighted", 4, "add1:a", True, replayed=1),
        record("best_of_n/weighted", 4, "add2:b", True, replayed=1, **held_out),
        record("best_of_n/majority", 4, "add1:a", True, replayed=4, seconds=0.0),
        record("best_of_n/majority", 4, "add2:b", False, replayed=4, seconds=0.0, **held_out),
        record("router", 4, "add2:b", True, choice="m:best_of_n(n=4)", **held_out),
    ]
    return DemoResult(
        model="local/smollm2-135m",
        settings=DemoSettings(questions_per_level=1, budgets=(1, 4)),
        verifier="arithmetic",
        records=records,
        questions=[QuestionStats("add1:a", "add1", 4, 4), QuestionStats("add2:b", "add2", 4, 1)],
        router_note="router: canned",
        wall_seconds=12.0,
    )


def test_summarize_averages_per_question_and_orders_rows() -> None:
    rows = summarize(canned().records, split=None)
    assert [(r.method, r.budget) for r in rows] == [
        ("best_of_n/weighted", 1),
        ("best_of_n/weighted", 4),
        ("best_of_n/majority", 4),
        ("router", 4),
    ]
    weighted_4 = rows[1]
    assert weighted_4.questions == 2
    assert weighted_4.accuracy == 1.0
    assert weighted_4.samples == 4.0
    assert weighted_4.generated_tokens == 40.0
    assert weighted_4.tokens == 400.0
    assert weighted_4.seconds == 4.0
    assert weighted_4.replayed == 0.25
    assert weighted_4.by_level == {"add1": 1.0, "add2": 1.0}
    assert rows[2].accuracy == 0.5 and rows[2].replayed == 1.0
    assert rows[3].split == "held-out" and rows[0].split == "all"


def test_every_line_is_compared_on_the_same_held_out_questions() -> None:
    rows = summarize(canned().records)
    assert {(r.method, r.budget): (r.questions, r.accuracy) for r in rows} == {
        ("best_of_n/weighted", 1): (1, 0.0),
        ("best_of_n/weighted", 4): (1, 1.0),
        ("best_of_n/majority", 4): (1, 0.0),
        ("router", 4): (1, 1.0),
    }
    assert {r.split for r in rows} == {"held-out"}
    summary = summary_dict(canned())
    assert {r["questions"] for r in summary["results"]} == {1}
    assert "router" not in {r["method"] for r in summary["results_all_questions"]}
    assert {r["questions"] for r in summary["results_all_questions"]} == {2}


def test_table_and_report_text() -> None:
    result = canned()
    table = format_table(summarize(result.records))
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["strategy", "N", "questions", "accuracy"]
    assert any(line.startswith("router ") for line in lines)
    weighted = next(line for line in lines if line.startswith("best_of_n/weighted") and line.split()[1] == "4")
    assert weighted.split()[2:4] == ["1", "1.00"]
    levels = format_levels(result)
    assert "pass@1" in levels and "pass@4" in levels
    add2 = next(line for line in levels.splitlines() if line.startswith("add2"))
    assert add2.split()[1:4] == ["1", "0.25", "1.00"]
    report = format_report(result)
    assert "cannot do grade-school math" in report and "not that test-time compute buys accuracy" in report
    assert "arithmetic step checker" in report
    assert "every line on the same 1 held-out questions" in report


def test_summary_keeps_wall_time_apart_and_outputs_are_written(tmp_path: Path) -> None:
    result = canned()
    summary = summary_dict(result)
    json.dumps(summary)  # JSON-ready
    assert summary["model"] == "local/smollm2-135m"
    assert summary["verifier"]["name"] == "arithmetic"
    assert [level["key"] for level in summary["levels"]] == [level.key for level in LEVELS]
    outside_timing = json.dumps({k: v for k, v in summary.items() if k != "timing"})
    assert "seconds" not in outside_timing and "replayed" not in outside_timing  # only in "timing"
    assert summary["timing"]["wall_seconds"] == 12.0
    assert summary["timing"]["new_samples"] == sum(r.samples - r.replayed for r in result.records)
    summary_path, plot_path = write_outputs(result, tmp_path / "out")
    assert json.loads(summary_path.read_text()) == json.loads(json.dumps(summary))
    assert plot_path.read_bytes().startswith(PNG_MAGIC)
    assert plot_path.stat().st_size > 10_000


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="questions_per_level"):
        DemoSettings(questions_per_level=0)
    with pytest.raises(ValueError, match="budgets"):
        DemoSettings(budgets=(0, 4))
    assert DemoSettings.quick().budgets == (1, 4)


def test_demo_model_settings() -> None:
    local = demo_model()
    assert local.name == "local/smollm2-135m" and local.max_concurrency == 4
    assert local.api_key is not None  # LiteLLM's OpenAI-compatible route wants one
    vllm = demo_model("openai/served", api_base="http://127.0.0.1:8000/v1")
    assert vllm.api_base == "http://127.0.0.1:8000/v1" and vllm.api_key is not None
    hosted = demo_model("openai/gpt-4o-mini")
    assert hosted.api_key is None  # LiteLLM reads OPENAI_API_KEY itself


def deterministic(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "timing"}


@needs_reasoning_gym
async def test_whole_demo_offline_on_the_scripted_provider_replays_exactly(tmp_path: Path) -> None:
    settings = DemoSettings.quick()
    store = tmp_path / "responses.sqlite"
    first = await run_demo(settings, model=demo_model("scripted/arith"), store_path=store, progress=False)
    second = await run_demo(settings, model=demo_model("scripted/arith"), store_path=store, progress=False)
    methods = {r.method for r in first.records}
    assert methods == {"best_of_n/weighted", "best_of_n/majority", "beam_search", "revision", "router"}
    questions = settings.questions_per_level * len(LEVELS)
    assert len(first.questions) == questions
    assert sum(r.method == "router" for r in first.records) == questions // 2 * len(settings.budgets)
    assert first.policy_table
    assert summary_dict(first)["timing"]["new_samples"] > 0
    assert summary_dict(second)["timing"]["new_samples"] == 0
    assert deterministic(summary_dict(second)) == deterministic(summary_dict(first))


@pytest.mark.local_model
@needs_reasoning_gym
def test_ttc_demo_quick_on_the_local_model(
    private_server: LocalServerInfo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TTC_STATE_DIR", str(Path(private_server.log_path).parent))  # the demo reuses it
    log = Path(private_server.log_path)
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "best_of_n/weighted" in printed and "cannot do grade-school math" in printed
    first = json.loads((out / "summary.json").read_text())
    assert (out / "accuracy_vs_tokens.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "responses.sqlite").exists()
    assert first["timing"]["new_samples"] > 0
    assert str(private_server.pid) in first["timing"]["server"]  # reused, not a server of its own
    assert {row["method"] for row in first["results"]} >= {"best_of_n/majority", "beam_search", "revision"}

    requests = log.read_text(errors="replace").count("POST /v1/chat/completions")
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert log.read_text(errors="replace").count("POST /v1/chat/completions") == requests
    second = json.loads((out / "summary.json").read_text())
    assert second["timing"]["new_samples"] == 0  # every sample replayed from the store
    assert second["timing"]["server"] is None  # the replayed run never even looked the server up
    assert deterministic(second) == deterministic(first)


@needs_reasoning_gym
def test_quick_run_never_overwrites_a_full_runs_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    full = tmp_path / "ttc-demo"
    full.mkdir()
    (full / "summary.json").write_text('{"full": true}')
    assert main(["demo", "--quick", "--model", "scripted/arith", "--budgets", "1,2", "--no-progress"]) == 0
    assert (full / "summary.json").read_text() == '{"full": true}'
    quick = json.loads((tmp_path / "ttc-demo-quick" / "summary.json").read_text())
    assert quick["model"] == "scripted/arith" and quick["settings"]["budgets"] == [1, 2]
    assert "ttc-demo-quick" in capsys.readouterr().out
