"""Session-wide fixture for tests that need the embedded model's llama.cpp server.

Import it from ``tests/conftest.py``::

    from conftest_local import local_model_server  # noqa: F401

``local_model_server`` yields a :class:`ttc_agents._llm.local.LocalServerInfo` (``api_base``,
``litellm_model``, ``pid``, ...). It starts SmolLM2-135M once per session, or reuses a server that
is already running (``ttc serve-local``), stops only what it started, and skips the test with the
install command as reason when the ``local`` extra is missing. Mark such tests ``local_model``.
"""

from __future__ import annotations

from ttc_agents._llm.local import DEFAULT_LOCAL_MODEL
from ttc_agents.testing import local_server_fixture

__all__ = ["local_model_server"]

local_model_server = local_server_fixture(DEFAULT_LOCAL_MODEL, scope="session")
