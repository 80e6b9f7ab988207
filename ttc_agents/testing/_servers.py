"""Loopback model servers for tests and measurements: the scripted test double behind an
OpenAI-compatible API (:func:`serve_scripted`), a server of either kind in a child process
(:class:`ServerProcess`, whose CPU is then measured apart from the client's), and a port nothing
listens on (:func:`closed_port`, a deployment that is down).

Kinds: ``fake``, the fake OpenAI server (:class:`~ttc_agents.testing.FakeOpenAIServer`: canned
completions of a fixed token count, no model work); ``scripted``, the scripted test double
(``scripted/<profile>``): the same answers and usage as calling ``scripted/<profile>`` in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from ttc_agents._llm.scripted import scripted_respond
from ttc_agents.testing._openai_server import FakeOpenAIServer, FakeServerConfig

__all__ = ["ServerProcess", "closed_port", "serve_scripted", "serve_until_stdin_closes"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): a deployment that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def serve_scripted(port: int = 0, latency: float = 0.0) -> tuple[Any, int]:
    """Serve the scripted test double as an OpenAI-compatible ``POST /v1/chat/completions`` on
    127.0.0.1 (the request's ``model`` names the profile). Returns the aiohttp runner and the port."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        if latency > 0:
            await asyncio.sleep(latency)
        try:
            response = scripted_respond(str(body.get("model", "arith")), body.get("messages") or [], body)
        except Exception as exc:
            status = int(getattr(exc, "status_code", 400) or 400)
            return web.json_response({"error": {"message": str(exc), "type": "invalid_request_error"}}, status=status)
        payload: dict[str, Any] = response.model_dump(mode="json")  # type: ignore[no-untyped-call]
        return web.json_response(payload)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock, backlog=1024).start()
    bound: int = sock.getsockname()[1]
    return runner, bound


async def serve_until_stdin_closes(kind: str, latency: float = 0.0, completion_tokens: int = 32) -> None:
    """Serve one ``kind`` of server (``scripted`` or ``fake``) on 127.0.0.1, print its port, and stop
    when stdin closes (the child side of :class:`ServerProcess`)."""
    if kind == "scripted":
        runner, port = await serve_scripted(0, latency)
        print(port, flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await runner.cleanup()
        return
    server = FakeOpenAIServer(FakeServerConfig(completion_tokens=completion_tokens, latency=latency)).start()
    print(server.port, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    server.stop()


class ServerProcess:
    """One model server in a child process on 127.0.0.1; it stops when its stdin closes (or is killed
    by its PID after ``timeout``). A context manager."""

    def __init__(self, kind: str = "scripted", *, latency: float = 0.0, completion_tokens: int = 32) -> None:
        self.command = [
            sys.executable,
            "-m",
            "ttc_agents.testing.serve",
            "--kind",
            kind,
            "--latency",
            str(latency),
            "--completion-tokens",
            str(completion_tokens),
        ]
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> Self:
        """Start the server and wait until it listens."""
        return self.launch().wait_ready()

    def launch(self) -> Self:
        """Start the process without waiting (several servers start in parallel this way)."""
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def wait_ready(self) -> Self:
        """Wait for the port the server prints once it listens."""
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip():
            self.stop()
            raise RuntimeError(f"server did not start: {' '.join(self.command)}")
        self.port = int(line)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
