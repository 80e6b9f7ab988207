"""ttc-agents: compute-optimal test-time scaling (Snell et al. 2024) as LangGraph graphs on LiteLLM.

This module is the public API: every name in ``__all__`` below, importable as ``from ttc_agents import X``.
Modules whose name starts with ``_`` are private (their contents may move); a few public namespaces hold
what not every user needs: :mod:`ttc_agents.graphs` (one builder per strategy), :mod:`ttc_agents.verifiers`,
:mod:`ttc_agents.integrations` (LangChain, LangGraph, LiteLLM, batches), :mod:`ttc_agents.prompts`,
:mod:`ttc_agents.testing` (test doubles), :mod:`ttc_agents.bench` and :mod:`ttc_agents.cli`.

Strategies
    :class:`BestOfNSpec`, :class:`BeamSearchSpec`, :class:`DVTSSpec`, :class:`RevisionSpec`,
    :class:`HybridSpec` (the paper's hyperparameters, validated), :data:`StrategySpec` (their union) and
    :func:`parse_strategy` (a spec from a dict); :func:`build_strategy_graph` compiles any of them.

The compute-optimal router
    :class:`Router` and :func:`build_router_graph` (estimate difficulty, look up the policy, run the
    chosen strategy; :meth:`Router.abatch` shares one total budget); the :class:`Policy` they follow,
    made of :class:`PolicyEntry` rows that each name a :class:`PolicyAction` and its measured
    :class:`Cost`; :class:`PolicyMismatchError` when a policy meets other models or another verifier.

Calibration and data
    :func:`calibrate` measures strategies x budgets on problems and fits a policy
    (:class:`CalibrationResult`; :class:`CalibrationError`); :func:`load_problems` reads the datasets
    the CLI accepts (a JSONL file, ``rg:NAME?...``, ``arith?...``) as :class:`Problem` values
    (:class:`DatasetError`).

Difficulty
    :class:`ProbeEstimator` (a few scored samples, reused as candidates), :class:`QuestionOnlyEstimator`
    (no generation), :class:`OracleEstimator` (pass@1 against the answer, for evaluation), what they
    return (:class:`DifficultyEstimate`) and the protocol of your own (:class:`DifficultyEstimator`).

Workflows
    :class:`Workflow`, :func:`load_workflow`, :func:`load_workflows` (named bundles of models,
    verifier, strategy or policy and budgets from YAML; :class:`WorkflowConfigError`).

Budgets and the ledger
    :class:`Budget` (hard limits), :data:`BudgetLimit` (which one stopped a run), :class:`Ledger`,
    :class:`LedgerEntry`, :class:`LedgerSnapshot`, :class:`Usage`.

Models and the gateway
    :class:`ModelSpec`; :class:`Gateway` (every model call, with :class:`RetryPolicy`), the process-wide
    one (:func:`get_default_gateway`, :func:`set_default_gateway`), :func:`sample` returning a
    :class:`SampleBatch` of :class:`Sample`; :class:`ResponseStore` (record and replay responses).

Candidates, answers and verifiers
    :class:`Candidate`, :class:`Selection`, :func:`select_answer`, :func:`select_hierarchical`,
    :func:`aggregate_scores`; :func:`extract_answer`, :func:`split_steps`, :func:`answers_equivalent`;
    the common verifiers (:class:`Verifier`, :class:`ArithmeticStepVerifier`, :class:`LLMJudgePRM`,
    :class:`LLMJudgeORM`, :class:`RewardModelVerifier`, :class:`CallableVerifier`, :func:`as_verifier`,
    :func:`make_verifier`; more in :mod:`ttc_agents.verifiers`).

Checkpointers
    :func:`checkpoint_serializer` and :data:`CHECKPOINT_TYPES` (the classes it allows).
"""

from __future__ import annotations

# isort: off
from ttc_agents._llm import litellm as _litellm  # noqa: F401  (LiteLLM's offline switches, before anything imports it)

# isort: on
from ttc_agents._apps.calibrate import CalibrationError, CalibrationResult, calibrate
from ttc_agents._apps.datasets import DatasetError, Problem, load_problems
from ttc_agents._apps.workflow import Workflow, WorkflowConfigError, load_workflow, load_workflows
from ttc_agents._core.answers import answers_equivalent, extract_answer, split_steps
from ttc_agents._core.budget import Budget, BudgetLimit, Ledger, LedgerEntry, LedgerSnapshot, Usage
from ttc_agents._core.candidates import Candidate, Selection, aggregate_scores, select_answer, select_hierarchical
from ttc_agents._core.checkpoint import CHECKPOINT_TYPES, checkpoint_serializer
from ttc_agents._core.specs import (
    BeamSearchSpec,
    BestOfNSpec,
    DVTSSpec,
    HybridSpec,
    RevisionSpec,
    StrategySpec,
    parse_strategy,
)
from ttc_agents._llm.gateway import (
    Gateway,
    RetryPolicy,
    Sample,
    SampleBatch,
    get_default_gateway,
    sample,
    set_default_gateway,
)
from ttc_agents._llm.models import ModelSpec
from ttc_agents._llm.store import ResponseStore
from ttc_agents._routing.difficulty import (
    DifficultyEstimate,
    DifficultyEstimator,
    OracleEstimator,
    ProbeEstimator,
    QuestionOnlyEstimator,
)
from ttc_agents._routing.policy import Cost, Policy, PolicyAction, PolicyEntry, PolicyMismatchError
from ttc_agents.graphs import build_strategy_graph
from ttc_agents.graphs.router import Router, build_router_graph
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


def _alias_legacy_checkpoint_modules() -> None:
    """Checkpoints written before the layer packages name the old module paths: alias them."""
    import importlib
    import sys

    from ttc_agents._core.checkpoint import LEGACY_MODULES

    for legacy, current in LEGACY_MODULES.items():
        sys.modules.setdefault(legacy, importlib.import_module(current))


_alias_legacy_checkpoint_modules()

__version__ = "0.1.0"

__all__ = [
    "CHECKPOINT_TYPES",
    "ArithmeticStepVerifier",
    "BeamSearchSpec",
    "BestOfNSpec",
    "Budget",
    "BudgetLimit",
    "CalibrationError",
    "CalibrationResult",
    "CallableVerifier",
    "Candidate",
    "Cost",
    "DVTSSpec",
    "DatasetError",
    "DifficultyEstimate",
    "DifficultyEstimator",
    "Gateway",
    "HybridSpec",
    "LLMJudgeORM",
    "LLMJudgePRM",
    "Ledger",
    "LedgerEntry",
    "LedgerSnapshot",
    "ModelSpec",
    "OracleEstimator",
    "Policy",
    "PolicyAction",
    "PolicyEntry",
    "PolicyMismatchError",
    "ProbeEstimator",
    "Problem",
    "QuestionOnlyEstimator",
    "ResponseStore",
    "RetryPolicy",
    "RevisionSpec",
    "RewardModelVerifier",
    "Router",
    "Sample",
    "SampleBatch",
    "Selection",
    "StrategySpec",
    "Usage",
    "Verifier",
    "Workflow",
    "WorkflowConfigError",
    "__version__",
    "aggregate_scores",
    "answers_equivalent",
    "as_verifier",
    "build_router_graph",
    "build_strategy_graph",
    "calibrate",
    "checkpoint_serializer",
    "extract_answer",
    "get_default_gateway",
    "load_problems",
    "load_workflow",
    "load_workflows",
    "make_verifier",
    "parse_strategy",
    "sample",
    "select_answer",
    "select_hierarchical",
    "set_default_gateway",
    "split_steps",
]
