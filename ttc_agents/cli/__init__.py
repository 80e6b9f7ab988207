"""The ``ttc`` command line: one module per subcommand, each with ``register(subparsers)``.

:func:`main` is the console script (``ttc solve``, ``serve-local``, ``calibrate``, ``batch``, ``bench``,
``demo``, ``doctor``); :func:`build_parser` returns its argument parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ttc_agents._core.gc import freeze_after_imports

__all__ = ["build_parser", "freeze_after_imports", "main"]

_COMMANDS = ("solve", "serve_local", "calibrate", "batch", "bench", "demo", "doctor")


def build_parser() -> argparse.ArgumentParser:
    """The ``ttc`` argument parser, with every subcommand whose module is installed."""
    from ttc_agents.cli._errors import OneLineErrorParser

    parser = OneLineErrorParser(
        prog="ttc", description="Compute-optimal test-time scaling for LLM pipelines (ttc-agents)."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # Bad flag values give one line naming the flag (the checkers of ttc_agents.cli._errors).
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"ttc_agents.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ttc_agents.cli.{name}":
                raise
            continue
        module.register(subparsers)
    for command in subparsers.choices.values():
        # --debug works after the subcommand too; SUPPRESS keeps the main parser's value otherwise.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ttc`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("ttc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        from ttc_agents._llm.secrets import mask_secrets

        # The gateway masks provider errors already; this covers every other error too.
        message = mask_secrets(" ".join(str(exc).split())) or type(exc).__name__
        print(f"ttc {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
