"""Record/replay store for sampled model responses, kept in one SQLite file.

Test-time scaling draws many samples per prompt. Recording them lets a run be replayed exactly
(for tests, for re-scoring with another selection rule, or to resume a killed run) without paying
for the samples again. LiteLLM's own cache is unsuitable for that: identical sampling requests are
*meant* to give different samples, and its disk cache does not exist (see STACK.md).

A stored row is one completion choice, addressed by ``(request key, sample index)``. The request key
(:meth:`ResponseStore.request_key`) is a SHA-256 over the model, the server (``api_base``), the
messages and the sampling parameters, so sample ``i`` of a request replays as sample ``i`` whatever
``n`` the request used, and never as another server's answer.

Keys of requests without an ``api_base`` (hosted providers, ``scripted/`` and ``local/`` names) are
the same as before the server became part of the key, so those recordings still replay. Recordings
made against an explicit ``api_base`` before that change are no longer found (they were keyed without
their server, so nothing tells which server they came from): they are re-sampled and recorded anew.

Concurrency and durability:

* the file is in WAL mode, so readers never block writers and a writer blocks other writers only for
  the duration of one short ``BEGIN IMMEDIATE`` transaction (one ``executemany``);
* ``busy_timeout`` makes SQLite wait for another writer's lock, and a bounded retry loop covers the
  cases where SQLite reports ``database is locked`` without waiting;
* every write is a transaction, so a process killed mid-write (even by SIGKILL) leaves the store
  valid, holding each ``put_many`` batch completely or not at all (``synchronous=NORMAL`` in WAL mode
  survives process crashes; only a power loss may drop the last transactions);
* all SQLite work of one :class:`ResponseStore` runs on one dedicated worker thread that owns the
  connection, so the event loop is never blocked by disk I/O or lock waits, and the async methods
  can be called from any event loop (pytest-asyncio's per-test loops included).

Rows are never overwritten: the first recording of ``(key, index)`` wins, so a replay is stable even
while several writers record the same request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

__all__ = ["IGNORED_PARAMS", "ResponseStore", "StoredSample"]

_T = TypeVar("_T")

#: Version tag hashed into every request key; bump it when the canonical form changes.
_KEY_VERSION = "ttc-agents/response-store/v1"

#: Request parameters that do not change which samples come back, and so are not part of a request key.
#: Credentials and connection details (``api_key``, ``api_base``, ...) are among them: they are never
#: hashed, never stored. (The server is part of the key, but through :meth:`ResponseStore.request_key`'s
#: ``api_base`` argument, not through ``params``.) ``n`` is excluded because samples are stored one
#: per index. Anything not listed here (temperature, top_p, seed, max_tokens, stop, logprobs,
#: top_logprobs, penalties, ...) is part of the key, and so is any unknown parameter: when in doubt,
#: a parameter separates requests.
IGNORED_PARAMS: frozenset[str] = frozenset(
    {
        "n",
        # credentials
        "api_key",
        "azure_ad_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "vertex_credentials",
        # connection and transport
        "api_base",
        "base_url",
        "api_version",
        "organization",
        "custom_llm_provider",
        "timeout",
        "request_timeout",
        "max_retries",
        "num_retries",
        "extra_headers",
        "headers",
        "stream",
        "stream_options",
        # bookkeeping that does not reach the model's sampler
        "metadata",
        "user",
        "mock_response",
        "caching",
        "cache",
        "litellm_logging_obj",
        "litellm_call_id",
    }
)

#: Substrings that mark a parameter name as a secret whatever its exact name; such parameters are
#: dropped from request keys too. (Deliberately not ``token``: ``max_tokens`` matters.)
_SECRET_MARKERS: tuple[str, ...] = ("api_key", "secret", "password", "authorization", "access_key")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    key               TEXT    NOT NULL,
    idx               INTEGER NOT NULL,
    model             TEXT    NOT NULL,
    text              TEXT    NOT NULL,
    finish_reason     TEXT,
    logprobs          TEXT,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created           REAL    NOT NULL,
    PRIMARY KEY (key, idx)
) WITHOUT ROWID
"""

_BUSY_TIMEOUT_MS = 30_000
_LOCK_RETRIES = 20


@dataclass(frozen=True, slots=True)
class StoredSample:
    """One completion choice as recorded in a :class:`ResponseStore`.

    Attributes:
        text: The choice's message content (``""`` when the model returned none).
        finish_reason: ``"stop"``, ``"length"``, ... as the provider reported it, or ``None``.
        logprobs: The OpenAI chat ``choices[i].logprobs.content`` entries (dicts with ``token``,
            ``logprob``, ``bytes`` and ``top_logprobs``), or ``None`` when not requested.
        prompt_tokens: Prompt tokens the request used.
        completion_tokens: Tokens of this choice. When a provider only reports the total for ``n``
            choices, the caller decides how to split it.
    """

    text: str
    finish_reason: str | None
    logprobs: list[dict[str, Any]] | None
    prompt_tokens: int
    completion_tokens: int


def _json_default(value: object) -> object:
    """Make pydantic models, dataclass-like objects and sets canonical-JSON serialisable."""
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"cannot put a {type(value).__name__} into a request key: {value!r}")


def _canonical_json(value: object) -> str:
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


def _is_locked_error(error: sqlite3.OperationalError) -> bool:
    message = str(error).lower()
    return "locked" in message or "busy" in message


class ResponseStore:
    """Sampled responses kept in one SQLite file, keyed by request and sample index.

    Args:
        path: The SQLite file. Created (with its directory) on the first write.
        record: Write samples given to :meth:`put_many`. With ``record=False`` nothing is ever
            written: the file is not created and its journal mode is left alone.
        replay: Return recorded samples from :meth:`get_many`. With ``replay=False`` nothing is
            read and :meth:`get_many` always returns ``{}``.

    Use it as a (sync or async) context manager, or call :meth:`close` / :meth:`aclose`.
    """

    def __init__(self, path: str | os.PathLike[str], *, record: bool = True, replay: bool = True) -> None:
        self.path = Path(path)
        self.record = record
        self.replay = replay
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ttc-response-store")
        self._conn: sqlite3.Connection | None = None  # owned by the worker thread
        self._schema_ready = False
        self._closed = False
        self._close_lock = threading.Lock()

    # -- keys ---------------------------------------------------------------------------------------

    @staticmethod
    def request_key(
        model: str,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        *,
        api_base: str | None = None,
    ) -> str:
        """Return the stable key (64 hex digits) of a sampling request.

        The key is the SHA-256 of the canonical JSON (sorted keys, no whitespace) of the model name,
        the server the request goes to (``api_base``, without a trailing ``/``; left out of the key
        when None, so keys without a server are what they always were), the messages and the
        sampling parameters. From ``params`` it drops :data:`IGNORED_PARAMS`
        (``n``, credentials, connection and transport settings), any parameter whose name looks like
        a secret, and parameters whose value is ``None`` (the same as not passing them). Everything
        else, unknown parameters included, is part of the key.

        Raises:
            TypeError: when a message or parameter value cannot be expressed as JSON.
        """
        kept = {
            name: value
            for name, value in params.items()
            if value is not None
            and name not in IGNORED_PARAMS
            and not any(marker in name.lower() for marker in _SECRET_MARKERS)
        }
        payload: dict[str, Any] = {
            "version": _KEY_VERSION,
            "model": model,
            "messages": [dict(m) if isinstance(m, Mapping) else m for m in messages],
            "params": kept,
        }
        if api_base:
            payload["api_base"] = api_base.rstrip("/")
        return hashlib.sha256(_canonical_json(payload).encode("utf-8")).hexdigest()

    # -- async API ----------------------------------------------------------------------------------

    async def get_many(self, key: str, indices: Sequence[int]) -> dict[int, StoredSample]:
        """Return the recorded samples of ``key`` at ``indices``; indices never recorded are absent.

        Returns ``{}`` when replay is off or the file does not exist yet.
        """
        if not self.replay or not indices:
            return {}
        return await self._run(self._get_many_sync, key, list(indices))

    async def put_many(self, key: str, samples: Mapping[int, StoredSample], *, model: str = "") -> None:
        """Record ``samples`` (sample index -> sample) under ``key`` in one transaction.

        An index already recorded for ``key`` keeps its first recording. Does nothing when recording
        is off.

        Args:
            key: A key from :meth:`request_key`.
            samples: The samples to record, by sample index.
            model: The model name, stored alongside for inspection only (it is already in the key).
        """
        if not self.record or not samples:
            return
        # Encoding (logprobs JSON can be large) happens on the worker thread, off the event loop.
        await self._run(self._put_many_sync, key, dict(samples), model)

    async def aclose(self) -> None:
        """Close the store without blocking the event loop. Idempotent."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def close(self) -> None:
        """Close the connection and stop the worker thread. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._executor.submit(self._close_connection).result()
        finally:
            self._executor.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- worker-thread side -------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise RuntimeError(f"ResponseStore({str(self.path)!r}) is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connection(self, *, for_write: bool) -> sqlite3.Connection | None:
        """Open the connection on first use (in the worker thread). ``None``: no file to read yet."""
        if self._conn is None:
            if not for_write and not self.path.exists():
                return None
            if for_write:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; writes use explicit BEGIN IMMEDIATE.
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            self._conn = conn
        if for_write and not self._schema_ready:
            self._with_lock_retries(self._init_schema, self._conn)
            self._schema_ready = True
        return self._conn

    @staticmethod
    def _init_schema(conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch to WAL mode (got {mode!r}): database is locked")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(_SCHEMA)

    @staticmethod
    def _with_lock_retries(fn: Callable[[sqlite3.Connection], _T], conn: sqlite3.Connection) -> _T:
        """Call ``fn(conn)``, retrying with jittered backoff while SQLite reports a held lock."""
        for attempt in range(_LOCK_RETRIES):
            try:
                return fn(conn)
            except sqlite3.OperationalError as error:
                if not _is_locked_error(error) or attempt == _LOCK_RETRIES - 1:
                    raise
                if conn.in_transaction:
                    conn.rollback()
                time.sleep(min(1.0, 0.01 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _get_many_sync(self, key: str, indices: list[int]) -> dict[int, StoredSample]:
        conn = self._connection(for_write=False)
        if conn is None:
            return {}
        wanted = sorted(set(indices))
        placeholders = ",".join("?" * len(wanted))
        query = (
            "SELECT idx, text, finish_reason, logprobs, prompt_tokens, completion_tokens FROM samples"
            f" WHERE key = ? AND idx IN ({placeholders})"
        )

        def read(c: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return c.execute(query, [key, *wanted]).fetchall()

        try:
            rows = self._with_lock_retries(read, conn)
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):  # a file nobody has recorded into yet
                return {}
            raise
        return {
            idx: StoredSample(
                text=text,
                finish_reason=finish_reason,
                logprobs=None if logprobs is None else json.loads(logprobs),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
            for idx, text, finish_reason, logprobs, prompt_tokens, completion_tokens in rows
        }

    def _put_many_sync(self, key: str, samples: dict[int, StoredSample], model: str) -> None:
        created = time.time()
        rows = [
            (
                key,
                int(index),
                model,
                sample.text,
                sample.finish_reason,
                None if sample.logprobs is None else _canonical_json(sample.logprobs),
                int(sample.prompt_tokens),
                int(sample.completion_tokens),
                created,
            )
            for index, sample in samples.items()
        ]
        conn = self._connection(for_write=True)
        assert conn is not None

        def write(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(
                    "INSERT INTO samples (key, idx, model, text, finish_reason, logprobs,"
                    " prompt_tokens, completion_tokens, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (key, idx) DO NOTHING",
                    rows,
                )
            except BaseException:
                c.rollback()
                raise
            c.commit()

        self._with_lock_retries(write, conn)

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
