"""Checkpointer support: the library's state types, allow-listed for LangGraph's msgpack serializer.

LangGraph warns about (and in strict mode blocks) deserializing types it does not know. Build your
checkpointer with :func:`checkpoint_serializer` so that graph states holding candidates and ledgers
round-trip cleanly, e.g. ``AsyncSqliteSaver(conn, serde=checkpoint_serializer())``.
"""

from __future__ import annotations

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

__all__ = ["CHECKPOINT_TYPES", "checkpoint_serializer"]

CHECKPOINT_TYPES: tuple[tuple[str, str], ...] = (
    ("ttc_agents._budget", "Budget"),
    ("ttc_agents._budget", "Usage"),
    ("ttc_agents._budget", "LedgerEntry"),
    ("ttc_agents._budget", "LedgerSnapshot"),
    ("ttc_agents._candidates", "Candidate"),
    ("ttc_agents._difficulty", "DifficultyEstimate"),
    ("ttc_agents._policy", "Cost"),
    ("ttc_agents._policy", "PolicyAction"),
    ("ttc_agents._policy", "PolicyEntry"),
    ("ttc_agents._specs", "BestOfNSpec"),
    ("ttc_agents._specs", "BeamSearchSpec"),
    ("ttc_agents._specs", "DVTSSpec"),
    ("ttc_agents._specs", "RevisionSpec"),
    ("ttc_agents._specs", "HybridSpec"),
)


def checkpoint_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer with the library's state types allowed (and nothing else added)."""
    return JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)
