"""The scripted provider's tokenizer (see "Tokens" in :mod:`ttc_agents._llm.scripted`)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["scripted_token_count", "scripted_tokenize"]

_TOKEN_RE: Final = re.compile(r"[0-9]|[A-Za-z]+|\s+|[^\sA-Za-z0-9]")


def scripted_tokenize(text: str) -> list[str]:
    """Split ``text`` into the scripted provider's tokens (``"".join`` of the result is ``text``)."""
    return _TOKEN_RE.findall(text)


def scripted_token_count(text: str) -> int:
    """Number of tokens of ``text`` under :func:`scripted_tokenize`."""
    return len(_TOKEN_RE.findall(text))
