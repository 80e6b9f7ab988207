"""The ``scripted`` LiteLLM provider: profiles, one request's answer, the handler and its registration
(see :mod:`ttc_agents._llm.scripted`)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from litellm.types.utils import Choices, CompletionTokensDetailsWrapper, Message, ModelResponse, Usage

from ttc_agents._llm.custom_llm import CustomLLMAdapter, custom_llm_error
from ttc_agents._llm.litellm import litellm
from ttc_agents._llm.scripted.logprobs import _logprobs
from ttc_agents._llm.scripted.prompts import (
    _answer_value,
    _content_text,
    _last_boxed,
    _last_user_text,
    _Prompt,
    _read_prompt,
    _Role,
)
from ttc_agents._llm.scripted.questions import _stable_hash
from ttc_agents._llm.scripted.solutions import (
    _continue_steps,
    _Dice,
    _Draft,
    _judge,
    _judge_step,
    _revise,
    _write_solution,
)
from ttc_agents._llm.scripted.thinking import reasoning_factor, reasoning_tokens, requested_reasoning
from ttc_agents._llm.scripted.tokens import scripted_token_count, scripted_tokenize
from ttc_agents._llm.scripted.tools import tool_drafts

__all__ = [
    "INPUT_COST_PER_TOKEN",
    "OUTPUT_COST_PER_TOKEN",
    "PROVIDER",
    "SCRIPTED_PROFILES",
    "ScriptedLLM",
    "register_scripted_provider",
    "scripted_parameter_count",
    "scripted_prompt_tokens",
    "scripted_respond",
]

PROVIDER: Final = "scripted"
INPUT_COST_PER_TOKEN: Final = 1e-7
OUTPUT_COST_PER_TOKEN: Final = 2e-7

SCRIPTED_PROFILES: Final[Mapping[str, float]] = {
    "arith": 1.0,
    "arith-easy": 0.3,
    "arith-hard": 2.0,
}
"""Profile name (the part after ``scripted/``) -> multiplier of the per-step error probability.
The synthetic populations ``pop-<setting>`` (:mod:`ttc_agents._llm.population`) are profiles too."""

_POPULATION_PREFIX: Final = "pop-"

_MAX_PROFILE_P: Final = 0.9
_MAX_STEP_P: Final = 0.95


def scripted_parameter_count() -> int:
    """Nominal parameter count of the scripted "model", for FLOPs estimates (2 N per token)."""
    return 1_000_000


def _draft(
    prompt: _Prompt, profile: str, scale: float, temperature: float, dice: _Dice, reasoning: float = 1.0
) -> _Draft:
    """One completion; ``reasoning`` multiplies the per-step error probability (hidden reasoning's effect)."""
    if profile.startswith(_POPULATION_PREFIX):
        from ttc_agents._llm.population import population_draft

        return population_draft(prompt, profile, temperature, dice)
    question = prompt.question
    profile_p = min(question.error_p * scale, _MAX_PROFILE_P)
    step_p = min(profile_p * (0.6 + 0.5 * max(temperature, 0.0)), _MAX_STEP_P) * reasoning
    if prompt.role is _Role.GENERATE:
        return _write_solution(question, (), step_p, dice)
    if prompt.role is _Role.STEP_GENERATE:
        return _continue_steps(question, prompt.context, step_p, dice)
    if prompt.role is _Role.REVISE:
        return _revise(question, prompt.context, step_p, scale, dice)
    if prompt.role is _Role.JUDGE_STEP:
        return _judge(_judge_step(question, prompt.context), dice)
    answer = _answer_value(_last_boxed("\n".join(prompt.context)))
    return _judge(question.answer is not None and answer == question.answer, dice)


def _truncate(text: str, stop: Sequence[str], max_tokens: int | None) -> tuple[str, list[str], str]:
    """Apply ``stop`` then ``max_tokens``; returns the text, its tokens and the finish reason."""
    finish_reason = "stop"
    cuts = [position for s in stop if s and (position := text.find(s)) >= 0]
    if cuts:
        text = text[: min(cuts)]
    tokens = scripted_tokenize(text)
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens = tokens[:max_tokens]
        text = "".join(tokens)
        finish_reason = "length"
    return text, tokens, finish_reason


def _stop_list(stop: object) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, Iterable):
        return [str(s) for s in stop]
    raise custom_llm_error(400, f"scripted: invalid stop {stop!r}")


def _profile_names() -> list[str]:
    """Every profile: the scaled ones, then the synthetic populations (``pop-<setting>``)."""
    from ttc_agents._llm.population import POPULATION_SETTINGS

    return [*SCRIPTED_PROFILES, *(_POPULATION_PREFIX + name for name in POPULATION_SETTINGS)]


def _profile_scale(model: str) -> tuple[str, float]:
    profile = model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model
    if profile in SCRIPTED_PROFILES:
        return profile, SCRIPTED_PROFILES[profile]
    names = _profile_names()
    if profile not in names:
        known = ", ".join(f"{PROVIDER}/{name}" for name in names)
        raise custom_llm_error(404, f"unknown scripted profile {model!r}; known: {known}")
    return profile, 1.0


def scripted_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of chat ``messages``: the tokens of every message's text content, summed (string
    contents, or the ``text`` parts of a content list; no per-message overhead)."""
    return sum(scripted_token_count(_content_text(message.get("content"))) for message in messages)


def scripted_respond(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    optional_params: Mapping[str, Any],
    model_response: ModelResponse | None = None,
) -> ModelResponse:
    """Answer one chat request (the body of :class:`ScriptedLLM`; usable directly in tests).

    ``model`` is a profile name with or without the ``scripted/`` prefix; ``optional_params`` holds the
    OpenAI parameters (``n``, ``temperature``, ``seed``, ``max_tokens``, ``stop``, ``logprobs``,
    ``top_logprobs``, ``reasoning_effort``, ``thinking``: see :mod:`ttc_agents._llm.scripted.thinking`).
    """
    profile, scale = _profile_scale(model)
    n = int(optional_params.get("n") or 1)
    if n < 1:
        raise custom_llm_error(400, f"scripted: n must be >= 1, got {n}")
    temperature = optional_params.get("temperature")
    temperature = 1.0 if temperature is None else float(temperature)
    seed = optional_params.get("seed")
    max_tokens = optional_params.get("max_tokens", optional_params.get("max_completion_tokens"))
    stop = _stop_list(optional_params.get("stop"))
    want_logprobs = bool(optional_params.get("logprobs"))
    top_k = int(optional_params.get("top_logprobs") or 0)

    prompt = _read_prompt(_last_user_text(messages))
    greedy_key = prompt.greedy_key
    choices: list[Choices] = []
    completion_tokens = reasoning_total = 0
    thinks = not profile.startswith(_POPULATION_PREFIX) and prompt.role not in (_Role.JUDGE_STEP, _Role.JUDGE_ANSWER)
    span = requested_reasoning(optional_params) if thinks else None  # judges and populations do not think
    tooled = _tool_choices(profile, scale, seed, temperature, n, prompt, messages, optional_params)
    if tooled is not None:
        choices, completion_tokens = tooled
    for index in range(n if tooled is None else 0):
        sample_key = (profile, "noseed" if seed is None else seed, prompt.question.text, index, prompt.salt)
        rng = None if temperature <= 0 else random.Random(_stable_hash(*sample_key))
        reasoning = reasoning_tokens(span, rng is None, *(greedy_key if rng is None else sample_key))
        if max_tokens is not None:
            reasoning = min(reasoning, int(max_tokens))
        draft = _draft(prompt, profile, scale, temperature, _Dice(rng, greedy_key), reasoning_factor(reasoning))
        answer_cap = None if max_tokens is None else int(max_tokens) - reasoning
        tokens: list[str] = []
        if answer_cap is not None and answer_cap <= 0:  # the reasoning used up max_tokens: no answer
            text, finish_reason = "", "length"
        else:
            text, tokens, finish_reason = _truncate(draft.text, stop, answer_cap)
        completion_tokens += len(tokens) + reasoning
        reasoning_total += reasoning
        logprobs = None
        if want_logprobs:
            logprob_rng = random.Random(_stable_hash("logprobs", *(greedy_key if rng is None else sample_key)))
            logprobs = _logprobs(draft, tokens, top_k, logprob_rng)
        message = Message(content=text, role="assistant")
        choices.append(Choices(finish_reason=finish_reason, index=index, message=message, logprobs=logprobs))

    response = model_response if model_response is not None else ModelResponse()
    prompt_tokens = scripted_prompt_tokens(messages)
    response.choices = choices
    response.model = f"{PROVIDER}/{profile}"
    response.created = int(time.time())
    response.usage = Usage(  # type: ignore[attr-defined]  # set dynamically, as LiteLLM's own providers do
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        completion_tokens_details=CompletionTokensDetailsWrapper(reasoning_tokens=reasoning_total)
        if span is not None
        else None,
    )
    return response


def _tool_choices(
    profile: str,
    scale: float,
    seed: object,
    temperature: float,
    n: int,
    prompt: _Prompt,
    messages: Sequence[Mapping[str, Any]],
    optional_params: Mapping[str, Any],
) -> tuple[list[Choices], int] | None:
    """The choices of a request with ``tools`` (see :mod:`ttc_agents._llm.scripted.tools`), or None."""
    tools = optional_params.get("tools")
    if not tools:
        return None
    question = prompt.question.text
    rngs = [
        None
        if temperature <= 0
        else random.Random(_stable_hash(profile, "noseed" if seed is None else seed, question, i, "tools"))
        for i in range(n)
    ]
    drafts = tool_drafts(question, messages, tools, optional_params.get("tool_choice"), scale=scale, rngs=rngs)
    if drafts is None:
        return None
    choices: list[Choices] = []
    tokens = 0
    for index, draft in enumerate(drafts):
        if draft.name is None:
            text = draft.text or ""
            tokens += scripted_token_count(text)
            message = Message(content=text, role="assistant")
            choices.append(Choices(finish_reason="stop", index=index, message=message))
            continue
        arguments = draft.arguments or ""
        tokens += scripted_token_count(draft.name) + scripted_token_count(arguments)
        call = {
            "id": f"call_{_stable_hash(question, seed, index, len(messages)):016x}",
            "type": "function",
            "function": {"name": draft.name, "arguments": arguments},
        }
        message = Message(content=None, role="assistant", tool_calls=[call])
        choices.append(Choices(finish_reason="tool_calls", index=index, message=message))
    return choices, tokens


class ScriptedLLM(CustomLLMAdapter):
    """The LiteLLM handler of the ``scripted`` provider (see the module docstring)."""

    async def respond(
        self, model: str, messages: list[Any], optional_params: Mapping[str, Any], model_response: ModelResponse
    ) -> ModelResponse:
        """Answer on the event loop (tens of microseconds of CPU per sample: no thread needed)."""
        return scripted_respond(model, messages, optional_params, model_response)

    def respond_sync(
        self, model: str, messages: list[Any], optional_params: Mapping[str, Any], model_response: ModelResponse
    ) -> ModelResponse:
        """Answer synchronously."""
        return scripted_respond(model, messages, optional_params, model_response)


_HANDLER: Final = ScriptedLLM()


def register_scripted_provider() -> None:
    """Register the ``scripted`` provider and the prices of its profiles with LiteLLM (idempotent).

    Each profile ``scripted/<name>`` is registered with :func:`litellm.register_model` at 1e-7 USD per
    input token and 2e-7 USD per output token (cache prices 0, which also silences LiteLLM's
    missing-cache-price warning), so ``response._hidden_params["response_cost"]`` and
    ``litellm.completion_cost(response)`` work: responses name their model ``scripted/<name>``.
    """
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": _HANDLER})
    missing = {
        f"{PROVIDER}/{name}": {
            "litellm_provider": PROVIDER,
            "mode": "chat",
            "input_cost_per_token": INPUT_COST_PER_TOKEN,
            "output_cost_per_token": OUTPUT_COST_PER_TOKEN,
            "cache_creation_input_token_cost": 0.0,
            "cache_read_input_token_cost": 0.0,
            # The scaled profiles take reasoning_effort / thinking (see .thinking); the populations do not.
            "supports_reasoning": name in SCRIPTED_PROFILES,
        }
        for name in _profile_names()
        if f"{PROVIDER}/{name}" not in litellm.model_cost
    }
    if missing:
        litellm.register_model(missing)
