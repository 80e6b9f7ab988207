"""A loopback OpenAI-compatible server with canned step-by-step replies, for the speed benchmarks.

It does no model work: ``POST /v1/chat/completions`` answers the rest of a fixed four-step solution
(``Step 1: ...`` to ``Step 4: The answer is \\boxed{89}.``, one step per line), continuing after the
highest ``Step k:`` found in the request's messages, so a step-level search really runs one round per
step whatever prompt format the client uses (the step in a user prompt, or an assistant prefix). It
honours ``n`` (identical choices), ``stop`` and ``max_tokens`` (words count as tokens), reports
``usage``, and counts requests (``GET /stats``, ``POST /stats/reset``). It runs in a process of its
own (:class:`CannedServer`), so the clients' CPU is measured apart from the server's.

    python -m ttc_agents.bench._canned          # prints the port, serves until stdin closes
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from types import TracebackType
from typing import Any, Final, Self

__all__ = ["SOLUTION", "CannedServer", "canned_reply", "serve"]

SOLUTION: Final = (
    "Step 1: 12 * 7 = 84",
    "Step 2: 84 + 5 = 89",
    "Step 3: 89 checks out: 89 - 5 = 84 and 84 / 7 = 12",
    "Step 4: The answer is \\boxed{89}.",
)
"""The canned solution, one step per line."""

_STEP: Final = re.compile(r"Step (\d+):")


def canned_reply(body: dict[str, Any]) -> tuple[str, str]:
    """(text, finish_reason) of the reply to a chat request: the steps after the last one in its messages,
    cut at the first ``stop`` string and at ``max_tokens`` words."""
    seen = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            seen = max(seen, *(int(k) for k in _STEP.findall(content)), 0)
    text = "\n".join(SOLUTION[min(seen, len(SOLUTION) - 1) :])
    stop = body.get("stop")
    for s in [stop] if isinstance(stop, str) else stop or ():
        if isinstance(s, str) and s and s in text:
            text = text[: text.index(s)]
    words = text.split(" ")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and len(words) > limit:
        return " ".join(words[:limit]), "length"
    return text, "stop"


def _words(text: str) -> int:
    return len(text.split())


async def serve(port: int = 0) -> tuple[Any, int]:
    """Serve on 127.0.0.1 (an aiohttp runner, started); returns the runner and the port."""
    from aiohttp import web

    requests = 0

    async def chat(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        body = await request.json()
        text, finish = canned_reply(body)
        n = int(body.get("n") or 1)
        prompt = sum(_words(str(m.get("content") or "")) for m in body.get("messages") or ())
        completion = _words(text) * n
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        payload = {
            "id": f"chatcmpl-{requests}",
            "object": "chat.completion",
            "created": 0,
            "model": str(body.get("model", "canned")),
            "choices": [{**choice, "index": i} for i in range(n)],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }
        return web.Response(text=json.dumps(payload), content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"requests": requests})

    async def reset(request: web.Request) -> web.Response:
        nonlocal requests
        requests = 0
        return web.json_response({"requests": 0})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", stats)
    app.router.add_post("/stats/reset", reset)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock, backlog=2048).start()
    bound: int = sock.getsockname()[1]
    return runner, bound


async def _main() -> None:
    runner, port = await serve()
    print(port, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await runner.cleanup()


class CannedServer:
    """The canned server in a child process on 127.0.0.1; stops when its stdin closes. A context manager."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ttc_agents.bench._canned"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip():
            self.__exit__(None, None, None)
            raise RuntimeError("the canned server did not start")
        self.port = int(line)
        return self

    @property
    def url(self) -> str:
        """The ``/v1`` base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    asyncio.run(_main())
