"""Model name prefixes the library adds to LiteLLM: ``scripted/...`` and ``local/...``."""

from __future__ import annotations

import os
from typing import Protocol

__all__ = ["ModelResolver", "default_resolvers", "register_providers"]


class ModelResolver(Protocol):
    """Maps a model name with a special prefix (``local/...``) to a LiteLLM name and api_base."""

    def __call__(self, name: str) -> tuple[str, str | None]: ...


def register_providers() -> None:
    """Register the offline ``scripted`` test double with LiteLLM (idempotent)."""
    from ttc_agents._llm.scripted import register_scripted_provider

    register_scripted_provider()


def _resolve_local(name: str) -> tuple[str, str | None]:
    from ttc_agents._llm.local import resolve_local_model

    autostart = os.environ.get("TTC_LOCAL_AUTOSTART", "1") not in ("0", "false", "no")
    model, api_base = resolve_local_model(name, start=autostart)
    return str(model), api_base


def default_resolvers() -> dict[str, ModelResolver]:
    """Resolvers for name prefixes the gateway maps to a server: ``local/<model>``."""
    return {"local": _resolve_local}
