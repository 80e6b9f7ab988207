"""Strategy specs: one pydantic model per strategy whose fields are the paper's hyperparameters.

``StrategySpec`` is a discriminated union on the ``strategy`` field, so a spec can come from JSON,
YAML or the CLI and is validated with errors that name the field.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, TypeAdapter, model_validator

from ttc_agents._core.candidates import Aggregation, SelectionMethod
from ttc_agents._core.thinking import Thinking

__all__ = [
    "AdaptiveSpec",
    "BeamSearchSpec",
    "BestOfNSpec",
    "DVTSSpec",
    "HybridSpec",
    "ParticleFilterSpec",
    "RevisionSpec",
    "StrategySpec",
    "TreeSearchSpec",
    "parse_strategy",
]


class _SpecBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    max_tokens: PositiveInt | None = Field(default=None, description="completion cap per sample")
    aggregation: Aggregation = "last"
    seed: int | None = None
    thinking: Thinking | None = Field(
        default=None,
        description="the model's own reasoning for every sample of the strategy: an effort level "
        "(none, minimal, low, medium, high) or a thinking-token budget; None keeps the model's setting",
    )


class BestOfNSpec(_SpecBase):
    """N full solutions in one request; the answer by naive, weighted (default) or majority selection."""

    strategy: Literal["best_of_n"] = "best_of_n"
    n: PositiveInt = 16
    selection: SelectionMethod = "weighted"


class AdaptiveSpec(_SpecBase):
    """Adaptive-Consistency (Aggarwal et al. 2023): samples in waves of ``wave`` (one request each) until
    the leading answer's posterior probability of leading the vote passes ``threshold``, or ``max_n``.

    The stopping rule is the Beta rule of :func:`~ttc_agents._core.stopping.lead_probability`: over the two
    largest vote totals v1 >= v2, P(p1 > p2) under Beta(v1 + 1, v2 + 1). ``selection="weighted"`` counts
    each sample by its verifier score (the weighted vote's totals), ``majority`` counts each as 1."""

    strategy: Literal["adaptive"] = "adaptive"
    max_n: PositiveInt = 16
    wave: PositiveInt = 4
    threshold: float = Field(default=0.95, gt=0.5, lt=1.0)
    selection: Literal["majority", "weighted"] = "majority"
    rule: Literal["beta", "predictive"] = "beta"
    """``beta``: the paper's rule, P(p1 > p2) (the leader leads at infinitely many samples); ``predictive``:
    P(the leader still leads after the samples left up to ``max_n``), the question majority@max_n asks
    (:func:`~ttc_agents._core.stopping.keep_probability`)."""

    @model_validator(mode="after")
    def _wave_fits(self) -> AdaptiveSpec:
        if self.wave > self.max_n:
            raise ValueError(f"wave ({self.wave}) must not exceed max_n ({self.max_n})")
        return self


class TreeSearchSpec(_SpecBase):
    """What beam search and DVTS share: N beams of width M, rounds, how a step ends."""

    n: PositiveInt = 16
    width: PositiveInt = 4
    max_rounds: PositiveInt = 40
    step_delimiter: str = "\n"
    step_max_tokens: PositiveInt = 256

    @model_validator(mode="after")
    def _width_divides_n(self) -> TreeSearchSpec:
        if self.n % self.width != 0:
            raise ValueError(f"n ({self.n}) must be divisible by width ({self.width})")
        return self


class BeamSearchSpec(TreeSearchSpec):
    """Beam search against a PRM: keep the top n/width, expand each by width; ``lookahead`` steps at T=0."""

    strategy: Literal["beam_search"] = "beam_search"
    lookahead: int = Field(default=0, ge=0, le=8)


class DVTSSpec(TreeSearchSpec):
    """Diverse verifier tree search: n/width independent subtrees, each greedy on the verifier."""

    strategy: Literal["dvts"] = "dvts"


class ParticleFilterSpec(TreeSearchSpec):
    """Particle filtering against a PRM (Puri et al. 2025): ``n`` particles, each unfinished one extended
    by one step per round, weighted by softmax(logit(step score) / ``weight_temperature``) and resampled
    (multinomially, seeded) to ``n`` every round; the answer by weighted vote over the final particles."""

    strategy: Literal["particle_filter"] = "particle_filter"
    width: Literal[1] = 1
    weight_temperature: float = Field(default=1.0, gt=0.0, le=100.0)


class RevisionSpec(_SpecBase):
    """Sequential revisions: ``chains`` chains of up to ``attempts`` attempts, each seeing ``context`` before it."""

    strategy: Literal["revision"] = "revision"
    attempts: PositiveInt = 4
    chains: PositiveInt = 1
    context: PositiveInt = 4
    selection: Literal["hierarchical", "majority"] = "hierarchical"


class HybridSpec(_SpecBase):
    """Parallel x sequential: ``n`` attempts split into P chains of S revisions, P x S = ``n`` exactly and
    S/P as close to ``sequential_ratio`` as a divisor pair of ``n`` allows (see :attr:`shape`)."""

    strategy: Literal["hybrid"] = "hybrid"
    n: PositiveInt = 16
    sequential_ratio: float = Field(default=1.0, gt=0)
    context: PositiveInt = 4
    selection: Literal["hierarchical", "majority"] = "hierarchical"

    @property
    def shape(self) -> tuple[int, int]:
        """(parallel chains P, sequential attempts S): P x S = n, so ``n`` is the generation budget spent,
        and log(S/P) is nearest log(``sequential_ratio``) among the divisor pairs of n; a tie goes to the
        more parallel shape (fewer rounds). ``n=8``: ratio 1 -> (4, 2), ratio 2 -> (2, 4); a prime n has
        only (n, 1) and (1, n). (Rounding sqrt(n x ratio) instead would leave samples unspent: 2 x 3 for 8.)"""
        target = math.log(self.sequential_ratio)
        pairs = [(self.n // sequential, sequential) for sequential in range(1, self.n + 1) if self.n % sequential == 0]
        # Rounded so that mirror pairs (3 x 2, 2 x 3 at ratio 1) tie exactly.
        return min(pairs, key=lambda pair: (round(abs(math.log(pair[1] / pair[0]) - target), 9), pair[1]))

    def as_revision(self) -> RevisionSpec:
        parallel, sequential = self.shape
        return RevisionSpec(
            attempts=sequential,
            chains=parallel,
            context=self.context,
            selection=self.selection,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            aggregation=self.aggregation,
            seed=self.seed,
            thinking=self.thinking,
        )


StrategySpec = Annotated[
    BestOfNSpec | BeamSearchSpec | DVTSSpec | RevisionSpec | HybridSpec | AdaptiveSpec | ParticleFilterSpec,
    Field(discriminator="strategy"),
]

_ADAPTER: TypeAdapter[StrategySpec] = TypeAdapter(StrategySpec)


def parse_strategy(data: object) -> StrategySpec:
    """Validate a dict (or JSON-like object) into the matching strategy spec."""
    return _ADAPTER.validate_python(data)
