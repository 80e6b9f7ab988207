"""The one place that imports LiteLLM, after switching off its network access at import time.

LiteLLM fetches its model cost map from the internet on import unless told not to, and its token
counter may try a model hub. Both are turned off here unless the user has chosen otherwise.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_TELEMETRY", "False")

import litellm

litellm.suppress_debug_info = True
litellm.telemetry = False

__all__ = ["litellm"]
