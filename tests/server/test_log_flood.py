"""A stranger's malformed requests cannot flood the log (service.py RefusedRequests): each
is answered 400 as before, but logged as one short line per address and interval, not as
an ERROR with a traceback each; a handler's own exception keeps its traceback."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from kapokmq.service import RefusedRequests
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


@pytest.mark.parametrize("process", [BrokerProcess, RegistryProcess])
def test_malformed_requests_log_one_line(process: type[BrokerProcess], tmp_path: Path) -> None:
    service = process(cwd=tmp_path).start()
    try:
        for _ in range(ROUNDS):
            for request in MALFORMED:
                assert exchange(service.port, request).startswith(b"HTTP/1.0 400 ")
        good = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert exchange(service.port, good).startswith(b"HTTP/1.1 200 ")
        log = service.log()
    finally:
        service.cleanup()
    refused = [line for line in log.splitlines() if "malformed HTTP request" in line]
    assert len(refused) == 1, log[-3000:]
    assert "INFO aiohttp.server: refused a malformed HTTP request from 127.0.0.1:" in refused[0]
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


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
    limit = RefusedRequests(HttpProcessingError, interval=60.0, clock=clock)
    first = record(LineTooLong("a" * 300, "8190"))
    assert limit.filter(first)
    assert first.levelno == logging.INFO and first.exc_info is None
    line = first.getMessage()
    assert line.startswith("refused a malformed HTTP request from 10.0.0.1: LineTooLong: ")
    assert "\n" not in line and len(line) < 300
    assert not any(limit.filter(record(LineTooLong("x", "1"))) for _ in range(5))
    other = record(LineTooLong("x", "1"), peer="10.0.0.2")
    assert limit.filter(other)  # another address has its own line
    clock.now += 60.0
    again = record(LineTooLong("x", "1"))
    assert limit.filter(again)
    assert again.getMessage().endswith("(5 more from 10.0.0.1 not logged)")


def test_tracked_addresses_are_bounded() -> None:
    clock = Clock()
    limit = RefusedRequests(HttpProcessingError, interval=60.0, max_peers=2, clock=clock)
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
    limit = RefusedRequests(HttpProcessingError)
    for _ in range(3):
        bug = record(RuntimeError("a handler's bug"))
        assert limit.filter(bug)
        assert bug.levelno == logging.ERROR and bug.exc_info is not None
    plain = logging.LogRecord("aiohttp.server", logging.WARNING, __file__, 1, "x", (), None)
    assert limit.filter(plain) and plain.getMessage() == "x"


@pytest.fixture
def refused_filter() -> Iterator[None]:
    """The filter on aiohttp's logger, as configure_logging sets it, for this test only."""
    server_log = logging.getLogger("aiohttp.server")
    limit = RefusedRequests(HttpProcessingError)
    server_log.addFilter(limit)
    try:
        yield
    finally:
        server_log.removeFilter(limit)


async def test_handler_exception_keeps_its_traceback(
    refused_filter: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Against aiohttp itself: a malformed request becomes one INFO line, a handler's bug
    is still an ERROR with its traceback."""

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
