"""Model name prefixes the library adds to LiteLLM: ``scripted/...`` and ``local/...``."""

from __future__ import annotations

import os
from typing import Protocol

from ttc_agents._llm.local import LOCAL_SUPPORTS_N

__all__ = ["LocalResolver", "ModelResolver", "default_resolvers", "register_providers"]


class ModelResolver(Protocol):
    """Maps a model name with a special prefix (``local/...``) to a LiteLLM name and api_base.

    A resolver with a ``supports_n = False`` attribute maps to servers that must get one sample per request.
    """

    def __call__(self, name: str) -> tuple[str, str | None]: ...


def register_providers() -> None:
    """Register the offline ``scripted`` test double with LiteLLM (idempotent)."""
    from ttc_agents._llm.scripted import register_scripted_provider

    register_scripted_provider()


class LocalResolver:
    """``local/NAME`` -> the embedded llama.cpp server of :mod:`ttc_agents._llm.local`.

    ``start``: start a server that is not running (default: unless ``TTC_LOCAL_AUTOSTART=0``);
    ``state_dir``: where servers are recorded (default: the library's state directory).
    """

    supports_n = LOCAL_SUPPORTS_N  # its usage counts one choice of n

    def __init__(self, *, start: bool | None = None, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.start = start
        self.state_dir = state_dir

    def __call__(self, name: str) -> tuple[str, str | None]:
        from ttc_agents._llm.local import resolve_local_model

        start = self.start
        if start is None:
            start = os.environ.get("TTC_LOCAL_AUTOSTART", "1") not in ("0", "false", "no")
        model, api_base = resolve_local_model(name, start=start, state_dir=self.state_dir)
        return str(model), api_base


def default_resolvers() -> dict[str, ModelResolver]:
    """Resolvers for name prefixes the gateway maps to a server: ``local/<model>``."""
    return {"local": LocalResolver()}
