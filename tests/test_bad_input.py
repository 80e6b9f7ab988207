"""Bad input: invalid configs, policies and dataset lines give errors naming the field or line; what a
model or a server sends is parsed without any exception escaping; no code path evaluates model text.

The answer extractor, step splitter, safe evaluator and arithmetic checker are fuzzed by their own
tests (test_answers, test_safe_math, test_arithmetic_verifier); this file fuzzes the rest: workflow
YAML, policy files, JSONL dataset lines and specs, strategy specs and budgets, the LLM judge's
reading of logprobs and text, the reward-model verifier's reading of pooled rows, candidate
selection, and the record store's request keys.
"""

from __future__ import annotations

import contextlib
import json
import math
import string
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from suite_totals import count
from test_answers import guarded_builtins  # eval/exec/compile made to raise, and recorded

from ttc_agents import (
    ArithmeticStepVerifier,
    BeamSearchSpec,
    BestOfNSpec,
    Budget,
    Candidate,
    DVTSSpec,
    HybridSpec,
    RevisionSpec,
    Sample,
    build_strategy_graph,
    extract_answer,
    parse_strategy,
    select_answer,
    select_hierarchical,
)
from ttc_agents._apps.datasets import DatasetError, load_jsonl, load_problems
from ttc_agents._apps.workflow import WorkflowConfigError, load_workflow, load_workflows
from ttc_agents._core.answers import group_answers
from ttc_agents._llm.store import ResponseStore
from ttc_agents._routing.moves import has_final_answer
from ttc_agents._routing.policy import POLICY_FORMAT_VERSION, Policy
from ttc_agents.verifiers import LLMJudgePRM
from ttc_agents.verifiers._llm_judge import judge_probability
from ttc_agents.verifiers._reward_model import RewardModelError, RewardModelVerifier

SUITE = "bad input"


def tried(kind: str) -> None:
    """Count one generated input (reported at the end of the run by conftest, via suite_totals)."""
    count(SUITE, "inputs tried")
    count(SUITE, f"{kind} inputs")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)

# --- workflow YAML ------------------------------------------------------------------------------------

GOOD = {
    "models": {"main": "scripted/arith"},
    "verifier": "arithmetic",
    "strategy": {"strategy": "beam_search", "n": 8, "width": 2},
    "budget": {"max_tokens": 4000},
}


def write_workflows(tmp_path: Path, workflows: Any, name: str = "w.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"workflows": workflows}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"models": {}}, "field models"),
        ({"models": {"main": {"name": "scripted/arith", "temprature": 0.2}}}, "models.main.temprature"),
        ({"models": {"main": {"name": ""}}}, "models.main.name"),
        ({"models": {"main": {"name": "x", "timeout": -1}}}, "models.main.timeout"),
        ({"models": {"main": {"name": "x", "api_key": 12345}}}, "models.main.api_key"),
        ({"strategy": {"strategy": "beam_search", "n": 7, "width": 2}}, "divisible by width"),
        ({"strategy": {"strategy": "best_of_n", "n": 0}}, "strategy.best_of_n.n"),
        ({"strategy": {"strategy": "monte_carlo"}}, "field strategy"),
        ({"strategy": {"n": 4}}, "field strategy"),
        ({"strategy": {"strategy": "revision", "selection": "vibes"}}, "strategy.revision.selection"),
        ({"budget": {"max_tokens": -5}}, "budget.max_tokens"),
        ({"budget": {"max_usd": "a lot"}}, "budget.max_usd"),
        ({"budget": {"max_dollars": 5}}, "budget.max_dollars"),
        ({"batch_budget": {"max_seconds": 0}}, "batch_budget.max_seconds"),
        ({"budget_unit": "bananas"}, "budget_unit"),
        ({"model": "other"}, "model 'other' is not one of models"),
        ({"policy": "policy.json"}, "exactly one of"),
        ({"prompts": {"generate": 3}}, "prompts.generate"),
        ({"verifier": "judge-by-vibes"}, "field verifier"),
        ({"verifier": "prm:"}, "field verifier"),
        ({"surprise": 1}, "field surprise"),
    ],
)
def test_invalid_workflows_name_the_workflow_and_field(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    path = write_workflows(tmp_path, {"good": GOOD, "bad": {**GOOD, **change}})
    assert load_workflow(path, "good").main_model.name == "scripted/arith"
    with pytest.raises(WorkflowConfigError) as info:
        load_workflow(path, "bad")
    message = str(info.value)
    assert str(path) in message and "workflow 'bad'" in message and field in message, message
    with pytest.raises(WorkflowConfigError, match="workflow 'bad'"):
        load_workflows(path)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"workflows: {a: [unclosed", "while parsing"),
        (b"- just\n- a list\n", "expected a mapping with one key `workflows"),
        (b"workflows: {}\n", "expected a mapping"),
        (b"workflows: {a: {}}\nextra: 1\n", "expected a mapping"),
        (b"", "expected a mapping"),
        (b"\xff\xfe\x00w\x00o", "UTF-8"),
        (b"workflows:\n  a: " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
    ids=["syntax", "list", "empty-workflows", "extra-key", "empty-file", "not-utf8", "deep"],
)
def test_unreadable_workflow_files_name_the_file(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_bytes(content)
    with pytest.raises(WorkflowConfigError) as info:
        load_workflow(path, "a")
    assert str(path) in str(info.value) and words in str(info.value), info.value
    with pytest.raises(WorkflowConfigError, match=r"cannot read|No such file"):
        load_workflow(tmp_path / "missing.yaml", "a")


def test_yaml_alias_bombs_are_never_expanded(tmp_path: Path) -> None:
    """Nine levels of nine aliases (387 million leaves if expanded) in a model's extra_params: the
    loader keeps aliases as shared references (or refuses the file), in bounded memory."""
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = "workflows:\n  w:\n    models:\n      main:\n        name: scripted/arith\n        extra_params:\n"
    text += "".join(f"          {line}\n" for line in levels)
    text += "    strategy: {strategy: best_of_n}\n"
    path = tmp_path / "w.yaml"
    path.write_text(text)
    tracemalloc.start()
    try:
        try:
            workflow = load_workflow(path, "w")
        except WorkflowConfigError as error:  # refusing the file is fine; its message stays short
            assert len(str(error)) < 2000
            workflow = None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # an expansion would need gigabytes
    if workflow is not None:
        params = workflow.main_model.extra_params
        assert set(params) == {f"l{i}" for i in range(9)}
        # Not expanded: each level is one list object, and the next level holds nine references to it.
        assert all(item is params["l7"] for item in params["l8"])
        lists: dict[int, object] = {}
        pending: list[object] = list(params.values())
        while pending:
            item = pending.pop()
            if isinstance(item, list) and id(item) not in lists:
                lists[id(item)] = item
                pending.extend(item)
        assert len(lists) == 9


workflow_fields = st.fixed_dictionaries(
    {},
    optional={
        "models": json_values | st.dictionaries(st.text(max_size=5), st.sampled_from(["scripted/arith", ""])),
        "verifier": json_values | st.sampled_from(["arithmetic", "none", "prm:x", "reward:#", "orm"]),
        "strategy": json_values
        | st.fixed_dictionaries(
            {"strategy": st.sampled_from(["best_of_n", "beam_search", "dvts", "revision", "hybrid"])},
            optional={"n": json_values, "width": json_values, "attempts": json_values},
        ),
        "policy": json_values,
        "budget": json_values | st.dictionaries(st.sampled_from(["max_tokens", "max_usd", "x"]), json_values),
        "model": json_values,
        "budget_unit": json_values,
        "prompts": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workflows=st.dictionaries(st.text(max_size=8), workflow_fields | json_values, max_size=3))
def test_fuzzed_workflow_files_load_or_fail_with_a_workflow_error(tmp_path: Path, workflows: Any) -> None:
    tried("workflow")
    path = tmp_path / "fuzz.yaml"
    path.write_text(json.dumps({"workflows": workflows}, allow_nan=True), encoding="utf-8")  # JSON is YAML
    try:
        load_workflows(path)
    except WorkflowConfigError as error:
        assert str(path) in str(error)


# --- policy files -----------------------------------------------------------------------------------


def good_policy() -> dict[str, Any]:
    entry = {
        "bin": 1,
        "budget": 4,
        "accuracy": 0.5,
        "cv_accuracy": 0.5,
        "questions": 3,
        "action": {"model": "scripted/arith", "strategy": {"strategy": "best_of_n", "n": 4}},
        "cost": {"samples": 4, "tokens": 100, "usd": 0.0, "flops": 0.0},
    }
    return {
        "format_version": POLICY_FORMAT_VERSION,
        "models": ["scripted/arith"],
        "verifier": "arithmetic",
        "dataset": "arith",
        "thresholds": [0.2, 0.4, 0.6, 0.8],
        "table": [entry],
    }


def policy_file(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda p: p.update(format_version=2), "format_version 2"),
        (lambda p: p.pop("format_version"), "format_version None"),
        (lambda p: p.pop("models"), "models"),
        (lambda p: p.pop("table"), "table"),
        (lambda p: p.update(thresholds="high"), "thresholds"),
        (lambda p: p["table"][0].pop("action"), "table.0.action"),
        (lambda p: p["table"][0].update(bin=9), "table.0.bin"),
        (lambda p: p["table"][0]["action"]["strategy"].update(strategy="nope"), "table.0.action.strategy"),
        (lambda p: p.update(estimator="crystal-ball"), "estimator"),
        (lambda p: p.update(unknown=1), "unknown"),
    ],
    ids=[
        "version",
        "no-version",
        "no-models",
        "no-table",
        "thresholds",
        "no-action",
        "bin",
        "strategy",
        "estimator",
        "extra",
    ],
)
def test_invalid_policies_name_the_field(tmp_path: Path, mutate: Any, words: str) -> None:
    assert Policy.load(policy_file(tmp_path, good_policy())).models == ["scripted/arith"]
    data = good_policy()
    mutate(data)
    with pytest.raises(ValueError) as info:
        Policy.load(policy_file(tmp_path, data))
    message = str(info.value).replace("\n", " ")
    for part in words.split("."):
        assert part in message, message


@pytest.mark.parametrize("content", ["[]", "null", '"policy"', "3", "not json", "{", ""])
def test_policy_files_that_are_not_objects_name_the_file(tmp_path: Path, content: str) -> None:
    path = policy_file(tmp_path, content)
    with pytest.raises(ValueError) as info:
        Policy.load(path)
    assert str(path) in str(info.value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_policies_load_or_fail_with_a_value_error(tmp_path: Path, data: st.DataObject) -> None:
    tried("policy")
    policy = good_policy()
    target: Any = policy
    path = data.draw(st.lists(st.sampled_from(["table", 0, "action", "strategy", "cost", "thresholds"]), max_size=4))
    for key in path:  # walk down a random path, then replace or delete what is there
        nxt = (
            target[key]
            if isinstance(target, dict) and key in target
            else (target[key] if isinstance(target, list) and isinstance(key, int) and key < len(target) else None)
        )
        if not isinstance(nxt, dict | list):
            break
        target = nxt
    if isinstance(target, dict) and target:
        key = data.draw(st.sampled_from(sorted(target)))
        if data.draw(st.booleans()):
            del target[key]
        else:
            target[key] = data.draw(json_values)
    elif isinstance(target, list) and target:
        target[0] = data.draw(json_values)
    with contextlib.suppress(ValueError):  # ValidationError is a ValueError too
        Policy.load(policy_file(tmp_path, json.dumps(policy)))


# --- datasets ---------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(
        st.one_of(
            st.text(max_size=40),
            json_values.map(json.dumps),
            st.fixed_dictionaries(
                {"question": json_values, "answer": json_values},
                optional={"id": json_values, "difficulty": json_values},
            ).map(json.dumps),
        ),
        min_size=1,
        max_size=6,
    )
)
@example(lines=["\x1e:"])  # str.splitlines() made this line 2 of a 1-line file (make test, issue 12)
@example(lines=['{"question": "a\u2028b", "answer": "1"}', "x"])
def test_fuzzed_dataset_lines_load_or_name_the_line(tmp_path: Path, lines: list[str]) -> None:
    tried("dataset line")
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines), encoding="utf-8")
    try:
        problems = load_jsonl(path)
    except DatasetError as error:
        message = str(error)
        assert message.startswith(f"{path}:")
        number = int(message[len(str(path)) + 1 :].split(":", 1)[0])
        assert 1 <= number <= len(lines)
    else:
        assert all(p.question.strip() and p.answer.strip() for p in problems)


def test_dataset_files_that_are_not_text_are_named(tmp_path: Path) -> None:
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b'{"question": "q", "answer": "1"}\n\xff\xfe\x00\x01')
    with pytest.raises(DatasetError, match=f"{path}: not UTF-8"):
        load_jsonl(path)


@settings(max_examples=300, deadline=None)
@given(
    spec=st.one_of(
        st.text(max_size=30),
        st.builds(
            lambda head, params: head + "?" + "&".join(f"{k}={v}" for k, v in params),
            st.sampled_from(["arith", "rg:", "rg:basic_arithmetic", "rg:nope", "arith "]),
            st.lists(
                st.tuples(
                    st.sampled_from(["size", "seed", "levels", "x", "", "pass_score", "min_terms"]),
                    st.text(alphabet=string.digits + "-,.ax%&=", max_size=6),
                ),
                max_size=3,
            ),
        ),
    )
)
def test_fuzzed_dataset_specs_load_or_fail_with_a_dataset_error(spec: str) -> None:
    tried("dataset spec")
    if any(part.startswith("size=") and part[5:].isdigit() and int(part[5:]) > 200 for part in spec.split("&")):
        return  # a huge size is a request for a huge set, not bad input
    try:
        problems = load_problems(spec)
    except DatasetError:
        return
    assert problems


# --- specs and budgets ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"strategy": st.sampled_from(["best_of_n", "beam_search", "dvts", "revision", "hybrid", "x"])},
            optional={
                k: json_values | st.integers(-3, 40)
                for k in (
                    "n",
                    "width",
                    "max_rounds",
                    "lookahead",
                    "attempts",
                    "chains",
                    "context",
                    "sequential_ratio",
                    "temperature",
                    "selection",
                    "aggregation",
                    "seed",
                    "step_delimiter",
                )
            },
        ),
    )
)
def test_fuzzed_strategy_specs_validate_or_fail_with_a_validation_error(data: Any) -> None:
    tried("strategy spec")
    try:
        spec = parse_strategy(data)
    except ValidationError:
        return
    if isinstance(spec, BeamSearchSpec | DVTSSpec):
        assert spec.n % spec.width == 0
    if isinstance(spec, HybridSpec):
        parallel, sequential = spec.shape
        assert parallel * sequential <= spec.n


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(["max_samples", "max_tokens", "max_usd", "max_flops", "max_seconds", "max_x"]),
        json_values | st.floats(),
    )
)
def test_fuzzed_budgets_are_positive_or_rejected(fields: dict[str, Any]) -> None:
    tried("budget")
    try:
        budget = Budget.model_validate(fields)
    except ValidationError:
        return
    for value in budget.model_dump().values():
        assert value is None or (value > 0 and not math.isnan(value))


# --- what a server sends: judge logprobs and text, pooled reward rows --------------------------------

logprob_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
    st.none(),
    st.text(max_size=4),
    st.lists(st.floats(), max_size=2),
    st.booleans(),
)
tokens = st.sampled_from(["Yes", "No", " yes", "NO", "", " ", "maybe", None, 3])
positions = st.fixed_dictionaries(
    {},
    optional={
        "token": tokens,
        "logprob": logprob_values,
        "top_logprobs": st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=3),
            st.lists(
                st.one_of(
                    st.fixed_dictionaries({}, optional={"token": tokens, "logprob": logprob_values}), json_values
                ),
                max_size=4,
            ),
        ),
    },
)


@settings(max_examples=500, deadline=None)
@given(
    text=st.text(max_size=200) | st.sampled_from(["Yes", "No\nRating: 3", "Rating: 99", "rating=7.5"]),
    logprobs=st.none() | st.lists(positions | json_values, max_size=4).map(tuple),
)
def test_judge_reading_never_escapes_and_is_a_probability(text: str, logprobs: tuple[Any, ...] | None) -> None:
    """A judge server may send anything as logprobs (null, strings, 1e30): the score stays in [0, 1]."""
    tried("judge reading")
    score = judge_probability(Sample(text, "stop", logprobs))
    assert 0.0 <= score <= 1.0


rows = st.recursive(
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(10**400), 10**400)
    | st.text(max_size=3)
    | st.none()
    | st.booleans(),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=500, deadline=None)
@given(data=rows | st.lists(rows, max_size=4), steps=st.integers(0, 4))
def test_reward_rows_give_scores_or_a_reward_model_error(data: Any, steps: int) -> None:
    """Pooled rows from a reward server: scores in [0, 1], or a RewardModelError naming the problem."""
    tried("reward row")
    verifier = RewardModelVerifier("http://127.0.0.1:9/v1", model="prm")
    try:
        scores = verifier._step_scores(data, steps)
    except RewardModelError:
        return
    assert len(scores) == steps and all(0.0 <= s <= 1.0 for s in scores)


# --- selection and keys over arbitrary candidates --------------------------------------------------

candidates = st.lists(
    st.builds(
        Candidate,
        steps=st.lists(st.text(max_size=30), max_size=3).map(tuple),
        answer=st.none() | st.text(max_size=12) | st.integers(-99, 99).map(str),
        finished=st.booleans(),
        score=st.none() | st.floats(allow_nan=False),
        chain=st.none() | st.integers(0, 3),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(pool=candidates, method=st.sampled_from(["naive", "weighted", "majority"]))
def test_selection_over_arbitrary_candidates_picks_one_of_their_answers(pool: list[Candidate], method: Any) -> None:
    tried("selection")
    for choice in (select_answer(pool, method), select_hierarchical(pool)):
        answers = {c.answer for c in pool if c.answer is not None}
        if choice.answer is not None:
            assert choice.answer in answers
        if choice.index is not None:
            assert 0 <= choice.index < len(pool)
    for candidate in pool:
        has_final_answer(candidate.text)


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(st.text(max_size=12), json_values, max_size=6),
    messages=st.lists(st.dictionaries(st.sampled_from(["role", "content", "name"]), json_values), max_size=3),
)
def test_request_keys_of_arbitrary_requests(params: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    tried("request key")
    try:
        key = ResponseStore.request_key("m", messages, params)
    except (TypeError, ValueError):  # not expressible as JSON (documented), e.g. NaN
        return
    assert len(key) == 64 and key == ResponseStore.request_key("m", messages, dict(reversed(params.items())))


# --- nothing evaluates model text -------------------------------------------------------------------


async def test_no_strategy_graph_evaluates_model_text() -> None:
    """Every strategy, on the scripted provider with the arithmetic verifier and with an LLM judge, then
    answer grouping and extraction of symbolic answers, with eval/exec/compile raising (imports
    included: everything is warmed up first). The math-verify child process is covered by
    test_answers.test_no_text_evaluation_in_math_verify_worker."""
    specs = [
        BestOfNSpec(n=6, seed=1, selection="majority"),
        BeamSearchSpec(n=4, width=2, max_rounds=4, lookahead=1, seed=1),
        DVTSSpec(n=4, width=2, max_rounds=4, seed=1),
        RevisionSpec(attempts=3, chains=2, seed=1),
        HybridSpec(n=4, seed=1),
    ]
    graphs = [
        build_strategy_graph(spec, model="scripted/arith-hard", verifier=verifier)
        for verifier in (ArithmeticStepVerifier(), LLMJudgePRM("scripted/arith"))
        for spec in specs
    ]
    for graph in graphs:  # warm-up: lazy imports and first-use setup, unguarded
        await graph.ainvoke({"question": "What is 2 + 3 * 4?"})
    group_answers(["1", "2"])
    question = "What is 48 * 17 - 23 * 9 + __import__('os').getpid()?"
    with guarded_builtins(allow_imports=False) as calls:
        results = [await graph.ainvoke({"question": question}) for graph in graphs]
        results += [await graph.ainvoke({"question": "What is 48 * 17 - 23 * 9 + 310?"}) for graph in graphs]
        grouped = group_answers([r["answer"] for r in results] + ["1/2", "0.5"])
        extracted = [extract_answer(c.text) for r in results for c in r["candidates"]]
    assert calls == []
    assert sum(r["answer"] == "919" for r in results[len(graphs) :]) >= len(graphs) // 2
    assert len(grouped) == len(results) + 2 and grouped[-1] == grouped[-2]
    assert extracted


# --- command-line flags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["solve", "q", "--model", "scripted/arith", "--max-tokens", "-5"], "--max-tokens"),
        (["solve", "q", "--model", "scripted/arith", "--max-samples", "0"], "--max-samples"),
        (["solve", "q", "--model", "scripted/arith", "--max-usd", "-1"], "--max-usd"),
        (["solve", "q", "--model", "scripted/arith", "--max-seconds", "nan"], "--max-seconds"),
        (["solve", "q", "--model", "scripted/arith", "--n", "0"], "--n"),
        (["solve", "q", "--model", "scripted/arith", "--width", "-2"], "--width"),
        (["solve", "q", "--model", "scripted/arith", "--temperature", "-0.5"], "--temperature"),
        (["solve", "q", "--model", "scripted/arith", "--ratio", "inf"], "--ratio"),
        (["solve", "q", "--model", "scripted/arith", "--lookahead", "-1"], "--lookahead"),
        (["solve", "q", "--model", "scripted/arith", "--seed", "x"], "--seed"),
        (["calibrate", "--model", "m", "--dataset", "arith", "--out", "p.json", "--concurrency", "0"], "--concurrency"),
        (["calibrate", "--model", "m", "--dataset", "arith", "--out", "p.json", "--limit", "-3"], "--limit"),
        (["bench", "--model", "m", "--dataset", "arith", "--out", "d", "--seeds", "0"], "--seeds"),
        (["bench", "--model", "m", "--dataset", "arith", "--out", "d", "--probe-samples", "-1"], "--probe-samples"),
    ],
)
def test_bad_numeric_flags_get_one_line_naming_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ttc_agents.cli import main

    tried("flag")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"argument {flag}" in err and "must be" in err
    assert "validation error" not in err.lower() and "pydantic" not in err.lower()
