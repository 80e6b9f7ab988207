"""The graphs of langgraph.json on a real in-memory LangGraph dev server, through langgraph_sdk.

The server runs in a subprocess bound to 127.0.0.1 with its phone-home switched off
(``LANGGRAPH_CLI_NO_ANALYTICS=1``, ``LANGGRAPH_NO_VERSION_CHECK=true``, no LangSmith variables), so
the test passes in a loopback-only network namespace. It is stopped by its PID at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langgraph_api", reason="the LangGraph dev server needs `pip install 'langgraph-cli[inmem]'`")
pytest.importorskip("langgraph_cli", reason="the LangGraph dev server needs `pip install 'langgraph-cli[inmem]'`")
langgraph_sdk = pytest.importorskip("langgraph_sdk", reason="the client needs `pip install langgraph-sdk`")

from ttc_agents.integrations import example_policy  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 180
QUESTION = "What is 12 * 7 + 5?"
WORKFLOWS = """
workflows:
  offline-beam:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: beam_search, n: 4, width: 2, seed: 0}
    budget: {max_samples: 40}
  capped:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: best_of_n, n: 8, seed: 0}
    budget: {max_samples: 3}
"""
SECRET = "hunter2-do-not-quote"

OFFLINE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",  # langgraph-cli's usage analytics
    "LANGGRAPH_NO_VERSION_CHECK": "true",  # langgraph-api's PyPI version check
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_TELEMETRY": "False",
    "PYTHONUNBUFFERED": "1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _langgraph_cli() -> list[str]:
    found = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "langgraph_cli.cli"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``langgraph dev`` on 127.0.0.1 in a scratch directory; yields its URL and directory; stopped by PID."""
    work = tmp_path_factory.mktemp("langgraph-dev")
    (work / "workflows.yaml").write_text(WORKFLOWS)
    example_policy().save(work / "policy.json")
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["dependencies"] = [str(ROOT)]
    (work / "langgraph.json").write_text(json.dumps(config))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "TTC_"))}
    env.update(OFFLINE_ENV)
    env["TTC_WORKFLOWS"] = str(work / "workflows.yaml")
    env["TTC_WORKFLOW"] = "offline-beam"
    env["TTC_ALLOWED_WORKFLOWS"] = "capped"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "server.log").open("wb")
    process = subprocess.Popen(
        [
            *_langgraph_cli(),
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            str(work / "langgraph.json"),
        ],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"langgraph dev exited with {process.returncode}:\n{(work / 'server.log').read_text()[-4000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not start:\n{(work / 'server.log').read_text()[-4000:]}")
            time.sleep(0.5)
        yield url, work
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server by its PID (and its process group, which it leads), politely first."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


async def test_the_server_lists_every_graph(server: tuple[str, Path]) -> None:
    client = langgraph_sdk.get_client(url=server[0])
    assistants = await client.assistants.search(limit=50)
    assert {a["graph_id"] for a in assistants} == {
        "router",
        "workflow",
        "best_of_n",
        "beam_search",
        "dvts",
        "revision",
        "hybrid",
    }


async def test_router_answers_with_its_trace(server: tuple[str, Path]) -> None:
    client = langgraph_sdk.get_client(url=server[0])
    result = await client.runs.wait(None, "router", input={"question": QUESTION, "budget": {"max_tokens": 3000}})
    assert isinstance(result, dict)
    assert result["answer"] == "89"
    assert 1 <= result["trace"]["bin"] <= 5
    spent = sum(e["usage"]["prompt_tokens"] + e["usage"]["completion_tokens"] for e in result["ledger"]["entries"])
    assert 0 < spent <= 3000


async def test_strategy_graphs_answer_and_stream_on_a_thread(server: tuple[str, Path]) -> None:
    client = langgraph_sdk.get_client(url=server[0])
    thread = await client.threads.create()
    nodes = []
    async for part in client.runs.stream(
        thread["thread_id"], "beam_search", input={"question": QUESTION}, stream_mode="updates"
    ):
        if part.event == "updates":
            nodes.extend(part.data)
    assert nodes[0] == "start" and nodes[-1] == "select" and "verify" in nodes
    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"]["answer"] == "89"
    for graph in ("best_of_n", "dvts", "revision", "hybrid"):
        result = await client.runs.wait(None, graph, input={"question": "What is 7 * 8?"})
        assert isinstance(result, dict) and result["answer"] == "56", graph


async def test_assistant_configuration_and_workflow_env(server: tuple[str, Path]) -> None:
    client = langgraph_sdk.get_client(url=server[0])
    # the `workflow` graph runs TTC_WORKFLOW from TTC_WORKFLOWS
    result = await client.runs.wait(None, "workflow", input={"question": QUESTION})
    assert isinstance(result, dict) and result["answer"] == "89" and result["strategy"]["strategy"] == "beam_search"
    # an assistant can resize a strategy graph
    assistant = await client.assistants.create(graph_id="best_of_n", config={"configurable": {"strategy": {"n": 3}}})
    result = await client.runs.wait(None, assistant["assistant_id"], input={"question": QUESTION})
    assert isinstance(result, dict) and result["strategy"]["n"] == 3
    assert sum(e["usage"]["samples"] for e in result["ledger"]["entries"]) == 3
    # the operator's policy file may not be replaced by a client's
    policy = str(server[1] / "policy.json")
    assistant = await client.assistants.create(graph_id="router", config={"configurable": {"policy": policy}})
    with pytest.raises(Exception, match="TTC_POLICY"):
        await client.runs.wait(None, assistant["assistant_id"], input={"question": "What is 7 * 8?"}, raise_error=True)


async def test_a_hostile_client_gets_no_more_than_the_operator_set(server: tuple[str, Path]) -> None:
    """Through the real server: budgets only tighten, names and files are the operator's."""
    from suite_totals import count

    client = langgraph_sdk.get_client(url=server[0])
    (server[1] / "secret.yaml").write_text(f'password: "{SECRET}\n')
    capped = await client.assistants.create(graph_id="workflow", config={"configurable": {"workflow": "capped"}})
    for budget in ({}, {"max_samples": 64}):
        count("hostile client", "tries")
        result = await client.runs.wait(None, capped["assistant_id"], input={"question": QUESTION, "budget": budget})
        assert isinstance(result, dict)
        samples = sum(e["usage"]["samples"] for e in result["ledger"]["entries"])
        count("hostile client", "overruns" if samples > 3 else "held")
        assert samples <= 3
    hostile = [
        ("workflow", {"workflows": str(server[1] / "secret.yaml"), "workflow": "x"}),
        ("workflow", {"workflow": "not-allowed"}),
        ("best_of_n", {"verifier": "reward:http://127.0.0.1:9/pooling#m"}),
        ("best_of_n", {"model": "openai/gpt-4o"}),
        ("beam_search", {"budget": {"max_samples": -1}}),
    ]
    for graph_id, configurable in hostile:
        count("hostile client", "tries")
        with pytest.raises(Exception, match=r"not allowed|operator|not a budget") as info:
            assistant = await client.assistants.create(graph_id=graph_id, config={"configurable": configurable})
            await client.runs.wait(None, assistant["assistant_id"], input={"question": QUESTION}, raise_error=True)
        count("hostile client", "refused")
        if SECRET in str(info.value):
            count("hostile client", "quoted")
        assert SECRET not in str(info.value), configurable
