"""ModelSpec: a LiteLLM model string plus what the library needs to know about it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)

from ttc_agents._core.thinking import EffortLevel, Thinking
from ttc_agents._llm.deployments import RouterGroup

__all__ = ["DEPLOYMENT_PARAMS", "SAMPLING_PARAMS", "ModelSpec", "check_sampling_params", "sampling_params"]

SAMPLING_PARAMS: frozenset[str] = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "typical_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "logit_bias",
        "stop",
        "seed",
        "response_format",
        "reasoning_effort",
        "thinking",
        "chat_template_kwargs",
    }
)
"""What ``ModelSpec.extra_params`` may hold: parameters that change how the configured model samples.

Nothing that changes where a request goes (``api_base``, ``base_url``, ``custom_llm_provider``,
``extra_body``), who else hears about it (``success_callback``, ``callbacks``, ``logger_fn``,
``metadata``, ``langsmith_*``), what it carries besides the prompt (``headers``, ``extra_headers``,
``user``), or what the ledger counts (``n``, ``max_tokens``, ``max_completion_tokens``, ``logprobs``,
``mock_response``, retries): those are the operator's code or ModelSpec's own fields, not config."""

DEPLOYMENT_PARAMS: frozenset[str] = SAMPLING_PARAMS | {"timeout", "stream_timeout", "max_retries", "api_version"}
"""What a router-group deployment's ``litellm_params`` may hold: the sampling parameters plus
per-deployment timeouts, retries and an Azure ``api_version`` (its host is its ``api_base`` field)."""


def check_sampling_params(
    params: Mapping[str, Any], *, field: str = "extra_params", allowed: frozenset[str] = SAMPLING_PARAMS
) -> None:
    """Raise ValueError naming ``field`` and every key of ``params`` outside ``allowed``."""
    refused = [key for key in params if key not in allowed]
    if refused:
        raise ValueError(
            f"{field}: {'key' if len(refused) == 1 else 'keys'} {', '.join(map(repr, refused))} not allowed "
            "(only sampling parameters may come from config; callbacks, logging, hosts, headers and metadata "
            f"are the operator's code); allowed: {', '.join(sorted(allowed))}"
        )


def sampling_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The allow-listed sampling parameters of ``params``, anything else dropped (defence in depth)."""
    return {key: value for key, value in params.items() if key in SAMPLING_PARAMS}


class ModelSpec(BaseModel):
    """One model reached through LiteLLM.

    ``name`` is any LiteLLM model string (``openai/gpt-4o-mini``, ``anthropic/...``,
    ``openai/NAME`` with ``api_base`` for a vLLM or llama.cpp server), ``scripted/<profile>`` for
    the offline test double, or ``local/<model>`` for the embedded local model.

    With ``group``, the model is served by several deployments behind one LiteLLM Router (see
    :mod:`ttc_agents._llm.router_group`): ``name`` names the group (and is the deployments' default
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
    thinking: Thinking | None = Field(
        default=None,
        description="effort level or thinking-token budget sent with every request (None: the model's default); "
        "a request's max_tokens grows by its allowance, and so does its reservation",
    )
    thinking_tokens: dict[EffortLevel, PositiveInt] = Field(
        default_factory=dict, description="per effort level: the thinking allowance (default EFFORT_ALLOWANCE)"
    )
    supports_thinking: bool | None = Field(
        default=None,
        description="send thinking settings: None lets LiteLLM decide per route, True sends them even where "
        "LiteLLM would drop them (a deployment it does not know reasons), False never sends them",
    )
    usd_per_reasoning_token: NonNegativeFloat | None = Field(
        default=None, description="USD per reasoning token (default: LiteLLM's cost map, else the output price)"
    )
    timeout: PositiveFloat = 120.0
    max_concurrency: PositiveInt | None = None
    extra_params: dict[str, Any] = Field(
        default_factory=dict, description="sampling parameters sent with every request (see SAMPLING_PARAMS)"
    )
    group: RouterGroup | None = Field(default=None, description="deployments behind one LiteLLM Router")

    @field_validator("extra_params")
    @classmethod
    def _only_sampling(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_sampling_params(value)
        return value

    @model_validator(mode="after")
    def _group_fits(self) -> ModelSpec:
        if self.group is not None:
            for kind, deployments in (("deployments", self.group.deployments), ("fallbacks", self.group.fallbacks)):
                for i, deployment in enumerate(deployments):
                    check_sampling_params(
                        deployment.litellm_params, field=f"group.{kind}.{i}.litellm_params", allowed=DEPLOYMENT_PARAMS
                    )
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
