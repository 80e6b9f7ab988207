"""When to stop sampling: the posterior probability that the leading answer leads the vote.

Adaptive-Consistency (Aggarwal et al. 2023, "Let's Sample Step by Step") stops drawing samples once the
answers so far make it unlikely that more samples would change the majority. Its Beta rule looks at the
two largest vote totals ``v1 >= v2``: with a uniform prior over the share ``x = p1 / (p1 + p2)`` of the
leading answer among the two, the posterior is ``Beta(v1 + 1, v2 + 1)``, and the rule stops when

    P(x > 1/2 | votes) = P(p1 > p2 | votes) >= threshold

(0.95 in the paper). For integer votes this is exactly a binomial tail,
``P(Binomial(v1 + v2 + 1, 1/2) <= v1)``: four unanimous votes give 1 - 1/32 = 0.969, so the rule
stops after 4 agreeing samples at 0.95, and 3 against 1 (0.8125) keeps sampling. With a verifier the
totals are sums of scores (the weighted vote's totals, :func:`~ttc_agents._core.candidates.select_answer`),
used as pseudo-counts of the same Beta: real-valued, so the regularized incomplete beta function is
computed by its continued fraction. Both are deterministic: no Monte Carlo, no seed.

The Beta rule asks whether the leader leads the vote of infinitely many samples. Against majority at
a fixed maximum ``max_n`` the question is narrower: will the leader still lead after the ``r`` samples
that are left? :func:`keep_probability` answers it under the same posterior: of the ``r`` samples,
``L`` go to the leader, ``L ~ BetaBinomial(r, v1 + 1, v2 + 1)`` (every remaining sample counted as a
vote for one of the two, the worst case for the leader), and the leader keeps a strict lead when
``v1 + L > v2 + r - L``. As ``r`` grows it tends to the Beta rule; near ``max_n`` it stops sooner,
because few samples cannot overturn a lead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["beta_sf_half", "keep_probability", "lead_probability", "top_two"]

_EPS = 1e-15
_MAX_TERMS = 300


def top_two(votes: Mapping[str, float]) -> tuple[float, float]:
    """The largest and second-largest vote totals (0.0 where there are fewer answers)."""
    ordered = sorted((float(v) for v in votes.values()), reverse=True)
    ordered += [0.0, 0.0]
    return ordered[0], ordered[1]


def lead_probability(votes: Mapping[str, float]) -> float:
    """P(the leading answer's share exceeds the runner-up's) under Beta(v1 + 1, v2 + 1), in [0, 1].

    ``votes`` maps each distinct answer to its vote total (a count, or a sum of verifier scores); the
    other answers do not enter (the paper's Beta rule). No votes give 0.5: nothing is known yet."""
    if any(v < 0 or not math.isfinite(v) for v in votes.values()):
        raise ValueError(f"vote totals must be finite and non-negative, got {dict(votes)}")
    first, second = top_two(votes)
    return beta_sf_half(first + 1.0, second + 1.0)


def keep_probability(votes: Mapping[str, float], remaining: int) -> float:
    """P(the leader still strictly leads the runner-up after ``remaining`` more votes), the remaining
    votes Beta-binomial between the two under Beta(v1 + 1, v2 + 1) (see the module doc). ``remaining``
    0 is 1.0 with a strict lead, else 0.0."""
    if remaining < 0:
        raise ValueError(f"remaining must be non-negative, got {remaining}")
    if any(v < 0 or not math.isfinite(v) for v in votes.values()):
        raise ValueError(f"vote totals must be finite and non-negative, got {dict(votes)}")
    first, second = top_two(votes)
    a, b = first + 1.0, second + 1.0
    log_beta_ab = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    total = 0.0
    for lead_gets in range(remaining + 1):
        if first + lead_gets <= second + remaining - lead_gets:
            continue
        log_pmf = (
            math.lgamma(remaining + 1)
            - math.lgamma(lead_gets + 1)
            - math.lgamma(remaining - lead_gets + 1)
            + math.lgamma(lead_gets + a)
            + math.lgamma(remaining - lead_gets + b)
            - math.lgamma(remaining + a + b)
            - log_beta_ab
        )
        total += math.exp(log_pmf)
    return min(1.0, total)


def beta_sf_half(a: float, b: float) -> float:
    """P(X > 1/2) for X ~ Beta(a, b), a, b > 0: ``1 - I_{1/2}(a, b)``.

    Integers use the exact binomial identity ``I_{1/2}(a, b) = P(Binomial(a + b - 1, 1/2) >= a)``; other
    values the continued fraction of the regularized incomplete beta (Numerical Recipes' ``betacf``,
    modified Lentz), evaluated on the side where it converges fast (the symmetry
    ``I_x(a, b) = 1 - I_{1-x}(b, a)`` at x = 1/2)."""
    if a <= 0 or b <= 0:
        raise ValueError(f"Beta parameters must be positive, got a={a}, b={b}")
    if float(a).is_integer() and float(b).is_integer() and a + b < 1000:
        trials = int(a + b - 1)
        at_most = int(a - 1)
        tail = sum(math.comb(trials, k) for k in range(at_most + 1))
        return float(tail / 2**trials)
    # I_x(a, b) with x = 1/2: the continued fraction converges for x < (a + 1) / (a + b + 2).
    if (a + 1.0) / (a + b + 2.0) > 0.5:
        return 1.0 - _regularized_beta_half(a, b)
    return _regularized_beta_half(b, a)


def _regularized_beta_half(a: float, b: float) -> float:
    """I_{1/2}(a, b) by the continued fraction (valid where 1/2 < (a + 1) / (a + b + 2))."""
    x = 0.5
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1.0 - x)
    return min(1.0, max(0.0, math.exp(log_front) * _continued_fraction(a, b, x) / a))


def _continued_fraction(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _EPS else _EPS)
    h = d
    for m in range(1, _MAX_TERMS + 1):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _EPS else _EPS)
            c = 1.0 + numerator / c
            c = c if abs(c) > _EPS else _EPS
            h *= d * c
        if abs(d * c - 1.0) < 1e-13:
            break
    return h
