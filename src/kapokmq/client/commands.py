"""`kapokmq produce | consume | console`: the client library from the command line.

User errors (bad key, unreachable broker, rejected message) print one line to stderr and
exit non-zero; no tracebacks. Exit codes: 0 ok, 1 failure, 2 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import re
import signal
import socket
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from types import FrameType
from typing import Any

import orjson

from kapokmq.client.connection import DEFAULT_SECRET_KEY, DEFAULT_URL
from kapokmq.client.consumer import Consumer
from kapokmq.client.errors import (
    ApiError,
    AuthenticationError,
    ConnectionLostError,
    KapokMQError,
    SendError,
)
from kapokmq.client.http import STATUS_ALL, TIME_FORMAT, ConsoleClient
from kapokmq.client.producer import Producer
from kapokmq.client.progress import Progress
from kapokmq.login import MISMATCH

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]

STATUS_NAMES = {"all": STATUS_ALL, "waiting": -1, "delayed": 0, "consumed": 1, "dead": 2}
STATUS_LABELS = {-1: "waiting", 0: "delayed", 1: "consumed", 2: "dead"}
INTERRUPT_GRACE = 2.0  # seconds the orderly exit after Ctrl-C may take before a hard exit
PAGE_SIZE = 50  # `console list` without --all: a screenful, not the whole store
ALL_PAGE_SIZE = 10_000  # `console scheduled --all` pages this many at a time (the API's most)
MAX_ERRORS_SHOWN = 10


def _client_id(kind: str) -> str:
    return f"cli-{kind}-{socket.gethostname()}-{os.getpid()}"


def _err(text: str) -> None:
    print(f"kapokmq: {text}", file=sys.stderr)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C: unwind as KeyboardInterrupt (exit 130), and exit 130 anyway if the orderly
    unwinding has not ended the process within INTERRUPT_GRACE. asyncio's own handler only
    cancels the main task, which waits forever if one task loses that cancellation."""
    watchdog = threading.Timer(INTERRUPT_GRACE, os._exit, (130,))
    watchdog.daemon = True
    watchdog.start()
    signal.default_int_handler(signum, frame)


def _log_like_errors() -> None:
    """The library's warnings (a lost connection, a reconnect) as `kapokmq: ...` lines,
    like the errors, instead of logging's bare last-resort output."""
    logger = logging.getLogger("kapokmq.client")
    if logger.handlers or logging.getLogger().handlers:
        return  # the embedding program has its own logging
    handler = logging.StreamHandler()  # stderr
    handler.setFormatter(logging.Formatter("kapokmq: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    """Run an async command, mapping expected failures to a message and an exit code."""

    def run(args: argparse.Namespace) -> int:
        _log_like_errors()
        try:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, _interrupted)
            return asyncio.run(command(args))
        except (AuthenticationError, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.msg != MISMATCH:
                _err(exc.msg)
                return 1
            _err("the broker rejected the secret key (set --secret-key or KAPOKMQ_SECRET_KEY)")
        except KapokMQError as exc:
            _err(str(exc))
        except ValueError as exc:
            _err(str(exc))
            return 2
        except KeyboardInterrupt:
            return 130
        return 1

    return run


def _status(text: str) -> int:
    if text.lower() in STATUS_NAMES:
        return STATUS_NAMES[text.lower()]
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"status must be one of {', '.join(STATUS_NAMES)} or a number"
        ) from None


def _whole(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``, else a usage error naming it."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value

    return parse


_positive = _whole(1)
_count = _whole(0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> argparse.ArgumentParser:
    url = os.environ.get("KAPOKMQ_URL", DEFAULT_URL)
    key = os.environ.get("KAPOKMQ_SECRET_KEY", DEFAULT_SECRET_KEY)
    parser.add_argument(
        "--url",
        default=argparse.SUPPRESS if suppress else url,
        help=f"broker address (env KAPOKMQ_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--secret-key",
        default=argparse.SUPPRESS if suppress else key,
        help="broker secret key (env KAPOKMQ_SECRET_KEY, default 'test')",
    )
    return parser


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client subcommands to the `kapokmq` command."""
    common = _common_options(argparse.ArgumentParser(add_help=False), suppress=False)
    # Repeated on console actions (`console ping --url U`); SUPPRESS keeps an earlier value.
    late = _common_options(argparse.ArgumentParser(add_help=False), suppress=True)

    produce = subparsers.add_parser(
        "produce", parents=[common], help="publish messages (one per stdin line with -)"
    )
    produce.add_argument("--topic", required=True)
    produce.add_argument("--delay", type=int, default=0, help="delay in whole seconds")
    produce.add_argument(
        "--ttl",
        type=int,
        help="seconds it may wait to be consumed once due, then dead (expired); "
        "0: the topic's default",
    )
    produce.add_argument(
        "--message-id",
        help="dedup id of the one message (a repeat within the window is not stored)",
    )
    produce.add_argument("--producer-id", default=_client_id("producer"))
    produce.add_argument(
        "--max-in-flight", type=_positive, default=1000, help="unconfirmed messages at most"
    )
    produce.add_argument(
        "--http", action="store_true", help="use POST /Producer/Send and print each MessageCode"
    )
    produce.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr (default: when stderr is a terminal)",
    )
    produce.add_argument("data", nargs="?", default="-", help="message data, or - for stdin")
    produce.set_defaults(func=_runner(_produce))

    consume = subparsers.add_parser(
        "consume", parents=[common], help="print messages as JSON lines, acking each"
    )
    consume.add_argument("--topic", required=True)
    consume.add_argument(
        "--count", type=_count, default=0, help="stop after N messages (default 0: never)"
    )
    consume.add_argument("--no-ack", action="store_true", help="do not ack (broker redelivers)")
    consume.add_argument(
        "--timeout", type=_seconds, default=None, help="stop after S seconds without a message"
    )
    consume.add_argument("--consumer-id", default=_client_id("consumer"))
    consume.set_defaults(func=_runner(_consume))

    console = subparsers.add_parser("console", parents=[common], help="call the HTTP console API")
    actions = console.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, parents=[late], help=text)

    action("ping", "check the broker and the key")
    action("count", "message counts")
    action("config", "broker configuration")
    action("clients", "connected producers and consumers")
    action("nodes", "cluster nodes")
    action("get", "one message").add_argument("code")
    action("del", "delete one message").add_argument("code")
    listing = action("list", "messages in a time range, newest first")
    listing.add_argument(
        "--start",
        default="1970-01-02 00:00:00",
        type=_day_start,
        help="'YYYY-MM-DD HH:MM:SS', or a date alone (its first second)",
    )
    listing.add_argument(
        "--end",
        default=None,
        type=_day_end,
        help="as --start, a date alone is its last second; default: tomorrow",
    )
    listing.add_argument("--status", type=_status, default=STATUS_ALL, help="all|waiting|...")
    listing.add_argument("--topic", default=None)
    _paging(listing, "message")
    schedule = action("scheduled", "delayed messages, soonest first, with countdowns")
    schedule.add_argument("--topic", default=None, help="only this topic's")
    _paging(schedule, "delayed message")
    action("deliver-now", "make a delayed message due at once").add_argument("code")
    action(
        "requeue", "put a dead (or consumed) message back in its queue, attempts reset"
    ).add_argument("code")
    tracing = action("trace", "what happened to one message, oldest first (needs mq.trace)")
    tracing.add_argument("code")
    tracing.add_argument("--json", action="store_true", help="the events as JSON, not a table")
    console.set_defaults(func=_runner(_console))


def _paging(parser: argparse.ArgumentParser, noun: str) -> None:
    """--page | --all, --page-size and --json, as every listing action takes them."""
    pages = parser.add_mutually_exclusive_group()
    pages.add_argument("--page", type=_positive, default=1, help="1-based page (default 1)")
    pages.add_argument("--all", action="store_true", help=f"every matching {noun}, no paging")
    parser.add_argument(
        "--page-size", type=_positive, default=PAGE_SIZE, help=f"default {PAGE_SIZE}"
    )
    parser.add_argument(
        "--json", action="store_true", help="a JSON array of the messages instead of a table"
    )


# -- produce ------------------------------------------------------------------------------------


async def _read_chunks(loop: asyncio.AbstractEventLoop) -> AsyncIterator[bytes]:
    """Yield stdin in chunks read on a daemon thread, so replies keep flowing while input is
    slow, and Ctrl-C does not wait for a blocked read (the default executor would)."""
    # os.read on the descriptor: a buffered reader's lock held by a daemon thread aborts
    # the interpreter at exit.
    fd = sys.stdin.fileno()
    chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=16)

    def pump() -> None:
        while True:
            try:
                chunk: bytes | BaseException = os.read(fd, 1 << 16)
            except BaseException as exc:  # handed to the loop, raised there
                chunk = exc
            try:
                asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
            except RuntimeError:  # the loop is gone
                return
            if not chunk or isinstance(chunk, BaseException):
                return

    threading.Thread(target=pump, name="kapokmq-stdin", daemon=True).start()
    while True:
        item = await chunks.get()
        if isinstance(item, BaseException):
            raise item
        if not item:
            return
        yield item


def _stdin_size() -> int | None:
    try:
        info = os.fstat(sys.stdin.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) and info.st_size > 0 else None


def _extras(args: argparse.Namespace) -> dict[str, Any]:
    """--ttl and --message-id as the clients' keywords (docs/protocol.md, TTL and Dedup)."""
    if args.ttl is not None and args.ttl < 0:
        raise ValueError(f"--ttl must be whole seconds >= 0 (0: the topic's), got {args.ttl}")
    if args.message_id is not None and args.data == "-":
        raise ValueError("--message-id names one message; with - every line would repeat it")
    return {"ttl": args.ttl, "message_id": args.message_id}


async def _produce(args: argparse.Namespace) -> int:
    extras = _extras(args)
    if args.http:
        return await _produce_http(args)
    async with Producer(
        args.url, args.topic, args.producer_id, args.secret_key, max_in_flight=args.max_in_flight
    ) as producer:
        if args.data != "-":
            await producer.send(args.data, args.delay, **extras)
            return 0
        _say_if_typing()
        show = sys.stderr.isatty() if args.progress is None else args.progress
        # Asked for explicitly: show it at once; automatic: only once the input proves large.
        delay = 0.0 if args.progress else 0.5
        progress = Progress(sys.stderr, _stdin_size(), delay=delay) if show else None
        counts = {"sent": 0, "confirmed": 0, "failed": 0, "bytes": 0}
        # Every reply counted: a future's callbacks run a loop turn after its reply, so
        # waiting for the replies (producer.flush) may end before the last are counted.
        counted = asyncio.Event()
        counted.set()

        def done(line_no: int) -> Callable[[asyncio.Future[None]], None]:
            def callback(future: asyncio.Future[None]) -> None:
                exc = None if future.cancelled() else future.exception()
                if exc is None:
                    counts["confirmed"] += 1
                else:
                    counts["failed"] += 1
                    if counts["failed"] <= MAX_ERRORS_SHOWN:
                        reason = exc.reason if isinstance(exc, SendError) else str(exc)
                        _err(f"line {line_no}: {reason}")
                if counts["confirmed"] + counts["failed"] == counts["sent"]:
                    counted.set()

            return callback

        async def send_line(raw: bytes) -> None:
            line = raw.decode("utf-8", "replace").removesuffix("\r")
            counts["sent"] += 1
            counts["bytes"] += len(raw) + 1  # the bar follows what was sent, not what was read
            counted.clear()
            future = await producer.submit(line, args.delay, ttl=args.ttl)
            future.add_done_callback(done(counts["sent"]))
            if progress:
                progress.update(counts["sent"], counts["confirmed"], counts["bytes"])

        tail = b""
        async for chunk in _read_chunks(asyncio.get_running_loop()):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for raw in lines:
                await send_line(raw)
        if tail:
            await send_line(tail)
        await counted.wait()
        if progress:
            progress.finish(counts["sent"], counts["confirmed"], counts["bytes"])
        if counts["failed"]:
            _err(f"{counts['failed']} of {counts['sent']} messages were rejected")
            return 1
        return 0


def _say_if_typing() -> None:
    """`kapokmq produce --topic t` on a terminal reads the keyboard: say so, or it looks hung."""
    if sys.stdin.isatty():
        _err("reading messages from the terminal, one per line; Ctrl-D ends")


async def _produce_http(args: argparse.Namespace) -> int:
    async with ConsoleClient(args.url, args.secret_key) as client:
        if args.data != "-":
            print(await client.send(args.topic, args.data, args.delay, **_extras(args)))
            return 0
        _say_if_typing()
        failed = 0
        async for chunk in _read_lines(asyncio.get_running_loop()):
            try:
                print(await client.send(args.topic, chunk, args.delay, ttl=args.ttl), flush=True)
            except KapokMQError as exc:
                if isinstance(exc, AuthenticationError | ConnectionLostError):
                    raise
                failed += 1
                _err(str(exc))
        return 1 if failed else 0


async def _read_lines(loop: asyncio.AbstractEventLoop) -> AsyncIterator[str]:
    tail = b""
    async for chunk in _read_chunks(loop):
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        for raw in lines:
            yield raw.decode("utf-8", "replace").removesuffix("\r")
    if tail:
        yield tail.decode("utf-8", "replace").removesuffix("\r")


# -- consume ------------------------------------------------------------------------------------


async def _consume(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    received = 0
    async with Consumer(args.url, args.topic, args.consumer_id, args.secret_key) as consumer:
        while not args.count or received < args.count:
            try:
                msg = await consumer.receive(args.timeout)
            except TimeoutError:
                if args.count:
                    _err(f"timed out after {received} of {args.count} messages")
                    return 1
                return 0
            # a closed pipe raises here, before the ack: the message is redelivered
            # (kapokmq.cli exits quietly)
            out.write(orjson.dumps(msg.to_wire()) + b"\n")
            out.flush()
            received += 1
            if not args.no_ack:
                await msg.ack()
    return 0


# -- console ------------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _day_start(text: str) -> str:
    """A date alone (``2026-12-02``) is the start of that day, as in the web console."""
    return f"{text} 00:00:00" if _DATE_ONLY.fullmatch(text) else text


def _day_end(text: str) -> str:
    return f"{text} 23:59:59" if _DATE_ONLY.fullmatch(text) else text


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


async def _console(args: argparse.Namespace) -> int:
    async with ConsoleClient(args.url, args.secret_key) as client:
        action = args.action
        if action == "ping":
            await client.ping()
            print("ok")
        elif action == "count":
            _print_json(await client.count())
        elif action == "config":
            _print_json(await client.config())
        elif action == "clients":
            _print_json(await client.clients())
        elif action == "nodes":
            _print_json(await client.nodes())
        elif action == "get":
            _print_json(await client.get_message(args.code))
        elif action == "del":
            await client.del_message(args.code)
            print("ok")
        elif action == "list":
            await _list(client, args)
        elif action == "scheduled":
            await _scheduled(client, args)
        elif action == "deliver-now":
            await client.deliver_now(args.code)
            print("ok")
        elif action == "requeue":
            await client.requeue(args.code)
            print("ok")
        elif action == "trace":
            events = await client.trace(args.code)
            if args.json:
                _print_json(events)
            else:
                _print_trace(events)
    return 0


async def _list(client: ConsoleClient, args: argparse.Namespace) -> None:
    """A page of messages on stdout (a table, or JSON with --json); on stderr, how to get
    the rest, so stdout stays what was asked for."""
    end = args.end or (dt.datetime.now() + dt.timedelta(days=1)).strftime(TIME_FORMAT)
    if args.all:
        messages = await client.list_messages(args.start, end, args.status, args.topic)
        total = len(messages)
    else:
        messages, total = await client.list_page(
            args.start, end, args.status, args.topic, args.page, args.page_size
        )
    if args.json:
        _print_json(messages)
    else:
        _print_table(messages)
    _say_what_is_left(args, len(messages), total, "messages, newest first")


def _say_what_is_left(args: argparse.Namespace, shown: int, total: int, what: str) -> None:
    """On stderr, so stdout stays what was asked for: how to get the rest of a listing."""
    first = (args.page - 1) * args.page_size
    if not args.all and first + shown < total:
        _err(
            f"showing {first + 1}-{first + shown} of {total} {what}; "
            f"--page {args.page + 1} for the next {args.page_size}, --all for all of them"
        )
    elif not shown and total:
        _err(f"page {args.page} is past the last one ({total} {what.split(',')[0]})")


async def _scheduled(client: ConsoleClient, args: argparse.Namespace) -> None:
    """A page of the schedule (a table with countdowns from the broker's clock, or JSON).
    ``--all`` reads it page by page: what comes due meanwhile may be missed or repeated."""
    if args.all:
        messages: list[dict[str, Any]] = []
        page = 1
        while True:
            chunk, total, now = await client.scheduled(args.topic, page, ALL_PAGE_SIZE)
            messages += chunk
            if len(chunk) < ALL_PAGE_SIZE or len(messages) >= total:
                break
            page += 1
    else:
        messages, total, now = await client.scheduled(args.topic, args.page, args.page_size)
    if args.json:
        _print_json(messages)
    else:
        _print_rows(
            ("DUE", "IN", "TOPIC", "DELAY", "CODE"),
            [
                (
                    _local_time(m["DueTime"]),
                    _countdown(m["DueTime"] - now),
                    m["Topic"],
                    str(m["DelayTime"]),
                    m["MessageCode"],
                )
                for m in messages
            ],
        )
    _say_what_is_left(args, len(messages), total, "delayed messages, soonest first")


def _countdown(seconds: int) -> str:
    """``1d 02h``, ``2h 03m``, ``4m 05s``, ``12s``: the two largest units; ``due`` at 0."""
    if seconds <= 0:
        return "due"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _local_time(unix: int) -> str:
    try:
        return dt.datetime.fromtimestamp(unix).strftime(TIME_FORMAT)
    except (OverflowError, OSError, ValueError):  # a delay of centuries
        return f"@{unix}"


def _print_trace(events: list[dict[str, Any]]) -> None:
    rows = []
    for event in events:
        details = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("Time", "Event"))
        rows.append((_local_time(event["Time"]), event["Event"], details))
    _print_rows(("TIME", "EVENT", "DETAILS"), rows)


def _print_table(messages: list[dict[str, Any]]) -> None:
    _print_rows(
        ("CREATED", "STATUS", "TOPIC", "DELAY", "CODE"),
        [
            (
                _local_time(m["CreateTime"]),
                STATUS_LABELS.get(m["Status"], str(m["Status"])),
                m["Topic"],
                str(m["DelayTime"]),
                m["MessageCode"],
            )
            for m in messages
        ],
    )


def _print_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell; the last one is not padded."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))
