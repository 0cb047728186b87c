"""Runner options, importable without the runner's dependencies (for `kapokmq bench`)."""

from __future__ import annotations

import argparse

SCENARIOS = (
    "ceiling",
    "e2e",
    "dedup",
    "latency",
    "fanout",
    "topics",
    "http",
    "wrk",
    "batch",
    "fill",
    "aiohttp",
    "persistence",
    "memory",
    "recovery",
    "delay",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", help=f"comma-separated subset of: {','.join(SCENARIOS)}")
    parser.add_argument("--repeat", type=int, default=None, help="runs per scenario (3)")
    parser.add_argument("--scale", type=float, default=None, help="size factor (1.0)")
    parser.add_argument("--quick", action="store_true", help="--scale 0.2 --repeat 1")
    parser.add_argument("--rate", type=float, default=20_000, help="latency scenario rate")
    parser.add_argument("--label", default="", help="name for the JSON file")
    parser.add_argument(
        "--report",
        nargs="?",
        const="",
        default=None,
        metavar="HTML",
        help="also write the HTML report (default benchmarks/results/report-<time>.html)",
    )
    parser.add_argument(
        "--previous", metavar="JSON", help="run to compare with (default: the newest other)"
    )
    parser.add_argument("--from-json", metavar="JSON", help="run nothing: report on this saved run")
