"""One base for the library's LiteLLM providers (``litellm.CustomLLM`` handlers).

LiteLLM calls a handler's ``completion``, ``acompletion``, ``streaming`` and ``astreaming`` with
seventeen parameters, of which a provider that answers from Python needs four: the model string, the
messages, the OpenAI parameters (``optional_params``) and the response object to fill in.
:class:`CustomLLMAdapter` binds each call to LiteLLM's own signature (``CustomLLM.completion``, the
same for all four) and hands those four to
:meth:`~CustomLLMAdapter.respond` (on the event loop) or :meth:`~CustomLLMAdapter.respond_sync`;
:class:`StreamingCustomLLMAdapter` adds streaming as one chunk (with usage) of the finished answer.
Errors a provider raises come from :func:`custom_llm_error`, which LiteLLM maps by status code.

Subclasses: the scripted test double (:class:`ttc_agents._llm.scripted.ScriptedLLM`) and the ``ttc``
provider that runs workflows (:class:`ttc_agents.integrations.litellm_provider.TTCProvider`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Final

from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import GenericStreamingChunk, ModelResponse

__all__ = ["CustomLLMAdapter", "StreamingCustomLLMAdapter", "custom_llm_error", "one_chunk"]


def custom_llm_error(status_code: int, message: str) -> CustomLLMError:
    """An error LiteLLM maps by status code (400 BadRequestError, 404 NotFoundError, 500 ...)."""
    return CustomLLMError(status_code=status_code, message=message)  # type: ignore[no-untyped-call]


class CustomLLMAdapter(CustomLLM):
    """A LiteLLM handler that answers through :meth:`respond` with the parsed arguments."""

    async def respond(
        self, model: str, messages: list[Any], optional_params: Mapping[str, Any], model_response: ModelResponse
    ) -> ModelResponse:
        """Answer one request: fill in (or replace) ``model_response`` and return it."""
        raise NotImplementedError

    def respond_sync(
        self, model: str, messages: list[Any], optional_params: Mapping[str, Any], model_response: ModelResponse
    ) -> ModelResponse:
        """:meth:`respond` for synchronous callers. The default runs it on a new event loop: override it
        where a loop may already be running in the calling thread, or where the answer needs none."""
        return asyncio.run(self.respond(model, messages, optional_params, model_response))

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        """LiteLLM's synchronous entry point: :meth:`respond_sync`."""
        return self.respond_sync(*_request(self, args, kwargs))

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        """LiteLLM's asynchronous entry point: :meth:`respond`, on the caller's event loop."""
        return await self.respond(*_request(self, args, kwargs))


class StreamingCustomLLMAdapter(CustomLLMAdapter):
    """A :class:`CustomLLMAdapter` that also streams: the finished answer as one chunk, with usage."""

    async def astreaming(self, *args: Any, **kwargs: Any) -> AsyncIterator[GenericStreamingChunk]:  # type: ignore[override]
        """The answer of :meth:`respond` as one chunk."""
        yield one_chunk(await self.respond(*_request(self, args, kwargs)))

    def streaming(self, *args: Any, **kwargs: Any) -> Iterator[GenericStreamingChunk]:
        """The answer of :meth:`respond_sync` as one chunk."""
        yield one_chunk(self.respond_sync(*_request(self, args, kwargs)))


_ENTRY_POINT: Final = inspect.signature(CustomLLM.completion)
"""The parameters LiteLLM passes to every entry point (completion, acompletion, streaming, astreaming)."""


def _request(
    handler: CustomLLM, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, list[Any], Mapping[str, Any], ModelResponse]:
    """The model, messages, optional_params and model_response of one entry-point call."""
    arguments = _ENTRY_POINT.bind(handler, *args, **kwargs).arguments
    return arguments["model"], arguments["messages"], arguments["optional_params"], arguments["model_response"]


def one_chunk(response: ModelResponse) -> GenericStreamingChunk:
    """The first choice of ``response`` as one finished streaming chunk, with the response's usage."""
    usage = getattr(response, "usage", None)
    return GenericStreamingChunk(
        text=str(response.choices[0].message.content or ""),
        tool_use=None,
        is_finished=True,
        finish_reason="stop",
        usage={
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "total_tokens": usage.total_tokens if usage else 0,
        },
        index=0,
    )
