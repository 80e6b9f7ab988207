"""ttc-agents: compute-optimal test-time scaling (Snell et al. 2024) as LangGraph graphs on LiteLLM.

This module is the public API: every name in ``__all__`` below, importable as ``from ttc_agents import X``.
Modules whose name starts with ``_`` are private (their contents may move); a few public namespaces hold
what not every user needs: :mod:`ttc_agents.graphs` (one builder per strategy), :mod:`ttc_agents.verifiers`,
:mod:`ttc_agents.integrations` (LangChain, LangGraph, LiteLLM, batches), :mod:`ttc_agents.prompts`,
:mod:`ttc_agents.testing` (test doubles), :mod:`ttc_agents.bench` and :mod:`ttc_agents.cli`.

Strategies
    :class:`BestOfNSpec`, :class:`BeamSearchSpec`, :class:`DVTSSpec`, :class:`RevisionSpec`,
    :class:`HybridSpec` (the paper's hyperparameters, validated), :class:`AdaptiveSpec` (early-stopping
    sampling in waves, Adaptive-Consistency's rule), :class:`ParticleFilterSpec` (particle filtering
    against a PRM), :data:`StrategySpec` (their union) and
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
    :class:`SampleBatch` of :class:`Sample`; :class:`ResponseStore` (record and replay responses);
    :class:`ModelConfigError` (a model that cannot work as configured: no key, unknown provider or model,
    no server at ``api_base``; raised at once, never retried).

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
from ttc_agents._llm import offline as _offline  # noqa: F401  (LiteLLM's offline switches, before anything imports it)

# isort: on
import importlib as _importlib
import typing as _typing

from ttc_agents._core import module_aliases as _module_aliases

if _typing.TYPE_CHECKING:
    from ttc_agents._apps.calibrate import CalibrationError, CalibrationResult, calibrate
    from ttc_agents._apps.datasets import DatasetError, Problem, load_problems
    from ttc_agents._apps.workflow import Workflow, WorkflowConfigError, load_workflow, load_workflows
    from ttc_agents._core.answers import answers_equivalent, extract_answer, split_steps
    from ttc_agents._core.budget import Budget, BudgetLimit, Ledger, LedgerEntry, LedgerSnapshot, Usage
    from ttc_agents._core.candidates import Candidate, Selection, aggregate_scores, select_answer, select_hierarchical
    from ttc_agents._core.checkpoint import CHECKPOINT_TYPES, checkpoint_serializer
    from ttc_agents._core.specs import (
        AdaptiveSpec,
        BeamSearchSpec,
        BestOfNSpec,
        DVTSSpec,
        HybridSpec,
        ParticleFilterSpec,
        RevisionSpec,
        StrategySpec,
        parse_strategy,
    )
    from ttc_agents._llm.errors import ModelConfigError
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

__version__ = "0.1.0"

__all__ = [
    "CHECKPOINT_TYPES",
    "AdaptiveSpec",
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
    "ModelConfigError",
    "ModelSpec",
    "OracleEstimator",
    "ParticleFilterSpec",
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

# The public names load on first use (PEP 562), so that ``import ttc_agents`` and the ``ttc`` parser stay
# fast: LiteLLM, LangGraph and the rest are imported by the first name that needs them.
_EXPORTS: dict[str, str] = {
    "CalibrationError": "ttc_agents._apps.calibrate",
    "CalibrationResult": "ttc_agents._apps.calibrate",
    "calibrate": "ttc_agents._apps.calibrate",
    "DatasetError": "ttc_agents._apps.datasets",
    "Problem": "ttc_agents._apps.datasets",
    "load_problems": "ttc_agents._apps.datasets",
    "Workflow": "ttc_agents._apps.workflow",
    "WorkflowConfigError": "ttc_agents._apps.workflow",
    "load_workflow": "ttc_agents._apps.workflow",
    "load_workflows": "ttc_agents._apps.workflow",
    "answers_equivalent": "ttc_agents._core.answers",
    "extract_answer": "ttc_agents._core.answers",
    "split_steps": "ttc_agents._core.answers",
    "Budget": "ttc_agents._core.budget",
    "BudgetLimit": "ttc_agents._core.budget",
    "Ledger": "ttc_agents._core.budget",
    "LedgerEntry": "ttc_agents._core.budget",
    "LedgerSnapshot": "ttc_agents._core.budget",
    "Usage": "ttc_agents._core.budget",
    "Candidate": "ttc_agents._core.candidates",
    "Selection": "ttc_agents._core.candidates",
    "aggregate_scores": "ttc_agents._core.candidates",
    "select_answer": "ttc_agents._core.candidates",
    "select_hierarchical": "ttc_agents._core.candidates",
    "CHECKPOINT_TYPES": "ttc_agents._core.checkpoint",
    "checkpoint_serializer": "ttc_agents._core.checkpoint",
    "AdaptiveSpec": "ttc_agents._core.specs",
    "BeamSearchSpec": "ttc_agents._core.specs",
    "BestOfNSpec": "ttc_agents._core.specs",
    "DVTSSpec": "ttc_agents._core.specs",
    "HybridSpec": "ttc_agents._core.specs",
    "ParticleFilterSpec": "ttc_agents._core.specs",
    "RevisionSpec": "ttc_agents._core.specs",
    "StrategySpec": "ttc_agents._core.specs",
    "parse_strategy": "ttc_agents._core.specs",
    "Gateway": "ttc_agents._llm.gateway",
    "RetryPolicy": "ttc_agents._llm.gateway",
    "Sample": "ttc_agents._llm.gateway",
    "SampleBatch": "ttc_agents._llm.gateway",
    "get_default_gateway": "ttc_agents._llm.gateway",
    "sample": "ttc_agents._llm.gateway",
    "set_default_gateway": "ttc_agents._llm.gateway",
    "ModelConfigError": "ttc_agents._llm.errors",
    "ModelSpec": "ttc_agents._llm.models",
    "ResponseStore": "ttc_agents._llm.store",
    "DifficultyEstimate": "ttc_agents._routing.difficulty",
    "DifficultyEstimator": "ttc_agents._routing.difficulty",
    "OracleEstimator": "ttc_agents._routing.difficulty",
    "ProbeEstimator": "ttc_agents._routing.difficulty",
    "QuestionOnlyEstimator": "ttc_agents._routing.difficulty",
    "Cost": "ttc_agents._routing.policy",
    "Policy": "ttc_agents._routing.policy",
    "PolicyAction": "ttc_agents._routing.policy",
    "PolicyEntry": "ttc_agents._routing.policy",
    "PolicyMismatchError": "ttc_agents._routing.policy",
    "build_strategy_graph": "ttc_agents.graphs",
    "Router": "ttc_agents.graphs.router",
    "build_router_graph": "ttc_agents.graphs.router",
    "ArithmeticStepVerifier": "ttc_agents.verifiers",
    "CallableVerifier": "ttc_agents.verifiers",
    "LLMJudgeORM": "ttc_agents.verifiers",
    "LLMJudgePRM": "ttc_agents.verifiers",
    "RewardModelVerifier": "ttc_agents.verifiers",
    "Verifier": "ttc_agents.verifiers",
    "as_verifier": "ttc_agents.verifiers",
    "make_verifier": "ttc_agents.verifiers",
}
"""Public name -> the module that defines it."""


if not _typing.TYPE_CHECKING:  # type checkers see the imports above, and an unknown name stays an error for them

    def __getattr__(name: str) -> object:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# Checkpoints written before the layer packages name the old module paths: import them as aliases.
_module_aliases.install()
