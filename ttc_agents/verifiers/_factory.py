"""Build a verifier from a command-line string."""

from __future__ import annotations

from ttc_agents._llm.gateway import Gateway
from ttc_agents.verifiers._base import Verifier

__all__ = ["VERIFIER_SPECS", "make_verifier"]

VERIFIER_SPECS = ("none", "arithmetic", "confidence", "prm:MODEL", "orm:MODEL", "reward:URL#MODEL")
"""The accepted forms of a verifier spec."""


def make_verifier(spec: str | None, *, gateway: Gateway | None = None) -> Verifier | None:
    """The verifier that ``spec`` names, or None for ``none`` (or no spec).

    - ``none``: no verifier
    - ``arithmetic``: :class:`ArithmeticStepVerifier`, checks every arithmetic claim of a step
    - ``confidence``: :class:`TokenConfidenceVerifier`, the model's own token confidence (DeepConf's
      lowest group confidence), no model call
    - ``prm:MODEL``: :class:`LLMJudgePRM` on the LiteLLM model ``MODEL`` (through ``gateway``)
    - ``orm:MODEL``: :class:`LLMJudgeORM` on ``MODEL``
    - ``reward:URL#MODEL``: :class:`RewardModelVerifier` for the vLLM pooling endpoint ``URL``
      serving ``MODEL``

    Raises ValueError for anything else, naming the accepted forms.
    """
    if spec is None:
        return None
    text = spec.strip()
    kind, colon, rest = text.partition(":")
    kind = kind.lower()
    if not colon:
        if kind == "none":
            return None
        if kind == "arithmetic":
            from ttc_agents.verifiers._arithmetic import ArithmeticStepVerifier

            verifier: Verifier = ArithmeticStepVerifier()
            return verifier
        if kind == "confidence":
            from ttc_agents.verifiers._confidence import TokenConfidenceVerifier

            return TokenConfidenceVerifier()
    elif kind in ("prm", "orm") and rest.strip():
        from ttc_agents.verifiers._llm_judge import LLMJudgeORM, LLMJudgePRM

        judge = LLMJudgePRM if kind == "prm" else LLMJudgeORM
        return judge(rest.strip(), gateway=gateway)
    elif kind == "reward":
        url, hash_, model = rest.rpartition("#")
        if hash_ and url.strip() and model.strip():
            from ttc_agents.verifiers._reward_model import RewardModelVerifier

            return RewardModelVerifier(url.strip(), model=model.strip())
    raise ValueError(f"unknown verifier spec {spec!r}; accepted forms: {', '.join(VERIFIER_SPECS)}")
