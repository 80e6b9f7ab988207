"""Checkpointer support: the library's state types, allow-listed for LangGraph's msgpack serializer.

LangGraph warns about (and in strict mode blocks) deserializing types it does not know. Build your
checkpointer with :func:`checkpoint_serializer` so that graph states holding candidates and ledgers
round-trip cleanly, e.g. ``AsyncSqliteSaver(conn, serde=checkpoint_serializer())``.
"""

from __future__ import annotations

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

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
)

LEGACY_MODULES: dict[str, str] = {
    "ttc_agents._budget": "ttc_agents._core.budget",
    "ttc_agents._candidates": "ttc_agents._core.candidates",
    "ttc_agents._difficulty": "ttc_agents._routing.difficulty",
    "ttc_agents._policy": "ttc_agents._routing.policy",
    "ttc_agents._specs": "ttc_agents._core.specs",
}
"""Where the checkpointed classes lived before the layer packages: a checkpoint stores a class by its
module path, so ``ttc_agents`` registers these names as aliases of the new modules at import, and
:data:`CHECKPOINT_TYPES` allows both."""

CHECKPOINT_TYPES = CHECKPOINT_TYPES + tuple(
    (legacy, name)
    for module, name in CHECKPOINT_TYPES
    for legacy, current in LEGACY_MODULES.items()
    if current == module
)


def checkpoint_serializer() -> JsonPlusSerializer:
    """LangGraph's serializer with the library's state types allowed (and nothing else added)."""
    return JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)
