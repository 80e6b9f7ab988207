"""Running the library's coroutines from synchronous code.

Everything that calls a model is async. :func:`run_sync` runs one such coroutine to completion from
a synchronous caller (``invoke``, ``batch`` or ``stream`` on a graph, ChatTTC's ``invoke``, LiteLLM's
sync ``completion`` on the ttc provider), whether or not an event loop is already running in the
calling thread (a Jupyter cell, an ``async def`` that calls a sync API, a sync LangGraph parent run in a
thread).

The coroutine runs on ONE long-lived event loop on a daemon thread, shared by every synchronous call in
the process, rather than on a fresh loop per call (``asyncio.run``): loop-bound resources -- LiteLLM's
async HTTP clients (cached per loop), the gateway's per-loop concurrency semaphores and Router groups --
stay valid and are reused across calls instead of being rebuilt, and leaked, once per call. Called from
inside that loop itself (a sync call nested in a coroutine that already runs there), the coroutine runs
on a fresh loop in a worker thread instead, so it never deadlocks.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


class _BackgroundLoop:
    """One event loop on a daemon thread, started on first use.

    At interpreter exit its remaining tasks are cancelled and it is closed, as ``asyncio.run`` would.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                if self._thread is None:
                    atexit.register(self.shutdown)
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="ttc-agents-sync", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def shutdown(self) -> None:
        """Cancel what still runs on the loop, stop it and close it (a later call starts a new one)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = None
        if loop is None or loop.is_closed() or thread is None:
            return

        async def cancel_all() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()


_BACKGROUND = _BackgroundLoop()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, whether or not a loop is running here.

    The coroutine runs on the shared background loop, in a copy of the caller's context (so
    LangChain's run context and LangGraph's config propagate); the calling thread waits. If the caller
    is interrupted (KeyboardInterrupt, a cancelled future), the task is cancelled. Called from inside
    the background loop itself, it runs on a fresh loop in a worker thread instead.
    """
    context = contextvars.copy_context()
    loop = _BACKGROUND.get()
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ttc-agents-nested") as pool:
            return pool.submit(context.run, asyncio.run, coro).result()

    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    tasks: list[asyncio.Task[T]] = []

    def relay(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            done.cancel()
        elif (error := task.exception()) is not None:
            done.set_exception(error)
        else:
            done.set_result(task.result())

    def start() -> None:
        task = loop.create_task(coro, context=context)
        tasks.append(task)
        task.add_done_callback(relay)

    loop.call_soon_threadsafe(start)
    try:
        return done.result()
    except BaseException:
        if tasks and not tasks[0].done():
            loop.call_soon_threadsafe(tasks[0].cancel)
        raise
