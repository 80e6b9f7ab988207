"""A hostile LangGraph Server client against the server's graph factories (issue 12, Security 10).

Each test plays a client that tries to get more than the operator set: a looser or unlimited
budget (in the input, in ``configurable``, as JSON text), a model or verifier the operator did not
list, a verifier URL of its own, a workflows or policy file of its choosing, router internals,
bigger strategies, ``Command`` inputs and thread state edits, and a flood of distinct configs.

The graphs are called as LangGraph Server calls them: ``factory(config)``, then ``astream`` /
``ainvoke`` of the returned graph with the same config. Every try is counted under "hostile client"
(printed once at the end of the run): ``tries``; ``refused`` (a ClientRefused error) or ``held``
(ran, inside the operator's ceiling); ``overruns`` (spent above the ceiling), ``connections`` (to a
host the client chose) and ``quoted`` (server file content in an error) must all stay 0.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from suite_totals import count

from ttc_agents._core.budget import Budget
from ttc_agents.integrations import server
from ttc_agents.integrations.server import ClientRefused, tighten

SUITE = "hostile client"
QUESTION = "What is 7 * 8?"
FACTORIES: dict[str, Callable[[Any], Any]] = {
    "best_of_n": server.best_of_n,
    "beam_search": server.beam_search,
    "dvts": server.dvts,
    "revision": server.revision,
    "hybrid": server.hybrid,
    "router": server.router,
}
SECRET = "hunter2-do-not-quote"
WORKFLOWS = """
workflows:
  capped:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: best_of_n, n: 8, seed: 0}
    budget: {max_samples: 3}
  other:
    models: {main: scripted/arith}
    verifier: arithmetic
    strategy: {strategy: best_of_n, n: 2, seed: 0}
"""


@pytest.fixture(autouse=True)
def operator_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No operator settings but what a test sets, and an empty graph cache before and after."""
    import os

    for name in list(os.environ):
        if name.startswith("TTC_"):
            monkeypatch.delenv(name)
    server._CACHE.clear()
    for must_stay_zero in ("overruns", "connections", "quoted"):
        count(SUITE, must_stay_zero, 0)  # printed even when nothing happened
    yield
    server._CACHE.clear()


def _config(**configurable: Any) -> dict[str, Any]:
    return {"configurable": configurable}


async def _run(factory: Callable[[Any], Any], config: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    graph = factory(config)
    result = await graph.ainvoke(inputs, config)
    assert isinstance(result, dict)
    return result


def _within(result: dict[str, Any], ceiling: Budget) -> bool:
    total = result["ledger"].total
    return (ceiling.max_samples is None or total.samples <= ceiling.max_samples) and (
        ceiling.max_tokens is None or total.total_tokens <= ceiling.max_tokens
    )


async def _try_run(
    name: str, factory: Callable[[Any], Any], config: dict[str, Any], inputs: dict[str, Any], ceiling: Budget
) -> str:
    """Run one hostile try; count it as refused, held or an overrun; return which."""
    count(SUITE, "tries")
    try:
        result = await _run(factory, config, inputs)
    except ClientRefused:
        count(SUITE, "refused")
        return "refused"
    if _within(result, ceiling):
        count(SUITE, "held")
        return "held"
    count(SUITE, "overruns")
    return f"overrun: {result['ledger'].total}"


def _refused(call: Callable[[], Any], *, forbidden: str | None = None) -> ClientRefused:
    """``call()`` must raise ClientRefused (counted), without ``forbidden`` in the message."""
    count(SUITE, "tries")
    with pytest.raises(ClientRefused) as info:
        call()
    count(SUITE, "refused")
    if forbidden is not None and forbidden in str(info.value):
        count(SUITE, "quoted")
    return info.value


# --- budgets: a client tightens, never loosens ---------------------------------------------------

LOOSER = [
    pytest.param({}, {"budget": {}}, id="input-empty"),
    pytest.param({}, {"budget": {"max_samples": 64}}, id="input-64"),
    pytest.param({}, {"budget": Budget(max_samples=64)}, id="input-Budget"),
    pytest.param({"budget": {}}, {}, id="configurable-empty"),
    pytest.param({"budget": {"max_samples": 64}}, {}, id="configurable-64"),
    pytest.param({"budget": json.dumps({"max_samples": 64})}, {}, id="configurable-json"),
    pytest.param({"budget": {}}, {"budget": {}}, id="both-empty"),
    pytest.param({"budget": {"max_samples": 64}}, {"budget": {"max_samples": 64, "max_tokens": 10**9}}, id="both-64"),
]


@pytest.mark.parametrize("graph", sorted(FACTORIES))
@pytest.mark.parametrize(("configurable", "inputs"), LOOSER)
async def test_a_client_budget_never_loosens_the_operators(
    monkeypatch: pytest.MonkeyPatch, graph: str, configurable: dict[str, Any], inputs: dict[str, Any]
) -> None:
    monkeypatch.setenv("TTC_BUDGET", json.dumps({"max_samples": 4}))
    ceiling = Budget(max_samples=4)
    outcome = await _try_run(
        graph, FACTORIES[graph], _config(**configurable), {"question": QUESTION, **inputs}, ceiling
    )
    assert outcome == "held"


async def test_a_client_may_tighten_and_set_what_the_operator_left_unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTC_BUDGET", json.dumps({"max_samples": 6}))
    result = await _run(
        server.best_of_n, _config(budget={"max_samples": 64}), {"question": QUESTION, "budget": {"max_samples": 2}}
    )
    assert result["ledger"].total.samples <= 2 and result["ledger"].budget == Budget(max_samples=2)
    result = await _run(server.best_of_n, _config(), {"question": QUESTION, "budget": {"max_tokens": 40}})
    assert result["ledger"].budget == Budget(max_samples=6, max_tokens=40)
    assert result["ledger"].total.total_tokens <= 40


def test_tighten_is_a_per_field_minimum() -> None:
    ceiling = Budget(max_samples=4, max_usd=1.0)
    assert tighten(ceiling, Budget()) == ceiling
    assert tighten(ceiling, None) == ceiling
    assert tighten(None, Budget(max_tokens=5)) == Budget(max_tokens=5)
    assert tighten(ceiling, Budget(max_samples=9, max_usd=0.5, max_seconds=3)) == Budget(
        max_samples=4, max_usd=0.5, max_seconds=3
    )


async def test_a_workflows_own_budget_is_a_ceiling_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(WORKFLOWS)
    monkeypatch.setenv("TTC_WORKFLOWS", str(tmp_path / "w.yaml"))
    monkeypatch.setenv("TTC_WORKFLOW", "capped")
    for inputs in ({"budget": {}}, {"budget": {"max_samples": 64}}):
        outcome = await _try_run(
            "workflow", server.workflow, _config(budget={}), {"question": QUESTION, **inputs}, Budget(max_samples=3)
        )
        assert outcome == "held"


def test_a_budget_that_is_not_a_budget_is_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _refused(lambda: server.best_of_n(_config(budget={"max_samples": -1})))
    assert "configurable 'budget'" in str(error) and "max_samples" in str(error)
    _refused(lambda: server.best_of_n(_config(budget="{not json")))
    _refused(lambda: server.best_of_n(_config(budget={"max_everything": 1})))


async def test_an_unlimited_operator_budget_still_caps_strategy_size() -> None:
    """Without TTC_BUDGET, the operator's strategy spec (n=8) is what a client may ask at most."""
    outcome = await _try_run(
        "best_of_n", server.best_of_n, _config(strategy={"n": 1000}), {"question": QUESTION}, Budget(max_samples=8)
    )
    assert outcome == "held"
    result = await _run(
        server.revision, _config(strategy={"attempts": 500, "chains": 40, "max_tokens": 10**6}), {"question": QUESTION}
    )
    assert result["strategy"]["attempts"] == 4 and result["strategy"]["chains"] == 1
    assert result["strategy"]["max_tokens"] == 512  # the model's own completion cap
    result = await _run(server.best_of_n, _config(strategy={"n": 3, "seed": 5}), {"question": QUESTION})
    assert result["strategy"]["n"] == 3 and result["ledger"].total.samples == 3  # smaller is fine


def test_a_strategy_that_does_not_validate_is_refused() -> None:
    error = _refused(lambda: server.best_of_n(_config(strategy={"n": -4})))
    assert "configurable 'strategy'" in str(error) and "n" in str(error)
    _refused(lambda: server.beam_search(_config(strategy="[1, 2")))
    _refused(lambda: server.best_of_n(_config(strategy=["n", 4])))


# --- names: only what the operator allow-listed -----------------------------------------------------


@pytest.mark.parametrize("graph", sorted(FACTORIES))
def test_a_client_cannot_pick_a_model_the_operator_did_not_list(graph: str) -> None:
    error = _refused(lambda: FACTORIES[graph](_config(model="openai/gpt-4o")))
    assert "configurable 'model'" in str(error) and "TTC_ALLOWED_MODELS" in str(error)


async def test_an_allow_listed_model_may_be_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTC_ALLOWED_MODELS", "scripted/arith, scripted/wrong")
    result = await _run(server.best_of_n, _config(model="scripted/arith"), {"question": QUESTION})
    assert result["answer"] == "56"
    server.best_of_n(_config(model="scripted/wrong"))
    _refused(lambda: server.best_of_n(_config(model="scripted/other")))
    _refused(lambda: server.best_of_n(_config(model=["scripted/arith"])))


@pytest.fixture
def listener() -> Iterator[tuple[str, list[int]]]:
    """A loopback TCP listener that counts connections: the host a hostile client would name."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    hits: list[int] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            hits.append(1)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/pooling", hits
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


@pytest.mark.parametrize("graph", sorted(FACTORIES))
async def test_a_client_cannot_point_the_verifier_at_its_own_url(graph: str, listener: tuple[str, list[int]]) -> None:
    url, hits = listener
    config = _config(verifier=f"reward:{url}#m")
    try:
        outcome = await _try_run(graph, FACTORIES[graph], config, {"question": QUESTION}, Budget())
    finally:
        count(SUITE, "connections", len(hits))
    assert outcome == "refused" and hits == []
    _refused(lambda: FACTORIES[graph](_config(verifier="prm:openai/gpt-4o")))


def test_an_allow_listed_verifier_may_be_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTC_ALLOWED_VERIFIERS", "none")
    server.best_of_n(_config(verifier="none"))
    server.best_of_n(_config(verifier="arithmetic"))  # the operator's default is always allowed
    _refused(lambda: server.best_of_n(_config(verifier="orm:scripted/arith")))


def test_files_are_the_operators_and_never_quoted(tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text(f'password: "{SECRET}\n')  # unclosed: YAML's error would quote the line
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"password": SECRET}))
    for factory in (server.workflow, server.router, server.best_of_n):
        error = _refused(lambda f=factory: f(_config(workflows=str(secret), workflow="x")), forbidden=SECRET)
        assert "configurable 'workflows'" in str(error) and "TTC_WORKFLOWS" in str(error)
        _refused(lambda f=factory: f(_config(policy=str(policy))), forbidden=SECRET)


def test_only_allow_listed_workflows_of_the_operators_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(WORKFLOWS)
    monkeypatch.setenv("TTC_WORKFLOWS", str(tmp_path / "w.yaml"))
    monkeypatch.setenv("TTC_WORKFLOW", "capped")
    error = _refused(lambda: server.workflow(_config(workflow="other")))
    assert "configurable 'workflow'" in str(error) and "other" in str(error) and "capped" in str(error)
    monkeypatch.setenv("TTC_ALLOWED_WORKFLOWS", "other")
    server.workflow(_config(workflow="other"))
    monkeypatch.setenv("TTC_ALLOWED_WORKFLOWS", "*")
    server.workflow(_config(workflow="other"))
    with pytest.raises(ValueError, match="does not load") as info:  # a name not in the file: no listing of it
        server.workflow(_config(workflow="missing"))
    assert "other" not in str(info.value)


def test_a_broken_operator_workflow_file_is_not_quoted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(f'workflows:\n  capped: "{SECRET}\n')
    monkeypatch.setenv("TTC_WORKFLOWS", str(tmp_path / "w.yaml"))
    monkeypatch.setenv("TTC_WORKFLOW", "capped")
    count(SUITE, "tries")
    with pytest.raises(ValueError) as info:
        server.workflow(_config())
    count(SUITE, "refused")
    if SECRET in str(info.value):
        count(SUITE, "quoted")
    assert SECRET not in str(info.value) and "server log" in str(info.value)


# --- inputs a client may not send ---------------------------------------------------------------


async def test_router_internals_are_refused() -> None:
    from ttc_agents.integrations import example_policy

    entry = example_policy().table[0]
    for key, value in (("action", entry), ("estimate", {"bin": 1})):
        outcome = await _try_run("router", server.router, _config(), {"question": QUESTION, key: value}, Budget())
        assert outcome == "refused", key


async def test_commands_and_state_updates_are_refused() -> None:
    from langgraph.types import Command

    graph = server.best_of_n(_config())
    count(SUITE, "tries", 3)
    with pytest.raises(ClientRefused):
        await graph.ainvoke(Command(update={"budget": {}}), _config())
    with pytest.raises(ClientRefused):
        await graph.aupdate_state(_config(thread_id="t"), {"ledger": None})
    with pytest.raises(ClientRefused):
        graph.update_state(_config(thread_id="t"), {"budget": {}})
    count(SUITE, "refused", 3)


async def test_the_server_copy_of_a_graph_keeps_its_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """LangGraph Server runs ``graph.copy(update={checkpointer, store})``: the copy checks inputs too."""
    from langgraph.checkpoint.memory import InMemorySaver

    monkeypatch.setenv("TTC_BUDGET", json.dumps({"max_samples": 2}))
    graph = server.best_of_n(_config()).copy(update={"checkpointer": InMemorySaver()})
    for thread, stream in (("t1", False), ("t2", True)):
        config = _config(thread_id=thread)
        inputs = {"question": QUESTION, "budget": {"max_samples": 50}}
        count(SUITE, "tries")
        if stream:
            async for _ in graph.astream(inputs, config):
                pass
            result = (await graph.aget_state(config)).values
        else:
            result = await graph.ainvoke(inputs, config)
        if result["ledger"].total.samples > 2:
            count(SUITE, "overruns")
        else:
            count(SUITE, "held")
        assert result["ledger"].total.samples <= 2, thread


# --- the graph cache is bounded --------------------------------------------------------------------


def test_the_graph_cache_is_a_bounded_lru(monkeypatch: pytest.MonkeyPatch) -> None:
    configs = 300
    count(SUITE, "configs", configs)
    for seed in range(configs):
        server.best_of_n(_config(strategy={"seed": seed}))
    assert len(server._CACHE) == server.GRAPH_CACHE_SIZE
    # budgets are applied per run, not per graph: any number of client budgets share one graph
    server._CACHE.clear()
    graphs = {id(server.best_of_n(_config(budget={"max_samples": k}))) for k in range(1, 100)}
    assert len(graphs) == 1 and len(server._CACHE) == 1
    # least recently used goes first
    monkeypatch.setenv("TTC_GRAPH_CACHE_SIZE", "2")
    first = server.best_of_n(_config(strategy={"seed": 1}))
    server.best_of_n(_config(strategy={"seed": 2}))
    assert server.best_of_n(_config(strategy={"seed": 1})) is first
    server.best_of_n(_config(strategy={"seed": 3}))
    assert len(server._CACHE) == 2 and server.best_of_n(_config(strategy={"seed": 1})) is first
    monkeypatch.setenv("TTC_GRAPH_CACHE_SIZE", "0")
    with pytest.raises(ValueError, match="TTC_GRAPH_CACHE_SIZE"):
        server.best_of_n(_config(strategy={"seed": 9}))
