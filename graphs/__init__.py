"""LangGraph state machines of ttc-agents: one module per strategy."""
