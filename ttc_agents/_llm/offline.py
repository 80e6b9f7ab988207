"""LiteLLM's offline switches, set in the environment before LiteLLM is imported; imports nothing else.

LiteLLM fetches its model cost map from the internet on import unless told not to, and its token
counter may try a model hub. :mod:`ttc_agents` imports this module first, so whatever imports LiteLLM
through the library (or after importing it) gets these defaults; a user's own values win.
"""

from __future__ import annotations

import os

__all__ = ["OFFLINE_SWITCHES"]

OFFLINE_SWITCHES: dict[str, str] = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_TELEMETRY": "False",
}
"""Environment variables LiteLLM reads at import, and the values set unless the user set them."""

for _name, _value in OFFLINE_SWITCHES.items():
    os.environ.setdefault(_name, _value)
