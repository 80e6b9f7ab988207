"""Synthetic populations for the scripted test double: ``scripted/pop-<setting>`` profiles.

The plain ``scripted/arith*`` profiles are one population: a per-step slip rate that grows with the
size of the expression, every error an arithmetic slip that the ``arithmetic`` step checker sees.
A router calibrated and evaluated only there learns one world. The profiles of this module answer the
same questions (any ``arith?`` dataset; the truth is still the value of the expression in the question)
and speak the same roles, but draw what happens from a documented latent model whose knobs make
populations that differ in what makes test-time compute pay::

    register_scripted_provider()
    await litellm.acompletion(model="scripted/pop-mathlike", messages=..., n=8, temperature=0.8, seed=1)
    population_oracle("mathlike", "What is 12 * 7 + 5?")   # the latent pass@1 at T=0.8

Role detection, tokenisation, ``stop``/``max_tokens`` truncation, logprobs, usage and prices are the
scripted provider's (:mod:`ttc_agents._llm.scripted`); this module only decides the text of each sample.
Everything is deterministic: sample ``i`` draws from a hash of (profile, seed, question, i, role and its
context), greedy (T=0) draws from hashes of the question (and, for judges, the judged text); a sample
costs tens of microseconds. Model text is parsed with the scripted provider's small expression parser,
never evaluated.

The latent model, one knob of :class:`PopulationProfile` at a time
--------------------------------------------------------------------
``mixture`` (difficulty)
    Tuples ``(weight, alpha, beta)``. A question's latent pass@1 at T=0.8, ``p(q)``, is drawn from
    ``Beta(alpha, beta)`` of the component picked by a uniform hash of (setting, question text) with
    probabilities ``weight``; clamped to [0.001, 0.999]. A question without an expression has
    ``p = 0`` (it is answered ``\\boxed{0}`` like the scripted double does). :func:`population_oracle`
    returns ``p(q)``.
``temperature_slope``
    At temperature ``T`` a sample is right with ``p_T = sigmoid(logit p(q) + temperature_slope (0.8 - T))``:
    cooler sampling is mildly better. ``T = 0`` is greedy: one outcome per question, independent of seed.
``error_step_bias`` (step structure)
    A wrong sample goes wrong at one step ``f`` (0-based, of the question's ``K`` binary operations),
    its *first wrong step*; the steps before ``f`` are those of the true solution, the steps after it
    carry the wrong value forward with correct arithmetic. ``f = floor(K u^(1 + error_step_bias))``:
    0 is uniform over the steps, larger values put errors early, where step-level search can prune them.
``conceptual`` and ``conceptual_variants`` (error mechanism)
    A (non-distractor) wrong sample is a *conceptual* error with probability ``conceptual``: step ``f``
    computes a perturbed setup (one operator of the expression changed, or one literal operand off by
    one or ten, or its digits swapped), and every ``a op b = c`` claim of the solution is true, so the
    ``arithmetic`` checker passes it. Each (question, step) has ``conceptual_variants`` possible
    perturbations, so conceptual answers collide. The rest are *slips*: step ``f`` claims a wrong result
    (off by one or ten, the wrong operator, swapped operands; a favourite slip per question and step),
    which the checker catches.
``distractor`` and ``distractor_below`` (distractor concentration)
    On a hard question (``p(q) < distractor_below``) a dominant wrong answer, one fixed conceptual
    perturbation at a fixed step per question, takes a share ``distractor`` of the wrong samples, so
    majority voting converges on it. 0 turns it off.
``judge_auc``, ``judge_sd``, ``judge_shares`` (verifier quality)
    The judge's verdict on a finished solution (``judge_answer``, and ``judge_step`` when the last step
    states the answer, so an LLM-judge PRM's last-step score is this final score) is
    ``P(Yes) = sigmoid(mean + judge_sd z)`` with ``mean = c +- d judge_sd / 2`` for right / wrong answers
    (``c = 0.3``) and ``z`` standard normal, the sum of a per-question part, a per-(question, final answer)
    part and a per-judged-text part with variance shares ``judge_shares = (question, answer)`` (the text
    gets the rest). ``d`` is solved so that the pooled AUC of the final score, right against wrong samples
    at T=0.8 and including the attractive answers below, is ``judge_auc`` (when attraction alone makes the
    target unreachable, ``d`` is capped at 6). Slips and conceptual errors look alike to the judge.
    Every score is a function of (setting, question, judged text): temperature and seed change only the
    ``Rating:`` line, and an ORM and a PRM's last step agree on the same solution.
``attract`` and ``attract_boost`` (over-optimisation)
    A wrong final answer of a question is *attractive* with probability ``min(1, 2 p(q) attract)``
    (``attract`` is the rate at ``p = 0.5``: more often on easy questions), fixed per (question, answer):
    its mean is ``attract_boost`` standard deviations *above* the right answers' mean, so the judge
    consistently prefers it. The same holds, with its own draw, for a step prefix per (question, first
    wrong step, its value): verifier-guided search finds and exploits such paths.
``step_auc`` (how informative step scores are)
    A step prefix that has not yet left the true path (every result so far equals the true intermediate
    value) gets ``P(Yes) = sigmoid(c + d_s judge_sd / 2 + judge_sd z)``, one that has left it
    (a slip or a perturbed setup) ``sigmoid(c - d_s judge_sd / 2 + judge_sd z)``, where ``d_s`` gives
    AUC ``step_auc`` between the two (attractive prefixes excluded); ``z`` has a per-question part
    (share ``judge_shares[0]``) and a per-prefix part.
``fix``, ``fix_slope``, ``flip``, ``flip_slope``, ``stick`` (revisions)
    A revise turn reads the earlier attempts and the last attempt's final answer. After a wrong last
    attempt the revision is right with probability ``sigmoid(logit fix + fix_slope logit p_T)`` (``fix``
    at ``p_T = 0.5``, rising with the question's pass@1); otherwise it repeats the last attempt with
    probability ``stick`` or makes a fresh error. After a right last attempt it turns wrong with
    probability ``sigmoid(logit flip - flip_slope logit p_T)`` (``flip`` at ``p_T = 0.5``, falling with
    pass@1; a fresh error), else stays right. ``fix = flip = 0.5`` with both slopes 1 makes a revision
    exactly a fresh sample (right with ``p_T`` whatever came before); a higher fix or lower flip makes
    chains of revisions genuinely better. Every turn is independent of the number of attempts before it.
``phrasings`` (text variety)
    Each step line is written with one of ``phrasings`` lead-ins and endings (``So 12 * 7 = 84.``), drawn
    per sample and step, so that samples of one solution are distinct texts, each judged with its own
    text noise, as a real model's samples are (1: every right solution of a question is one text, and
    identical beams collapse a beam search). The claims, their values and the answer line do not change.

Step-by-step generation (``step_generate``) is the same distribution: a continuation of a prefix that is
still on the true path after ``m`` steps draws from the outcome distribution conditioned on no error
before step ``m`` (with the first draw shared with the full solution's, so greedy continuations rebuild
the greedy solution); a prefix that left the path is carried forward with correct arithmetic.

Settings (:data:`POPULATION_SETTINGS`; model ``scripted/pop-<name>``): see each profile's description.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from statistics import NormalDist
from typing import Final

from ttc_agents._llm.scripted.parser import _answer_line, _apply, _fmt, _fmt_operand, _Step
from ttc_agents._llm.scripted.prompts import (
    _ATTEMPT_HEADER_RE,
    _answer_value,
    _last_boxed,
    _Prompt,
    _result_value,
    _Role,
)
from ttc_agents._llm.scripted.questions import _Question, _question, _resolve, _stable_hash, _unit
from ttc_agents._llm.scripted.solutions import _Dice, _Draft, _wrong_result

__all__ = [
    "POPULATION_PREFIX",
    "POPULATION_SETTINGS",
    "PopulationProfile",
    "population_draft",
    "population_model",
    "population_oracle",
    "population_profile",
]

POPULATION_PREFIX: Final = "pop-"
"""Scripted profile names ``pop-<setting>`` are answered by this module."""

_SAMPLING_T: Final = 0.8
_JUDGE_CENTRE: Final = 0.3
_MAX_SEPARATION: Final = 6.0
_P_MIN, _P_MAX = 0.001, 0.999
_NORMAL: Final = NormalDist()
_LEADS: Final = ("", "So ", "Then ", "Next, ", "Now ", "We get ", "Compute ", "This gives ")
"""Lead-ins of a step line (with or without a closing period: up to 16 phrasings)."""


@dataclass(frozen=True, slots=True)
class PopulationProfile:
    """The knobs of one synthetic population (the module docstring explains each)."""

    name: str
    description: str
    mixture: tuple[tuple[float, float, float], ...]
    temperature_slope: float = 0.5
    error_step_bias: float = 0.0
    conceptual: float = 0.5
    conceptual_variants: int = 3
    distractor: float = 0.0
    distractor_below: float = 0.2
    judge_auc: float = 0.76
    judge_sd: float = 1.2
    judge_shares: tuple[float, float] = (0.2, 0.4)
    attract: float = 0.05
    attract_boost: float = 0.5
    step_auc: float = 0.7
    fix: float = 0.5
    fix_slope: float = 1.0
    flip: float = 0.5
    flip_slope: float = 1.0
    stick: float = 0.5
    phrasings: int = 16

    def __post_init__(self) -> None:
        if not self.mixture or any(w <= 0 or a <= 0 or b <= 0 for w, a, b in self.mixture):
            raise ValueError(f"{self.name}: mixture needs positive (weight, alpha, beta) components")
        for knob in ("conceptual", "distractor", "distractor_below", "attract", "stick"):
            if not 0.0 <= getattr(self, knob) <= 1.0:
                raise ValueError(f"{self.name}: {knob} must be in [0, 1]")
        for knob in ("judge_auc", "step_auc"):
            if not 0.5 <= getattr(self, knob) < 1.0:
                raise ValueError(f"{self.name}: {knob} must be in [0.5, 1)")
        if not (0.0 < self.fix < 1.0 and 0.0 < self.flip < 1.0):
            raise ValueError(f"{self.name}: fix and flip must be in (0, 1)")
        shares = self.judge_shares
        if min(shares) < 0 or sum(shares) > 1:
            raise ValueError(f"{self.name}: judge_shares must be >= 0 and sum to at most 1")
        if self.judge_sd <= 0 or self.error_step_bias < 0 or self.conceptual_variants < 1:
            raise ValueError(f"{self.name}: judge_sd > 0, error_step_bias >= 0, conceptual_variants >= 1")
        if not 1 <= self.phrasings <= 2 * len(_LEADS):
            raise ValueError(f"{self.name}: phrasings must be in [1, {2 * len(_LEADS)}]")

    @property
    def model(self) -> str:
        """The LiteLLM model name of this population."""
        return population_model(self.name)

    def knobs(self) -> dict[str, object]:
        """The knobs as a dict (for reports)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("name", "description")}


_MATH_MIXTURE: Final = ((0.40, 18.0, 2.0), (0.25, 3.0, 3.0), (0.35, 1.2, 18.0))

POPULATION_SETTINGS: Final[Mapping[str, PopulationProfile]] = {
    profile.name: profile
    for profile in (
        PopulationProfile(
            "mathlike",
            "The issue's MATH-like population: bimodal difficulty (40% easy around 0.9, 35% hard around "
            "0.06, a middle), half the errors conceptual, a dominant distractor on hard questions, a "
            "PRM-like judge with final-score AUC 0.76, mild over-optimisation, revisions that help a "
            "little on easy and medium questions (right answers mostly stay right) and not on hard ones.",
            _MATH_MIXTURE,
            conceptual=0.5,
            distractor=0.5,
            distractor_below=0.2,
            judge_auc=0.76,
            attract=0.08,
            attract_boost=0.5,
            step_auc=0.7,
            fix=0.5,
            fix_slope=0.9,
            flip=0.3,
            flip_slope=1.0,
            stick=0.4,
        ),
        PopulationProfile(
            "revise",
            "Revisions genuinely help: mostly medium questions, a reviser that fixes wrong attempts "
            "often (fix 0.7 at pass@1 0.5, 0.58 at 0.2) and rarely breaks right ones (flip 0.08 at 0.5); "
            "an ordinary judge (AUC 0.72) and a weak step signal.",
            ((0.30, 6.0, 2.0), (0.40, 2.0, 2.0), (0.30, 1.5, 6.0)),
            conceptual=0.3,
            distractor=0.3,
            distractor_below=0.15,
            judge_auc=0.72,
            attract=0.05,
            step_auc=0.62,
            fix=0.7,
            fix_slope=0.4,
            flip=0.08,
            flip_slope=0.5,
            stick=0.2,
        ),
        PopulationProfile(
            "search",
            "Step-level search genuinely helps: medium and hard questions whose errors come early "
            "(error_step_bias 2), an informative step PRM (step AUC 0.92), a good final judge (AUC 0.8) "
            "with little over-optimisation; a revision is no better than a fresh sample (fix = pass@1, "
            "flip = 1 - pass@1).",
            ((0.25, 8.0, 2.0), (0.45, 2.0, 3.0), (0.30, 1.5, 10.0)),
            error_step_bias=2.0,
            conceptual=0.4,
            distractor=0.3,
            distractor_below=0.2,
            judge_auc=0.8,
            attract=0.02,
            step_auc=0.92,
            fix=0.5,
            fix_slope=1.0,
            flip=0.5,
            flip_slope=1.0,
            stick=0.5,
        ),
        PopulationProfile(
            "weakprm",
            "A weak, exploitable verifier: MATH-like difficulty, final-score AUC 0.6, strong "
            "over-optimisation (attractive wrong answers well above the right ones, often on easy "
            "questions), step AUC 0.56, mostly conceptual errors. Verifier-guided methods should not win.",
            _MATH_MIXTURE,
            conceptual=0.6,
            distractor=0.4,
            distractor_below=0.2,
            judge_auc=0.6,
            attract=0.3,
            attract_boost=1.0,
            step_auc=0.56,
            fix=0.45,
            fix_slope=1.0,
            flip=0.55,
            flip_slope=1.0,
            stick=0.5,
        ),
        PopulationProfile(
            "uniform",
            "Uniform difficulty (pass@1 ~ U(0, 1)), no dominant distractor, half the errors conceptual, "
            "final-score AUC 0.76, step AUC 0.7, little over-optimisation, revisions like fresh samples.",
            ((1.0, 1.0, 1.0),),
            conceptual=0.5,
            distractor=0.0,
            judge_auc=0.76,
            attract=0.03,
            step_auc=0.7,
            fix=0.5,
            fix_slope=1.0,
            flip=0.5,
            flip_slope=1.0,
            stick=0.5,
        ),
        PopulationProfile(
            "hardtail",
            "Mostly hard questions (60% around pass@1 0.03, a few easy), a strong dominant distractor "
            "(0.7 of the wrong samples below pass@1 0.3), all errors conceptual (the arithmetic checker "
            "sees nothing), a judge of AUC 0.7 and revisions worse than fresh samples: voting and "
            "best-of-N gain little; only the step score (AUC 0.65) can tell a wrong setup early.",
            ((0.60, 1.0, 30.0), (0.25, 2.0, 5.0), (0.15, 10.0, 2.0)),
            conceptual=1.0,
            distractor=0.7,
            distractor_below=0.3,
            judge_auc=0.7,
            attract=0.05,
            step_auc=0.65,
            fix=0.35,
            fix_slope=1.0,
            flip=0.6,
            flip_slope=1.0,
            stick=0.6,
        ),
    )
}
"""Named settings; the profile ``scripted/pop-<name>`` answers with ``POPULATION_SETTINGS[name]``."""


def population_model(setting: str) -> str:
    """The LiteLLM model name of a setting: ``scripted/pop-<setting>``."""
    return f"scripted/{POPULATION_PREFIX}{population_profile(setting).name}"


def population_profile(setting: str | PopulationProfile) -> PopulationProfile:
    """A setting by name: ``mathlike``, ``pop-mathlike`` or ``scripted/pop-mathlike``."""
    if isinstance(setting, PopulationProfile):
        return setting
    name = setting.removeprefix("scripted/").removeprefix(POPULATION_PREFIX)
    try:
        return POPULATION_SETTINGS[name]
    except KeyError:
        known = ", ".join(POPULATION_SETTINGS)
        raise KeyError(f"unknown population setting {setting!r}; known: {known}") from None


# ---------------------------------------------------------------------------------------------------
# Latent difficulty
# ---------------------------------------------------------------------------------------------------


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _clamp_p(p: float) -> float:
    return min(max(p, _P_MIN), _P_MAX)


def _draw_from_mixture(profile: PopulationProfile, u: float, rng: random.Random) -> float:
    total = sum(weight for weight, _, _ in profile.mixture)
    target = u * total
    for weight, alpha, beta in profile.mixture:
        target -= weight
        if target < 0:
            return _clamp_p(rng.betavariate(alpha, beta))
    _, alpha, beta = profile.mixture[-1]
    return _clamp_p(rng.betavariate(alpha, beta))


@functools.lru_cache(maxsize=65536)
def _latent_p(profile: PopulationProfile, text: str) -> float:
    rng = random.Random(_stable_hash("pop-p", profile.name, text))
    return _draw_from_mixture(profile, _unit("pop-component", profile.name, text), rng)


def population_oracle(setting: str | PopulationProfile, question: str, temperature: float = _SAMPLING_T) -> float:
    """The latent pass@1 of ``question`` in a setting (at T=0.8 unless ``temperature`` is given).

    ``question`` is the question text as the dataset gives it (e.g. ``"What is 12 * 7 + 5?"``).
    A question without an arithmetic expression has pass@1 0. At ``temperature=0`` this is the
    probability the greedy draw uses, not the (0 or 1) outcome of that draw.
    """
    profile = population_profile(setting)
    parsed = _question(question.strip())
    if parsed.answer is None:
        return 0.0
    return _p_at(profile, _latent_p(profile, parsed.text), temperature)


def _p_at(profile: PopulationProfile, p: float, temperature: float) -> float:
    shift = profile.temperature_slope * (_SAMPLING_T - max(temperature, 0.0))
    return _clamp_p(_sigmoid(_logit(p) + shift))


# ---------------------------------------------------------------------------------------------------
# The judge's separation, solved once per profile
# ---------------------------------------------------------------------------------------------------


def _attract_rate(profile: PopulationProfile, p: float) -> float:
    return min(1.0, 2.0 * p * profile.attract)


@functools.cache
def _separations(profile: PopulationProfile) -> tuple[float, float]:
    """(d, d_s): mean gaps, in judge_sd units, for the final and the step scores."""
    rng = random.Random(f"pop-auc:{profile.name}")
    draws = [_draw_from_mixture(profile, rng.random(), rng) for _ in range(20000)]
    wrong_mass = sum(1.0 - p for p in draws)
    share = sum((1.0 - p) * _attract_rate(profile, p) for p in draws) / wrong_mass if wrong_mass else 0.0
    against_attractive = _NORMAL.cdf(-profile.attract_boost / math.sqrt(2.0))
    needed = (profile.judge_auc - share * against_attractive) / (1.0 - share) if share < 1 else 1.0
    d = (
        _MAX_SEPARATION
        if needed >= _NORMAL.cdf(_MAX_SEPARATION / math.sqrt(2.0))
        else (math.sqrt(2.0) * _NORMAL.inv_cdf(max(needed, 0.5)))
    )
    d_s = math.sqrt(2.0) * _NORMAL.inv_cdf(profile.step_auc)
    return d, d_s


def _hash_normal(*parts: object) -> float:
    return _NORMAL.inv_cdf(min(max(_unit(*parts), 1e-12), 1.0 - 1e-12))


# ---------------------------------------------------------------------------------------------------
# Outcomes: which step goes wrong, and how
# ---------------------------------------------------------------------------------------------------

_RIGHT: Final = "right"
_DISTRACTOR: Final = "distractor"
_ERROR: Final = "error"
_CARRY: Final = "carry"


@dataclass(frozen=True, slots=True)
class _Event:
    kind: str
    """``right``, ``distractor``, ``error`` (a slip or a conceptual error, decided later) or ``carry`` (no
    new error after a prefix that already left the true path)."""
    step: int = -1
    """The first wrong step (-1 for right)."""


def _step_mass(count: int, bias: float, index: int) -> float:
    """P(f = index) for f = floor(count u^(1 + bias)), u uniform."""
    power = 1.0 / (1.0 + bias)
    return float(((index + 1) / count) ** power - (index / count) ** power)


@functools.lru_cache(maxsize=65536)
def _distractor_step(profile: PopulationProfile, text: str, count: int) -> int:
    u = _unit("pop-distractor-step", profile.name, text)
    return min(count - 1, int(count * u ** (1.0 + profile.error_step_bias)))


def _events(profile: PopulationProfile, question: _Question, p: float, done: int) -> list[tuple[_Event, float]]:
    """Outcomes consistent with ``done`` steps on the true path, with their (unnormalised) masses."""
    count = len(question.steps)
    out = [(_Event(_RIGHT), p)]
    latent = _latent_p(profile, question.text)
    share = profile.distractor if latent < profile.distractor_below else 0.0
    if share > 0 and _perturbation(profile, question, _distractor_step(profile, question.text, count), -1):
        step = _distractor_step(profile, question.text, count)
        if step >= done:
            out.append((_Event(_DISTRACTOR, step), (1.0 - p) * share))
    else:
        share = 0.0
    for index in range(done, count):
        out.append(
            (_Event(_ERROR, index), (1.0 - p) * (1.0 - share) * _step_mass(count, profile.error_step_bias, index))
        )
    return out


def _pick(events: Sequence[tuple[_Event, float]], u: float) -> _Event:
    total = sum(mass for _, mass in events)
    target = u * total
    for event, mass in events:
        target -= mass
        if target < 0:
            return event
    return events[-1][0]


def _draw_event(
    profile: PopulationProfile, question: _Question, p: float, done: int, dice: _Dice, *, wrong_only: bool = False
) -> _Event:
    """An outcome given ``done`` steps on the true path. The first draw is that of a full solution, so a
    continuation keeps the full solution's outcome whenever it is consistent with the prefix; otherwise
    a second draw comes from the conditional distribution (together: exactly the conditional)."""
    name = profile.name
    full = _events(profile, question, p, 0)
    if wrong_only:
        full = full[1:]
    event = _pick(full, dice.uniform(name, "event", wrong_only))
    if event.kind == _RIGHT or event.step >= done:
        return event
    rest = _events(profile, question, p, done)
    if wrong_only:
        rest = rest[1:]
    return _pick(rest, dice.uniform(name, "event-given-prefix", done, wrong_only)) if rest else _Event(_RIGHT)


@dataclass(frozen=True, slots=True)
class _Perturbed:
    """Step ``step`` computed as ``left op right`` instead of the true step."""

    step: int
    op: str
    left: Fraction
    right: Fraction


def _forward(question: _Question, start: int, value: Fraction) -> Fraction | None:
    """The final value when step ``start`` results in ``value`` and the rest is computed correctly."""
    values = [*question.values[:start], value]
    for step in question.steps[start + 1 :]:
        result = _apply(step.op, _resolve(step.left, values), _resolve(step.right, values))
        if result is None:
            return None
        values.append(result)
    return values[-1]


def _literal_variants(value: Fraction) -> list[Fraction]:
    out = [value + 1, value - 1, value + 10, value - 10]
    digits = str(value.numerator) if value.denominator == 1 and value >= 10 else ""
    if len(digits) >= 2 and digits[::-1] != digits and not digits.endswith("0"):
        out.append(Fraction(int(digits[::-1])))
    return [v for v in out if v >= 0]


def _perturbation(profile: PopulationProfile, question: _Question, step: int, variant: int) -> _Perturbed | None:
    """A conceptual perturbation of ``step`` (variant -1: the distractor) that changes both the step's
    value and the final answer, or None when the step admits none."""
    return _cached_perturbation(profile.name, question.text, step, variant)


@functools.lru_cache(maxsize=65536)
def _cached_perturbation(name: str, text: str, step: int, variant: int) -> _Perturbed | None:
    question = _question(text)
    true_step: _Step = question.steps[step]
    a, b = _resolve(true_step.left, question.values), _resolve(true_step.right, question.values)
    options: list[_Perturbed] = [_Perturbed(step, op, a, b) for op in "+-*" if op != true_step.op]
    if isinstance(true_step.left, Fraction):
        options += [_Perturbed(step, true_step.op, v, b) for v in _literal_variants(a)]
    if isinstance(true_step.right, Fraction):
        options += [_Perturbed(step, true_step.op, a, v) for v in _literal_variants(b)]
    random.Random(_stable_hash("pop-perturb", name, text, step, variant)).shuffle(options)
    for option in options:
        value = _apply(option.op, option.left, option.right)
        if value is None or value == question.values[step]:
            continue
        final = _forward(question, step, value)
        if final is not None and final != question.answer:
            return option
    return None


def _lead_and_tail(profile: PopulationProfile, index: int, dice: _Dice) -> tuple[str, str]:
    """How step ``index`` is phrased: one of ``phrasings`` lead-in and end variants (the claim is unchanged)."""
    if profile.phrasings <= 1:
        return "", ""
    variant = int(dice.uniform(profile.name, "phrase", index) * profile.phrasings)
    return _LEADS[variant % len(_LEADS)], "." if variant >= len(_LEADS) else ""


def _write(
    profile: PopulationProfile, question: _Question, prefix: Sequence[Fraction], event: _Event, dice: _Dice
) -> _Draft:
    """The solution after the steps whose results are ``prefix``: for ``event`` when the prefix is on the
    true path, or (``carry``) carrying the prefix's values forward with correct arithmetic."""
    assert question.answer is not None
    name = profile.name
    perturbed: _Perturbed | None = None
    slip = False
    if event.kind == _DISTRACTOR:
        perturbed = _perturbation(profile, question, event.step, -1)
    elif event.kind == _ERROR:
        if dice.uniform(name, "kind", event.step) < profile.conceptual:
            variant = int(dice.uniform(name, "variant", event.step) * profile.conceptual_variants)
            perturbed = _perturbation(profile, question, event.step, variant)
        slip = perturbed is None
    truth = _true_claims(question.text)
    values = list(prefix)
    lines: list[str] = []
    spans: list[tuple[int, int]] = []
    offset = 0
    for index in range(len(values), len(question.steps)):
        lead, tail = _lead_and_tail(profile, index, dice)
        if event.kind == _RIGHT:  # the common case, cached
            lines.append(lead + truth[index] + tail)
            offset += len(lines[-1]) + 1
            values.append(question.values[index])
            continue
        step = question.steps[index]
        op, a, b = step.op, _resolve(step.left, values), _resolve(step.right, values)
        if perturbed is not None and index == perturbed.step:
            op, a, b = perturbed.op, perturbed.left, perturbed.right
        result = _apply(op, a, b)
        shaky = result is None or (slip and index == event.step)
        if shaky:
            result = _slip(question, index, step, a, b, dice)
        assert result is not None
        claim = f"{lead}{_fmt_operand(a)} {op} {_fmt_operand(b)} = "
        line = claim + _fmt(result)
        if shaky:
            spans.append((offset + len(claim), offset + len(line)))
        lines.append(line + tail)
        offset += len(lines[-1]) + 1
        values.append(result)
    lines.append(_answer_line(_fmt(values[-1])))
    return _Draft("\n".join(lines), tuple(spans))


@functools.lru_cache(maxsize=8192)
def _true_claims(text: str) -> tuple[str, ...]:
    """The true solution's step claims (``a op b = c``), one per binary operation."""
    question = _question(text)
    return tuple(
        f"{_fmt_operand(_resolve(step.left, question.values))} {step.op} "
        f"{_fmt_operand(_resolve(step.right, question.values))} = {_fmt(value)}"
        for step, value in zip(question.steps, question.values, strict=True)
    )


def _slip(question: _Question, index: int, step: _Step, a: Fraction, b: Fraction, dice: _Dice) -> Fraction:
    """A wrong result for step ``index`` whose final answer is wrong too (when one of a few tries gives one)."""
    wrong = _wrong_result(question, index, step, a, b, dice)
    right = _apply(step.op, a, b)
    for bump in (0, 1, 2, 3):
        candidate = wrong + bump
        if candidate != right and _forward(question, index, candidate) != question.answer:
            return candidate
    return wrong


# ---------------------------------------------------------------------------------------------------
# Roles
# ---------------------------------------------------------------------------------------------------


def _step_values(lines: Sequence[str]) -> list[Fraction | None]:
    return [_result_value(line) for line in lines if "=" in line]


def _path_state(question: _Question, lines: Sequence[str]) -> tuple[int, tuple[int, Fraction | None] | None]:
    """(steps written, the first deviation (index, value) or None while on the true path)."""
    values = _step_values(lines)
    for index, value in enumerate(values):
        if index >= len(question.values) or value != question.values[index]:
            return len(values), (index, value)
    return len(values), None


def _generate(profile: PopulationProfile, question: _Question, p: float, dice: _Dice) -> _Draft:
    return _write(profile, question, (), _draw_event(profile, question, p, 0, dice), dice)


def _continue(profile: PopulationProfile, question: _Question, p: float, steps: Sequence[str], dice: _Dice) -> _Draft:
    for line in steps:
        if (boxed := _last_boxed(line)) is not None:
            return _Draft(_answer_line(boxed))
    done, deviation = _path_state(question, steps)
    if done >= len(question.steps):
        values = _step_values(steps)
        last = values[-1] if values else None
        return _Draft(_answer_line(_fmt(last if last is not None else question.values[-1])))
    if deviation is not None:  # off the true path: carry the written values forward, correctly
        prefix = [
            value if value is not None else question.values[index] for index, value in enumerate(_step_values(steps))
        ]
        return _write(profile, question, prefix, _Event(_CARRY), dice)
    event = _draw_event(profile, question, p, done, dice)
    return _write(profile, question, question.values[:done], event, dice)


def _last_attempt(lines: Sequence[str]) -> list[str]:
    starts = [i for i, line in enumerate(lines) if _ATTEMPT_HEADER_RE.match(line)]
    return list(lines[starts[-1] + 1 :] if starts else lines)


def _revise(profile: PopulationProfile, question: _Question, p: float, attempts: Sequence[str], dice: _Dice) -> _Draft:
    name = profile.name
    last = _last_attempt(attempts)
    was_right = _answer_value(_last_boxed("\n".join(last))) == question.answer
    if was_right:
        flip = _sigmoid(_logit(profile.flip) - profile.flip_slope * _logit(p))
        right = dice.uniform(name, "flip") >= flip
    else:
        fix = _sigmoid(_logit(profile.fix) + profile.fix_slope * _logit(p))
        right = dice.uniform(name, "fix") < fix
    if right:
        return _write(profile, question, (), _Event(_RIGHT), dice)
    if (
        not was_right
        and last
        and _last_boxed("\n".join(last)) is not None
        and dice.uniform(name, "stick") < profile.stick
    ):
        return _Draft("\n".join(line.strip() for line in last))
    return _write(profile, question, (), _draw_event(profile, question, p, 0, dice, wrong_only=True), dice)


def _verdict(p_yes: float, dice: _Dice, name: str) -> _Draft:
    p_yes = min(max(p_yes, 0.001), 0.999)
    rating = min(max(round(10 * p_yes + dice.gauss(0.0, 1.0, name, "rating")), 0), 10)
    return _Draft(f"{'Yes' if p_yes >= 0.5 else 'No'}\nRating: {rating}", first_token_p_yes=p_yes)


def _judged_text(lines: Sequence[str]) -> str:
    return "\n".join(line.strip() for line in lines)


def _final_score(profile: PopulationProfile, question: _Question, lines: Sequence[str]) -> float:
    """P(Yes) on a finished solution: a function of (setting, question, solution text) only, so that an
    LLM-judge PRM's last-step score and an ORM's score of the same solution agree."""
    answer = _answer_value(_last_boxed("\n".join(lines)))
    name = profile.name
    d, _ = _separations(profile)
    sd = profile.judge_sd
    share_q, share_a = profile.judge_shares
    right = answer is not None and answer == question.answer
    mean = _JUDGE_CENTRE + (d if right else -d) * sd / 2
    latent = _latent_p(profile, question.text) if question.answer is not None else 0.0
    if (
        not right
        and answer is not None
        and _unit(name, "attract", question.text, answer) < _attract_rate(profile, latent)
    ):
        mean = _JUDGE_CENTRE + d * sd / 2 + profile.attract_boost * sd
    z = (
        math.sqrt(share_q) * _hash_normal(name, "judge-question", question.text)
        + math.sqrt(share_a) * _hash_normal(name, "judge-answer", question.text, answer)
        + math.sqrt(max(1.0 - share_q - share_a, 0.0))
        * _hash_normal(name, "judge-text", question.text, _judged_text(lines))
    )
    return _sigmoid(mean + sd * z)


def _step_score(profile: PopulationProfile, question: _Question, steps: Sequence[str]) -> float:
    name = profile.name
    _, d_s = _separations(profile)
    sd = profile.judge_sd
    share_q = profile.judge_shares[0]
    _, deviation = _path_state(question, steps)
    if deviation is None:
        mean = _JUDGE_CENTRE + d_s * sd / 2
    else:
        latent = _latent_p(profile, question.text) if question.answer is not None else 0.0
        attractive = _unit(name, "attract-step", question.text, *deviation) < _attract_rate(profile, latent)
        mean = _JUDGE_CENTRE + (d_s / 2 + profile.attract_boost if attractive else -d_s / 2) * sd
    z = math.sqrt(share_q) * _hash_normal(name, "judge-question", question.text) + math.sqrt(
        1.0 - share_q
    ) * _hash_normal(name, "judge-step", question.text, _judged_text(steps))
    return _sigmoid(mean + sd * z)


def population_draft(prompt: _Prompt, profile_name: str, temperature: float, dice: _Dice) -> _Draft:
    """The completion of one sample of profile ``pop-<setting>`` (called by the scripted provider)."""
    profile = population_profile(profile_name)
    question = prompt.question
    role = prompt.role
    if role is _Role.JUDGE_ANSWER:
        return _verdict(_final_score(profile, question, prompt.context), dice, profile.name)
    if role is _Role.JUDGE_STEP:
        steps = prompt.context
        if not steps or _last_boxed(steps[-1]) is not None:
            return _verdict(_final_score(profile, question, steps), dice, profile.name)
        return _verdict(_step_score(profile, question, steps), dice, profile.name)
    if question.answer is None:
        return _Draft(_answer_line("0"))
    p = _p_at(profile, _latent_p(profile, question.text), temperature)
    if role is _Role.STEP_GENERATE:
        return _continue(profile, question, p, prompt.context, dice)
    if role is _Role.REVISE:
        return _revise(profile, question, p, prompt.context, dice)
    return _generate(profile, question, p, dice)
