"""Running a service from the command line, shared by `kapokmq serve` (server/commands.py)
and `kapokmq registry` (cluster/commands.py): flags to config overrides, logging, the
event loop, configuration errors as one line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from kapokmq.config import ConfigError

T = TypeVar("T")


def flag_overrides(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    """``--set SECTION.KEY=VALUE`` items, then the named flags (attribute -> dotted key)."""
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    for flag, key in flags.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    return overrides


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level != "DEBUG":  # picows logs every connection at INFO; ours already does
        logging.getLogger("picows").setLevel(logging.WARNING)


def run_service(
    args: argparse.Namespace,
    load: Callable[[], T],
    run: Callable[[T], Coroutine[Any, Any, None]],
) -> int:
    """Shared by `serve` and `registry`: logging, config (errors as one line), event loop."""
    configure_logging(args.log_level)
    try:
        config = load()
    except ConfigError as exc:
        print(f"kapokmq: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(config))
    else:
        uvloop.run(run(config))
    return 0
