"""A stranger's refused requests cannot flood the log (httpbase.RefusedRequests): each is
answered as before (400, or 403 for the Origin rule), but logged as one short line per
address and interval, not as an ERROR with a traceback each, nor a line each; a handler's
own exception keeps its traceback."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from kapokmq.httpbase import RefusedRequests
from tests.cluster.harness import RegistryProcess
from tests.harness import BrokerProcess

# requests aiohttp's parser refuses, on the lean path, the router and aiohttp alike
MALFORMED = [
    b"GET /Producer/Send HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET / HTTP/9.9x\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n\r\n",  # no Host
    b"POST /Producer/Send HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
]
ROUNDS = 25  # 100 bad requests


def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection; the whole answer, once the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


LONG_ORIGIN = b"http://evil.example/" + b"o" * 7000  # within aiohttp's 8190
# refused by the Origin rule (403): an HTTP request (aiohttp's middleware, broker and
# registry) and a WebSocket upgrade (the first-request router, broker only)
BAD_ORIGIN = (
    b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
    b"Connection: close\r\n\r\n"
)
UPGRADE = (
    b"GET /Producers/Conn/t/p1 HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: %s\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize("process", [BrokerProcess, RegistryProcess])
def test_refused_requests_log_one_line(process: type[BrokerProcess], tmp_path: Path) -> None:
    service = process(cwd=tmp_path).start()
    broker = process is BrokerProcess
    # the one line logged: a long Origin, cut short
    first = (
        UPGRADE % LONG_ORIGIN if broker else BAD_ORIGIN.replace(b"http://evil.example", LONG_ORIGIN)
    )
    try:
        assert exchange(service.port, first).startswith(b"HTTP/1.1 403 ")
        for _ in range(ROUNDS):
            for request in MALFORMED:
                assert exchange(service.port, request).startswith(b"HTTP/1.0 400 ")
            assert exchange(service.port, BAD_ORIGIN).startswith(b"HTTP/1.1 403 ")
            if broker:
                upgrade = UPGRADE % b"http://evil.example"
                assert exchange(service.port, upgrade).startswith(b"HTTP/1.1 403 ")
        good = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert exchange(service.port, good).startswith(b"HTTP/1.1 200 ")
        log = service.log()
    finally:
        service.cleanup()
    refused = [line for line in log.splitlines() if "refused" in line]
    assert len(refused) == 1, log[-3000:]
    assert " INFO kapokmq." in refused[0] and "from 127.0.0.1: Origin 'http://evil" in refused[0]
    assert len(refused[0]) < 400
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


def test_malformed_request_line() -> None:
    """What the line for a malformed request says: address, kind and reason, no traceback."""
    line = record(LineTooLong("a" * 300, "8190"))
    assert RefusedRequests().filter(line)
    assert line.levelno == logging.INFO and line.exc_info is None
    text = line.getMessage()
    assert text.startswith("refused a malformed HTTP request from 10.0.0.1: LineTooLong: ")
    assert "\n" not in text and len(text) < 300


def record(exc: BaseException, peer: str | None = "10.0.0.1") -> logging.LogRecord:
    """What aiohttp's handle_error logs (aiohttp/web_protocol.py)."""
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        (peer,),
        (type(exc), exc, None),
    )


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_per_address_counts_what_it_left_out() -> None:
    clock = Clock()
    limit = RefusedRequests(interval=60.0, clock=clock)
    assert limit.filter(record(LineTooLong("x", "1")))
    assert not any(limit.filter(record(LineTooLong("x", "1"))) for _ in range(5))
    other = record(LineTooLong("x", "1"), peer="10.0.0.2")
    assert limit.filter(other)  # another address has its own line
    clock.now += 60.0
    again = record(LineTooLong("x", "1"))
    assert limit.filter(again)
    assert again.getMessage().endswith("(5 more from 10.0.0.1 not logged)")


def test_tracked_addresses_are_bounded() -> None:
    clock = Clock()
    limit = RefusedRequests(interval=60.0, max_peers=2, clock=clock)
    assert limit.filter(record(LineTooLong("x", "1"), peer="a"))
    assert limit.filter(record(LineTooLong("x", "1"), peer="b"))
    assert not limit.filter(record(LineTooLong("x", "1"), peer="c"))  # table full
    assert not limit.filter(record(LineTooLong("x", "1"), peer="a"))
    clock.now += 60.0
    late = record(LineTooLong("x", "1"), peer="d")  # evicts a, whose one left out is counted
    assert limit.filter(late)
    assert late.getMessage().endswith("(2 more from other addresses not logged)")
    assert len(limit.peers) == 2


def test_other_records_pass_unchanged() -> None:
    limit = RefusedRequests()
    for _ in range(3):
        bug = record(RuntimeError("a handler's bug"))
        assert limit.filter(bug)
        assert bug.levelno == logging.ERROR and bug.exc_info is not None
    plain = logging.LogRecord("aiohttp.server", logging.WARNING, __file__, 1, "x", (), None)
    assert limit.filter(plain) and plain.getMessage() == "x"


async def test_handler_exception_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Against aiohttp itself, the filter on the handler as configure_logging puts it: a
    malformed request becomes one INFO line, a handler's bug is still an ERROR with its
    traceback."""
    caplog.handler.addFilter(RefusedRequests())

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a handler's bug")

    app = web.Application()
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    try:
        for _ in range(3):
            answer = await asyncio.to_thread(exchange, port, MALFORMED[0])
            assert answer.startswith(b"HTTP/1.0 400 ")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/broken") as response,
        ):
            assert response.status == 500
    finally:
        await runner.cleanup()
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.levelname for r in records] == ["INFO", "ERROR"]
    assert records[0].exc_info is None
    assert records[1].exc_info is not None and isinstance(records[1].exc_info[1], RuntimeError)
