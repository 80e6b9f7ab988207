"""ModelSpec: a LiteLLM model string plus what the library needs to know about it."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    model_validator,
)

from ttc_agents._router_group import RouterGroup

__all__ = ["ModelSpec"]


class ModelSpec(BaseModel):
    """One model reached through LiteLLM.

    ``name`` is any LiteLLM model string (``openai/gpt-4o-mini``, ``anthropic/...``,
    ``openai/NAME`` with ``api_base`` for a vLLM or llama.cpp server), ``scripted/<profile>`` for
    the offline test double, or ``local/<model>`` for the embedded local model.

    With ``group``, the model is served by several deployments behind one LiteLLM Router (see
    :mod:`ttc_agents._router_group`): ``name`` names the group (and is the deployments' default
    LiteLLM model string), ``api_key`` is their default key, and ``api_base`` belongs to each deployment.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    api_base: str | None = None
    api_key: SecretStr | None = None
    usd_per_input_token: NonNegativeFloat | None = None
    usd_per_output_token: NonNegativeFloat | None = None
    parameters: PositiveFloat | None = Field(
        default=None, description="parameter count, for FLOPs = 2 x parameters x tokens"
    )
    pretraining_tokens: PositiveFloat | None = None
    supports_n: bool = Field(default=True, description="send n samples in one request (topped up if short)")
    supports_logprobs: bool = True
    max_tokens: PositiveInt = Field(default=512, description="completion cap per sample")
    timeout: PositiveFloat = 120.0
    max_concurrency: PositiveInt | None = None
    extra_params: dict[str, Any] = Field(default_factory=dict)
    group: RouterGroup | None = Field(default=None, description="deployments behind one LiteLLM Router")

    @model_validator(mode="after")
    def _group_fits(self) -> ModelSpec:
        if self.group is not None:
            if self.api_base is not None:
                raise ValueError("api_base: a model with a `group` has one api_base per deployment, not its own")
            self.group.resolve(self.name, self.api_key)  # ledger ids must be unique
        return self

    @classmethod
    def of(cls, model: ModelSpec | str) -> ModelSpec:
        """``model`` itself, or a spec for a bare LiteLLM model string."""
        return model if isinstance(model, ModelSpec) else cls(name=model)

    def flops(self, tokens: int) -> float:
        """Inference FLOPs for ``tokens`` tokens (0.0 when the parameter count is unknown)."""
        return 0.0 if self.parameters is None else 2.0 * self.parameters * tokens
