"""Reading a request: its role, question and sections, and the answers and claims in a text (see
"Roles" in :mod:`ttc_agents._llm.scripted`)."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

from ttc_agents._llm.scripted.parser import _evaluate, _evaluate_text, _find_expression, _ParseError
from ttc_agents._llm.scripted.questions import _Question, _question


class _Role(enum.StrEnum):
    GENERATE = "generate"
    STEP_GENERATE = "step_generate"
    REVISE = "revise"
    JUDGE_STEP = "judge_step"
    JUDGE_ANSWER = "judge_answer"


_PROBLEM_RE: Final = re.compile(r"^[ \t]*Problem:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_BOXED_RE: Final = re.compile(r"\\boxed\{")
_ATTEMPT_HEADER_RE: Final = re.compile(r"^\s*(?:#+\s*)?(?:Attempt|Solution)\s*\d+", re.MULTILINE | re.IGNORECASE)


def _content_text(content: object) -> str:
    """Text of a message ``content``: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return _content_text(messages[-1].get("content")) if messages else ""


def _has_line(lines: Sequence[str], header: str) -> bool:
    return any(line.strip() == header for line in lines)


def _detect_role(lines: Sequence[str]) -> _Role:
    if _has_line(lines, "Steps:"):
        return _Role.JUDGE_STEP
    if _has_line(lines, "Solution:"):
        return _Role.JUDGE_ANSWER
    if any(line.lstrip().startswith("Earlier attempts") for line in lines):
        return _Role.REVISE
    if _has_line(lines, "Steps so far:"):
        return _Role.STEP_GENERATE
    return _Role.GENERATE


def _section(lines: Sequence[str], is_header: Callable[[str], bool], end_marker: str | None = None) -> list[str]:
    """Lines after the first header line: up to ``end_marker`` if given and present, else up to the
    next blank line. ``(none)`` lines are dropped."""
    start = next((i + 1 for i, line in enumerate(lines) if is_header(line)), len(lines))
    body = lines[start:]
    end = len(body)
    if end_marker is not None and any(line.lstrip().startswith(end_marker) for line in body):
        end = next(i for i, line in enumerate(body) if line.lstrip().startswith(end_marker))
    else:
        end = next((i for i, line in enumerate(body) if not line.strip()), end)
    return [line for line in body[:end] if line.strip() and line.strip() != "(none)"]


def _header(name: str) -> Callable[[str], bool]:
    return lambda line: line.strip() == name


def _last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (braces balanced), if any."""
    starts = [match.end() for match in _BOXED_RE.finditer(text)]
    if not starts:
        return None
    depth, start = 1, starts[-1]
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return text[start:]


_FRAC_RE: Final = re.compile(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}")


def _answer_value(answer: str | None) -> Fraction | None:
    """The value of a final answer such as ``89``, ``-2``, ``89/5``, ``\\frac{89}{5}`` or ``1,234``."""
    if answer is None:
        return None
    text = _FRAC_RE.sub(r"(\1)/(\2)", answer).replace("$", "").replace(",", "").replace("\\left", "")
    return _evaluate_text(text.replace("\\right", "").strip().rstrip("."))


def _result_value(line: str) -> Fraction | None:
    """The number after the last ``=`` of a step line."""
    if "=" not in line:
        return None
    rhs = line.rsplit("=", 1)[1].strip().rstrip(".").strip()
    value = _evaluate_text(rhs)
    if value is None and (match := re.search(r"-?\d+(?:\.\d+)?(?:/\d+)?", rhs)):
        value = _evaluate_text(match.group())
    return value


def _claim_holds(line: str) -> bool:
    """Whether the arithmetic claim ``lhs = rhs`` of a step line is true."""
    parts = line.split("=")
    if len(parts) < 2:
        return False
    lhs = _find_expression(parts[0])
    if lhs is None:
        return False
    try:
        values = [_evaluate(lhs)]
    except _ParseError:
        return False
    for part in parts[1:]:
        value = _result_value("=" + part)
        if value is None:
            return False
        values.append(value)
    return all(value == values[0] for value in values)


@dataclass(frozen=True, slots=True)
class _Prompt:
    """What one request asks, read once and shared by its ``n`` samples."""

    role: _Role
    question: _Question
    context: tuple[str, ...]
    """The role's section: steps so far, judged steps or solution, earlier attempts."""

    @property
    def salt(self) -> str:
        """Distinguishes the samples of different roles and contexts."""
        return f"{self.role}\x1e" + "\n".join(self.context)

    @property
    def greedy_key(self) -> tuple[object, ...]:
        """Key of the greedy (T=0) draws: per question for solutions, so that greedy continuations agree
        with greedy full solutions; per question and judged text for judges."""
        if self.role in (_Role.JUDGE_STEP, _Role.JUDGE_ANSWER):
            return (self.question.text, self.salt)
        return (self.question.text,)


@functools.lru_cache(maxsize=8192)
def _read_prompt(text: str) -> _Prompt:
    lines = text.splitlines()
    role = _detect_role(lines)
    problems = _PROBLEM_RE.findall(text)  # the last one: few-shot examples come first
    question = _question(problems[-1] if problems else text.strip())
    if role is _Role.JUDGE_STEP:
        context = _section(lines, _header("Steps:"))
    elif role is _Role.JUDGE_ANSWER:
        context = _section(lines, _header("Solution:"), end_marker="Is the final answer correct")
    elif role is _Role.REVISE:
        context = _section(lines, lambda line: line.lstrip().startswith("Earlier attempts"), "Find any mistakes")
    elif role is _Role.STEP_GENERATE:
        context = _section(lines, _header("Steps so far:"))
    else:
        context = []
    return _Prompt(role, question, tuple(context))
