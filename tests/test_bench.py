"""``ttc bench``: local MATH-500/GSM8K loaders, the benchmark's outputs, resuming, and the router.

Everything runs offline on the scripted provider with a handful of questions.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import statistics
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from ttc_agents import ArithmeticStepVerifier
from ttc_agents._apps.bench import (
    PLOTS,
    BenchConfig,
    BenchError,
    BenchResult,
    _interval,
    _t975,
    format_summary,
    load_results,
    run_bench,
)
from ttc_agents._apps.calibrate import calibrate
from ttc_agents._apps.datasets import DatasetError, DatasetWarning, arithmetic_problems, grade
from ttc_agents._apps.loaders import load_bench_problems, load_gsm8k, load_math500
from ttc_agents._routing.policy import PolicyMismatchError
from ttc_agents.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "scripted/arith"
DATASET = "arith?size=6&seed=0"
STRATEGIES = ("best_of_n", "beam_search", "revision")
BUDGETS = (1, 2)
SETTINGS = ("best_of_n_weighted", "best_of_n_majority", "beam_search", "revision")


def bench(out: Path, **overrides: Any) -> BenchResult:
    """One benchmark run on its own event loop (results are plain values)."""
    config = BenchConfig(
        **{
            "dataset": DATASET,
            "model": MODEL,
            "verifier": "arithmetic",
            "strategies": STRATEGIES,
            "budgets": BUDGETS,
            "seeds": 2,
            **overrides,
        }
    )
    return asyncio.run(run_bench(config, out, progress=False))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    return bench(tmp_path_factory.mktemp("bench") / "out")


def rows_of(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


_COSTS = ("samples", "tokens", "usd", "flops", "usage", "unit_spent", "cost")


def split_costs(value: Any, path: str = "") -> tuple[Any, dict[str, float]]:
    """``value`` without its cost fields, and those fields flattened (path -> number).

    A rerun unit replays its samples from the store, which books each sample's even share of its
    recorded request's completion tokens: a search step that replays part of a request another
    step recorded can book a token more or less than the live call did. Answers and correctness
    replay exactly; costs agree to well within a percent.
    """
    costs: dict[str, float] = {}
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            if key in _COSTS:
                costs.update(flatten(item, f"{path}/{key}"))
            else:
                kept[key], inner = split_costs(item, f"{path}/{key}")
                costs.update(inner)
        return kept, costs
    if isinstance(value, list):
        parts = [split_costs(item, f"{path}/{i}") for i, item in enumerate(value)]
        for _, inner in parts:
            costs.update(inner)
        return [kept for kept, _ in parts], costs
    return value, costs


def flatten(value: Any, path: str) -> dict[str, float]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{path}/{i}").items()}
    if "/ci/" in path:  # a cost's interval moves with its spread over seeds; its mean and per-seed values are checked
        return {}
    return {path: float(value)} if isinstance(value, int | float) else {}


def assert_same(a: Any, b: Any) -> None:
    """Equal outside the cost fields; costs within 1%."""
    kept_a, costs_a = split_costs(a)
    kept_b, costs_b = split_costs(b)
    assert kept_a == kept_b
    assert costs_a == pytest.approx(costs_b, rel=1e-2, abs=1e-9)


# --- loaders --------------------------------------------------------------------------------------


def test_math500_loader_reads_the_published_fields() -> None:
    problems = load_math500(FIXTURES / "math500_sample.jsonl")
    assert [p.id for p in problems] == [
        "test/precalculus/807.json",
        "test/algebra/2584.json",
        "test/number_theory/572.json",
        "test/algebra/2608.json",
    ]
    first = problems[0]
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert [p.difficulty for p in problems] == [2, 3, 3, 1]
    assert first.metadata["subject"] == "Precalculus" and "\\boxed" in first.metadata["solution"]
    assert first.question.startswith("Convert the point $(0,3)$")


def test_math_loader_accepts_original_math_rows() -> None:
    problems = load_math500(FIXTURES / "math_original_sample.jsonl")
    assert [p.answer for p in problems] == ["70", "36"]  # the last \boxed{} of the solution
    assert [p.difficulty for p in problems] == [2, None]  # "Level 2", "Level ?"
    assert problems[0].metadata["subject"] == "Counting & Probability"


def test_math_answers_are_graded_by_equivalence() -> None:
    problems = {p.id: p for p in load_math500(FIXTURES / "math500_sample.jsonl")}
    fraction = problems["test/algebra/2584.json"]
    assert grade(fraction, "14/3") and grade(fraction, "\\dfrac{14}{3}") and not grade(fraction, "4.6")
    assert grade(problems["test/algebra/2608.json"], "26,000")
    assert grade(problems["test/precalculus/807.json"], "(3, \\frac{\\pi}{2})")  # math-verify


def test_gsm8k_loader_reads_the_final_answer_and_keeps_the_solution() -> None:
    problems = load_gsm8k(FIXTURES / "gsm8k_sample.jsonl")
    assert [p.answer for p in problems] == ["18", "3", "70000"]
    assert [p.id for p in problems] == ["gsm8k_sample:1", "gsm8k_sample:2", "gsm8k_sample:3"]
    assert problems[0].metadata["solution"].endswith("#### 18")
    assert problems[0].difficulty is None


def test_gsm8k_final_answers_lose_thousands_separators(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps({"question": "How much?", "answer": "So 1,000 + 250 = 1,250\n#### 1,250"}) + "\n")
    assert load_gsm8k(path)[0].answer == "1250"


def test_a_bad_line_fails_the_load_naming_its_line() -> None:
    with pytest.raises(DatasetError, match=r"gsm8k_bad_line\.jsonl:2: invalid JSON"):
        load_gsm8k(FIXTURES / "gsm8k_bad_line.jsonl")


def test_bad_lines_are_skipped_with_a_warning_naming_each_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = load_gsm8k(FIXTURES / "gsm8k_bad_line.jsonl", on_error="skip")
    assert [p.answer for p in problems] == ["18", "70000"]
    messages = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    assert len(messages) == 2
    assert "gsm8k_bad_line.jsonl:2: invalid JSON" in messages[0]
    assert "gsm8k_bad_line.jsonl:3: field 'answer': must end with '#### <final answer>'" in messages[1]


def test_a_bad_math_row_names_its_line_and_field(tmp_path: Path) -> None:
    good = (FIXTURES / "math500_sample.jsonl").read_text().splitlines()[0]
    path = tmp_path / "math.jsonl"
    path.write_text(good + "\n" + json.dumps({"problem": "What is 1+1?", "level": "hard", "answer": "2"}) + "\n")
    with pytest.raises(DatasetError, match=r"math\.jsonl:2: field 'level'"):
        load_math500(path)
    path.write_text(good + "\n" + json.dumps({"problem": "What is 1+1?", "solution": "It is 2."}) + "\n")
    with pytest.raises(DatasetError, match=r"math\.jsonl:2: no 'answer' field"):
        load_math500(path)
    path.write_text(good + "\n" + good + "\n")
    with pytest.raises(DatasetError, match=r"math\.jsonl:2: id 'test/precalculus/807.json' repeats line 1"):
        load_math500(path)


def test_dataset_specs_reach_every_loader() -> None:
    math_path, gsm_path = FIXTURES / "math500_sample.jsonl", FIXTURES / "gsm8k_sample.jsonl"
    assert len(load_bench_problems(f"math500:{math_path}")) == 4
    assert len(load_bench_problems(f"gsm8k:{gsm_path}")) == 3
    assert load_bench_problems(str(math_path))[0].difficulty == 2  # sniffed as MATH
    assert load_bench_problems(str(gsm_path))[2].answer == "70000"  # sniffed as GSM8K
    assert [p.id for p in load_bench_problems("arith?size=3&seed=0")] == ["arith:0:0", "arith:0:1", "arith:0:2"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skipped = load_bench_problems(str(FIXTURES / "gsm8k_bad_line.jsonl"), on_bad_line="skip")
    assert len(skipped) == 2
    assert [str(w.message).split(": ")[0].rsplit(":", 1)[1] for w in caught] == ["2", "3"]  # "skipped PATH:LINE: ..."
    with pytest.raises(DatasetError, match="no such file"):
        load_bench_problems("math500:/nonexistent/test.jsonl")


# --- statistics -----------------------------------------------------------------------------------


def test_t_interval_matches_the_t_table() -> None:
    assert _t975(1) == pytest.approx(12.706) and _t975(30) == pytest.approx(2.042)
    assert _t975(31) == pytest.approx(2.0395, abs=1e-3) and _t975(1000) == pytest.approx(1.9623, abs=1e-3)
    single = _interval([0.5])
    assert single["mean"] == 0.5 and single["ci"] is None
    pair = _interval([0.4, 0.6], (0.0, 1.0))
    half = 12.706 * math.sqrt(0.02) / math.sqrt(2)
    assert pair["ci"] == pytest.approx([max(0.0, 0.5 - half), min(1.0, 0.5 + half)])


# --- a benchmark run ------------------------------------------------------------------------------


def test_outputs_exist_and_the_report_embeds_the_plots(first_run: BenchResult) -> None:
    out = first_run.out
    for name in ("results.jsonl", "summary.json", "report.md", "bench.json", "responses.sqlite", *PLOTS):
        assert (out / name).is_file(), name
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in (out / "report.md").read_text()
    assert first_run.units_run == 6 * 2 and first_run.units_skipped == 0


def test_results_have_one_line_per_question_setting_and_seed(first_run: BenchResult) -> None:
    rows = rows_of(first_run.out)
    keys = {(r["question_id"], r["setting"], r["budget"], r["seed"]) for r in rows}
    assert len(rows) == len(keys) == 6 * len(SETTINGS) * len(BUDGETS) * 2
    assert {r["setting"] for r in rows} == set(SETTINGS)
    for row in rows:
        assert set(row["usage"]) == {"samples", "tokens", "usd", "flops"}
        assert row["correct"] == grade(next(p for p in arithmetic_problems(6, 0) if p.id == row["question_id"]),
                                       row["answer"])  # fmt: skip


def test_summary_accuracies_are_the_means_of_the_results(first_run: BenchResult) -> None:
    summary = json.loads((first_run.out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(first_run.summary))
    rows = rows_of(first_run.out)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["setting"], row["budget"])].append(row)
    assert {(s["setting"], s["budget"]) for s in summary["settings"]} == set(groups)
    for entry in summary["settings"]:
        group = groups[(entry["setting"], entry["budget"])]
        assert entry["accuracy"]["mean"] == pytest.approx(sum(r["correct"] for r in group) / len(group))
        assert entry["tokens"]["mean"] == pytest.approx(sum(r["usage"]["tokens"] for r in group) / len(group))
        assert entry["seeds"] == 2 and entry["questions"] == 6
        for metric in ("accuracy", "samples", "tokens", "usd", "flops"):
            low, high = entry[metric]["ci"]
            assert low <= entry[metric]["mean"] <= high and len(entry[metric]["per_seed"]) == 2
        low, high = entry["accuracy"]["ci_questions"]
        assert 0.0 <= low <= entry["accuracy"]["mean"] <= high <= 1.0
    # best-of-N at N is charged N samples; the difficulty bins are the problems' levels
    assert all(s["samples"]["mean"] == s["budget"] for s in summary["settings"] if s["setting"].startswith("best"))
    assert summary["run"]["difficulty"] == "level"
    assert [b["label"] for b in summary["bins"]] == [f"level {k}" for k in range(1, 6)]
    assert sum(b["questions"] for b in summary["bins"]) == 6
    level_one = {r["question_id"] for r in rows if r["level"] == 1}
    bin_one = next(s for s in summary["bins"][0]["settings"] if s["setting"] == "revision" and s["budget"] == 2)
    members = [r for r in groups[("revision", 2)] if r["question_id"] in level_one]
    assert bin_one["accuracy"]["mean"] == pytest.approx(sum(r["correct"] for r in members) / len(members))
    assert summary["cost"]["grid"]["tokens"] < summary["cost"]["cells"]["tokens"]  # the pool is shared
    assert "best-of-N weighted" in format_summary(summary)


def test_a_rerun_resumes_after_a_cut_in_the_middle_of_a_unit(first_run: BenchResult, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(first_run.out, out)
    text = (out / "results.jsonl").read_text()
    lines = text.splitlines(keepends=True)
    unit = [(json.loads(line)["question_id"], json.loads(line)["seed"]) for line in lines]
    # cut inside a line whose unit continues on the next line: that unit is partly on disk
    cut_line = next(i for i in range(len(lines) // 2, len(lines) - 1) if unit[i] == unit[i + 1] != unit[i - 1])
    cut_line += 1
    position = sum(len(line) for line in lines[:cut_line]) + len(lines[cut_line]) // 2
    (out / "results.jsonl").write_text(text[:position])
    finished_before = len(set(unit[:cut_line]) - {unit[cut_line]})

    again = bench(out)

    assert again.units_skipped == finished_before and again.units_run == 12 - finished_before
    assert any("partial last line" in note for note in again.notes)
    assert_same(again.summary, first_run.summary)
    rows = rows_of(out)
    keys = [(r["question_id"], r["setting"], r["budget"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(lines)

    def key(row: dict[str, Any]) -> tuple[str, str, int, int]:
        return row["question_id"], row["setting"], row["budget"], row["seed"]

    assert_same(sorted(rows, key=key), sorted((json.loads(line) for line in lines), key=key))
    # a finished directory runs nothing and summarises the same file the same way
    done = bench(out)
    assert (done.units_run, done.units_skipped) == (0, 12) and done.summary == again.summary


def test_load_results_drops_lines_that_are_not_rows(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    row = {"question_id": "q", "seed": 0, "setting": "revision", "budget": 1, "correct": True, "usage": {}}
    path.write_text(json.dumps(row) + "\nnot json\n" + json.dumps({"x": 1}) + "\n" + '{"question_id": "q"')
    rows, notes = load_results(path)
    assert rows == [row]
    assert path.read_text().endswith("}\n")  # the partial last line is gone from the file
    assert len(notes) == 3


def test_a_directory_of_another_setup_is_refused(first_run: BenchResult, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(first_run.out, out)
    with pytest.raises(BenchError, match="model 'scripted/arith' \\(now 'scripted/arith-easy'\\)"):
        bench(out, model="scripted/arith-easy")


def test_bad_configurations_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="needs a calibrated policy"):
        bench(tmp_path / "a", strategies=("best_of_n", "router"))
    with pytest.raises(BenchError, match="unknown strategy 'best_of_m'"):
        bench(tmp_path / "b", strategies=("best_of_m",))
    with pytest.raises(BenchError, match="seeds must be at least 1"):
        bench(tmp_path / "c", seeds=0)
    assert not (tmp_path / "a").exists()


# --- the router -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = asyncio.run(
        calibrate(
            arithmetic_problems(10, seed=1),
            models=[MODEL],
            verifier=ArithmeticStepVerifier(),
            budgets=[1, 2, 4],
            strategies=["best_of_n", "revision"],
            dataset="arith?size=10&seed=1",
            progress=False,
        )
    )
    path = tmp_path_factory.mktemp("policy") / "policy.json"
    result.policy.save(path)
    return path


def test_the_router_runs_at_every_budget_when_a_policy_is_given(policy_path: Path, tmp_path: Path) -> None:
    result = bench(tmp_path / "out", strategies=("best_of_n", "router"), policy=policy_path)
    rows = rows_of(tmp_path / "out")
    router = [r for r in rows if r["setting"] == "router"]
    assert len(router) == 6 * len(BUDGETS) * 2
    assert all(r["action"] for r in router)
    # A bin where the router probed; None where the policy's choice at N is the same in every bin.
    assert all(r["router_bin"] in range(1, 6) or r["router_bin"] is None for r in router)
    # router@N includes its difficulty probe when it draws one: at least probe_samples samples even at N=1
    assert all(r["usage"]["samples"] >= 4 for r in router if r["router_bin"] is not None)
    settings = {(s["setting"], s["budget"]) for s in result.summary["settings"]}
    assert {("router", b) for b in BUDGETS} <= settings
    assert result.summary["run"]["strategies"] == ["best_of_n", "router"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "compute-optimal router" in report
    # The router is compared with best-of-N weighted at its own mean tokens, not at nominal N.
    matched = result.summary["matched"]
    assert [m["N"] for m in matched] == sorted(BUDGETS)
    for m in matched:
        router_tokens = statistics.fmean(r["usage"]["tokens"] for r in router if r["budget"] == m["N"])
        assert m["tokens"] == pytest.approx(router_tokens)
        assert m["delta_ci"][0] <= m["delta"] <= m["delta_ci"][1]
    assert "Router at matched compute" in report


def test_a_policy_for_another_verifier_is_refused_unless_forced(policy_path: Path, tmp_path: Path) -> None:
    with pytest.raises(PolicyMismatchError, match="verifier 'none'"):
        bench(tmp_path / "a", verifier="none", strategies=("revision",), budgets=(1,), seeds=1, policy=policy_path)
    assert not (tmp_path / "a").exists()  # refused before anything was written or spent
    forced = bench(
        tmp_path / "b", verifier="none", strategies=("revision",), budgets=(1,), seeds=1, policy=policy_path, force=True
    )
    assert {s["setting"] for s in forced.summary["settings"]} == {"revision", "router"}


# --- the command line -----------------------------------------------------------------------------


def test_the_command_prints_the_table_and_skips_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = tmp_path / "set.jsonl"
    dataset.write_text(
        json.dumps({"question": "What is 2 + 3?", "answer": "5", "difficulty": 1})
        + "\n{broken\n"
        + json.dumps({"question": "What is 4 * 6 - 5?", "answer": 19, "difficulty": 2})
        + "\n"
    )
    argv = ["bench", "--dataset", str(dataset), "--model", MODEL, "--verifier", "arithmetic", "--budgets", "1,2"]
    argv += ["--strategies", "best_of_n", "--seeds", "1", "--out", str(tmp_path / "out"), "--no-progress"]
    assert main([*argv, "--on-bad-line", "fail"]) == 1
    assert "set.jsonl:2: invalid JSON" in capsys.readouterr().err
    assert main([*argv, "--on-bad-line", "skip"]) == 0
    captured = capsys.readouterr()
    assert "warning: skipped" in captured.err and "set.jsonl:2" in captured.err
    assert "best-of-N weighted" in captured.out and "2 units run, 0 resumed" in captured.out
    assert (tmp_path / "out" / "report.md").is_file()
