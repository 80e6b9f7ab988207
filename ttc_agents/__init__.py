"""ttc-agents: compute-optimal test-time scaling (Snell et al. 2024) as LangGraph graphs on LiteLLM.

Public API; everything else lives in private modules re-exported here.
"""

from __future__ import annotations

# isort: off
import ttc_agents._litellm  # noqa: F401  (LiteLLM's offline switches, before anything imports it)

# isort: on
from ttc_agents._answers import answers_equivalent, extract_answer, split_steps
from ttc_agents._budget import Budget, BudgetLimit, Ledger, LedgerEntry, LedgerSnapshot, Usage
from ttc_agents._candidates import Candidate, Selection, aggregate_scores, select_answer, select_hierarchical
from ttc_agents._checkpoint import CHECKPOINT_TYPES, checkpoint_serializer
from ttc_agents._gateway import Gateway, RetryPolicy, Sample, SampleBatch, sample
from ttc_agents._models import ModelSpec
from ttc_agents._specs import (
    BeamSearchSpec,
    BestOfNSpec,
    DVTSSpec,
    HybridSpec,
    RevisionSpec,
    StrategySpec,
    parse_strategy,
)
from ttc_agents.graphs import build_strategy_graph
from ttc_agents.verifiers import (
    ArithmeticStepVerifier,
    CallableVerifier,
    LLMJudgeORM,
    LLMJudgePRM,
    RewardModelVerifier,
    Verifier,
    as_verifier,
    make_verifier,
)

__version__ = "0.1.0"

__all__ = [
    "CHECKPOINT_TYPES",
    "ArithmeticStepVerifier",
    "BeamSearchSpec",
    "BestOfNSpec",
    "Budget",
    "BudgetLimit",
    "CallableVerifier",
    "Candidate",
    "DVTSSpec",
    "Gateway",
    "HybridSpec",
    "LLMJudgeORM",
    "LLMJudgePRM",
    "Ledger",
    "LedgerEntry",
    "LedgerSnapshot",
    "ModelSpec",
    "RetryPolicy",
    "RevisionSpec",
    "RewardModelVerifier",
    "Sample",
    "SampleBatch",
    "Selection",
    "StrategySpec",
    "Usage",
    "Verifier",
    "__version__",
    "aggregate_scores",
    "answers_equivalent",
    "as_verifier",
    "build_strategy_graph",
    "checkpoint_serializer",
    "extract_answer",
    "make_verifier",
    "parse_strategy",
    "sample",
    "select_answer",
    "select_hierarchical",
    "split_steps",
]
