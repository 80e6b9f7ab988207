"""Verifiers: score the steps of many candidates in one call (see :class:`Verifier`).

- :class:`LLMJudgePRM` / :class:`LLMJudgeORM`: any chat model as a process / outcome reward model
  (P(correct) from Yes/No logprobs, a parsed 0-10 rating as fallback);
- :class:`RewardModelVerifier`: a reward-model endpoint in vLLM's pooling format (Qwen2.5-Math-PRM);
- :class:`ArithmeticStepVerifier`: checks every arithmetic claim with a safe parser, no model;
- any sync or async function, through :func:`as_verifier`.
"""

from ttc_agents.verifiers._arithmetic import ArithmeticStepVerifier, Claim, find_claims
from ttc_agents.verifiers._base import CallableVerifier, ScoreFunction, Verifier, as_verifier
from ttc_agents.verifiers._factory import VERIFIER_SPECS, make_verifier
from ttc_agents.verifiers._llm_judge import LLMJudgeORM, LLMJudgePRM, judge_probability
from ttc_agents.verifiers._reward_model import RewardModelError, RewardModelVerifier

__all__ = [
    "VERIFIER_SPECS",
    "ArithmeticStepVerifier",
    "CallableVerifier",
    "Claim",
    "LLMJudgeORM",
    "LLMJudgePRM",
    "RewardModelError",
    "RewardModelVerifier",
    "ScoreFunction",
    "Verifier",
    "as_verifier",
    "find_claims",
    "judge_probability",
    "make_verifier",
]
