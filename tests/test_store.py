"""Tests of the record/replay response store (ttc_agents/_store.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ttc_agents._llm.store import ResponseStore, StoredSample

REPO_ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
PARAMS: dict[str, Any] = {"temperature": 0.8, "top_p": 0.95, "seed": 7, "max_tokens": 64}


def sample(i: int, *, with_logprobs: bool = True) -> StoredSample:
    logprobs = (
        [
            {"token": "4", "logprob": -0.1 * i, "bytes": [52], "top_logprobs": [{"token": "4", "logprob": -0.1}]},
            {"token": ".", "logprob": -1.5, "bytes": [46], "top_logprobs": []},
        ]
        if with_logprobs
        else None
    )
    return StoredSample(
        text=f"answer {i}", finish_reason="stop", logprobs=logprobs, prompt_tokens=12, completion_tokens=2 + i
    )


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


# -- keys -------------------------------------------------------------------------------------------


def test_request_key_is_stable() -> None:
    key = ResponseStore.request_key("openai/m", MESSAGES, PARAMS)
    assert key == ResponseStore.request_key("openai/m", [dict(m) for m in MESSAGES], dict(PARAMS))
    # Dict ordering does not matter, the canonical JSON sorts keys.
    reordered = dict(reversed(list(PARAMS.items())))
    assert key == ResponseStore.request_key("openai/m", MESSAGES, reordered)
    assert len(key) == 64 and int(key, 16) >= 0
    # Pinned: a change of the canonical form silently orphans every recorded store.
    assert key == "90bd78a63152e1fa0a9531319de1f34977f8cb127a063602c708983b21765a21"


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.7},
        {"seed": 8},
        {"top_p": 1.0},
        {"max_tokens": 65},
        {"logprobs": True},
        {"stop": ["\n"]},
        {"some_unknown_param": 1},
    ],
)
def test_request_key_changes_with_sampling_params(change: dict[str, Any]) -> None:
    base = ResponseStore.request_key("openai/m", MESSAGES, PARAMS)
    assert ResponseStore.request_key("openai/m", MESSAGES, {**PARAMS, **change}) != base


def test_request_key_changes_with_model_and_messages() -> None:
    base = ResponseStore.request_key("openai/m", MESSAGES, PARAMS)
    assert ResponseStore.request_key("openai/other", MESSAGES, PARAMS) != base
    changed = [MESSAGES[0], {"role": "user", "content": "2+3?"}]
    assert ResponseStore.request_key("openai/m", changed, PARAMS) != base
    assert ResponseStore.request_key("openai/m", MESSAGES[1:], PARAMS) != base


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 8},
        {"api_key": "sk-secret"},
        {"api_base": "http://127.0.0.1:1234/v1"},
        {"timeout": 30},
        {"num_retries": 3},
        {"metadata": {"run": "x"}},
        {"my_custom_api_key": "sk-other"},
        {"presence_penalty": None},
    ],
)
def test_request_key_ignores_non_sampling_params(extra: dict[str, Any]) -> None:
    base = ResponseStore.request_key("openai/m", MESSAGES, PARAMS)
    assert ResponseStore.request_key("openai/m", MESSAGES, {**PARAMS, **extra}) == base


def test_request_key_tells_servers_apart_and_keeps_keys_without_one() -> None:
    """Two servers serving the same model name give different samples: the server is in the key. A
    request without an api_base keeps the key it always had (the pinned one), so those recordings replay."""
    base = ResponseStore.request_key("openai/m", MESSAGES, PARAMS)
    assert ResponseStore.request_key("openai/m", MESSAGES, PARAMS, api_base=None) == base
    first = ResponseStore.request_key("openai/m", MESSAGES, PARAMS, api_base="http://127.0.0.1:1234/v1")
    second = ResponseStore.request_key("openai/m", MESSAGES, PARAMS, api_base="http://127.0.0.1:5678/v1")
    assert len({base, first, second}) == 3
    assert ResponseStore.request_key("openai/m", MESSAGES, PARAMS, api_base="http://127.0.0.1:1234/v1/") == first


def test_request_key_accepts_pydantic_messages() -> None:
    class Message(BaseModel):
        role: str
        content: str

    objects = [Message(**m) for m in MESSAGES]
    assert ResponseStore.request_key("m", objects, PARAMS) == ResponseStore.request_key("m", MESSAGES, PARAMS)


# -- round trips ------------------------------------------------------------------------------------


async def test_round_trip_and_missing_indices(tmp_path: Path) -> None:
    key = ResponseStore.request_key("openai/m", MESSAGES, PARAMS)
    async with ResponseStore(tmp_path / "store.sqlite") as store:
        assert await store.get_many(key, [0, 1]) == {}  # nothing recorded, file not created yet
        written = {0: sample(0), 1: sample(1), 3: sample(3, with_logprobs=False)}
        await store.put_many(key, written, model="openai/m")
        got = await store.get_many(key, [0, 1, 2, 3, 4])
        assert got == written  # 2 and 4 were never recorded
        assert await store.get_many("other-key", [0]) == {}
        assert await store.get_many(key, []) == {}

    # Recorded data survives reopening, and the model name and timestamp are kept for inspection.
    async with ResponseStore(tmp_path / "store.sqlite") as store:
        assert await store.get_many(key, [1]) == {1: written[1]}
    with sqlite3.connect(tmp_path / "store.sqlite") as conn:
        rows = conn.execute("SELECT model, created FROM samples").fetchall()
    assert {model for model, _ in rows} == {"openai/m"}
    assert all(abs(created - time.time()) < 60 for _, created in rows)


async def test_first_recording_wins(tmp_path: Path) -> None:
    async with ResponseStore(tmp_path / "s.sqlite") as store:
        await store.put_many("k", {0: sample(0)})
        await store.put_many("k", {0: sample(9), 1: sample(1)})
        assert await store.get_many("k", [0, 1]) == {0: sample(0), 1: sample(1)}


async def test_replay_off_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    async with ResponseStore(path) as store:
        await store.put_many("k", {0: sample(0)})
    async with ResponseStore(path, replay=False) as store:
        assert await store.get_many("k", [0]) == {}
        await store.put_many("k", {1: sample(1)})  # recording still works
    async with ResponseStore(path) as store:
        assert set(await store.get_many("k", [0, 1])) == {0, 1}


async def test_record_off_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    async with ResponseStore(path, record=False) as store:
        await store.put_many("k", {0: sample(0)})
        assert await store.get_many("k", [0]) == {}
    assert list(tmp_path.iterdir()) == []  # not even an empty file

    async with ResponseStore(path) as store:
        await store.put_many("k", {0: sample(0)})
    before = path.read_bytes()
    async with ResponseStore(path, record=False) as store:
        await store.put_many("k", {1: sample(1)})
        assert await store.get_many("k", [0, 1]) == {0: sample(0)}  # replay still works
    async with ResponseStore(path) as store:
        assert set(await store.get_many("k", [0, 1])) == {0}
    assert path.read_bytes() == before


def test_sync_context_manager_and_closed_store(tmp_path: Path) -> None:
    with ResponseStore(tmp_path / "s.sqlite") as store:
        asyncio.run(store.put_many("k", {0: sample(0)}))
        assert asyncio.run(store.get_many("k", [0])) == {0: sample(0)}  # works across event loops
    store.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(store.get_many("k", [0]))


async def test_api_key_never_reaches_the_file(tmp_path: Path) -> None:
    secret = "sk-THIS-MUST-NOT-BE-STORED-1234567890"
    params = {**PARAMS, "api_key": secret, "api_base": "http://127.0.0.1:9/v1"}
    key = ResponseStore.request_key("openai/m", MESSAGES, params)
    assert secret not in key
    async with ResponseStore(tmp_path / "s.sqlite") as store:
        await store.put_many(key, {0: sample(0)}, model="openai/m")
        assert await store.get_many(ResponseStore.request_key("openai/m", MESSAGES, PARAMS), [0])
    for file in tmp_path.iterdir():  # the database and any WAL/SHM left beside it
        assert secret.encode() not in file.read_bytes()


# -- concurrency and durability ---------------------------------------------------------------------


async def test_concurrent_asyncio_writers(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    stores = [ResponseStore(path) for _ in range(3)]

    async def writer(store: ResponseStore, w: int) -> None:
        for k in range(30):
            await store.put_many(f"key-{k}", {w * 10 + i: sample(i) for i in range(10)})
            await store.get_many(f"key-{k}", range(40))

    try:
        await asyncio.gather(*(writer(stores[w % 3], w) for w in range(4)))
    finally:
        for store in stores:
            await store.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 30 * 4 * 10


WRITER_SCRIPT = textwrap.dedent(
    """
    import asyncio, itertools, sys
    from ttc_agents._llm.store import ResponseStore, StoredSample

    path, name, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
    logprobs = [{"token": f"t{j}", "logprob": -0.5, "bytes": [116], "top_logprobs": []} for j in range(200)]

    def sample(i):
        return StoredSample(f"{name} {i}", "stop", logprobs, 10, 200)

    async def main():
        async with ResponseStore(path) as store:
            async def task(t):
                for b in range(batches) if batches >= 0 else itertools.count():
                    key = f"{name}-{t}-{b}" if batches < 0 else f"shared-{b}"
                    await store.put_many(key, {t * 20 + i: sample(i) for i in range(20)}, model=name)
            await asyncio.gather(*(task(t) for t in range(3)))
        print("done", flush=True)

    asyncio.run(main())
    """
)


def start_writer(tmp_path: Path, path: Path, name: str, batches: int) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), str(path), name, str(batches)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


def test_concurrent_process_writers(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    writers = [start_writer(tmp_path, path, f"proc{p}", batches=20) for p in range(2)]
    for proc in writers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "done" in out
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Both processes wrote the same 20 keys x 60 indices; each (key, idx) is there exactly once.
        assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 20 * 60
        models = conn.execute("SELECT model, count(*) FROM samples GROUP BY model").fetchall()
    assert sum(count for _, count in models) == 20 * 60


def recorded_keys(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=5) as conn:
            return int(conn.execute("SELECT count(DISTINCT key) FROM samples").fetchone()[0])
    except sqlite3.OperationalError:  # no file or no table yet
        return 0


@pytest.mark.parametrize("delay", [0.05, 0.3])
def test_sigkill_mid_write_leaves_a_valid_store(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "s.sqlite"
    proc = start_writer(tmp_path, path, "victim", batches=-1)  # writes until killed
    try:
        deadline = time.monotonic() + 60
        while recorded_keys(path) < 6:  # reading while the victim writes: WAL readers never block
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the writer recorded nothing in 60 s"
            time.sleep(0.02)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = conn.execute("SELECT key, count(*) FROM samples GROUP BY key").fetchall()
    assert len(counts) >= 6
    assert {count for _, count in counts} == {20}  # every batch is all there or not at all

    async def replay() -> dict[int, StoredSample]:
        async with ResponseStore(path) as store:
            return await store.get_many(counts[0][0], range(100))

    got = asyncio.run(replay())
    assert len(got) == 20 and all(s.completion_tokens == 200 for s in got.values())


async def test_sqlite_work_runs_off_the_event_loop_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SQLite call happens on the store's worker thread, never on the loop's thread.

    (How fast it is belongs to a benchmark, not to a test.)
    """
    loop_thread = threading.get_ident()
    seen: set[int] = set()
    real_connect = sqlite3.connect

    def spying_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        seen.add(threading.get_ident())
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spying_connect)
    batch = {i: StoredSample(f"text {i}", "stop", None, 5, 7) for i in range(4)}
    async with ResponseStore(tmp_path / "s.sqlite") as store:
        await store.put_many("k", batch)
        assert len(await store.get_many("k", range(4))) == 4
    assert seen and loop_thread not in seen
