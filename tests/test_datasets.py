"""Problem sets: JSONL loading with line-numbered errors, dataset specs, reasoning-gym, graded arithmetic."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from ttc_agents._apps.datasets import (
    ARITHMETIC_LEVELS,
    DatasetError,
    DatasetWarning,
    Problem,
    arithmetic_problems,
    grade,
    load_jsonl,
    load_problems,
    reasoning_gym_problems,
)
from ttc_agents._llm.gateway import Gateway
from ttc_agents._llm.providers import register_providers
from ttc_agents._llm.scripted.questions import _question


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- JSONL ----------------------------------------------------------------------------------------


def test_load_jsonl_reads_fields_defaults_and_metadata(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "set.jsonl",
        [
            json.dumps({"question": "What is 2 + 3?", "answer": "5", "id": "a", "difficulty": 1, "source": "x"}),
            "",
            json.dumps({"question": "What is 6 * 7?", "answer": 42}),
            json.dumps({"question": "Tom has 3 apples...", "answer": "He has 3 + 4 = 7 apples.\n#### 7", "id": 9}),
        ],
    )
    problems = load_jsonl(path)
    assert [p.id for p in problems] == ["a", "set:3", "9"]
    first, second, third = problems
    assert (first.answer, first.difficulty, dict(first.metadata)) == ("5", 1, {"source": "x"})
    assert second.answer == "42" and second.difficulty is None
    assert third.answer == "7" and "#### 7" in third.metadata["solution"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"question": "q", "answer": ', "invalid JSON"),
        ('["question", "answer"]', "expected a JSON object"),
        ('{"question": "What is 1 + 1?"}', "field 'answer': required"),
        ('{"answer": "2"}', "field 'question': required"),
        ('{"question": "q", "answer": "2", "difficulty": "hard"}', "field 'difficulty': must be an integer"),
        ('{"question": "q", "answer": [2]}', "field 'answer': must be a string or a number"),
        ('{"question": "q", "answer": true}', "field 'answer'"),
        ('{"question": "  ", "answer": "2"}', "field 'question': must not be empty"),
        ('{"question": "q", "answer": "2", "id": "first"}', "id 'first' repeats line 1"),
    ],
)
def test_load_jsonl_bad_line_names_file_line_and_problem(tmp_path: Path, line: str, expected: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps({"question": "q", "answer": "1", "id": "first"}), "", line])
    with pytest.raises(DatasetError) as info:
        load_jsonl(path)
    message = str(info.value)
    assert f"{path}:3:" in message
    assert expected in message


def test_load_jsonl_skip_warns_with_line_numbers_and_keeps_good_rows(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [
            json.dumps({"question": "What is 1 + 1?", "answer": "2"}),
            "{not json",
            json.dumps({"question": "What is 2 + 2?"}),
            json.dumps({"question": "What is 3 + 3?", "answer": "6"}),
        ],
    )
    with pytest.warns(DatasetWarning) as caught:
        problems = load_jsonl(path, on_error="skip")
    assert [p.answer for p in problems] == ["2", "6"]
    messages = [str(w.message) for w in caught]
    assert any(f"{path}:2:" in m and "invalid JSON" in m for m in messages)
    assert any(f"{path}:3:" in m and "'answer'" in m for m in messages)


def test_load_jsonl_unreadable_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read"):
        load_jsonl(tmp_path / "missing.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_jsonl(binary)


# --- specs ----------------------------------------------------------------------------------------


def test_load_problems_from_a_file_and_from_arith(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "tiny.jsonl", [json.dumps({"question": "What is 4 * 4?", "answer": "16"})])
    assert [p.answer for p in load_problems(str(path))] == ["16"]
    problems = load_problems("arith?size=6&seed=3&levels=1-2,5")
    assert len(problems) == 6
    assert [p.difficulty for p in problems] == [1, 2, 5, 1, 2, 5]
    assert problems == arithmetic_problems(6, 3, (1, 2, 5))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("no/such/file.jsonl", "no such file"),
        ("arith?size=ten", "size='ten' is not an integer"),
        ("arith?size=3&colour=red", "unknown setting 'colour'"),
        ("arith?levels=1,x", "levels='1,x'"),
        ("arith?levels=7", "levels must be a non-empty subset of 1-5"),
        ("arith?size=3&size=4", "'size' is given twice"),
        ("arith?size", "'size' is not key=value"),
        ("rg:", "no generator name"),
        ("rg:no_such_generator?size=2", "unknown reasoning-gym generator 'no_such_generator'"),
        ("rg:basic_arithmetic?size=2&colour=red", "basic_arithmetic has no setting 'colour'"),
        ("rg:basic_arithmetic?size=2&max_terms=many", "max_terms='many': expected an integer"),
        ("rg:basic_arithmetic?size=2&allow_negation=perhaps", "allow_negation='perhaps': expected true or false"),
        ("rg:basic_arithmetic?size=2&format_style=fancy", "expected one of simple, natural"),
        ("rg:basic_arithmetic?size=2&pass_score=high", "pass_score='high' is not a number"),
        ("rg:basic_arithmetic?size=0", "size must be at least 1"),
    ],
)
def test_bad_dataset_specs_name_the_bad_part(spec: str, expected: str) -> None:
    with pytest.raises(DatasetError) as info:
        load_problems(spec)
    assert expected in str(info.value)


def test_reasoning_gym_spec_converts_config_values_and_grades_with_its_scorer() -> None:
    problems = load_problems("rg:basic_arithmetic?size=5&seed=1&max_terms=3&operators=+,*&allow_negation=false")
    assert [p.id for p in problems] == [f"basic_arithmetic:1:{i}" for i in range(5)]
    for problem in problems:
        assert problem.grader is not None
        assert "/" not in problem.question and " - " not in problem.question  # operators=+,* only
        assert grade(problem, problem.answer)
        assert not grade(problem, str(int(problem.answer) + 1))
        assert not grade(problem, None)


def test_same_spec_same_problems() -> None:
    assert [p.question for p in load_problems("rg:chain_sum?size=4&seed=7")] == [
        p.question for p in reasoning_gym_problems("chain_sum", size=4, seed=7)
    ]


def test_gsm_symbolic_through_reasoning_gym() -> None:
    problems = load_problems("rg:gsm_symbolic?size=3&seed=0")
    assert len(problems) == 3
    for problem in problems:
        assert problem.question and problem.answer
        assert grade(problem, problem.answer)
        assert not grade(problem, "-123456789")


@pytest.mark.parametrize(("name", "answerable"), [("basic_arithmetic", True), ("chain_sum", True), ("products", True)])
def test_scripted_provider_answers_these_generators_exactly(name: str, answerable: bool) -> None:
    """What the module docstring claims: the scripted provider's error-free answer passes the scorer."""
    for problem in reasoning_gym_problems(name, size=30, seed=2):
        parsed = _question(problem.question)
        assert parsed.answer is not None
        text = str(parsed.answer.numerator) if parsed.answer.denominator == 1 else str(parsed.answer)
        assert grade(problem, text) is answerable, problem.question


def test_pass_score_threshold() -> None:
    strict = reasoning_gym_problems("basic_arithmetic", size=3, seed=0)
    lenient = reasoning_gym_problems("basic_arithmetic", size=3, seed=0, pass_score=0.0)
    assert not grade(strict[0], "0.5") and grade(lenient[0], "0.5")


# --- grading --------------------------------------------------------------------------------------


def test_grade_uses_the_grader_when_present_else_equivalence() -> None:
    plain = Problem("p", "What is 1/2?", "1/2")
    assert grade(plain, "0.5") and grade(plain, "\\frac{1}{2}") and not grade(plain, "0.6")
    assert not grade(plain, None)
    always = Problem("q", "Anything?", "x", grader=lambda predicted: True)
    assert grade(always, "whatever")

    def broken(predicted: str | None) -> bool:
        raise RuntimeError("scorer crashed")

    assert not grade(Problem("r", "?", "1", grader=broken), "1")


# --- graded arithmetic ----------------------------------------------------------------------------


def test_arithmetic_problems_are_deterministic_and_spread_over_levels() -> None:
    problems = arithmetic_problems(50, seed=5)
    assert problems == arithmetic_problems(50, seed=5)
    assert problems != arithmetic_problems(50, seed=6)
    assert len({p.id for p in problems}) == 50
    assert [p.difficulty for p in problems[:5]] == [1, 2, 3, 4, 5]
    for problem in problems:
        assert problem.question.startswith("What is ") and problem.question.endswith("?")
        terms = ARITHMETIC_LEVELS[problem.difficulty or 0][0]
        assert problem.question.count(" ") - 2 == 2 * (terms - 1)


def test_the_scripted_provider_parses_every_arithmetic_question_exactly() -> None:
    for problem in arithmetic_problems(200, seed=11):
        parsed = _question(problem.question)
        assert parsed.answer == Fraction(int(problem.answer)), problem.question
        assert len(parsed.steps) == ARITHMETIC_LEVELS[problem.difficulty or 0][0] - 1


async def test_arithmetic_levels_are_graded_in_difficulty_on_scripted_arith() -> None:
    register_providers()
    gateway = Gateway()
    accuracy: dict[int, float] = {}
    for level in (1, 3, 5):
        problems = arithmetic_problems(12, seed=1, levels=(level,))
        right = total = 0
        for problem in problems:
            prompt = f"Solve the problem.\n\nProblem: {problem.question}"
            batch = await gateway.sample("scripted/arith", [{"role": "user", "content": prompt}], 8, seed=0)
            for text in batch.texts:
                right += grade(problem, text.rsplit("\\boxed{", 1)[-1].rstrip("}.") if "\\boxed{" in text else None)
                total += 1
        accuracy[level] = right / total
    assert accuracy[1] > 0.8
    assert accuracy[1] > accuracy[3] > accuracy[5]
    assert accuracy[5] < 0.4


# --- line boundaries: \n only -----------------------------------------------------------------------

UNICODE_BREAKS = ("\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x0b", "\x0c")
"""Characters str.splitlines() ends a line at, which JSON allows inside a string (or which are not JSON
at all, outside one): none of them ends a JSONL record."""


@pytest.mark.parametrize("char", UNICODE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_unicode_line_boundary_inside_a_string_does_not_split_the_record(tmp_path: Path, char: str) -> None:
    from ttc_agents._apps.datasets import load_gsm8k, load_math500

    question = f"What is{char}2 + 3?"
    rows = {
        "generic": {"question": question, "answer": "5"},
        "gsm8k": {"question": question, "answer": "2 + 3 = 5\n#### 5"},
        "math500": {"problem": question, "answer": "5", "level": 1},
    }
    for kind, row in rows.items():
        text = json.dumps(row, ensure_ascii=False)
        if char < " ":  # a raw control character is not JSON: the writer escapes it
            text = json.dumps(row)
        path = write_lines(tmp_path / f"{kind}.jsonl", [text, json.dumps({**row, "id": "second"})])
        loader = {"generic": load_jsonl, "gsm8k": load_gsm8k, "math500": load_math500}[kind]
        problems = loader(path)
        assert [p.question for p in problems] == [question, question], kind


@pytest.mark.parametrize("char", UNICODE_BREAKS, ids=lambda c: f"U+{ord(c):04X}")
def test_bad_lines_are_numbered_as_the_file_numbers_them(tmp_path: Path, char: str) -> None:
    good = json.dumps({"question": "What is 1 + 1?", "answer": "2"})
    path = tmp_path / "set.jsonl"
    path.write_text(f"{good}\n{char}:\n{good}\n", encoding="utf-8")  # line 2 is not JSON
    with pytest.raises(DatasetError, match=rf"^{path}:2: invalid JSON"):
        load_jsonl(path)


def test_crlf_files_load_and_the_carriage_return_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"question": "What is 1 + 1?", "answer": "2"}\r\n\r\n{"question": "q2", "answer": "3"}\r\n')
    assert [p.id for p in load_jsonl(path)] == ["crlf:1", "crlf:3"]


def test_one_jsonl_line_splitter() -> None:
    from ttc_agents._apps.datasets import jsonl_lines

    assert list(jsonl_lines("a\u2028b\r\nc\x1ed\n")) == [(1, "a\u2028b"), (2, "c\x1ed"), (3, "")]


def test_the_dataset_modules_do_not_import_each_other_in_a_cycle() -> None:
    import ast
    import inspect

    import ttc_agents._apps.datasets as datasets

    tree = ast.parse(inspect.getsource(datasets))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "ttc_agents._apps.loaders" not in imported
