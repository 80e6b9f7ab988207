"""Upper bounds of a request's prompt tokens, computed without a tokenizer: what every reservation uses.

Its own module so that the gateway and the lean transport (:mod:`ttc_agents._llm.openai_http`) share
it without importing each other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["prompt_token_bound", "tools_token_bound"]

Message = Mapping[str, Any]

# Chat templates add a few tokens per message (role markers) and per conversation.
_TOKENS_PER_MESSAGE = 16
_TOKENS_PER_PROMPT = 32


def _message_bytes(message: Message) -> int:
    """The UTF-8 size of ``message`` serialised as JSON: every key and value that is sent, not only
    ``content`` (a ``name``, tool calls, content parts...). JSON escaping only adds bytes."""
    try:
        text = json.dumps(dict(message), ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(message)
    return len(text.encode("utf-8", "surrogatepass"))


def prompt_token_bound(messages: Sequence[Message]) -> int:
    """An upper bound of the prompt's token count for byte-level tokenizers.

    Every token of a byte-level BPE or byte-fallback tokenizer covers at least one byte, so the
    UTF-8 size of what is sent (each whole message, all its keys, as JSON) plus the template's
    overhead bounds the count without loading any tokenizer. This is the one place the prompt's
    bound is computed: every reservation uses it.
    """
    size = sum(_message_bytes(m) for m in messages)
    return size + _TOKENS_PER_MESSAGE * len(messages) + _TOKENS_PER_PROMPT


def tools_token_bound(tools: Sequence[Mapping[str, Any]] | None, tool_choice: Any = None) -> int:
    """An upper bound of the prompt tokens that ``tools`` (and ``tool_choice``) add to a request: their
    UTF-8 size as JSON (a backend renders them into the prompt), 0 without tools."""
    if not tools:
        return 0
    text = json.dumps([dict(t) for t in tools], ensure_ascii=False, default=str) + json.dumps(tool_choice, default=str)
    return len(text.encode("utf-8", "surrogatepass")) + _TOKENS_PER_MESSAGE
