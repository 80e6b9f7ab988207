"""Verifiers: score the steps of many candidates in one call (see :class:`Verifier`)."""

from ttc_agents.verifiers._arithmetic import ArithmeticStepVerifier, Claim, find_claims
from ttc_agents.verifiers._base import CallableVerifier, Verifier, as_verifier

__all__ = ["ArithmeticStepVerifier", "CallableVerifier", "Claim", "Verifier", "as_verifier", "find_claims"]
