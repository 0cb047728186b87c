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
import re
from collections.abc import Callable
from typing import cast

from kapokmq.httpbase import REFUSED_FROM
from kapokmq.server.origins import forbidden_response

log = logging.getLogger(__name__)

# A first request head larger than this goes to aiohttp, which answers it (431/400).
MAX_HEAD = 16 * 1024
# A connection that has not sent a whole request head by then is closed (slowloris).
HEAD_TIMEOUT = 30.0

# (path, request head) of a WebSocket upgrade -> the protocol serving it, or None to leave
# it to aiohttp
WebSocketFactory = Callable[[str, bytes], asyncio.BaseProtocol | None]
HttpFactory = Callable[[], asyncio.BaseProtocol]
# (Origin, Host) of an upgrade -> may it go ahead (server/origins.py)
OriginCheck = Callable[[str | None, str | None], bool]


def bare_lf(head: bytes | bytearray) -> bool:
    """Does ``head`` end a line with LF alone? aiohttp answers such a head 400 at once, and
    the CRLF CRLF that ends a head may never come: hand it over rather than wait."""
    return head.count(b"\n") != head.count(b"\r\n")


def websocket_upgrade(head: bytes) -> tuple[str, str | None, str | None] | None:
    """(path, Origin, Host) if ``head`` is a ``GET`` with ``Upgrade: websocket``, else None."""
    line_end = head.find(b"\r\n")
    request_line = head[:line_end] if line_end >= 0 else head
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return None
    upgrade = False
    found: dict[bytes, str] = {}
    for header in head[line_end + 2 :].split(b"\r\n"):
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"upgrade" and value.strip().lower() == b"websocket":
            upgrade = True
        elif name in (b"origin", b"host"):
            found[name] = value.strip().decode("latin-1")
    if not upgrade:
        return None
    # the path as aiohttp decodes a raw one
    return parts[1].decode("utf-8", "replace"), found.get(b"origin"), found.get(b"host")


_NOT_ASCII = re.compile(rb"[\x80-\xff]")


def _percent(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match[0][0]


def escape_request_target(data: bytes) -> bytes:
    """``data`` with the raw non-ASCII bytes of its request line's target percent-encoded
    (RFC 3986 2.1). Some clients send a Chinese topic as raw UTF-8 in the path; llhttp,
    aiohttp's parser, answers that 400 and has no lenient flag for it, while picows takes
    it: encoded, it names the same topic on both engines (docs/protocol.md "WebSocket
    sessions"). Only the first request of a connection passes here."""
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    if line.isascii():
        return data
    parts = line.split(b" ")
    if len(parts) != 3:
        return data  # not a request line: aiohttp answers it
    target = _NOT_ASCII.sub(_percent, parts[1])
    return b" ".join((parts[0], target, parts[2])) + data[len(line) :]


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

    def __init__(
        self, websocket: WebSocketFactory, http: HttpFactory, origin_ok: OriginCheck
    ) -> None:
        self.websocket = websocket
        self.http = http
        self.origin_ok = origin_ok
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
        if end < 0 and len(buffer) <= MAX_HEAD and not bare_lf(buffer):
            return
        protocol = None
        if end >= 0:
            head = bytes(buffer[:end])
            upgrade = websocket_upgrade(head)
            if upgrade is not None:
                path, origin, host = upgrade
                protocol = self.websocket(path, head)
                if protocol is not None and not self.origin_ok(origin, host):
                    self._refuse(origin)
                    return
        if protocol is None:
            self._hand_over(self.http(), escape_request_target(bytes(self.buffer)))
        else:
            self._hand_over(protocol, bytes(self.buffer))

    def _refuse(self, origin: str | None) -> None:
        """A picows upgrade from a page the Origin rule refuses: 403, closed."""
        assert self.transport is not None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        transport = cast(asyncio.Transport, self.transport)  # uvloop's: not a subclass
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        log.info(
            "refused a WebSocket upgrade from %s: Origin %.200r (server.allowedOrigins)",
            address,
            origin,
            extra={REFUSED_FROM: address},  # rate-limited (httpbase.RefusedRequests)
        )
        transport.write(forbidden_response())
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _hand_over(self, protocol: asyncio.BaseProtocol, data: bytes) -> None:
        assert self.transport is not None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.buffer = bytearray()
        hand_over(self.transport, protocol, data)
