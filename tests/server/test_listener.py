"""The first-request router of server/listener.py, without sockets: which engine gets a
connection, and that the bytes read before the hand-over reach it unchanged."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from kapokmq.server import listener
from kapokmq.server.listener import (
    FirstRequestRouter,
    escape_request_target,
    hand_over,
    websocket_upgrade,
)

UPGRADE = (
    b"GET /Producers/Conn/t/p1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n"
)


@pytest.mark.parametrize(
    ("head", "path"),
    [
        (UPGRADE[:-4], "/Producers/Conn/t/p1"),
        (b"GET /a HTTP/1.1\r\nupgrade:  WebSocket \r\n", "/a"),  # any case, any spaces
        (b"GET /a HTTP/1.1\r\nHost: x\r\n", None),  # a plain GET
        (b"POST /a HTTP/1.1\r\nUpgrade: websocket\r\n", None),  # not a GET
        (b"GET /a\r\nUpgrade: websocket\r\n", None),  # not a request line
        (b"GET /%E4%B8%AD HTTP/1.1\r\nUpgrade: websocket", "/%E4%B8%AD"),
        ("GET /中 HTTP/1.1\r\nUpgrade: websocket".encode(), "/中"),  # raw UTF-8 path
    ],
)
def test_websocket_path(head: bytes, path: str | None) -> None:
    upgrade = websocket_upgrade(head)
    assert (upgrade and upgrade[0]) == path


@pytest.mark.parametrize(
    ("data", "escaped"),
    [
        (
            "GET /Producers/Conn/中/p1 HTTP/1.1\r\nHost: 中\r\n\r\n".encode(),
            "GET /Producers/Conn/%E4%B8%AD/p1 HTTP/1.1\r\nHost: 中\r\n\r\n".encode(),
        ),
        (b"GET /a%20\xff?q=\xe4 HTTP/1.1\r\n", b"GET /a%20%FF?q=%E4 HTTP/1.1\r\n"),
        (b"GET /a HTTP/1.1\r\nX: \xe4\r\n", b"GET /a HTTP/1.1\r\nX: \xe4\r\n"),  # line only
        (b"GET /\xe4 x HTTP/1.1\r\n", b"GET /\xe4 x HTTP/1.1\r\n"),  # not a request line
    ],
)
def test_raw_bytes_of_the_request_target_are_percent_encoded(data: bytes, escaped: bytes) -> None:
    assert escape_request_target(data) == escaped


def test_websocket_upgrade_reads_origin_and_host() -> None:
    head = UPGRADE[:-4] + b"\r\norigin:  http://a.example "
    assert websocket_upgrade(head) == ("/Producers/Conn/t/p1", "http://a.example", "x")
    assert websocket_upgrade(UPGRADE[:-4]) == ("/Producers/Conn/t/p1", None, "x")


class Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: object = None
        self.data = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


class BufferedRecorder(asyncio.BufferedProtocol):
    """Hands out a small buffer, so the hand-over has to feed it in pieces."""

    def __init__(self) -> None:
        self.buffer = bytearray(7)
        self.data = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data += bytes(self.buffer[:nbytes])


class FakeTransport:
    def __init__(self) -> None:
        self.protocol: object = None
        self.closed = False
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def set_protocol(self, protocol: object) -> None:
        self.protocol = protocol

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 50000) if name == "peername" else None


@pytest.mark.parametrize("kind", [Recorder, BufferedRecorder])
def test_hand_over_replays_what_was_read(kind: type[Any]) -> None:
    transport = FakeTransport()
    protocol: Any = kind()
    hand_over(cast(asyncio.BaseTransport, transport), protocol, UPGRADE + b"\x81\x02hi")
    assert protocol.data == UPGRADE + b"\x81\x02hi"
    assert transport.protocol is protocol


def route(
    chunks: list[bytes], origin_ok: bool = True
) -> tuple[FakeTransport, list[str], Recorder, Recorder]:
    paths: list[str] = []
    ws, http = Recorder(), Recorder()

    def websocket(path: str, head: bytes) -> asyncio.BaseProtocol | None:
        assert head.startswith(b"GET ") and not head.endswith(b"\r\n")
        paths.append(path)
        return ws if path.startswith("/Producers/") else None

    transport = FakeTransport()
    router = FirstRequestRouter(websocket, lambda: http, lambda origin, host: origin_ok)
    router.transport = cast(asyncio.BaseTransport, transport)  # connection_made needs a loop
    for chunk in chunks:
        router.data_received(chunk)
    return transport, paths, ws, http


def test_an_upgrade_split_across_reads_goes_to_the_websocket_engine() -> None:
    transport, paths, ws, http = route([UPGRADE[:10], UPGRADE[10:-2], UPGRADE[-2:] + b"rest"])
    assert paths == ["/Producers/Conn/t/p1"]
    assert transport.protocol is ws and ws.data == UPGRADE + b"rest" and not http.data


def test_everything_else_goes_to_aiohttp() -> None:
    plain = b"POST /Producer/Send HTTP/1.1\r\nHost: x\r\n\r\nbody"
    transport, paths, _, http = route([plain])
    assert paths == [] and transport.protocol is http and http.data == plain
    sync = UPGRADE.replace(b"/Producers/Conn/t/p1", b"/Sync/Conn")
    transport, paths, _, http = route([sync])  # an upgrade the engine does not serve
    assert paths == ["/Sync/Conn"] and transport.protocol is http


def test_an_oversized_head_goes_to_aiohttp_to_be_refused() -> None:
    huge = b"GET / HTTP/1.1\r\nX: " + b"a" * listener.MAX_HEAD
    transport, paths, _, http = route([huge])
    assert paths == [] and transport.protocol is http and http.data == huge


def test_an_upgrade_the_origin_rule_refuses_is_403_and_closed() -> None:
    refused = UPGRADE.replace(b"Host: x", b"Host: x\r\nOrigin: http://evil.example")
    transport, paths, ws, http = route([refused], origin_ok=False)
    assert paths == ["/Producers/Conn/t/p1"]
    assert transport.written.startswith(b"HTTP/1.1 403 Forbidden\r\n") and transport.closed
    assert transport.protocol is None and not ws.data and not http.data
