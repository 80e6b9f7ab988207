"""Adapters that drop ttc-agents into LangChain, LangGraph Server, LiteLLM and batch runners."""
