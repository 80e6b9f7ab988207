"""Checkpointer support: the library's state types, allow-listed for LangGraph's msgpack serializer.

LangGraph warns about (and in strict mode blocks) deserializing types it does not know. Build your
checkpointer with :func:`checkpoint_serializer` so that graph states holding candidates and ledgers
round-trip cleanly, e.g. ``AsyncSqliteSaver(conn, serde=checkpoint_serializer())``.
"""

from __future__ import annotations

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from ttc_agents._core.module_aliases import LEGACY_MODULES

__all__ = ["CHECKPOINT_TYPES", "LEGACY_MODULES", "checkpoint_serializer"]

CHECKPOINT_TYPES: tuple[tuple[str, str], ...] = (
    ("ttc_agents._core.budget", "Budget"),
    ("ttc_agents._core.budget", "Usage"),
    ("ttc_agents._core.budget", "LedgerEntry"),
    ("ttc_agents._core.budget", "LedgerSnapshot"),
    ("ttc_agents._core.candidates", "Candidate"),
    ("ttc_agents._routing.difficulty", "DifficultyEstimate"),
    ("ttc_agents._routing.policy", "Cost"),
    ("ttc_agents._routing.policy", "PolicyAction"),
    ("ttc_agents._routing.policy", "PolicyEntry"),
    ("ttc_agents._core.specs", "BestOfNSpec"),
    ("ttc_agents._core.specs", "BeamSearchSpec"),
    ("ttc_agents._core.specs", "DVTSSpec"),
    ("ttc_agents._core.specs", "RevisionSpec"),
    ("ttc_agents._core.specs", "HybridSpec"),
    ("ttc_agents._core.specs", "AdaptiveSpec"),
    ("ttc_agents._core.specs", "ParticleFilterSpec"),
)

# Checkpoints written before the layer packages name the old module paths (ttc_agents._core.module_aliases).
CHECKPOINT_TYPES = CHECKPOINT_TYPES + tuple(
    (legacy, name)
    for module, name in CHECKPOINT_TYPES
    for legacy, current in LEGACY_MODULES.items()
    if current == module
)


def checkpoint_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer with the library's state types allowed (and nothing else added)."""
    return JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)
