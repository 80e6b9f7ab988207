"""A process verifier that checks the arithmetic written in each step. Pure CPU, no model.

:func:`find_claims` reads claims like ``12 * 7 + 5 = 89``, ``3 + 4 = 7 = 7``, ``(3 + 4) * 2 = 14``,
``$3/hour * 5 hours = $15``, ``20% of 50 = 10``, ``10 / 3 ≈ 3.33``, LaTeX (``3 \\times 4``,
``\\frac{1}{2}``) and GSM8K calculator notes ``<<48/2=24>>``, and evaluates both sides with
:mod:`ttc_agents._core.safe_math` (exact fractions, never ``eval``).

How text becomes claims:

* The step is tokenised into numbers, operators, parentheses, ``=``/``≈`` and words. A run of
  arithmetic tokens ends at punctuation or a word; each ``=`` in a run compares its neighbours.
* Currency signs are dropped. Numbers may have thousands commas; ``N%`` is ``N/100`` and
  ``of`` right after a percentage is ``*``. ``times``, ``plus``, ``minus``, ``divided by``,
  ``multiplied by`` and ``x`` between numbers are operators.
* Units: up to three words of two or more letters right after a number are dropped when an
  operator, ``=`` or ``)`` follows them (``5 apples + 3 apples = 8``); ``/unit`` and
  ``per unit`` likewise (``$3/hour * 5 hours``). Scale words (``hundred``, ``dozen``...) and
  single letters next to numbers (``2x + 3 = 7``) make their side unevaluable (``holds=None``).
* A comparison of two bare numbers counts only inside a chain (``3 + 4 = 7 = 7``); ``5 boxes of
  3 = 15`` is not read as the claim ``3 = 15``. A side cut short by a word (``Total - 3 = 5``
  starts with an operator after a word) is unevaluable.
* Whole-number results must match exactly (``1000 * 1000 = 1000001`` is wrong); otherwise
  sides may differ by ``rel_tol`` relatively, and a number literal with *d* decimal places may
  be off by one unit in its last place (rounded or truncated: ``10/3 = 3.33``). ``≈`` also
  accepts 1 % relative error or one unit of the last place of a whole number.

Work per step is bounded: only the first :data:`MAX_STEP_CHARS` characters are read and at most
:data:`MAX_CLAIMS` claims are kept; each side is evaluated under the evaluator's own limits.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Final, NamedTuple

from ttc_agents._core.safe_math import try_evaluate

if TYPE_CHECKING:
    from ttc_agents._core.budget import Ledger

__all__ = ["MAX_CLAIMS", "MAX_STEP_CHARS", "ArithmeticStepVerifier", "Claim", "find_claims"]

MAX_STEP_CHARS: Final = 20_000
MAX_CLAIMS: Final = 100


class Claim(NamedTuple):
    """One ``expression = value`` comparison found in a step.

    ``expression`` and ``value`` are the two sides as cleaned arithmetic text (units and currency
    removed, operators normalised to ``+ - * / ^``); ``holds`` is ``None`` when a side cannot be
    evaluated.
    """

    expression: str
    value: str
    holds: bool | None


# --- LaTeX to plain text ----------------------------------------------------------------------

_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_UNWRAP = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|boxed|fbox)\s*\{([^{}]*)\}")
_LATEX_REPLACEMENTS: Final = (
    ("\\times", " * "), ("\\cdot", " * "), ("\\div", " / "), ("\\approx", " ≈ "),
    ("\\left", ""), ("\\right", ""), ("\\$", "$"), ("\\%", "%"), ("{,}", ","),
    ("\\,", ""), ("\\!", ""), ("\\;", " "), ("\\(", " "), ("\\)", " "), ("\\[", " "), ("\\]", " "),
    ("{", "("), ("}", ")"),
)  # fmt: skip


_PLAIN_NUMBER = re.compile(r"\s*[0-9.,]+\s*")


def _fraction(match: re.Match[str]) -> str:
    parts = [p if _PLAIN_NUMBER.fullmatch(p) else f"({p})" for p in match.groups()]
    return f"({parts[0]}/{parts[1]})"


def _delatex(text: str) -> str:
    for _ in range(3):
        text = _UNWRAP.sub(r" \1 ", text)
        text = _FRAC.sub(_fraction, text)
    for old, new in _LATEX_REPLACEMENTS:
        text = text.replace(old, new)
    return text


# --- tokens -----------------------------------------------------------------------------------

_RAW_TOKEN = re.compile(
    r"(?P<num>(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?![0-9])|\.[0-9]+)(?P<pct>[ \t]?%)?"
    r"|(?P<op>\*\*|[-+*/^×÷·⋅−])"
    r"|(?P<lp>\()|(?P<rp>\))"
    r"|(?P<eq>==?|≈)"
    r"|(?P<cur>[$€£¥])"
    r"|(?P<word>\\[A-Za-z]+|[^\W\d_]+)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.DOTALL,
)
_OPERATOR: Final = {"**": "^", "×": "*", "·": "*", "⋅": "*", "÷": "/", "−": "-"}
_WORD_OPERATOR: Final = {"times": "*", "plus": "+", "minus": "-"}
_OPERATOR_WITH_BY: Final = {"multiplied": "*", "divided": "/"}
_SCALE_WORDS: Final = frozenset({"hundred", "thousand", "million", "billion", "trillion", "dozen", "dozens"})
_MAX_UNIT_WORDS: Final = 3


@dataclass(frozen=True, slots=True)
class _Raw:
    kind: str
    text: str
    percent: bool = False


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "num", "op", "(", ")", "=", "var" or "break"
    text: str  # as shown in a Claim
    code: str  # as given to the evaluator
    decimals: int = 0  # decimal places of a number literal
    after_word: bool = False  # for "break": a word (not punctuation) ended the run


def _raw_tokens(text: str) -> list[_Raw]:
    tokens = []
    for match in _RAW_TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind == "pct":  # lastgroup is the last closed group: a number with a percent sign
            tokens.append(_Raw("num", match["num"], percent=True))
        elif kind != "space":
            tokens.append(_Raw(kind, match[kind]))
    return tokens


def _number(raw: _Raw) -> _Tok:
    plain = raw.text.replace(",", "")
    decimals = len(plain.partition(".")[2])
    if raw.percent:
        return _Tok("num", f"{raw.text}%", f"({plain}/100)", decimals)
    return _Tok("num", raw.text, plain, decimals)


def _is_unit_word(raw: _Raw) -> bool:
    return raw.kind == "word" and len(raw.text) >= 2 and raw.text.isalpha()


def _unit_words_end(raws: list[_Raw], i: int) -> int | None:
    """End of up to three unit words at ``i`` when an operator, ``=`` or ``)`` follows them."""
    j = i
    while j < len(raws) and j - i < _MAX_UNIT_WORDS and _is_unit_word(raws[j]):
        if raws[j].text.lower() in _SCALE_WORDS or raws[j].text.lower() in _WORD_OPERATOR:
            return None
        j += 1
    if j > i and j < len(raws) and raws[j].kind in ("op", "eq", "rp"):
        return j
    return None


def _is_times(lower: str, prev: _Tok | None, nxt: _Raw | None) -> bool:
    """``of`` after a percentage, or ``x`` between numbers."""
    if lower == "of":
        return prev is not None and prev.text.endswith("%")
    return (
        lower == "x"
        and prev is not None
        and prev.kind in ("num", ")")
        and nxt is not None
        and nxt.kind in ("num", "lp", "cur")
    )


def _clean_tokens(raws: list[_Raw]) -> list[_Tok]:
    """Turn raw tokens into arithmetic tokens and breaks (see the module docstring)."""
    out: list[_Tok] = []
    i = 0
    while i < len(raws):
        raw = raws[i]
        prev = out[-1] if out else None
        nxt = raws[i + 1] if i + 1 < len(raws) else None
        lower = raw.text.lower()
        token: _Tok | None
        skip_to = i + 1
        if raw.kind == "cur":
            token = None
        elif raw.kind == "num":
            token = _number(raw)
            if prev is not None and prev.kind in ("num", ")"):
                out.append(_Tok("break", "", ""))  # two numbers in a row: not one expression
        elif raw.kind == "op":
            text = _OPERATOR.get(raw.text, raw.text)
            token = _Tok("op", text, text)
        elif raw.kind in ("lp", "rp"):
            text = "(" if raw.kind == "lp" else ")"
            token = _Tok(text, text, text)
        elif raw.kind == "eq":
            token = _Tok("=", "≈" if raw.text == "≈" else "=", "=")
        elif raw.kind != "word":
            token = _Tok("break", raw.text, "")
        elif lower in _WORD_OPERATOR:
            token = _Tok("op", _WORD_OPERATOR[lower], _WORD_OPERATOR[lower])
        elif lower in _OPERATOR_WITH_BY and nxt is not None and nxt.text.lower() == "by":
            token = _Tok("op", _OPERATOR_WITH_BY[lower], _OPERATOR_WITH_BY[lower])
            skip_to = i + 2
        elif _is_times(lower, prev, nxt):
            token = _Tok("op", "*", "*")
        elif len(raw.text) == 1 and raw.text.isalpha():
            near_math = (prev is not None and prev.kind != "break") or (
                nxt is not None and nxt.kind in ("num", "op", "eq", "lp", "rp")
            )
            token = _Tok("var", raw.text, "") if near_math else _Tok("break", raw.text, "", after_word=True)
        elif lower in _SCALE_WORDS and prev is not None and prev.kind == "num":
            token = _Tok("var", raw.text, "")
        elif prev is not None and prev.kind in ("num", ")") and (end := _unit_words_end(raws, i)):
            token, skip_to = None, end  # "5 apples + ..." -> "5 + ..."
        elif prev is not None and prev.text == "/" and (end := _unit_words_end(raws, i)):
            out.pop()  # "$3/hour * 5" -> "3 * 5": drop "/hour"
            token, skip_to = None, end
        else:
            token = _Tok("break", raw.text, "", after_word=True)
        if token is not None:
            out.append(token)
        i = skip_to
    return out


def _runs(tokens: list[_Tok]) -> Iterator[tuple[list[_Tok], bool]]:
    """Maximal runs of arithmetic tokens, each with "a word ended the previous run"."""
    run: list[_Tok] = []
    after_word = False
    for token in tokens:
        if token.kind == "break":
            if run:
                yield run, after_word
            run, after_word = [], token.after_word
        else:
            run.append(token)
    if run:
        yield run, after_word


# --- claims -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Side:
    tokens: list[_Tok]
    broken: bool  # cut short by a word or unbalanced parentheses

    @property
    def text(self) -> str:
        return " ".join(t.text for t in self.tokens).replace("( ", "(").replace(" )", ")")

    @property
    def has_operator(self) -> bool:
        return any(t.kind == "op" for t in self.tokens[1:]) or (bool(self.tokens) and self.tokens[0].kind == "(")

    @property
    def literal_decimals(self) -> int | None:
        """Decimal places when the side is a single number literal (maybe signed), else None."""
        numbers = [t for t in self.tokens if t.kind == "num"]
        if len(numbers) == 1 and all(t.kind == "num" or t.text in "+-" for t in self.tokens):
            return numbers[0].decimals
        return None

    def value(self) -> Fraction | None:
        if self.broken or not self.tokens or any(t.kind == "var" for t in self.tokens):
            return None
        return try_evaluate(" ".join(t.code for t in self.tokens))


def _side(tokens: list[_Tok], first: bool, last: bool, after_word: bool) -> _Side:
    broken = False
    if first and tokens and tokens[0].kind == "op":
        broken = tokens[0].text not in "+-" or after_word
    if last and tokens and tokens[-1].kind in ("op", "("):
        broken = True
    excess = sum(t.kind == "(" for t in tokens) - sum(t.kind == ")" for t in tokens)
    if first and excess > 0:  # "(3 + 4 = 7)": the "(" belongs to the sentence
        drop = min(excess, _leading(tokens, "("))
        tokens, excess = tokens[drop:], excess - drop
    if last and excess < 0:
        drop = min(-excess, _leading(tokens[::-1], ")"))
        tokens, excess = tokens[: len(tokens) - drop], excess + drop
    return _Side(tokens, broken or excess != 0)


def _leading(tokens: list[_Tok], kind: str) -> int:
    count = 0
    while count < len(tokens) and tokens[count].kind == kind:
        count += 1
    return count


def _holds(left: _Side, right: _Side, approx: bool, rel_tol: Fraction) -> bool | None:
    a, b = left.value(), right.value()
    if a is None or b is None:
        return None
    if a == b:
        return True
    decimals = [d for d in (left.literal_decimals, right.literal_decimals) if d is not None]
    slack = Fraction(1, 10 ** min(decimals)) if decimals and (approx or min(decimals) > 0) else Fraction(0)
    size = max(abs(a), abs(b))
    relative = rel_tol if a.denominator != 1 or b.denominator != 1 else Fraction(0)
    tolerance = max(relative * size, slack, size / 100 if approx else Fraction(0))
    return abs(a - b) <= tolerance


def _run_claims(run: list[_Tok], after_word: bool, rel_tol: Fraction) -> Iterator[Claim]:
    parts: list[list[_Tok]] = [[]]
    for token in run:
        if token.kind == "=":
            parts.append([])
        else:
            parts[-1].append(token)
    equals = [t for t in run if t.kind == "="]
    for k, sign in enumerate(equals):
        left = _side(parts[k], first=k == 0, last=False, after_word=after_word)
        right = _side(parts[k + 1], first=False, last=k + 1 == len(equals), after_word=after_word)
        if not left.tokens or not right.tokens:
            continue
        if k == 0 and not (left.has_operator or right.has_operator):
            continue  # "x = 5", "5 boxes of 3 = 15": not arithmetic
        yield Claim(left.text, right.text, _holds(left, right, sign.text == "≈", rel_tol))


_CALCULATOR_NOTE = re.compile(r"<<([^<>]{0,500})>>")


def _claims_in(text: str, rel_tol: Fraction) -> Iterator[Claim]:
    for run, after_word in _runs(_clean_tokens(_raw_tokens(_delatex(text)))):
        if any(t.kind == "=" for t in run):
            yield from _run_claims(run, after_word, rel_tol)


@functools.lru_cache(maxsize=8_192)
def _find_claims(step: str, rel_tol: Fraction) -> tuple[Claim, ...]:
    text = step[:MAX_STEP_CHARS]
    notes = [m.group(1) for m in _CALCULATOR_NOTE.finditer(text)]
    texts = [*notes, _CALCULATOR_NOTE.sub(" ", text)]
    claims: dict[tuple[str, str], Claim] = {}
    for part in texts:
        for claim in _claims_in(part, rel_tol):
            key = (claim.expression.replace(" ", ""), claim.value.replace(" ", ""))
            claims.setdefault(key, claim)
            if len(claims) >= MAX_CLAIMS:
                return tuple(claims.values())
    return tuple(claims.values())


def find_claims(step: str, *, rel_tol: float = 1e-6) -> list[Claim]:
    """Every arithmetic claim in ``step``, judged; duplicates (e.g. a calculator note repeating
    the sentence it annotates) are reported once. See the module docstring for the rules."""
    return list(_find_claims(step, Fraction(rel_tol)))


def _tally(step: str, rel_tol: Fraction) -> tuple[int, int]:
    """(claims that hold, claims that could be judged) in one step."""
    judged = [c.holds for c in _find_claims(step, rel_tol) if c.holds is not None]
    return sum(judged), len(judged)


class ArithmeticStepVerifier:
    """Scores each step by the share of arithmetic claims that hold in the prefix up to it.

    Step *i* scores ``held / judged`` over the claims in steps 1..i (1.0 while no claim could be
    judged), so the last step's score reflects the whole solution, like a process reward model's
    prefix score. Pure CPU; results per step text are cached.
    """

    name: str = "arithmetic"

    def __init__(self, *, rel_tol: float = 1e-6) -> None:
        if not rel_tol >= 0 or rel_tol == float("inf"):
            raise ValueError(f"rel_tol must be a finite number >= 0, got {rel_tol!r}")
        self.rel_tol = rel_tol
        self._tol = Fraction(rel_tol)

    def score_steps(self, steps: Sequence[str]) -> list[float]:
        """Prefix scores in [0, 1] for one candidate's steps."""
        held = judged = 0
        scores = []
        for step in steps:
            step_held, step_judged = _tally(step, self._tol)
            held += step_held
            judged += step_judged
            scores.append(held / judged if judged else 1.0)
        return scores

    async def score(
        self,
        question: str,
        candidates: Sequence[Sequence[str]],
        *,
        ledger: Ledger | None = None,
    ) -> list[list[float]]:
        """One list of prefix scores per candidate (``question`` and ``ledger`` are unused)."""
        return [self.score_steps(steps) for steps in candidates]
