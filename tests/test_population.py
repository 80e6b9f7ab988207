"""The synthetic populations of the scripted double (``scripted/pop-<setting>``): each knob measured.

Most measurements call :func:`scripted_respond` (the provider's body) directly, on the 200 questions of
``arith?size=200&seed=7``; the request surface and the end-to-end runs go through LiteLLM and the gateway.
"""

from __future__ import annotations

import bisect
import functools
import math
import os
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from string import Template
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

import litellm
import pytest
from litellm.exceptions import NotFoundError

from ttc_agents import (
    ArithmeticStepVerifier,
    BeamSearchSpec,
    BestOfNSpec,
    Gateway,
    RevisionSpec,
    build_strategy_graph,
    make_verifier,
)
from ttc_agents._apps.datasets import load_problems
from ttc_agents._llm.population import (
    POPULATION_SETTINGS,
    PopulationProfile,
    population_model,
    population_oracle,
    population_profile,
)
from ttc_agents._llm.scripted import (
    INPUT_COST_PER_TOKEN,
    OUTPUT_COST_PER_TOKEN,
    register_scripted_provider,
    scripted_respond,
    scripted_token_count,
)

litellm.suppress_debug_info = True

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
SETTINGS = sorted(POPULATION_SETTINGS)
DATASET = "arith?size=200&seed=7"
SAMPLES = 16


@pytest.fixture(autouse=True, scope="module")
def _registered() -> Iterator[None]:
    register_scripted_provider()
    yield


# -- helpers ----------------------------------------------------------------------------------------


def render(name: str, **values: str) -> str:
    return Template((PROMPTS / f"{name}.txt").read_text(encoding="utf-8")).substitute(values)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def texts(response: Any) -> list[str]:
    return [choice.message.content for choice in response.choices]


def boxed(text: str) -> str | None:
    found = BOXED.findall(text)
    return found[-1] if found else None


def respond(setting: str, prompt: str, **params: Any) -> Any:
    return scripted_respond(population_model(setting), user(prompt), params)


def p_yes(response: Any) -> float:
    top = {entry.token: entry.logprob for entry in response.choices[0].logprobs.content[0].top_logprobs}
    yes, no = math.exp(top["Yes"]), math.exp(top["No"])
    return yes / (yes + no)


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Mann-Whitney AUC (ties count one half), by ranks."""
    ranked = sorted([(v, 1) for v in positives] + [(v, 0) for v in negatives])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2 * sum(label for _, label in ranked[i:j])
        i = j
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


@functools.cache
def problems() -> list[tuple[str, str]]:
    return [(problem.question, problem.answer) for problem in load_problems(DATASET)]


@functools.cache
def samples(setting: str) -> list[list[str]]:
    """SAMPLES solutions per question at T=0.8, seed 0."""
    return [
        texts(respond(setting, render("generate", question=question), n=SAMPLES, temperature=0.8, seed=0))
        for question, _ in problems()
    ]


@functools.cache
def pass_rates(setting: str) -> list[float]:
    return [
        sum(boxed(text) == answer for text in solutions) / SAMPLES
        for (_, answer), solutions in zip(problems(), samples(setting), strict=True)
    ]


def mixture_draws(profile: PopulationProfile, count: int = 20000) -> list[float]:
    """Latent pass@1 values drawn from the profile's mixture (independently of the module's hashing)."""
    rng = random.Random(f"test:{profile.name}")
    weights = [w for w, _, _ in profile.mixture]
    out = []
    for _ in range(count):
        _, a, b = rng.choices(profile.mixture, weights)[0]
        out.append(min(max(rng.betavariate(a, b), 0.001), 0.999))
    return out


def binned(rates: Sequence[float]) -> list[float]:
    """Shares of questions with pass@1 in [0, 0.2], (0.2, 0.8), [0.8, 1]."""
    low = sum(r <= 0.2 for r in rates) / len(rates)
    high = sum(r >= 0.8 for r in rates) / len(rates)
    return [low, 1 - low - high, high]


CLAIM = re.compile(r"(\(?-?[\d/]+\)? [-+*/] \(?-?[\d/]+\)?) = (-?[\d/]+)\.?$")


def claim(line: str) -> tuple[str, str]:
    """(left side, result) of a step line, whatever its lead-in (``So 12 * 7 = 84.``)."""
    match = CLAIM.search(line)
    assert match is not None, line
    return match.group(1), match.group(2)


def results(text: str) -> list[str]:
    """The result of every step line of a solution."""
    return [claim(line)[1] for line in text.split("\n") if "=" in line]


def claims_hold(text: str) -> bool:
    steps = text.split("\n")
    return ArithmeticStepVerifier().score_steps(steps)[-1] == 1.0


# -- difficulty: the pass@1 distribution follows the mixture ----------------------------------------


def ks_distance(sample: Sequence[float], reference: Sequence[float]) -> float:
    """Kolmogorov-Smirnov distance between two empirical distributions."""
    points = sorted(set(sample) | set(reference))
    a, b = sorted(sample), sorted(reference)
    return max(abs(bisect.bisect_right(a, x) / len(a) - bisect.bisect_right(b, x) / len(b)) for x in points)


@pytest.mark.parametrize("setting", SETTINGS)
def test_measured_pass_at_1_follows_the_mixture(setting: str) -> None:
    profile = POPULATION_SETTINGS[setting]
    oracle = [population_oracle(setting, question) for question, _ in problems()]
    # the latent pass@1 of the 200 questions is a sample of the mixture (a KS test)
    # (the 0.1% critical value: six settings are tested, and 3000 questions pass at 1%)
    assert ks_distance(oracle, mixture_draws(profile)) < 1.95 / math.sqrt(len(oracle))
    # and the samples measure it: per question, and as a histogram of 16-sample pass rates
    rates = pass_rates(setting)
    rng = random.Random(1)
    expected_rates = [sum(rng.random() < p for _ in range(SAMPLES)) / SAMPLES for p in oracle for _ in range(20)]
    measured, expected = binned(rates), binned(expected_rates)
    assert all(abs(m - e) <= 0.06 for m, e in zip(measured, expected, strict=True)), (measured, expected)
    errors = [abs(o - r) for o, r in zip(oracle, rates, strict=True)]
    assert sum(errors) / len(errors) <= 0.1
    assert sum(oracle) / len(oracle) == pytest.approx(sum(rates) / len(rates), abs=0.03)


def test_mathlike_is_bimodal_and_uniform_is_flat() -> None:
    low, middle, high = binned(pass_rates("mathlike"))
    assert low >= 0.3 and high >= 0.3 and middle <= 0.3
    counts = Counter(min(int(rate * 5), 4) for rate in pass_rates("uniform"))
    assert all(0.12 <= counts[b] / 200 <= 0.3 for b in range(5)), counts
    hard = binned(pass_rates("hardtail"))
    assert hard[0] >= 0.55


def test_settings_differ() -> None:
    means = {setting: sum(pass_rates(setting)) / 200 for setting in SETTINGS}
    assert len({profile.knobs().__repr__() for profile in POPULATION_SETTINGS.values()}) == len(SETTINGS)
    assert means["hardtail"] < min(v for k, v in means.items() if k != "hardtail") - 0.1
    assert len(SETTINGS) >= 5


def test_temperature_moves_pass_at_1_mildly() -> None:
    questions = problems()[:60]

    def accuracy(temperature: float) -> float:
        right = 0
        for question, answer in questions:
            prompt = render("generate", question=question)
            right += sum(boxed(t) == answer for t in texts(respond("uniform", prompt, n=16, temperature=temperature)))
        return right / (16 * len(questions))

    cool, usual, hot = accuracy(0.2), accuracy(0.8), accuracy(1.4)
    assert cool > usual + 0.02 and usual > hot + 0.02
    assert cool - hot < 0.25
    assert population_oracle("uniform", questions[0][0], 0.2) > population_oracle("uniform", questions[0][0])


# -- the error mechanism ----------------------------------------------------------------------------


def expected_conceptual_share(profile: PopulationProfile) -> float:
    """Share of wrong samples that are conceptual: the distractor on hard questions, else ``conceptual``."""
    total = conceptual = 0.0
    for question, _ in problems():
        p = population_oracle(profile, question)
        share = profile.distractor if p < profile.distractor_below else 0.0
        total += 1 - p
        conceptual += (1 - p) * (share + (1 - share) * profile.conceptual)
    return conceptual / total


@pytest.mark.parametrize("setting", SETTINGS)
def test_conceptual_errors_pass_the_arithmetic_checker_and_slips_do_not(setting: str) -> None:
    hidden = caught = 0
    for (_question, answer), solutions in zip(problems(), samples(setting), strict=True):
        for text in solutions:
            if boxed(text) == answer:
                assert claims_hold(text)
                continue
            if claims_hold(text):
                hidden += 1
                # a conceptual error: the claims are true, but some step's operands differ from the truth
                assert boxed(text) != answer
            else:
                caught += 1
    share = hidden / (hidden + caught)
    assert share == pytest.approx(expected_conceptual_share(POPULATION_SETTINGS[setting]), abs=0.07)


def test_a_conceptual_error_computes_a_perturbed_setup() -> None:
    question = "What is 31 + 12 * 45?"
    truth = [("12 * 45", "540"), ("31 + 540", "571")]
    wrong = 0
    for seed in range(40):
        for text in texts(respond("hardtail", render("generate", question=question), n=8, seed=seed)):
            if boxed(text) == "571":
                continue
            wrong += 1
            assert claims_hold(text)
            steps = [claim(line) for line in text.split("\n")[:-1]]
            first = next(i for i, (got, true) in enumerate(zip(steps, truth, strict=True)) if got[1] != true[1])
            if first == 0:  # the setup changed: an operand or the operator, not the result of the true step
                assert steps[0][0] != truth[0][0]
    assert wrong >= 20


# -- distractor concentration -----------------------------------------------------------------------


@pytest.mark.parametrize("setting", [s for s in SETTINGS if POPULATION_SETTINGS[s].distractor > 0])
def test_a_dominant_wrong_answer_takes_its_share_on_hard_questions(setting: str) -> None:
    profile = POPULATION_SETTINGS[setting]
    modal = wrong = questions = majority_on_it = 0
    for (question, answer), solutions in zip(problems(), samples(setting), strict=True):
        if population_oracle(setting, question) >= profile.distractor_below:
            continue
        answers = Counter(boxed(text) for text in solutions if boxed(text) != answer)
        if not answers:
            continue
        questions += 1
        modal += answers.most_common(1)[0][1]
        wrong += sum(answers.values())
        majority_on_it += Counter(boxed(t) for t in solutions).most_common(1)[0][0] != answer
    assert questions >= 20
    assert profile.distractor - 0.05 <= modal / wrong <= profile.distractor + 0.15
    assert majority_on_it / questions >= 0.8  # majority voting converges on the distractor


def test_without_a_distractor_wrong_answers_spread() -> None:
    modal = wrong = 0
    for (question, answer), solutions in zip(problems(), samples("uniform"), strict=True):
        if population_oracle("uniform", question) >= 0.2:
            continue
        answers = Counter(boxed(text) for text in solutions if boxed(text) != answer)
        modal += answers.most_common(1)[0][1] if answers else 0
        wrong += sum(answers.values())
    assert modal / wrong < 0.45


# -- verifier quality and over-optimisation ---------------------------------------------------------


@functools.cache
def final_scores(setting: str) -> tuple[list[float], list[float]]:
    """The judge's P(Yes) on the first 8 samples of each question: (right, wrong)."""
    right: list[float] = []
    wrong: list[float] = []
    for (question, answer), solutions in zip(problems(), samples(setting), strict=True):
        for text in solutions[:8]:
            prompt = render("judge_answer", question=question, solution=text)
            score = p_yes(respond(setting, prompt, temperature=0, logprobs=True, top_logprobs=5))
            (right if boxed(text) == answer else wrong).append(score)
    return right, wrong


@pytest.mark.parametrize("setting", SETTINGS)
def test_final_score_auc_is_near_its_target(setting: str) -> None:
    # measured on arith?size=200&seed=7, 8 samples each: mathlike 0.757, revise 0.710, search 0.812,
    # weakprm 0.603, uniform 0.785, hardtail 0.708. Samples of one answer share part of their score, so
    # 200 questions give only a few hundred independent scores: the tolerance is wide.
    right, wrong = final_scores(setting)
    assert auc(right, wrong) == pytest.approx(POPULATION_SETTINGS[setting].judge_auc, abs=0.06)


def test_the_prm_last_step_score_is_the_final_score() -> None:
    question, _ = problems()[3]
    for text in samples("mathlike")[3][:4]:
        orm = respond(
            "mathlike",
            render("judge_answer", question=question, solution=text),
            temperature=0,
            logprobs=True,
            top_logprobs=5,
        )
        prm = respond(
            "mathlike",
            render("judge_step", question=question, steps=text),
            temperature=0,
            logprobs=True,
            top_logprobs=5,
        )
        assert p_yes(orm) == pytest.approx(p_yes(prm))


def test_over_optimisation_some_wrong_answers_beat_the_right_ones() -> None:
    beaten = {}
    for setting in ("weakprm", "search"):
        count = total = 0
        for (question, answer), solutions in zip(problems(), samples(setting), strict=True):
            scored = {}
            for text in set(solutions):
                prompt = render("judge_answer", question=question, solution=text)
                scored[boxed(text)] = p_yes(respond(setting, prompt, temperature=0, logprobs=True, top_logprobs=5))
            if answer in scored and len(scored) > 1:
                total += 1
                count += max(v for k, v in scored.items() if k != answer) > scored[answer] + 0.2
        beaten[setting] = count / total
    assert beaten["weakprm"] > beaten["search"] + 0.15


def step_prefixes(setting: str, limit: int = 80) -> tuple[list[float], list[float]]:
    """Step scores of intermediate prefixes: (still on the true path, left it)."""
    on: list[float] = []
    off: list[float] = []
    for (question, answer), solutions in list(zip(problems(), samples(setting), strict=True))[:limit]:
        right = next((results(t) for t in solutions if boxed(t) == answer), None)
        if right is None:
            continue
        for text in set(solutions):
            lines = text.split("\n")[:-1]
            for end in range(1, len(lines) + 1):
                prompt = render("judge_step", question=question, steps="\n".join(lines[:end]))
                score = p_yes(respond(setting, prompt, temperature=0, logprobs=True, top_logprobs=5))
                (on if results(text)[:end] == right[:end] else off).append(score)
    return on, off


def test_step_scores_are_informative_as_set() -> None:
    measured = {}
    for setting in ("search", "mathlike", "weakprm"):
        on, off = step_prefixes(setting)
        measured[setting] = auc(on, off)
        assert measured[setting] == pytest.approx(POPULATION_SETTINGS[setting].step_auc, abs=0.1), measured
    assert measured["search"] > measured["mathlike"] > measured["weakprm"]


def test_errors_come_early_where_error_step_bias_says() -> None:
    def mean_first_wrong_step(setting: str) -> float:
        positions = []
        for (_question, answer), solutions in zip(problems(), samples(setting), strict=True):
            right = next((results(t) for t in solutions if boxed(t) == answer), None)
            if right is None or len(right) < 4:  # at least 4 steps
                continue
            for text in solutions:
                if boxed(text) != answer:
                    first = next(i for i, (a, b) in enumerate(zip(results(text), right, strict=True)) if a != b)
                    positions.append(first / (len(right) - 1))
        return sum(positions) / len(positions)

    assert mean_first_wrong_step("search") < mean_first_wrong_step("mathlike") - 0.1


# -- revisions --------------------------------------------------------------------------------------


@functools.cache
def revision_rates(setting: str) -> tuple[float, float, float, float, float]:
    """(fix measured, fix expected, flip measured, flip expected, stick measured), 16 revisions per question."""
    profile = POPULATION_SETTINGS[setting]
    fixed = fix_total = flipped = flip_total = stuck = 0
    expected = flip_expected = 0.0
    for (question, answer), solutions in list(zip(problems(), samples(setting), strict=True))[:120]:
        right = next((t for t in solutions if boxed(t) == answer), None)
        # a wrong attempt no fresh error writes, so that repeating it is told apart from erring again
        wrong = f"Some work.\nThe answer is \\boxed{{{int(answer) + 12345}}}."
        prompt = render("revise", question=question, attempts=f"Attempt 1:\n{wrong}")
        revisions = texts(respond(setting, prompt, n=16, temperature=0.8, seed=5))
        fixed += sum(boxed(t) == answer for t in revisions)
        stuck += sum(t == wrong for t in revisions)
        assert all(t == wrong or boxed(t) != boxed(wrong) for t in revisions)
        fix_total += 16
        p = population_oracle(setting, question)
        expected += 16 * sigmoid(logit(profile.fix) + profile.fix_slope * logit(p))
        if right is not None:
            prompt = render("revise", question=question, attempts=f"Attempt 1:\n{wrong}\n\nAttempt 2:\n{right}")
            revisions = texts(respond(setting, prompt, n=16, temperature=0.8, seed=5))
            flipped += sum(boxed(t) != answer for t in revisions)
            flip_total += 16
            flip_expected += 16 * sigmoid(logit(profile.flip) - profile.flip_slope * logit(p))
    return (
        fixed / fix_total,
        expected / fix_total,
        flipped / flip_total,
        flip_expected / flip_total,
        stuck / (fix_total - fixed),
    )


@pytest.mark.parametrize("setting", SETTINGS)
def test_revisions_fix_and_flip_at_the_set_rates(setting: str) -> None:
    profile = POPULATION_SETTINGS[setting]
    fix, fix_expected, flip, flip_expected, stick = revision_rates(setting)
    assert fix == pytest.approx(fix_expected, abs=0.05)
    assert flip == pytest.approx(flip_expected, abs=0.05)
    assert stick == pytest.approx(profile.stick, abs=0.08)


def test_revisions_help_where_they_should() -> None:
    revise_fix, _, revise_flip, _, _ = revision_rates("revise")
    neutral_fix, _, neutral_flip, _, _ = revision_rates("uniform")
    assert revise_fix > neutral_fix + 0.15 and revise_flip < neutral_flip - 0.15


# -- the request surface, as in the scripted double -------------------------------------------------

HARD = "What is (((28 + 92) * 68) + 16) * 39 - 7?"


async def ask(prompt: str, model: str = "scripted/pop-mathlike", **params: Any) -> Any:
    return await litellm.acompletion(model=model, messages=user(prompt), **params)


def hard_question(setting: str = "mathlike") -> str:
    return next(q for q, _ in problems() if 0.2 < population_oracle(setting, q) < 0.6 and q.count(" ") > 6)


async def test_n_seed_usage_and_cost() -> None:
    prompt = render("generate", question=hard_question())
    first = await ask(prompt, n=4, seed=3, temperature=0.8, max_tokens=256)
    assert texts(await ask(prompt, n=4, seed=3, temperature=0.8)) == texts(first)
    assert texts(await ask(prompt, n=6, seed=3, temperature=0.8))[:4] == texts(first)
    assert texts(await ask(prompt, n=4, seed=4, temperature=0.8)) != texts(first)
    assert len(set(texts(await ask(prompt, n=16, seed=3)))) > 1
    completion = sum(scripted_token_count(t) for t in texts(first))
    assert first.usage.prompt_tokens == scripted_token_count(prompt)
    assert first.usage.completion_tokens == completion
    expected = scripted_token_count(prompt) * INPUT_COST_PER_TOKEN + completion * OUTPUT_COST_PER_TOKEN
    assert first._hidden_params["response_cost"] == pytest.approx(expected)
    assert first.model == "scripted/pop-mathlike"


async def test_without_seed_calls_repeat_but_samples_differ() -> None:
    prompt = render("generate", question=hard_question())
    first = texts(await ask(prompt, n=12, temperature=1.0))
    assert texts(await ask(prompt, n=12, temperature=1.0)) == first
    assert len(set(first)) > 1


async def test_temperature_zero_is_greedy_and_ignores_the_seed() -> None:
    verdicts = []
    for question, answer in problems()[:40]:
        prompt = render("generate", question=question)
        one = texts(await ask(prompt, n=3, temperature=0, seed=1))
        assert len(set(one)) == 1 and texts(await ask(prompt, n=3, temperature=0, seed=2)) == one
        verdicts.append(boxed(one[0]) == answer)
    assert any(verdicts) and not all(verdicts)


async def test_greedy_steps_one_at_a_time_rebuild_the_greedy_solution() -> None:
    for setting in ("mathlike", "search"):
        for question, _ in problems()[:25]:
            full = texts(await ask(render("generate", question=question), population_model(setting), temperature=0))[0]
            steps: list[str] = []
            while not steps or boxed(steps[-1]) is None:
                prompt = render("step_generate", question=question, steps="\n".join(steps) or "(none)")
                response = await ask(prompt, population_model(setting), temperature=0, stop=["\n"])
                steps.append(texts(response)[0])
                assert len(steps) <= 10
            assert "\n".join(steps) == full


def test_step_by_step_sampling_has_the_full_solutions_distribution() -> None:
    for setting in ("search", "weakprm"):
        step_right = full_right = total = 0
        for (question, answer), solutions in list(zip(problems(), samples(setting), strict=True))[:60]:
            full_right += sum(boxed(t) == answer for t in solutions)
            for index in range(SAMPLES):
                steps: list[str] = []
                while not steps or boxed(steps[-1]) is None:
                    prompt = render("step_generate", question=question, steps="\n".join(steps) or "(none)")
                    steps.append(texts(respond(setting, prompt, temperature=0.8, seed=1000 + index, stop=["\n"]))[0])
                step_right += boxed(steps[-1]) == answer
                total += 1
        assert step_right / total == pytest.approx(full_right / total, abs=0.04)


async def test_step_generate_carries_a_deviation_forward() -> None:
    question = "What is 12 * 7 + 5?"
    response = await ask(render("step_generate", question=question, steps="12 * 8 = 96"), n=8, seed=0, stop=["\n"])
    assert [claim(t) for t in texts(response)] == [("96 + 5", "101")] * 8


async def test_max_tokens_and_stop_truncate() -> None:
    prompt = render("generate", question=hard_question())
    cut = await ask(prompt, n=3, seed=1, max_tokens=7)
    assert all(scripted_token_count(t) == 7 for t in texts(cut))
    assert all(choice.finish_reason == "length" for choice in cut.choices)
    assert cut.usage.completion_tokens == 21
    full = texts(await ask(prompt, n=3, seed=1))
    assert all(f.startswith(c) for f, c in zip(full, texts(cut), strict=True))
    stopped = texts(await ask(prompt, n=3, seed=1, stop=["\n"]))
    assert stopped == [f.split("\n")[0] for f in full]


async def test_logprobs_and_judge_tokens() -> None:
    question = hard_question()
    response = await ask(render("generate", question=question), n=2, seed=1, logprobs=True, top_logprobs=3)
    for choice in response.choices:
        assert "".join(entry.token for entry in choice.logprobs.content) == choice.message.content
    judged = await ask(
        render("judge_answer", question=question, solution="1 + 1 = 2\nThe answer is \\boxed{2}."),
        temperature=0,
        logprobs=True,
        top_logprobs=5,
    )
    first = judged.choices[0].logprobs.content[0]
    assert first.token in ("Yes", "No") and {t.token for t in first.top_logprobs} >= {"Yes", "No"}
    assert texts(judged)[0].split("\n")[1].startswith("Rating: ")


def test_every_population_is_registered_with_prices() -> None:
    for setting in SETTINGS:
        info = litellm.model_cost[population_model(setting)]
        assert info["input_cost_per_token"] == INPUT_COST_PER_TOKEN
        assert info["output_cost_per_token"] == OUTPUT_COST_PER_TOKEN


async def test_unknown_population_names_the_known_ones() -> None:
    with pytest.raises(NotFoundError, match=r"scripted/pop-mathlike"):
        await ask("What is 1 + 1?", "scripted/pop-nope")
    with pytest.raises(KeyError, match="mathlike"):
        population_oracle("nope", "What is 1 + 1?")


def test_oracle_names_and_questions_without_an_expression() -> None:
    question = problems()[0][0]
    value = population_oracle("mathlike", question)
    assert population_oracle("pop-mathlike", question) == value == population_oracle("scripted/pop-mathlike", question)
    assert population_oracle(population_profile("mathlike"), f"  {question} ") == value
    assert 0 < value < 1
    assert population_oracle("mathlike", "What is the capital of France?") == 0.0
    assert texts(respond("mathlike", render("generate", question="What is the capital of France?"))) == [
        "The answer is \\boxed{0}."
    ]


def test_bad_knobs_are_refused() -> None:
    with pytest.raises(ValueError, match="judge_auc"):
        PopulationProfile("x", "", ((1.0, 1.0, 1.0),), judge_auc=0.4)
    with pytest.raises(ValueError, match="mixture"):
        PopulationProfile("x", "", ())


# -- end to end through the gateway -----------------------------------------------------------------


async def test_best_of_n_with_the_llm_judge_runs_end_to_end() -> None:
    question, answer = next((q, a) for q, a in problems() if 0.3 < population_oracle("mathlike", q) < 0.9)
    verifier = make_verifier("prm:scripted/pop-mathlike", gateway=Gateway())
    graph = build_strategy_graph(
        BestOfNSpec(n=8, seed=1), model="scripted/pop-mathlike", verifier=verifier, gateway=Gateway()
    )
    result = await graph.ainvoke({"question": question})
    ledger = result["ledger"]
    assert len(result["candidates"]) == 8 and result["answer"] is not None
    assert all(c.score is not None for c in result["candidates"])
    assert ledger.total.samples > 8  # the generations and the judge calls are booked
    assert result["stopped_by"] is None
    del answer


async def test_beam_search_and_revision_run_on_populations() -> None:
    question = hard_question("search")
    beam = build_strategy_graph(
        BeamSearchSpec(n=8, width=4, seed=2),
        model="scripted/pop-search",
        verifier=make_verifier("prm:scripted/pop-search", gateway=Gateway()),
        gateway=Gateway(),
    )
    result = await beam.ainvoke({"question": question})
    assert result["answer"] is not None and all(c.finished for c in result["candidates"])
    revision = build_strategy_graph(
        RevisionSpec(attempts=3, chains=2, seed=2),
        model="scripted/pop-revise",
        verifier=make_verifier("orm:scripted/pop-revise", gateway=Gateway()),
        gateway=Gateway(),
    )
    result = await revision.ainvoke({"question": question})
    assert result["answer"] is not None and len(result["candidates"]) == 6


def test_answers_are_exact_values() -> None:
    for (question, answer), solutions in list(zip(problems(), samples("mathlike"), strict=True))[:20]:
        assert any(boxed(t) is not None and Fraction(boxed(t) or "0") == Fraction(answer) for t in solutions) or (
            population_oracle("mathlike", question) < 0.2
        )
