"""Verifiers: score the steps of many candidates in one call (see :class:`Verifier`).

- :class:`LLMJudgePRM` / :class:`LLMJudgeORM`: any chat model as a process / outcome reward model
  (P(correct) from Yes/No logprobs, a parsed 0-10 rating as fallback);
- :class:`RewardModelVerifier`: a reward-model endpoint in vLLM's pooling format (Qwen2.5-Math-PRM);
- :class:`ArithmeticStepVerifier`: checks every arithmetic claim with a safe parser, no model;
- :class:`TokenConfidenceVerifier`: the model's own confidence from its token logprobs (DeepConf), no
  model call; a :class:`CandidateVerifier` (it scores candidates, not only their text);
- any sync or async function, through :func:`as_verifier`.
"""

from ttc_agents.verifiers._arithmetic import ArithmeticStepVerifier, Claim, find_claims
from ttc_agents.verifiers._base import CallableVerifier, CandidateVerifier, ScoreFunction, Verifier, as_verifier
from ttc_agents.verifiers._confidence import MissingLogprobsError, TokenConfidenceVerifier
from ttc_agents.verifiers._factory import VERIFIER_SPECS, make_verifier
from ttc_agents.verifiers._llm_judge import LLMJudgeORM, LLMJudgePRM, judge_probability
from ttc_agents.verifiers._reward_model import RewardModelError, RewardModelVerifier

__all__ = [
    "VERIFIER_SPECS",
    "ArithmeticStepVerifier",
    "CallableVerifier",
    "CandidateVerifier",
    "Claim",
    "LLMJudgeORM",
    "LLMJudgePRM",
    "MissingLogprobsError",
    "RewardModelError",
    "RewardModelVerifier",
    "ScoreFunction",
    "TokenConfidenceVerifier",
    "Verifier",
    "as_verifier",
    "find_claims",
    "judge_probability",
    "make_verifier",
]
