"""The producer and consumer WebSockets served by picows: bytes in and out of the session
machines of server/session.py (docs/protocol.md "WebSocket sessions").

The main port hands each WebSocket upgrade of these two paths to this module
(server/listener.py); picows' per-frame cost is about half of aiohttp's on this
workload (docs/performance.md). server/ws_aiohttp.py drives the same sessions when
``server.wsEngine`` is ``aiohttp``. Frames arrive through one callback each, with no
coroutine per frame; fragments are handed to the session, which joins them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import picows.picows
from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
)
from picows.picows import (  # type: ignore[attr-defined]  # not in picows' stubs
    WSProtocol,
    _parse_http_request,
    _validate_upgrade_request,
)

from kapokmq.server.client_path import client_route
from kapokmq.server.http_lean import OTHER_SINGLETONS
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.session import ROLES, Session

log = logging.getLogger(__name__)

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
HANDSHAKE_TIMEOUT = 10.0  # seconds from the upgrade request to the upgrade


class OpcodeMembers:
    """``WSMsgType`` as picows' own module sees it once this module is imported: the same
    members, as plain class attributes (``opcode_members``).

    picows turns a frame's C opcode into its Python member (``WSFrame.msg_type``, read
    once per frame) by looking the member's name up on its module's global
    ``WSMsgType``, an Enum class, and on Python 3.11 an attribute read on an Enum class
    goes through ``EnumType``'s ``__getattr__`` hook: ~890 instructions (callgrind), about
    90 ns, per frame, two frames per message. On this class it is a plain class attribute
    (~30 ns, two type-cache hits) holding the very same member, so ``frame.msg_type is
    WSMsgType.TEXT`` is as before; calling it (picows' ``WSFrame.__repr__`` does) calls
    the Enum.
    """

    _enum: type[WSMsgType] = WSMsgType

    def __new__(cls, value: int) -> WSMsgType:  # type: ignore[misc]
        return cls._enum(value)


for _name, _member in WSMsgType.__members__.items():
    setattr(OpcodeMembers, _name, _member)

_picows_module: Any = picows.picows
if _picows_module.WSMsgType is WSMsgType:
    _picows_module.WSMsgType = OpcodeMembers


class _Connection(WSListener):
    """One connection: picows frames to ``Session.receive``; the session's Link."""

    def __init__(self, factory: Callable[[Any, _Connection, str], Session]) -> None:
        self.factory = factory
        self.transport: WSTransport | None = None
        self.raw: Any = None
        self.session: Session | None = None
        self.closing = False  # our close frame is out
        # picows looks ``on_ws_frame`` up on the listener for every frame (a Python
        # override of its cpdef method, which it does not cache); found in the instance's
        # dict it is this bound method as is, not a new one made and freed per frame
        # (docs/performance.md "Session 7: e2e"). The cycle it makes is cut in
        # on_ws_disconnected.
        self.on_ws_frame = self.on_ws_frame  # type: ignore[method-assign]

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        peername = self.raw.get_extra_info("peername")
        self.session = self.factory(self.raw, self, peername[0] if peername else "")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.__dict__.pop("on_ws_frame", None)
        if self.session is not None:
            self.session.connection_lost()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        session = self.session
        assert session is not None
        kind = frame.msg_type
        if kind is _TEXT or kind is _BINARY:
            if frame.fin and session.fragments is None:
                inbox = session.inbox
                if inbox:  # within a read: what receive would do (server/session.py)
                    inbox.append(frame.get_payload_as_bytes())
                else:
                    session.receive(frame.get_payload_as_bytes())
            else:
                session.receive_fragment(frame.get_payload_as_bytes(), False, frame.fin)
        elif kind is _CONTINUATION:
            session.receive_fragment(frame.get_payload_as_bytes(), True, frame.fin)
        elif kind is _CLOSE:
            if not self.closing:  # the client's close, answered with its code
                # picows reads a close frame without a code as 0, and lets a 0 code through
                has_code = len(frame.get_payload_as_memoryview()) >= 2
                code, reason = session.close_received(
                    frame.get_close_code().value if has_code else None
                )
                transport.send_close(WSCloseCode(code), reason)
            transport.disconnect()  # the closing handshake is done
        # PING is answered by picows; PONG ignored

    def pause_writing(self) -> None:
        """Nothing to do: the session looks at the write buffer after each push, the same
        way on both engines (server/session.py, PAUSE_ABOVE)."""

    def resume_writing(self) -> None:
        pass

    # ------------------------------------------------------------------ Link
    def close(self, code: int, reason: bytes) -> None:
        """Our close frame; the connection ends at the client's answer (on_ws_frame) or
        when the session cuts it off (server/session.py CLOSE_GRACE)."""
        if self.transport is not None:
            self.closing = True
            self.transport.send_close(WSCloseCode(code), reason)

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()


def picows_takes(head: bytes) -> bool:
    """Would picows upgrade this request head (without its final CRLF CRLF)? It refuses
    some heads that aiohttp and the original's gorilla/websocket take, such as Firefox's
    ``Connection: keep-alive, Upgrade``, and answers its 400s without the CORS headers of
    docs/protocol.md: such a head is left to aiohttp, so both engines answer it alike."""
    try:
        request = _parse_http_request(head)
        _validate_upgrade_request(request)
    except Exception:  # picows raises RuntimeError (or anything) for a head it refuses
        return False
    headers = request.headers
    if request.version == b"HTTP/1.1" and "Host" not in headers:
        return False  # aiohttp: 400 Missing 'Host' header
    return not any(len(headers.getall(name, ())) > 1 for name in _SINGLETONS)


# headers aiohttp's parser refuses to see twice (server/http_lean.py): such a head gets its 400
_SINGLETONS = (
    "Host",
    "Content-Type",
    "Content-Length",
    "Transfer-Encoding",
    *(name.decode() for name in OTHER_SINGLETONS),
)


def websocket_protocols(
    runtime: BrokerRuntime,
) -> Callable[[str, bytes], asyncio.BaseProtocol | None]:
    """For the listener: the picows protocol of a producer or consumer upgrade (path and
    request head), or None to leave the connection to aiohttp."""
    max_frame = runtime.config.mq.maxMessageBytes + 1024  # fragments are checked as joined
    picows_log = logging.getLogger("picows.server")

    def for_path(path: str, head: bytes) -> asyncio.BaseProtocol | None:
        route = client_route(path)
        if route is None or not picows_takes(head):
            return None

        role, topic, client_id = route
        kind = ROLES[role]

        def session(raw: Any, link: _Connection, ip: str) -> Session:
            return kind(runtime, raw, link, topic, client_id, ip)

        def listener(request: WSUpgradeRequest) -> _Connection:
            return _Connection(session)

        # picows' own server factory, minus the listening socket (picows 2.x positional API)
        protocol: asyncio.BaseProtocol = WSProtocol(
            None,  # host:port (client side only)
            None,  # path (client side only)
            False,  # server side
            listener,
            picows_log,
            True,  # disconnect on an exception in a callback
            HANDSHAKE_TIMEOUT,
            False,  # no auto ping
            20.0,
            20.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # answer pings
            max_frame,
            None,  # no extra headers
            16 * 1024,  # initial read buffer
        )
        return protocol

    return for_path
