"""Named workflows from YAML: models, verifier, a fixed strategy or a policy, and budgets.

Each pipeline gets its own bundle and its own budget::

    workflows:
      math-support:
        models:
          small: {name: openai/gpt-4o-mini, usd_per_input_token: 1.5e-7, usd_per_output_token: 6e-7}
        verifier: prm:openai/gpt-4o-mini
        policy: policy.json            # the router; or a fixed `strategy:` instead
        budget: {max_usd: 0.01}        # per question
        batch_budget: {max_usd: 5}     # per batch
      offline-demo:
        models: {main: scripted/arith}
        verifier: arithmetic
        strategy: {strategy: beam_search, n: 8, width: 2}

Errors name the file, the workflow and the field. A key given twice in one mapping is an error
naming the key and both lines (YAML would otherwise keep the last one silently); so is a prompt
override for a prompt that does not exist or with a placeholder its prompt is not filled with.
A model's ``extra_params`` may hold sampling parameters only (:data:`~ttc_agents._llm.models.SAMPLING_PARAMS`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ttc_agents._core.budget import Budget
from ttc_agents._core.specs import StrategySpec
from ttc_agents._llm.gateway import Gateway
from ttc_agents._llm.models import ModelSpec
from ttc_agents._routing.policy import BudgetUnit, Policy

__all__ = ["Workflow", "WorkflowConfigError", "load_workflow", "load_workflows"]


class WorkflowConfigError(ValueError):
    """A workflow file that cannot be read or does not validate; the message names where."""


class Workflow(BaseModel):
    """One named bundle: models, verifier, a strategy or a policy (the router), budgets, prompts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[str, ModelSpec] = Field(min_length=1)
    model: str | None = Field(default=None, description="which of `models` a fixed strategy uses")
    verifier: str = "none"
    strategy: StrategySpec | None = Field(default=None, discriminator="strategy")
    policy: str | None = Field(default=None, description="policy.json path (relative to the YAML file)")
    force_policy: bool = False
    budget: Budget = Field(default_factory=Budget, description="limits per question")
    batch_budget: Budget | None = Field(default=None, description="limits for a whole batch")
    budget_unit: BudgetUnit | None = None
    prompts: dict[str, str] = Field(default_factory=dict)

    @field_validator("models", mode="before")
    @classmethod
    def _names_as_specs(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: {"name": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("prompts")
    @classmethod
    def _known_prompts(cls, value: dict[str, str]) -> dict[str, str]:
        from ttc_agents.prompts import check_prompt_overrides

        checked: dict[str, str] = check_prompt_overrides(value)  # a ValueError naming the prompt or placeholder
        return checked

    @field_validator("verifier")
    @classmethod
    def _known_verifier(cls, value: str) -> str:
        from ttc_agents.verifiers._factory import make_verifier

        make_verifier(value)  # a ValueError naming the accepted forms
        return value

    @model_validator(mode="after")
    def _one_way_to_answer(self) -> Workflow:
        if (self.strategy is None) == (self.policy is None):
            raise ValueError("give exactly one of `strategy` (a fixed strategy) or `policy` (the router)")
        if self.model is not None and self.model not in self.models:
            raise ValueError(f"model {self.model!r} is not one of models {sorted(self.models)}")
        return self

    _source_dir: Path | None = PrivateAttr(default=None)

    @property
    def main_model(self) -> ModelSpec:
        return self.models[self.model] if self.model is not None else next(iter(self.models.values()))

    def build(self, *, gateway: Gateway | None = None, base_dir: str | os.PathLike[str] | None = None) -> Any:
        """The compiled graph this workflow runs: the router with its policy, or the fixed strategy.

        ``base_dir`` is where a relative ``policy`` path starts: by default the directory of the YAML
        file the workflow was loaded from (the current directory for a workflow built in code)."""
        from ttc_agents.graphs import build_strategy_graph
        from ttc_agents.verifiers._factory import make_verifier

        verifier = make_verifier(self.verifier, gateway=gateway)
        if self.strategy is not None:
            return build_strategy_graph(
                self.strategy,
                model=self.main_model,
                verifier=verifier,
                gateway=gateway,
                prompts=self.prompts,
                budget=self.budget,
            )
        return self.router(gateway=gateway, base_dir=base_dir, verifier=verifier).graph

    def router(
        self,
        *,
        gateway: Gateway | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        verifier: Any = None,
        policy: Policy | None = None,
    ) -> Any:
        """The :class:`~ttc_agents.graphs.router.Router` of a policy workflow.

        ``policy`` replaces reading the policy file (a worker on another machine gets it this way).
        """
        from ttc_agents.graphs.router import Router
        from ttc_agents.verifiers._factory import make_verifier

        if self.policy is None:
            raise ValueError("this workflow has a fixed strategy, not a policy")
        if policy is None:
            start = Path(base_dir) if base_dir is not None else self._source_dir or Path(".")
            policy = Policy.load(start / self.policy)
        by_name = {spec.name: spec for spec in self.models.values()}
        return Router(
            policy,
            models=by_name,
            verifier=verifier if verifier is not None else make_verifier(self.verifier, gateway=gateway),
            verifier_name=self.verifier,
            gateway=gateway,
            prompts=self.prompts,
            budget=self.budget,
            unit=self.budget_unit,
            force=self.force_policy,
        )


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"line {line}: duplicate key {key!r} (first given at line {first})")


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (``<<`` merges may be overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, line, seen[key])
                seen[key] = line
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
        return super().construct_mapping(node, deep=deep)


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_StrictLoader)  # a SafeLoader
    except _DuplicateKey as exc:
        raise WorkflowConfigError(f"{path}: {exc}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise WorkflowConfigError(f"{path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise WorkflowConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise WorkflowConfigError(f"{path}: nested too deeply to read") from None
    workflows = data.get("workflows") if isinstance(data, dict) else None
    if not isinstance(workflows, dict) or not workflows or set(data) != {"workflows"}:
        raise WorkflowConfigError(f"{path}: expected a mapping with one key `workflows: {{name: ...}}`")
    return workflows


def _validate(path: str | os.PathLike[str], name: str, raw: Any) -> Workflow:
    try:
        workflow = Workflow.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(part) for part in error['loc']) or '(itself)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise WorkflowConfigError(f"{path}: workflow {name!r}: {problems}") from exc
    workflow._source_dir = Path(path).parent
    return workflow


def load_workflows(path: str | os.PathLike[str]) -> dict[str, Workflow]:
    """Every workflow of a YAML file, validated; errors name the file, workflow and field."""
    return {str(name): _validate(path, str(name), raw) for name, raw in _read(path).items()}


def load_workflow(path: str | os.PathLike[str], name: str) -> Workflow:
    """The workflow called ``name`` in the YAML file at ``path`` (only that one must be valid)."""
    workflows = _read(path)
    if name not in workflows:
        raise WorkflowConfigError(f"{path}: no workflow {name!r}; known: {', '.join(sorted(map(str, workflows)))}")
    return _validate(path, name, workflows[name])
