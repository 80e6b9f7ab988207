"""Checkpointed classes are stored by module path: every allowed path resolves, and a checkpoint written
when the classes lived in the old flat modules (``ttc_agents._budget`` ...) still loads."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

from ttc_agents import CHECKPOINT_TYPES, BestOfNSpec, Budget, Candidate, LedgerSnapshot, Usage, checkpoint_serializer
from ttc_agents._core.budget import LedgerEntry
from ttc_agents._core.checkpoint import LEGACY_MODULES
from ttc_agents._routing.difficulty import DifficultyEstimate
from ttc_agents._routing.policy import Cost, PolicyAction, PolicyEntry


def test_every_checkpoint_type_resolves() -> None:
    for module, name in CHECKPOINT_TYPES:
        assert isinstance(getattr(importlib.import_module(module), name), type), (module, name)
    assert {m for m, _ in CHECKPOINT_TYPES} >= set(LEGACY_MODULES) | set(LEGACY_MODULES.values())


@contextmanager
def written_before_the_move() -> Iterator[None]:
    """Classes report their old module, as they did when the checkpoint was written."""
    classes = [Budget, Usage, LedgerEntry, LedgerSnapshot, Candidate, DifficultyEstimate, Cost, PolicyAction]
    classes += [PolicyEntry, BestOfNSpec]
    old = {cls: cls.__module__ for cls in classes}
    back = {current: legacy for legacy, current in LEGACY_MODULES.items()}
    try:
        for cls in classes:
            cls.__module__ = back[cls.__module__]
        yield
    finally:
        for cls, module in old.items():
            cls.__module__ = module


def test_a_checkpoint_written_with_the_old_module_paths_loads() -> None:
    serde = checkpoint_serializer()
    ledger = LedgerSnapshot(
        budget=Budget(max_tokens=100),
        entries=(LedgerEntry("generate", "m", Usage(calls=1, samples=2, prompt_tokens=3, completion_tokens=4)),),
    )
    action = PolicyAction(model="m", strategy=BestOfNSpec(n=4))
    state = {
        "ledger": ledger,
        "candidates": [Candidate(steps=("a", "b"), answer="7", finished=True, score=0.5)],
        "estimate": DifficultyEstimate(bin=2, statistic=0.4),
        "action": PolicyEntry(
            bin=2, budget=4, action=action, accuracy=0.5, cv_accuracy=0.5, cost=Cost(tokens=9), questions=3
        ),
    }
    with written_before_the_move():
        kind, data = serde.dumps_typed(state)
    assert b"ttc_agents._budget" in data and b"ttc_agents._core" not in data
    loaded = serde.loads_typed((kind, data))
    assert type(loaded["ledger"]) is LedgerSnapshot and loaded["ledger"].total == ledger.total
    assert loaded["candidates"][0].answer == "7"
    assert loaded["estimate"].bin == 2
    assert loaded["action"].action == action
