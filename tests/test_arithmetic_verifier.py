"""Arithmetic claims in solution steps, and the prefix-scoring step verifier."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttc_agents.verifiers import ArithmeticStepVerifier, Claim, Verifier, find_claims
from ttc_agents.verifiers._arithmetic import MAX_CLAIMS

# --- find_claims ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "claims"),
    [
        ("She has 12 * 7 + 5 = 89 marbles.", [("12 * 7 + 5", "89", True)]),
        ("She has 12 * 7 + 5 = 88 marbles.", [("12 * 7 + 5", "88", False)]),
        ("3 + 4 = 7 = 7", [("3 + 4", "7", True), ("7", "7", True)]),
        ("3 + 4 = 7 = 8", [("3 + 4", "7", True), ("7", "8", False)]),
        ("1 + 1 = 2 = 3 - 1", [("1 + 1", "2", True), ("2", "3 - 1", True)]),
        ("(3 + 4) * 2 = 14", [("(3 + 4) * 2", "14", True)]),
        ("The total (3 + 4 = 8) is wrong", [("3 + 4", "8", False)]),
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.", [("48 / 2", "24", True)]),
        ("She sold 48+24 = <<48+24=72>>72 clips.", [("48 + 24", "72", True)]),
        ("Each costs 2 * 3 = <<2*3=7>>7 dollars", [("2 * 3", "7", False)]),
        ("He pays $3/hour * 5 hours = $15", [("3 * 5", "15", True)]),
        ("It takes 2 hours * 60 minutes/hour = 120 minutes", [("2 * 60", "120", True)]),
        ("5 apples + 3 apples = 8 apples", [("5 + 3", "8", True)]),
        ("He earns 20 per hour * 5 hours = 100", [("20 * 5", "100", True)]),
        ("1,000 + 2,000 = 3,000", [("1,000 + 2,000", "3,000", True)]),
        ("$1,250.50 - $250.50 = $1,000", [("1,250.50 - 250.50", "1,000", True)]),
        ("20% of 50 = 10", [("20% * 50", "10", True)]),
        ("The discount is 25% * 80 = $20.", [("25% * 80", "20", True)]),
        ("10 / 3 = 3.33", [("10 / 3", "3.33", True)]),
        ("10 / 3 = 3.3", [("10 / 3", "3.3", True)]),
        ("10 / 3 = 3.5", [("10 / 3", "3.5", False)]),
        ("10 / 3 = 3", [("10 / 3", "3", False)]),
        ("10/3 ≈ 3", [("10 / 3", "3", True)]),
        ("1234567 / 7 ≈ 176,000", [("1234567 / 7", "176,000", True)]),
        ("Step 2: 5 x 3 = 15", [("5 * 3", "15", True)]),
        ("5 times 3 = 15, and 15 divided by 5 = 3", [("5 * 3", "15", True), ("15 / 5", "3", True)]),
        ("So 5 - 2 = 3 apples are left, and 3 * 2 = 6.", [("5 - 2", "3", True), ("3 * 2", "6", True)]),
        ("-5 + 3 = -2", [("- 5 + 3", "- 2", True)]),
        ("2^3 = 8 and 2**10 = 1024", [("2 ^ 3", "8", True), ("2 ^ 10", "1024", True)]),
        ("$3 \\times 4 = \\boxed{12}$", [("3 * 4", "12", True)]),
        ("$12 \\div 4 = 3$ and $2 \\cdot 3 = 6$", [("12 / 4", "3", True), ("2 * 3", "6", True)]),
        ("\\frac{1}{2} + \\frac{1}{4} = \\frac{3}{4}", [("(1 / 2) + (1 / 4)", "(3 / 4)", True)]),
        ("\\dfrac{6+2}{4} = 2", [("((6 + 2) / 4)", "2", True)]),
        ("$2^{10} = 1024$", [("2 ^ (10)", "1024", True)]),
        ("7 × 8 = 56; 56 ÷ 7 = 8", [("7 * 8", "56", True), ("56 / 7", "8", True)]),
        # unevaluable sides
        ("2x + 3 = 7", [("2 x + 3", "7", None)]),
        ("2 hundred + 5 = 205", [("2 hundred + 5", "205", None)]),
        ("5 / 0 = 0", [("5 / 0", "0", None)]),
        # not arithmetic claims
        ("x = 5", []),
        ("5 boxes of 3 = 15", []),
        ("Total - 3 = 5", []),
        ("He has 3 apples. She has 4.", []),
        ("In 2023, 15 people came.", []),
        ("", []),
    ],
)
def test_find_claims(step: str, claims: list[tuple[str, str, bool | None]]) -> None:
    assert find_claims(step) == [Claim(*c) for c in claims]


def test_claims_are_named_tuples() -> None:
    (claim,) = find_claims("2 + 2 = 5")
    assert claim.expression == "2 + 2"
    assert claim.value == "5"
    assert claim.holds is False
    expression, value, holds = claim
    assert (expression, value, holds) == ("2 + 2", "5", False)


def test_rel_tol() -> None:
    assert find_claims("1 / 3 = 0.333333")[0].holds is True  # last-place slack
    assert find_claims("1 / 3 = 1 / 3.000001")[0].holds is True
    assert find_claims("1 / 3 = 1 / 3.000001", rel_tol=1e-9)[0].holds is False
    assert find_claims("1000 * 1000 = 1000001", rel_tol=1e-3)[0].holds is False  # whole numbers: exact


def test_work_per_step_is_bounded() -> None:
    step = " ".join(f"{n} + 1 = {n + 1}." for n in range(1_000))
    claims = find_claims(step)
    assert len(claims) == MAX_CLAIMS
    assert all(c.holds for c in claims)


# --- the verifier -------------------------------------------------------------------------------

GOOD = [
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.",
    "#### 72",
]
BAD = [
    "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.",
    "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=11>>11.",
    "So she earned 11 dollars.",
    "Then 11 + 1 = 12 and 12 * 2 = 24.",
]


async def test_prefix_scores() -> None:
    verifier = ArithmeticStepVerifier()
    scores = await verifier.score("question", [GOOD, BAD, [], ["No numbers at all."]])
    assert scores == [
        [1.0, 1.0, 1.0],
        [1.0, 0.5, 0.5, 0.75],
        [],
        [1.0],
    ]


async def test_scores_shape_and_range() -> None:
    verifier = ArithmeticStepVerifier()
    candidates = [GOOD, BAD, GOOD[:1], ["1 + 1 = 3", "2 + 2 = 5"]]
    scores = await verifier.score("q", candidates, ledger=None)
    assert [len(s) for s in scores] == [len(c) for c in candidates]
    assert all(0.0 <= x <= 1.0 for s in scores for x in s)
    assert scores[-1] == [0.0, 0.0]


def test_implements_the_verifier_protocol() -> None:
    verifier = ArithmeticStepVerifier(rel_tol=1e-3)
    assert isinstance(verifier, Verifier)
    assert verifier.name == "arithmetic"
    assert verifier.rel_tol == 1e-3
    with pytest.raises(ValueError):
        ArithmeticStepVerifier(rel_tol=-1)


async def test_throughput() -> None:
    from ttc_agents.verifiers._arithmetic import _find_claims

    _find_claims.cache_clear()
    steps = [
        f"She buys {n} packs of {k} pens, so {n} * {k} = <<{n}*{k}={n * k}>>{n * k} pens, "
        f"and {n * k} + 3 = {n * k + 3} in total."
        for n, k in ((n, n % 7 + 2) for n in range(2_000))
    ]
    scores = await ArithmeticStepVerifier().score("q", [steps[i : i + 10] for i in range(0, 2_000, 10)])
    assert all(s == [1.0] * 10 for s in scores)


# --- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        "9" * 10_000 + " + 1 = 1",
        "(" * 100_000 + "1 = 1",
        "(" * 10_000 + "1 + 1 = 2" + ")" * 10_000,
        "1 = " * 250_000,
        "1 + " * 250_000 + "= 1",
        "2 ^ " * 100_000 + "2 = 4",
        "<<1+1=2>>" * 100_000,
        "\\frac{" * 100_000 + "1}{2} = 0.5",
        "x" * (1 << 20),
        "$1,000 " * 150_000,
    ],
    ids=lambda s: repr(s[:12]),
)
async def test_huge_steps_bounded(step: str) -> None:
    find_claims(step)
    await ArithmeticStepVerifier().score("q", [[step, step]])


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=2_000))
def test_arbitrary_text_never_escapes(step: str) -> None:
    for claim in find_claims(step):
        assert claim.holds in (True, False, None)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789 +-*/^()=.,%$x×÷≈<>apples", max_size=500))
def test_arithmetic_looking_text_never_escapes(step: str) -> None:
    find_claims(step)


@settings(max_examples=200, deadline=None)
@given(a=st.integers(0, 10**9), b=st.integers(0, 10**9), op=st.sampled_from(["+", "-", "*"]))
def test_correct_and_wrong_results_are_judged(a: int, b: int, op: str) -> None:
    result = {"+": a + b, "-": a - b, "*": a * b}[op]
    assert [c.holds for c in find_claims(f"So {a} {op} {b} = {result} units.")] == [True]
    assert [c.holds for c in find_claims(f"So {a} {op} {b} = {result + 1} units.")] == [False]
