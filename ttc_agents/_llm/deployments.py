"""The configuration of a router group: the deployments of one model and how LiteLLM's Router spreads
requests over them (the ``group:`` of a :class:`~ttc_agents.ModelSpec`).

Values only, no I/O: :mod:`ttc_agents._llm.router_group` describes the YAML and runs the groups (one
``litellm.Router`` per group and event loop, the ledger's names for deployments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    model_validator,
)

__all__ = ["Deployment", "ResolvedDeployment", "RouterGroup", "RoutingStrategy"]

RoutingStrategy = Literal[
    "simple-shuffle",
    "least-busy",
    "usage-based-routing",
    "usage-based-routing-v2",
    "latency-based-routing",
    "cost-based-routing",
]
"""LiteLLM's routing strategies: ``simple-shuffle`` (random, by ``weight``/``rpm``/``tpm``) is the
cheapest in CPU; ``latency-based-routing`` prefers the fastest deployment; ``least-busy`` the one with
the fewest requests in flight; ``usage-based-routing`` the one furthest from its ``tpm``/``rpm``."""

_FALLBACK_SUFFIX = "#fallback-"


class Deployment(BaseModel):
    """One server (or hosted endpoint) of a group; a plain string is a deployment of that model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = Field(
        default=None, min_length=1, description="LiteLLM model string (default: the ModelSpec's name)"
    )
    api_base: str | None = Field(default=None, min_length=1)
    api_key: SecretStr | None = Field(default=None, description="default: the ModelSpec's api_key")
    id: str | None = Field(default=None, min_length=1, description="name in the ledger (default: api_base, else model)")
    weight: PositiveFloat | None = Field(default=None, description="share of requests under simple-shuffle")
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    max_parallel_requests: PositiveInt | None = None
    usd_per_input_token: NonNegativeFloat | None = Field(
        default=None, description="default: the ModelSpec's, for its own model; else LiteLLM's cost map"
    )
    usd_per_output_token: NonNegativeFloat | None = None
    litellm_params: dict[str, Any] = Field(default_factory=dict, description="other LiteLLM call parameters")

    @model_validator(mode="before")
    @classmethod
    def _model_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value


class RouterGroup(BaseModel):
    """The deployments of one model and how LiteLLM's Router spreads requests over them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployments: tuple[Deployment, ...] = Field(min_length=1)
    routing_strategy: RoutingStrategy = "simple-shuffle"
    routing_strategy_args: dict[str, Any] = Field(default_factory=dict)
    cooldown_time: NonNegativeFloat | None = Field(
        default=None, description="seconds a failing deployment is left out (LiteLLM's default: 5)"
    )
    allowed_fails: NonNegativeInt | None = Field(
        default=None, description="failures per minute a deployment may have before its cooldown (default: 3)"
    )
    fallbacks: tuple[Deployment, ...] = Field(
        default=(), description="tried in order when a request to the group fails"
    )

    def resolve(self, name: str, api_key: SecretStr | None) -> tuple[ResolvedDeployment, ...]:
        """Every deployment with its model, key, ledger id and Router group filled in.

        Raises ValueError, naming the field, when a ledger id repeats.
        """
        resolved: list[ResolvedDeployment] = []
        seen: dict[str, str] = {}
        members = [("deployments", i, d, name) for i, d in enumerate(self.deployments)]
        members += [("fallbacks", i, d, f"{name}{_FALLBACK_SUFFIX}{i + 1}") for i, d in enumerate(self.fallbacks)]
        for where, index, deployment, group_name in members:
            model = deployment.model or name
            ident = deployment.id or deployment.api_base or model
            field = f"group.{where}.{index}"
            if ident in seen:
                raise ValueError(
                    f"{field}: deployment id {ident!r} repeats {seen[ident]}; give each deployment its own `id`"
                )
            seen[ident] = field
            resolved.append(ResolvedDeployment(ident, group_name, model, deployment.api_key or api_key, deployment))
        return tuple(resolved)


@dataclass(frozen=True, slots=True)
class ResolvedDeployment:
    """A deployment as the Router gets it."""

    id: str
    group: str
    model: str
    api_key: SecretStr | None
    spec: Deployment

    def router_entry(self) -> dict[str, Any]:
        """The deployment's ``model_list`` entry."""
        params: dict[str, Any] = {**self.spec.litellm_params, "model": self.model}
        if self.spec.api_base is not None:
            params["api_base"] = self.spec.api_base
        if self.api_key is not None:
            params["api_key"] = self.api_key.get_secret_value()
        for name in ("weight", "rpm", "tpm", "max_parallel_requests"):
            value = getattr(self.spec, name)
            if value is not None:
                params[name] = value
        return {"model_name": self.group, "litellm_params": params, "model_info": {"id": self.id}}
