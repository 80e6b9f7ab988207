"""The embedded model's server process: llama.cpp's own C++ server, loaded from the ``xllamacpp`` wheel.

``python -m ttc_agents._llm.llama_server --model PATH --alias NAME --port P`` serves one GGUF file on
127.0.0.1 with llama.cpp's OpenAI-compatible HTTP API (``/v1/chat/completions``, ``/v1/completions``,
``/v1/models``) until SIGTERM or SIGINT. :mod:`ttc_agents._llm.local` starts it in its own process group
and finds it again by this module's name in ``/proc/PID/cmdline``.

Why ``xllamacpp`` and not ``llama-cpp-python``: it is a prebuilt manylinux wheel (about 34 MB, seconds to
install) where llama-cpp-python is an sdist that compiles llama.cpp for 4-10 minutes on 2 cores; its server
is llama.cpp's native one, with continuous batching over ``parallel`` slots, so concurrent requests share
each decoding step (about 2x the tokens/s of one sequence at a time for SmolLM2-135M on 2 cores). Its CPU
wheel is built without ``-march=native``, so no AMX tile instructions that a sandboxed kernel refuses.

What it does differently, measured on xllamacpp 2026.10 (see ``ttc_agents._llm.local``): a request with
``n > 1`` returns ``n`` choices but ``usage`` counts one of them, so the gateway asks it for one sample
per request (parallel requests batch anyway); a request ``seed`` makes a sample repeatable.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The server's command line (every flag required but the tuning ones)."""
    parser = argparse.ArgumentParser(prog="python -m ttc_agents._llm.llama_server", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="GGUF file to serve")
    parser.add_argument("--alias", required=True, help="model id the server answers to (GET /v1/models)")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--n-ctx", type=int, default=2048, help="context size of one slot")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (generation and prompt)")
    parser.add_argument("--parallel", type=int, default=4, help="slots: requests decoded together")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code."""
    args = parse_args(argv)
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_parallel = args.parallel
    params.n_ctx = args.n_ctx * args.parallel  # the KV cache is split evenly between the slots
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = xllamacpp.Server(params)  # loads the model and starts listening; serves from its own threads
    print(f"ttc-agents llama_server: {args.alias} on {server.listening_address}", flush=True)
    stop.wait()
    del server  # joins llama.cpp's threads before the interpreter goes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
