"""Test-wide setup: LiteLLM's offline switches must be set before any test module imports it."""

from __future__ import annotations

import os

import pytest

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_OFFLINE_MODE"] = "true"
for variable in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
    os.environ.pop(variable, None)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the fault, kill/resume, bad-input and hostile-client suites did this session."""
    from suite_totals import SUITE_TOTALS

    if not SUITE_TOTALS:
        return
    terminalreporter.section("suite totals")
    for suite, counters in sorted(SUITE_TOTALS.items()):
        terminalreporter.write_line(f"{suite}: " + ", ".join(f"{k} {v}" for k, v in sorted(counters.items())))
