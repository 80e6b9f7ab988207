"""API keys never appear in logs, traces, checkpoints, the record store, error messages or results.

A recognisable fake key is set as a ModelSpec ``api_key`` (in code and in workflow YAML) and as
``OPENAI_API_KEY``. Runs go to a loopback server (which checks that the key really was sent) with the
record store and a SQLite checkpointer on, LiteLLM and every other logger at DEBUG, through a
workflow, the LLM judge, the CLI, a batch and error paths (400, 401, a config error). Then every
artefact is searched for the key: captured logs, stdout/stderr, results and their JSON, the batch
results file, streamed updates, checkpoint states, the store's and the checkpointer's database files
(with their WAL files), error messages, tracebacks and reprs.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from ttc_agents import (
    BeamSearchSpec,
    Gateway,
    ModelSpec,
    RetryPolicy,
    RevisionSpec,
    build_strategy_graph,
    checkpoint_serializer,
)
from ttc_agents._apps.workflow import WorkflowConfigError, load_workflow
from ttc_agents._llm.store import ResponseStore
from ttc_agents.cli import main
from ttc_agents.integrations.batch import run_batch
from ttc_agents.testing import FakeOpenAIServer, FakeServerConfig, Fault
from ttc_agents.verifiers import LLMJudgePRM

KEY = "sk-ttc-FAKE-" + secrets.token_hex(16)
SECRET_PARTS = (KEY, KEY[12:28])
"""The whole key, and a run of its random middle (a masked key may show its first and last characters)."""
QUESTION = "What is 12 * 7 + 5?"
RETRIES = RetryPolicy(max_attempts=3, initial_wait=0.005, max_wait=0.01, jitter=0.0)
LOGGERS = (
    "",
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "litellm",
    "httpx",
    "httpcore",
    "openai",
    "aiohttp",
    "langgraph",
    "aiosqlite",
    "ttc_agents",
    "asyncio",
)


class KeyCheckingServer(FakeOpenAIServer):
    """The fake server, keeping the Authorization header of every completion request."""

    def __init__(self, config: FakeServerConfig) -> None:
        super().__init__(config)
        self.authorizations: list[str] = []

    async def _handle(self, request: web.Request, chat: bool) -> web.StreamResponse:
        self.authorizations.append(request.headers.get("Authorization", ""))
        return await super()._handle(request, chat)


def arithmetic_text(body: dict[str, Any]) -> str:
    from ttc_agents._llm.scripted import scripted_respond

    params = {"seed": body.get("seed"), "temperature": body.get("temperature", 0.8), "n": 1}
    return str(scripted_respond("arith", body.get("messages") or [], params).choices[0].message.content)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every logger that could see a request, at DEBUG, into one buffer (LiteLLM's do not propagate)."""
    from ttc_agents._llm.litellm import litellm

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    verbose = litellm.set_verbose
    litellm.set_verbose = True  # LiteLLM's own print-based debug output, to stdout
    try:
        yield buffer
    finally:
        litellm.set_verbose = verbose
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


def assert_no_key(where: str, text: str | bytes) -> None:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "backslashreplace")
    for part in SECRET_PARTS:
        assert part.encode() not in data, f"the API key appears in {where}"
        # and not as UTF-16 either (SQLite may store text that way)
        assert part.encode("utf-16-le") not in data, f"the API key appears in {where} (UTF-16)"


def error_texts(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error)), repr(vars(error))])


def file_bytes(path: Path) -> bytes:
    """A SQLite file with its WAL and shared-memory files."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def test_the_key_never_appears_in_any_artefact(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    logs: io.StringIO,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    artefacts: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}
    store_path, checkpoints = tmp_path / "store.sqlite", tmp_path / "checkpoints.sqlite"

    async with KeyCheckingServer(FakeServerConfig(text=arithmetic_text)) as server:
        config_path = tmp_path / "workflows.yaml"
        model_fields = {"name": "openai/fake", "api_base": server.url, "api_key": KEY, "timeout": 5.0}
        config_path.write_text(
            yaml.safe_dump(
                {
                    "workflows": {
                        "keyed": {
                            "models": {"main": model_fields},
                            "verifier": "arithmetic",
                            "strategy": {"strategy": "beam_search", "n": 4, "width": 2, "max_rounds": 4, "seed": 0},
                        },
                        "broken": {
                            "models": {"main": {**model_fields, "timeout": -1}},
                            "strategy": {"strategy": "best_of_n", "n": 2},
                        },
                    }
                }
            )
        )
        keyed = ModelSpec(**model_fields)  # type: ignore[arg-type]
        from_env = ModelSpec(name="openai/fake", api_base=server.url, timeout=5.0)  # the key comes from the env

        store = ResponseStore(store_path)
        gateway = Gateway(retry=RETRIES, store=store)
        async with AsyncSqliteSaver.from_conn_string(str(checkpoints)) as saver:
            saver.serde = checkpoint_serializer()
            workflow = load_workflow(config_path, "keyed")
            graphs = {
                "workflow": workflow.build(gateway=gateway),
                "judge": build_strategy_graph(
                    RevisionSpec(attempts=2, chains=2, seed=1),
                    model=from_env,
                    verifier=LLMJudgePRM(keyed, gateway=gateway),
                    gateway=gateway,
                ),
                "env": build_strategy_graph(
                    BeamSearchSpec(n=4, width=2, max_rounds=3, seed=2),
                    model=from_env,
                    verifier=LLMJudgePRM(from_env, gateway=gateway),
                    gateway=gateway,
                ),
            }
            for name, graph in graphs.items():
                graph = graph.copy({"checkpointer": saver})
                config = {"configurable": {"thread_id": name}}
                result = await graph.ainvoke({"question": QUESTION}, config)
                assert result["answer"] == "89"
                artefacts[f"{name} result"] = repr(result)
                artefacts[f"{name} JSON"] = json.dumps(
                    {
                        "answer": result["answer"],
                        "usage": result["ledger"].as_dict(),
                        "candidates": [c.as_dict() for c in result["candidates"]],
                        "strategy": result["strategy"],
                    }
                )
                updates = [
                    u
                    async for u in graph.astream(
                        {"question": QUESTION},
                        {"configurable": {"thread_id": name + "-stream"}},
                        stream_mode=["updates", "debug"],
                    )
                ]
                artefacts[f"{name} stream"] = repr(updates)
                artefacts[f"{name} checkpoint"] = repr(await graph.aget_state(config))
                artefacts[f"{name} history"] = repr([s async for s in graph.aget_state_history(config)])

            # Error paths: a 400 and a 401 in the middle of runs, and a broken workflow file.
            for status in (400, 401):
                server.add_faults(Fault.http_error(status))
                with pytest.raises(Exception) as info:
                    await graphs["judge"].ainvoke({"question": f"What is {status} + 1?"})
                errors[str(status)] = info.value
            with pytest.raises(WorkflowConfigError) as config_error:
                load_workflow(config_path, "broken")
            errors["config"] = config_error.value

            # A batch results file, with an error record (a 401) among the answers.
            # (A preflight may refuse the whole batch when its first item fails so: that error is
            # searched too.)
            server.add_faults(Fault.http_error(401))
            try:
                await run_batch(
                    [f"What is {i} * 7 + 5?" for i in range(4)],
                    workflow,
                    out=tmp_path / "batch.jsonl",
                    max_concurrency=1,
                    progress=False,
                    gateway=gateway,
                )
            except Exception as refused:
                errors["batch"] = refused
            batch_path = tmp_path / "batch.jsonl"
            batch_records = batch_path.read_text(encoding="utf-8") if batch_path.exists() else ""
            assert '"error": "AuthenticationError' in batch_records or "AuthenticationError" in str(errors["batch"])

        # The CLI (in a thread: it runs its own event loop), with a results line on stdout, then its
        # one-line error for a 401, and a config error's traceback with --debug.
        cli = ["solve", QUESTION, "--workflow", "keyed", "--config", str(config_path)]
        assert await asyncio.to_thread(main, [*cli, "--json", "--record", str(tmp_path / "cli-store.sqlite")]) == 0
        server.add_faults(Fault.http_error(401))
        assert await asyncio.to_thread(main, ["solve", "What is 401 * 2?", *cli[2:]]) != 0
        assert server.pending_faults == 0
        assert await asyncio.to_thread(main, [*cli[:3], "broken", *cli[4:]]) != 0
        with pytest.raises(WorkflowConfigError) as debug_error:  # --debug lets the traceback out
            await asyncio.to_thread(main, [*cli[:3], "broken", *cli[4:], "--debug"])
        errors["CLI --debug"] = debug_error.value
        store.close()
        # The key really was used: every request carried it (in code, from YAML, and from the environment).
        assert server.authorizations and set(server.authorizations) == {f"Bearer {KEY}"}

    out, err = capfd.readouterr()
    artefacts.update(
        {
            "stdout": out,
            "stderr": err,
            "logs": logs.getvalue(),
            "caplog": caplog.text,
            "record store": file_bytes(store_path),
            "CLI record store": file_bytes(tmp_path / "cli-store.sqlite"),
            "batch results": batch_records,
            "checkpoints": file_bytes(checkpoints),
            "ModelSpec repr": repr(keyed) + str(keyed),
            "ModelSpec dumps": repr(keyed.model_dump()) + keyed.model_dump_json(),
            "workflow": repr(workflow),
            "workflow JSON": workflow.model_dump_json(),
        }
    )
    artefacts.update({f"{name} error": error_texts(error) for name, error in errors.items()})
    assert '"89"' in out and "AuthenticationError" in err  # the CLI's JSON result, and its one-line error
    assert len(artefacts["record store"]) > 0 and len(artefacts["checkpoints"]) > 0
    assert len(artefacts["logs"]) > 1000  # DEBUG logging was on
    for where, text in artefacts.items():
        assert_no_key(where, text)


def test_the_key_never_appears_in_validation_errors_of_a_model_spec() -> None:
    """pydantic puts the input value in its errors: a key must not reach them through a bad sibling field."""
    for bad in ({"timeout": "soon"}, {"extra": 1}, {"name": ""}):
        with pytest.raises(ValueError) as info:
            ModelSpec.model_validate({"name": "openai/x", "api_key": KEY, **bad})
        assert_no_key(f"ModelSpec error for {bad}", error_texts(info.value))


# --- a server that echoes the key back -------------------------------------------------------------


class EchoingServer(FakeOpenAIServer):
    """Refuses every completion with a 401 quoting the key it was sent, as some providers do."""

    async def _handle(self, request: web.Request, chat: bool) -> web.StreamResponse:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        message = f"Incorrect API key provided: {key}. Check the key {key!r} and try again."
        body = {
            "error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
        }
        return web.json_response(body, status=401)


async def test_a_key_echoed_by_the_server_is_masked_in_errors_records_and_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from ttc_agents import BestOfNSpec
    from ttc_agents._llm.secrets import MASK

    env_key = "sk-ttc-ENV-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", env_key)
    async with EchoingServer(FakeServerConfig()) as server:
        keyed = ModelSpec(name="openai/fake", api_base=server.url, api_key=KEY, timeout=5.0)
        from_env = ModelSpec(name="openai/fake", api_base=server.url, timeout=5.0)
        gateway = Gateway(retry=RETRIES)
        texts: dict[str, str] = {}
        for name, model in (("ModelSpec key", keyed), ("environment key", from_env)):
            with pytest.raises(Exception) as info:
                await gateway.sample(model, [{"role": "user", "content": QUESTION}], 1)
            texts[name] = error_texts(info.value)
            assert "Incorrect API key provided: " + MASK in str(info.value)  # the message itself survives

        graph = build_strategy_graph(BestOfNSpec(n=2, seed=0), model=keyed, gateway=gateway)
        out_path = tmp_path / "out.jsonl"
        try:  # error records, or (with a preflight) one error refusing the batch
            await run_batch([QUESTION, "What is 1 + 1?"], graph, out=out_path, progress=False)
        except Exception as refused:
            texts["batch error"] = error_texts(refused)
        records = out_path.read_text(encoding="utf-8") if out_path.exists() else ""
        assert "Incorrect API key provided" in records + texts.get("batch error", "")

        cli = ["solve", QUESTION, "--model", "openai/fake", "--api-base", server.url]
        assert await asyncio.to_thread(main, cli) != 0
    out, err = capfd.readouterr()
    assert "Incorrect API key provided" in err and MASK in err
    for where, text in {**texts, "batch records": records, "CLI stdout": out, "CLI stderr": err}.items():
        assert_no_key(where, text)
        assert env_key not in text and env_key[11:27] not in text, f"the environment key appears in {where}"


def test_the_masking_helper() -> None:
    from ttc_agents._llm.secrets import MASK, mask_exception, mask_secrets, register_secret

    secret = "sk-helper-" + secrets.token_hex(8)
    assert mask_secrets(f"key={secret}") == f"key={secret}"  # unknown: nothing to mask
    assert mask_secrets(f"key={secret}", extra=[secret]) == f"key={MASK}"
    register_secret(secret)
    assert mask_secrets(f"a {secret} b {secret}") == f"a {MASK} b {MASK}"
    assert mask_secrets("none and x") == "none and x"  # short values are never secrets
    try:
        try:
            raise KeyError({"detail": [f"bad {secret}"]})
        except KeyError as inner:
            raise RuntimeError(f"wrapped {secret}") from inner
    except RuntimeError as error:
        assert mask_exception(error) is error
        cause = error.__cause__
        assert cause is not None
        assert secret not in error_texts(error) and secret not in error_texts(cause)
