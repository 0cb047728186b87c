"""`kapokmq bench`: the benchmark runner (only when run from a source checkout)."""

from __future__ import annotations

import argparse

from benchmarks.options import add_arguments


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "bench",
        help="run the benchmarks (same as python -m benchmarks)",
        description="Run the benchmarks (python -m benchmarks --help for details).",
    )
    add_arguments(p)
    p.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    from benchmarks.__main__ import run

    return run(args)
