"""Garbage-collector tuning for long-running processes (the CLI, batch workers, benchmarks)."""

from __future__ import annotations

import gc

__all__ = ["freeze_after_imports"]


def freeze_after_imports() -> None:
    """Move everything imported so far out of the garbage collector's way.

    Importing LiteLLM and LangGraph leaves ~430k long-lived objects; without freezing them every full
    collection walks them all and stalls the event loop for a noticeable fraction of a second.
    Commands and workers call this once their heavy imports are done.
    """
    gc.collect()
    gc.freeze()
