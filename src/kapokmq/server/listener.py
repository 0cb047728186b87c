"""One port, two engines: picows for producer/consumer WebSockets, aiohttp for the rest.

aiohttp's per-frame cost was the largest part of the broker's hot path (issue 7,
docs/performance.md); picows handles the same frames for about half of it. Clients must
keep finding everything on one port (docs/protocol.md), so the listener reads the head of each
connection's first request and then hands the connection, with the bytes already read,
to the engine that serves it: a WebSocket upgrade of ``/Producers/Conn/{topic}/{id}`` or
``/Consumers/Conn/{topic}/{id}`` goes to picows (server/ws_picows.py), everything else
(HTTP API, console, /Sync, malformed requests) to aiohttp's request handler, which then
owns the connection for good. Nothing is re-parsed after the hand-over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# A first request head larger than this goes to aiohttp, which answers it (431/400).
MAX_HEAD = 16 * 1024
# A connection that has not sent a whole request head by then is closed (slowloris).
HEAD_TIMEOUT = 30.0

# path of a WebSocket upgrade -> the protocol serving it, or None to leave it to aiohttp
WebSocketFactory = Callable[[str], asyncio.BaseProtocol | None]
HttpFactory = Callable[[], asyncio.BaseProtocol]


def websocket_path(head: bytes) -> str | None:
    """The request path if ``head`` is a ``GET`` with ``Upgrade: websocket``, else None."""
    line_end = head.find(b"\r\n")
    request_line = head[:line_end] if line_end >= 0 else head
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return None
    for header in head[line_end + 2 :].split(b"\r\n"):
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"upgrade" and value.strip().lower() == b"websocket":
            return parts[1].decode("utf-8", "replace")  # as aiohttp decodes a raw path
    return None


def hand_over(
    transport: asyncio.BaseTransport, protocol: asyncio.BaseProtocol, data: bytes
) -> None:
    """Make ``protocol`` the connection's protocol, as if it had been there from the start."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if not data:
        return
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view)))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]
    else:
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(data)


class FirstRequestRouter(asyncio.Protocol):
    """Buffers a new connection until its first request head is complete, then hands over."""

    def __init__(self, websocket: WebSocketFactory, http: HttpFactory) -> None:
        self.websocket = websocket
        self.http = http
        self.transport: asyncio.BaseTransport | None = None
        self.buffer = bytearray()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses
        self.timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        searched_from = max(0, len(buffer) - 3)
        buffer += data
        end = buffer.find(b"\r\n\r\n", searched_from)
        if end < 0 and len(buffer) <= MAX_HEAD:
            return
        protocol = None
        if end >= 0:
            path = websocket_path(bytes(buffer[:end]))
            if path is not None:
                protocol = self.websocket(path)
        self._hand_over(protocol or self.http())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _hand_over(self, protocol: asyncio.BaseProtocol) -> None:
        assert self.transport is not None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        data = bytes(self.buffer)
        self.buffer = bytearray()
        hand_over(self.transport, protocol, data)
