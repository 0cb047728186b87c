"""Runner options, importable without the runner's dependencies (for `kapokmq bench`)."""

from __future__ import annotations

import argparse

SCENARIOS = (
    "ceiling",
    "e2e",
    "latency",
    "fanout",
    "topics",
    "http",
    "fill",
    "aiohttp",
    "persistence",
    "memory",
    "delay",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", help=f"comma-separated subset of: {','.join(SCENARIOS)}")
    parser.add_argument("--repeat", type=int, default=None, help="runs per scenario (3)")
    parser.add_argument("--scale", type=float, default=None, help="size factor (1.0)")
    parser.add_argument("--quick", action="store_true", help="--scale 0.2 --repeat 1")
    parser.add_argument("--rate", type=float, default=20_000, help="latency scenario rate")
    parser.add_argument("--label", default="", help="name for the JSON file")
