"""The one place that imports LiteLLM, after switching off its network access at import time.

LiteLLM fetches its model cost map from the internet on import unless told not to, and its token
counter may try a model hub. Both are turned off (:mod:`ttc_agents._llm.offline`, which
:mod:`ttc_agents` also imports first, without LiteLLM) unless the user has chosen otherwise.
"""

from __future__ import annotations

# isort: off
import ttc_agents._llm.offline  # noqa: F401  (the environment switches, before litellm loads)

# isort: on
import litellm

litellm.suppress_debug_info = True
litellm.telemetry = False

__all__ = ["litellm"]
