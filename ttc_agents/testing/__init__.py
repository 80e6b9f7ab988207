"""Test helpers: a fake OpenAI-compatible server with fault injection (see :mod:`._openai_server`)."""

from ttc_agents.testing._openai_server import (
    BilledUsage,
    FakeOpenAIServer,
    FakeServerConfig,
    Fault,
    FaultKind,
    RecordedRequest,
    TextSource,
)

__all__ = [
    "BilledUsage",
    "FakeOpenAIServer",
    "FakeServerConfig",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "TextSource",
]
