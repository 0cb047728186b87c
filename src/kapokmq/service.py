"""Running a service from the command line, shared by `kapokmq serve` (server/commands.py)
and `kapokmq registry` (cluster/commands.py): flags to config overrides, logging, the
event loop, configuration errors as one line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
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


class JsonLines(logging.Formatter):
    """``--log-format json``: one JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def add_logging_options(p: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``--log-format``, read by ``configure_logging``."""
    p.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,  # `--log-level debug` too
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="least severe log lines written to stderr (default INFO)",
    )
    p.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="log lines as text (default) or as one JSON object each (time, level, logger, msg)",
    )


def configure_logging(level: str, style: str = "text") -> None:
    from kapokmq.httpbase import RefusedRequests  # aiohttp: not for `serve --help`

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RefusedRequests())
    if style == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])
    if level != "DEBUG":  # picows logs every connection at INFO; ours already does
        logging.getLogger("picows").setLevel(logging.WARNING)


def run_service(
    args: argparse.Namespace,
    load: Callable[[], T],
    run: Callable[[T], Coroutine[Any, Any, None]],
) -> int:
    """Shared by `serve` and `registry`: logging, config (errors as one line), event loop."""
    configure_logging(args.log_level, getattr(args, "log_format", "text"))
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
