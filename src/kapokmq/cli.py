"""The `kapokmq` command: one entry point, subcommands registered by the modules that own them."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from kapokmq import __version__

# Each module exposes `register(subparsers)`; it adds its subcommands and sets `func`
# (args -> exit code) on each. Optional modules that are not present are skipped.
COMMAND_MODULES = (
    "kapokmq.server.commands",
    "kapokmq.client.commands",
    "kapokmq.cluster.commands",
    "benchmarks.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kapokmq",
        description="KapokMQ for Python: a message queue that speaks the Go KapokMQ's "
        "WebSocket and HTTP API. Start a broker with `kapokmq serve`; "
        "`kapokmq COMMAND --help` tells more about each command.",
    )
    parser.add_argument("--version", action="version", version=f"kapokmq {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here rather than in the exit-time flush
    except BrokenPipeError:
        # `kapokmq console list | head`: the reader has what it wanted; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return result


if __name__ == "__main__":
    sys.exit(main())
