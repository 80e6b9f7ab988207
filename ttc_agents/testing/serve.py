"""``python -m ttc_agents.testing.serve --kind scripted|fake [--latency S] [--completion-tokens N]``: one
loopback model server (see :mod:`ttc_agents.testing._servers`); prints its port, serves until stdin closes."""

from __future__ import annotations

import argparse
import asyncio

from ttc_agents.testing._servers import serve_until_stdin_closes

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=("scripted", "fake"), default="scripted")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--completion-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    asyncio.run(serve_until_stdin_closes(args.kind, args.latency, args.completion_tokens))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
