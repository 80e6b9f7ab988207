"""Adapters that drop ttc-agents into LangChain, LangGraph (subgraphs and Server), LiteLLM and batch runners.

- :class:`ChatTTC`: a LangChain chat model that answers with a ttc-agents graph;
- :func:`as_node`: mount a graph in a parent StateGraph with your own keys;
- :func:`register_ttc_provider`: ``litellm.completion(model="ttc/<workflow>", ...)``;
- ``ttc_agents.integrations.batch``: async batches with a total budget and resume.
"""

from ttc_agents._apps.example_policy import example_policy
from ttc_agents.integrations.chat_model import ChatTTC, ToolCallingNotSupportedError
from ttc_agents.integrations.litellm_provider import TTCProvider, register_ttc_provider, ttc_provider

from .subgraph import as_node

__all__ = [
    "ChatTTC",
    "TTCProvider",
    "ToolCallingNotSupportedError",
    "as_node",
    "example_policy",
    "register_ttc_provider",
    "ttc_provider",
]
