"""Solution steps, final answers, and answer equivalence.

Cheap work (splitting, extraction, normalisation, number comparison) is plain string and
:class:`fractions.Fraction` code in this process. Symbolic comparisons go to math-verify, which
runs in a child Python process (see :class:`_MathVerifyProcess`) so that a pathological input
(``9^{9^{9^9}}``, ``10^7!``) can be stopped by killing the process: a thread could not be
stopped, and a long big-integer operation in C would hold the GIL past any result timeout.

No function here hands text to ``eval``/``exec``/``compile``. In math-verify, answer text
reaches sympy's string parser ``parse_expr`` (which runs ``exec``/``eval``) in two ways:
``ExprExtractionConfig`` parses whole expressions with it, so only ``LatexExtractionConfig`` is
used; and the LaTeX converter (latex2sympy2_extended) turns each number token into a sympy number
with ``sympy.Number(str)``, i.e. ``sympify`` -> ``parse_expr``, in ``convert_number`` and
``_Latex2Sympy.parse_number``. The child replaces those two with :func:`_number_from_literal`,
which builds the same ``Integer``/``Float`` without ``eval``. sympy itself still uses
``parse_expr``/``exec`` on its own constant strings and templates (e.g. when importing
``sympy.physics.units``); that never sees answer text.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, Final

__all__ = [
    "answers_equivalent",
    "extract_answer",
    "group_answers",
    "is_correct",
    "normalize_answer",
    "split_steps",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------

_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


def split_steps(text: str, delimiter: str | None = None) -> list[str]:
    """Split a solution into stripped, non-empty steps.

    With ``delimiter=None`` the text is split on blank lines when it has any (paragraph steps)
    and on single newlines otherwise. A given delimiter splits on exactly that string.
    """
    if delimiter is not None:
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        parts = text.split(delimiter)
    elif _BLANK_LINE.search(text):
        parts = _BLANK_LINE.split(text)
    else:
        parts = text.splitlines()
    return [part.strip() for part in parts if part.strip()]


# ---------------------------------------------------------------------------------------------
# Final-answer extraction
# ---------------------------------------------------------------------------------------------

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
_BARE_BOX_ARGUMENT = re.compile(r"[^\s${}\\]+")
_BRACE_TOKEN = re.compile(r"\\[{}\\]|[{}]")
_ANSWER_PHRASE = re.compile(r"\banswer\s*(?:is\b\s*:?|:)[ \t]*(?P<rest>[^\n]*)", re.IGNORECASE)
_SENTENCE = re.compile(r"(?P<x>.*?)(?:\.(?:\s|$)|[!?](?:\s|$)|$)")
_GSM8K = re.compile(r"####[ \t]*(?P<x>[^\n]*)")
_LAST_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/(?:\d{1,3}(?:,\d{3})+|\d+))?", re.ASCII)


def _brace_pairs(text: str, start: int) -> dict[int, int]:
    """Map the index of each ``{`` at or after ``start`` to the index of its ``}`` (one pass)."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for match in _BRACE_TOKEN.finditer(text, start):
        token = match.group()
        if token == "{":
            stack.append(match.start())
        elif token == "}" and stack:
            pairs[stack.pop()] = match.start()
    return pairs


def _last_boxed(text: str) -> str | None:
    starts = [match.end() for match in _BOX.finditer(text)]
    if not starts:
        return None
    pairs = _brace_pairs(text, starts[0])
    for start in reversed(starts):
        if text.startswith("{", start):
            end = pairs.get(start)
            content = text[start + 1 : end].strip() if end is not None else ""
        else:
            bare = _BARE_BOX_ARGUMENT.match(text, start)
            content = bare.group() if bare else ""
        if content:
            return content
    return None


def _clean_phrase_answer(text: str) -> str:
    """Strip ``$``, markdown ``*``, ``\\(``/``\\[`` delimiters and trailing periods (linear time)."""
    for _ in range(3):
        before = text
        text = text.strip().strip("*$").strip().rstrip(".").strip()
        text = text.removeprefix("\\(").removeprefix("\\[").removesuffix("\\)").removesuffix("\\]")
        if text == before:
            break
    return text


def _answer_phrase(text: str) -> str | None:
    for match in reversed(list(_ANSWER_PHRASE.finditer(text))):
        sentence = _SENTENCE.match(match.group("rest"))
        answer = _clean_phrase_answer(sentence.group("x") if sentence else "")
        if answer:
            return answer
    return None


def _gsm8k(text: str) -> str | None:
    for match in reversed(list(_GSM8K.finditer(text))):
        answer = _clean_phrase_answer(match.group("x"))
        if answer:
            return answer
    return None


def _last_number(text: str) -> str | None:
    last = None
    for last in _LAST_NUMBER.finditer(text):  # noqa: B007 - we want the final match
        pass
    return last.group() if last else None


def extract_answer(text: str) -> str | None:
    """Extract the final answer from a solution, or ``None`` when there is none.

    Priority: the content of the last non-empty ``\\boxed{...}``/``\\fbox{...}`` (nested and
    escaped braces handled), then the last "the answer is X" / "final answer is X" /
    "answer: X" (X up to the end of its sentence or line, without ``$``, markdown bold or a
    trailing period), then the last GSM8K ``#### X``, then the last number in the text
    (``-3``, ``1,234.5`` or a simple fraction ``3/4``). The answer is returned as written; see
    :func:`normalize_answer` for the canonical form.
    """
    for extractor in (_last_boxed, _answer_phrase, _gsm8k, _last_number):
        answer = extractor(text)
        if answer:
            return answer
    return None


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

_MAX_NUMBER_CHARS: Final = 1_000
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_PLAIN_NUMBER = re.compile(rf"(?P<sign>[+-]?)(?P<n>{_NUM})", re.ASCII)
_SLASH_FRACTION = re.compile(rf"(?P<sign>[+-]?)(?P<n>{_NUM})/(?P<d>{_NUM})(?P<n1>)(?P<d1>)", re.ASCII)
_LATEX_FRACTION = re.compile(
    rf"(?P<sign>[+-]?)\\frac(?:\{{(?P<ns>-?)(?P<n>{_NUM})\}}\{{(?P<d>{_NUM})\}}|(?P<n1>\d)(?P<d1>\d))",
    re.ASCII,
)
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{(?P<x>[^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\(?:left|right|displaystyle)(?![A-Za-z])|\\[,;:! ]|\\q?quad(?![A-Za-z])")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_SPACE_NEAR_SYMBOL = re.compile(r"(?<=[^\w\\]) | (?=[^\w\\])")
_NUMBER_WITH_UNIT = re.compile(rf"(?P<x>[+-]?(?:{_NUM})) (?P<unit>[A-Za-z]{{2,}}(?: [A-Za-z]{{2,}})*)", re.ASCII)
_NOT_UNITS: Final = frozenset({"pi", "sqrt", "inf", "infinity", "and", "or"})
_WORDS = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*", re.ASCII)


def _to_fraction(sign: str, number: str) -> Fraction:
    value = Fraction(number.replace(",", ""))
    return -value if sign == "-" else value


def _simple_number(text: str) -> Fraction | None:
    """Value of a plain number, ``a/b`` or ``\\frac{a}{b}`` (ints or decimals), else ``None``."""
    if len(text) > _MAX_NUMBER_CHARS:
        return None
    if match := _PLAIN_NUMBER.fullmatch(text):
        return _to_fraction(match["sign"], match["n"])
    match = _SLASH_FRACTION.fullmatch(text) or _LATEX_FRACTION.fullmatch(text)
    if match is None:
        return None
    groups = match.groupdict()
    numerator = _to_fraction("", groups["n"] or groups["n1"])
    denominator = _to_fraction("", groups["d"] or groups["d1"])
    if denominator == 0:
        return None
    negative = (groups["sign"] == "-") != (groups.get("ns") == "-")
    return -numerator / denominator if negative else numerator / denominator


def _format_number(value: Fraction) -> str:
    """``"12"``, ``"-0.5"`` for terminating decimals, ``"1/3"`` (reduced) otherwise."""
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value.numerator) * (10**places // value.denominator)
    digits = str(scaled).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return sign + (f"{digits[:-places]}.{digits[-places:]}" if places else digits)


def _unwrap_whole_box(text: str) -> str:
    box = _BOX.match(text)
    if box and text.startswith("{", box.end()) and _brace_pairs(text, box.end()).get(box.end()) == len(text) - 1:
        return text[box.end() + 1 : -1].strip()
    return text


def _strip_unit(text: str) -> str:
    match = _NUMBER_WITH_UNIT.fullmatch(text)
    if match and not _NOT_UNITS.intersection(match["unit"].lower().split()):
        return match["x"]
    return text


def normalize_answer(answer: str) -> str:
    """Canonical string for grouping answers; equal strings mean equivalent answers.

    Steps: unwrap a whole-answer ``\\boxed{}``/``\\fbox{}`` and ``\\text{}``-like commands
    (``\\text``, ``\\textbf``, ``\\mathrm``, ``\\mbox``...); drop ``$``, ``\\left``/``\\right``,
    ``\\displaystyle``, LaTeX spacing, degree marks and a trailing ``%``/``\\%`` (so ``"50%"``
    is ``"50"``; percentages are treated as units, not as ``/100``); ``\\dfrac``/``\\tfrac`` to
    ``\\frac``; collapse whitespace and drop it next to symbols; drop trailing periods; drop a
    trailing unit made of words of two or more letters after a number (``"18 dollars"``, but not
    ``"2 pi"``). Finally a plain number, ``a/b`` or ``\\frac{a}{b}`` becomes canonical:
    thousands commas removed, exact value printed as a decimal when it terminates (``"89.0"`` ->
    ``"89"``, ``"-0"`` -> ``"0"``, ``".5"``, ``"1/2"`` and ``"\\frac{2}{4}"`` -> ``"0.5"``) and
    as a reduced fraction otherwise (``"\\frac{2}{6}"`` -> ``"1/3"``). A comma is read as a
    thousands separator only between groups of three digits (``"1,234"``; ``"1,2"`` is kept).
    Case is kept: LaTeX is case-sensitive.
    """
    text = answer.strip()
    text = _unwrap_whole_box(text)
    for _ in range(4):
        text = _TEXT_COMMAND.sub(lambda m: m["x"], text)
    text = _LATEX_NOISE.sub(" ", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\$", "").replace("$", "")
    text = _DEGREES.sub("", text)
    text = " ".join(text.split())
    text = _SPACE_NEAR_SYMBOL.sub("", text).rstrip(". ")
    text = text.removesuffix("\\%").removesuffix("%").strip()
    text = _strip_unit(text)
    value = _simple_number(text)
    return _format_number(value) if value is not None else text


# ---------------------------------------------------------------------------------------------
# Equivalence
# ---------------------------------------------------------------------------------------------

_MAX_MATH_VERIFY_CHARS: Final = 1_000


def _close(a: Fraction, b: Fraction, rel_tol: Fraction) -> bool:
    return a == b or abs(a - b) <= rel_tol * max(abs(a), abs(b))


def _fast_equivalence(a: str, b: str, rel_tol: Fraction) -> bool | None:
    """Decide cheaply for two normalised answers; ``None`` means "ask math-verify"."""
    if not a or not b:
        return False
    if a == b:
        return True
    value_a, value_b = _simple_number(a), _simple_number(b)
    if value_a is not None and value_b is not None:
        return _close(value_a, value_b, rel_tol)
    words_a, words_b = _WORDS.fullmatch(a), _WORDS.fullmatch(b)
    if words_a and words_b:
        return a.lower() == b.lower()
    if (words_a and value_b is not None) or (words_b and value_a is not None):
        return False
    if max(len(a), len(b)) > _MAX_MATH_VERIFY_CHARS:
        return False
    return None


class _Undecided(Exception):
    """math-verify did not answer in time (not cached, so a later call may try again)."""


@functools.lru_cache(maxsize=65_536)
def _math_verify_equal(a: str, b: str, timeout: float) -> bool:
    result = _WORKER.compare(a, b, timeout)
    if result is None:
        raise _Undecided
    return result


def _slow_equivalence(a: str, b: str, timeout: float) -> bool:
    if timeout <= 0:
        return False
    first, second = sorted((a, b))  # symmetric results and one cache entry per pair
    try:
        return _math_verify_equal(first, second, timeout)
    except _Undecided:
        return False


def _tolerance(rel_tol: float) -> Fraction:
    if not rel_tol >= 0 or rel_tol == float("inf"):
        raise ValueError(f"rel_tol must be a finite number >= 0, got {rel_tol!r}")
    return Fraction(rel_tol)


def answers_equivalent(a: str, b: str, *, rel_tol: float = 1e-6, timeout: float = 2.0) -> bool:
    """Whether two final answers denote the same value.

    Fast path on the :func:`normalize_answer` forms: equal strings are equivalent; two plain
    numbers/simple fractions are compared exactly, then with relative tolerance ``rel_tol``
    (so ``"1/2"``, ``"0.5"`` and ``"\\frac{1}{2}"`` agree, as do ``"1,000"`` and ``"1000"``);
    plain words compare case-insensitively; words never equal numbers. Everything else goes to
    math-verify's LaTeX parser and ``verify`` in a child process, waiting at most ``timeout``
    seconds for the comparison (the first call also waits for the child to start, about a
    second, which is not counted). A comparison that times out returns ``False`` and kills the
    child; answers longer than 1,000 characters are never sent. Decided math-verify results are
    cached per normalised pair. Thread-safe; comparisons share one child and run one at a time.
    """
    tol = _tolerance(rel_tol)
    na, nb = normalize_answer(a), normalize_answer(b)
    fast = _fast_equivalence(na, nb, tol)
    return fast if fast is not None else _slow_equivalence(na, nb, timeout)


def is_correct(predicted: str | None, reference: str) -> bool:
    """Grade a predicted final answer against a reference final answer (``None`` is wrong)."""
    return predicted is not None and answers_equivalent(predicted, reference)


def group_answers(
    answers: Sequence[str | None],
    *,
    rel_tol: float = 1e-6,
    timeout: float = 2.0,
    budget: float = 30.0,
) -> list[int | None]:
    """Give equivalent answers the same group id (0, 1, ... by first appearance; ``None`` stays).

    Answers are grouped by :func:`normalize_answer` string first (an empty form counts as no
    answer). Distinct forms that are both plain numbers are merged when within ``rel_tol`` (by
    sorting, not pairwise). math-verify is asked only about pairs of distinct forms that are not
    both plain numbers and not both plain words, at most once per (form, current group) pair,
    each bounded by ``timeout``; once ``budget`` seconds of such checks are spent the rest are
    treated as different (and a warning is logged).
    """
    tol = _tolerance(rel_tol)
    normalized = [None if answer is None else normalize_answer(answer) or None for answer in answers]
    forms = list(dict.fromkeys(form for form in normalized if form is not None))
    parent = list(range(len(forms)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    values = [_simple_number(form) for form in forms]
    numeric = sorted((value, i) for i, value in enumerate(values) if value is not None)
    for (value_a, i), (value_b, j) in pairwise(numeric):
        if _close(value_a, value_b, tol):
            parent[find(j)] = find(i)

    deadline = time.monotonic() + budget
    budget_spent = False
    tried: set[tuple[int, int]] = set()
    for i, j in ((a, b) for a in range(len(forms)) for b in range(a)):
        if values[i] is not None and values[j] is not None:
            continue
        root_i, root_j = find(i), find(j)
        if root_i == root_j or (i, root_j) in tried:
            continue
        tried.add((i, root_j))
        same = _fast_equivalence(forms[i], forms[j], tol)
        if same is None and not budget_spent and time.monotonic() > deadline:
            logger.warning("group_answers: math-verify budget of %.1f s spent; the rest kept apart", budget)
            budget_spent = True
        if same is None and not budget_spent:
            same = _slow_equivalence(forms[i], forms[j], timeout)
        if same:
            parent[root_i] = root_j

    ids: dict[int, int] = {}
    index = {form: i for i, form in enumerate(forms)}
    return [None if form is None else ids.setdefault(find(index[form]), len(ids)) for form in normalized]


# ---------------------------------------------------------------------------------------------
# The math-verify child process
# ---------------------------------------------------------------------------------------------

_WORKER_FLAG: Final = "--math-verify-worker"
_STARTUP_TIMEOUT: Final = 60.0
_RETRY_AFTER_FAILED_START: Final = 60.0


class _MathVerifyProcess:
    """One child Python process running math-verify, killed and restarted when a check times out.

    Protocol: one JSON object per line. The child writes ``ready`` once warmed up, then answers
    each ``{"id", "a", "b"}`` with ``{"id", "equal"}``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._next_id = 0
        self._retry_at = 0.0

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's process handle (not ours to use or kill)."""
        self.__init__()  # type: ignore[misc]

    def compare(self, a: str, b: str, timeout: float) -> bool | None:
        """math-verify's verdict, or ``None`` when it is unavailable or took over ``timeout`` s."""
        with self._lock:
            proc = self._running()
            if proc is None or proc.stdin is None:
                return None
            self._next_id += 1
            request_id = self._next_id
            try:
                proc.stdin.write(json.dumps({"id": request_id, "a": a, "b": b}) + "\n")
                proc.stdin.flush()
            except OSError:
                self._stop()
                return None
            deadline = time.monotonic() + timeout
            while True:
                try:
                    line = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    line = None
                if line is None:
                    self._stop()
                    return None
                try:
                    reply = json.loads(line)
                except ValueError:
                    continue
                if isinstance(reply, dict) and reply.get("id") == request_id:
                    return bool(reply.get("equal"))

    def close(self) -> None:
        """Stop the child process (it is restarted on the next comparison)."""
        with self._lock:
            self._stop()

    def _running(self) -> subprocess.Popen[str] | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop()
        if time.monotonic() < self._retry_at:
            return None
        try:
            self._start()
            ready = self._replies.get(timeout=_STARTUP_TIMEOUT)
        except (OSError, queue.Empty):
            ready = None
        if ready is None or ready.strip() != "ready":
            logger.warning("math-verify worker failed to start; symbolic answer checks return False")
            self._stop()
            self._retry_at = time.monotonic() + _RETRY_AFTER_FAILED_START
            return None
        return self._proc

    def _start(self) -> None:
        # Run this file as a script (-P: without its directory on sys.path), so the child imports
        # neither the ttc_agents package nor anything it pulls in: only the stdlib and math-verify.
        self._proc = subprocess.Popen(
            [sys.executable, "-P", str(Path(__file__).resolve()), _WORKER_FLAG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
        )
        self._replies = queue.Queue()
        threading.Thread(
            target=_pump_lines,
            args=(self._proc.stdout, self._replies),
            name="math-verify-reader",
            daemon=True,
        ).start()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _pump_lines(stream: IO[str] | None, replies: queue.Queue[str | None]) -> None:
    try:
        for line in stream or ():
            replies.put(line)
    except (OSError, ValueError):
        pass
    replies.put(None)


_WORKER: Final = _MathVerifyProcess()
atexit.register(_WORKER.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WORKER.forget_after_fork)

# --- code below runs in the child -------------------------------------------------------------

_NUMERIC_LITERAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)

_WARM_UP: Final = (
    ("\\frac{1}{2}", "0.5"),
    ("x^2+1", "1+x^2"),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
    ("(1,2)", "(1,2]"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("x\\in[0,1]", "[0,1]"),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
    ("2\\pi", "\\pi\\cdot2"),
    ("\\sin^2x+\\cos^2x", "1"),
    ("\\log_28", "3"),
    ("3!", "6"),
    ("\\binom{n}{k}", "\\frac{n!}{k!(n-k)!}"),
    ("\\infty", "-\\infty"),
    ("y=2x+1", "2x+1"),
    ("x<3", "(-\\infty,3)"),
    ("1+2i", "1+2i"),
    ("1.5\\times10^3", "1,500"),
)


def _number_from_literal(text: str) -> Any:
    """``sympy.Number(text)`` for a numeric literal, without ``sympify``'s ``eval``.

    Same result as sympy (``Integer`` for digits, ``Float`` with the literal's precision
    otherwise); ``ValueError`` for anything that is not a numeric literal.
    """
    import sympy

    text = text.strip()
    if not _NUMERIC_LITERAL.fullmatch(text):
        raise ValueError(f"not a numeric literal: {text[:40]!r}")
    if text.lstrip("+-").isdigit():
        return sympy.Integer(int(text))
    return sympy.Float(text)


def _convert_number(number: str) -> Any:
    """latex2sympy2_extended's ``convert_number`` ("1,000" -> 1000, "0,5" -> 0.5) without eval."""
    if "," in number and number.startswith("0"):
        number = number.replace(",", ".")
    return _number_from_literal(number.translate(str.maketrans("", "", ", ")).lstrip("0") or "0")


def _parse_number(self: Any, text: str) -> Any:
    """latex2sympy2_extended's ``_Latex2Sympy.parse_number`` without eval."""
    return _number_from_literal(text.replace(",", ""))


def _load_math_verify(patch: Callable[[Any, str, Any], None] = setattr) -> Callable[[str, str], bool]:
    """Import math-verify, make its number conversion eval-free, warm up; return a comparer.

    ``patch(owner, name, value)`` installs the replacement (``setattr`` in the child; a test can
    pass ``monkeypatch.setattr`` to undo it afterwards).
    """
    import latex2sympy2_extended.latex2sympy2 as latex2sympy2
    import math_verify

    patch(latex2sympy2, "convert_number", _convert_number)
    patch(latex2sympy2._Latex2Sympy, "parse_number", _parse_number)
    config = [math_verify.LatexExtractionConfig()]

    @functools.lru_cache(maxsize=4_096)
    def parsed(text: str) -> tuple[Any, ...]:
        return tuple(math_verify.parse(f"${text}$", extraction_config=config, parsing_timeout=None))

    def compare(a: str, b: str) -> bool:
        return bool(math_verify.verify(list(parsed(a)), list(parsed(b)), timeout_seconds=None))

    for a, b in _WARM_UP:
        compare(a, b)
    return compare


_CHILD_MEMORY_LIMIT: Final = 4 * 1024**3


def _limit_memory() -> None:
    """Cap the child's address space so a runaway big-number computation fails fast."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (_CHILD_MEMORY_LIMIT, _CHILD_MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass


def _serve_math_verify() -> None:
    """Child main loop: answer comparison requests from stdin until it closes."""
    protocol = sys.stdout
    sys.stdout = sys.stderr  # keep stray prints out of the protocol
    logging.disable(logging.WARNING)  # math-verify warns that its own timeouts are off
    _limit_memory()
    compare = _load_math_verify()
    protocol.write("ready\n")
    protocol.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            equal = compare(str(request["a"]), str(request["b"]))
        except Exception:
            equal = False
        protocol.write(json.dumps({"id": request["id"], "equal": equal}) + "\n")
        protocol.flush()


if __name__ == "__main__" and sys.argv[1:] == [_WORKER_FLAG]:
    _serve_math_verify()
