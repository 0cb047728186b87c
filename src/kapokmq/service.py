"""Running a service from the command line, shared by `kapokmq serve` (server/commands.py)
and `kapokmq registry` (cluster/commands.py): flags to config overrides, logging, the
event loop, configuration errors as one line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import OrderedDict
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


class RefusedRequests(logging.Filter):
    """On aiohttp's ``aiohttp.server`` logger: a request its parser refuses (answered 400:
    a header line over 8 KiB, a bad request line, no Host...) is the client's doing, yet
    aiohttp logs each as an ERROR with a traceback. That becomes one INFO line naming the
    address and the reason, at most one per address every ``interval`` seconds; the next
    line from that address counts those left out (README "Observability"). Other records,
    a handler's own exception with its traceback among them, pass unchanged.

    At most ``max_peers`` addresses are tracked (bounded memory, and at most that many
    lines an interval however many addresses send); what is left out beyond them is
    counted on the next line written."""

    def __init__(
        self,
        refused: type[BaseException],
        interval: float = 60.0,
        max_peers: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.refused = refused
        self.interval = interval
        self.max_peers = max_peers
        self.clock = clock
        # address -> [time of its last line, refusals left out since], oldest line first
        self.peers: OrderedDict[str, list[float]] = OrderedDict()
        self.untracked = 0  # left out for addresses no longer (or never) tracked

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, self.refused):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        peer = str(args[0] or "?") if args else "?"
        now = self.clock()
        entry = self.peers.get(peer)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return False
        left_out = int(entry[1]) if entry is not None else 0
        if entry is None and len(self.peers) >= self.max_peers:
            oldest = next(iter(self.peers.values()))
            if now - oldest[0] < self.interval:  # every tracked address had its line
                self.untracked += 1
                return False
            self.untracked += int(self.peers.popitem(last=False)[1][1])
        self.peers[peer] = [now, 0]
        self.peers.move_to_end(peer)
        notes = []
        if left_out:
            notes.append(f"{left_out} more from {peer} not logged")
        if self.untracked:
            notes.append(f"{self.untracked} more from other addresses not logged")
            self.untracked = 0
        reason = " ".join(str(getattr(exc, "message", "") or exc).split())[:200]
        record.levelno = min(record.levelno, logging.INFO)
        record.levelname = logging.getLevelName(record.levelno)
        record.msg = "refused a malformed HTTP request from %s: %s: %s%s"
        record.args = (peer, type(exc).__name__, reason, f" ({'; '.join(notes)})" if notes else "")
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def configure_logging(level: str, style: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if style == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])
    if level != "DEBUG":  # picows logs every connection at INFO; ours already does
        logging.getLogger("picows").setLevel(logging.WARNING)
    from aiohttp.http_exceptions import HttpProcessingError  # not for `serve --help`

    logging.getLogger("aiohttp.server").addFilter(RefusedRequests(HttpProcessingError))


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
