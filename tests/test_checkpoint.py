"""Strategy and router states round-trip through a real checkpointer without unregistered types."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from ttc_agents import ArithmeticStepVerifier, BeamSearchSpec, Budget, Candidate, LedgerSnapshot
from ttc_agents._core.checkpoint import checkpoint_serializer
from ttc_agents.graphs import build_beam_search_graph


async def test_state_round_trips_through_sqlite(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "ck.sqlite")) as saver:
        saver.serde = checkpoint_serializer()
        graph = build_beam_search_graph(
            BeamSearchSpec(n=4, width=2, seed=0), model="scripted/arith", verifier=ArithmeticStepVerifier()
        ).copy({"checkpointer": saver})
        config = {"configurable": {"thread_id": "t1"}}
        with caplog.at_level(logging.WARNING):
            result = await graph.ainvoke({"question": "What is 2 + 3 * 4?", "budget": Budget(max_samples=30)}, config)
            state = await graph.aget_state(config)
        assert not [r for r in caplog.records if "unregistered" in r.getMessage() or "Blocked" in r.getMessage()]
    assert isinstance(state.values["ledger"], LedgerSnapshot)
    assert state.values["ledger"].total == result["ledger"].total
    assert all(isinstance(c, Candidate) for c in state.values["candidates"])
    assert state.values["answer"] == result["answer"] == "14"
