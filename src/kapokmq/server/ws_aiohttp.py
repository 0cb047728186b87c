"""The WebSockets aiohttp serves: producers and consumers when ``server.wsEngine`` is
``aiohttp``, and a master's ``/Sync/Conn``; whole messages in and out of the session
machines of server/session.py, exactly as server/ws_picows.py does for picows.

aiohttp joins fragments (the session checks their size); replies and pushes are written
straight to the transport like on the picows engine. Messages aiohttp has already buffered
are received without yielding, so a burst still ends in one ``end_of_read`` per loop
iteration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import WSMsgType, web

from kapokmq.login import SYNC_EXTENSIONS
from kapokmq.server.client_path import client_route
from kapokmq.server.keys import RUNTIME
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.session import (
    CLOSE_GRACE,
    ROLES,
    Session,
    SyncFeed,
    SyncWebSocket,
    sync_frame_limit,
)

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY


class _Link:
    """The session's Link: closing through aiohttp, reading paused by not receiving."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.readable = asyncio.Event()
        self.readable.set()
        self.closer: asyncio.Task[bool] | None = None

    def close(self, code: int, reason: bytes, drain: bool = True) -> None:
        if self.closer is None:  # aiohttp wakes the receive() in progress
            self.closer = asyncio.get_running_loop().create_task(
                self.ws.close(code=code, message=reason, drain=drain)
            )

    def pause_reading(self) -> None:
        self.readable.clear()

    def resume_reading(self) -> None:
        self.readable.set()


async def serve(ws: web.WebSocketResponse, link: _Link, session: Session) -> None:
    """Feed ``session`` every message until the connection or the session ends."""
    receive = ws.receive
    try:
        while True:
            if not link.readable.is_set():
                await link.readable.wait()
            msg = await receive()
            kind = msg.type
            if kind is _TEXT or kind is _BINARY:  # text as bytes: decode_text=False
                session.receive(msg.data)
            else:
                if kind is WSMsgType.CLOSE and link.closer is None:  # the client's close
                    # 0: no code (aiohttp refuses a 0 code itself, with 1002)
                    code, reason = session.close_received(msg.data or None)
                    link.close(code, reason, drain=False)  # it may not read what is buffered
                break  # CLOSING, CLOSED, ERROR: aiohttp has closed (1002, 1009…)
    finally:
        session.connection_lost()
        if link.closer is not None:
            await link.closer


def open_websocket(limit: int, heartbeat: float | None = None) -> web.WebSocketResponse:
    # The session checks the size itself (so the frames read before a too-big one are
    # answered before its close 1009); aiohttp's own bound, with the same 1 KiB of slack
    # as picows' (ws_picows.py), only stops it from buffering much more than that.
    # Text frames come as bytes, not checked for UTF-8 (decode_text=False), as on picows
    # and in the original: invalid UTF-8 reads as U+FFFD (docs/protocol.md "Differences").
    # A client's close frame is answered by serve(), with its own code, as on picows; the
    # client's answer to ours is awaited as long as on picows (session.py CLOSE_GRACE).
    return web.WebSocketResponse(
        timeout=CLOSE_GRACE,
        max_msg_size=limit + 1024,
        compress=False,
        autoping=True,
        autoclose=False,
        heartbeat=heartbeat,
        decode_text=False,
    )


async def endpoint(request: web.Request) -> web.StreamResponse:
    """`GET /Producers/Conn/{topic}/{id}` and `GET /Consumers/Conn/{topic}/{id}`."""
    route = client_route(request.raw_path)  # as the picows engine reads it
    if route is None:  # the router matched, so this cannot be; aiohttp's reading then
        route = request.match_info["role"], request.match_info["topic"], request.match_info["id"]
    role, topic, client_id = route
    kind = ROLES[role]

    def session(runtime: BrokerRuntime, transport: asyncio.Transport, link: _Link) -> Session:
        return kind(runtime, transport, link, topic, client_id, request.remote or "")

    return await _run(request, session)


SYNC_HEARTBEAT = 3.0  # pings: a slave cut off by a partition is noticed in seconds, not TCP's

SYNC_FEED: web.AppKey[SyncFeed] = web.AppKey("sync_feed")


async def sync_endpoint(request: web.Request) -> web.StreamResponse:
    """`GET /Sync/Conn` on a master: the feed is injected with the app (SYNC_FEED)."""
    feed = request.app[SYNC_FEED]
    name, value = SYNC_EXTENSIONS
    extended = request.headers.get(name) == value

    def session(runtime: BrokerRuntime, transport: asyncio.Transport, link: _Link) -> Session:
        return SyncWebSocket(runtime, transport, link, feed, request.remote or "", extended)

    limit = sync_frame_limit(request.app[RUNTIME].config.mq.maxMessageBytes)
    return await _run(request, session, SYNC_HEARTBEAT, limit)


async def _run(
    request: web.Request,
    make: Callable[[BrokerRuntime, asyncio.Transport, _Link], Session],
    heartbeat: float | None = None,
    limit: int | None = None,
) -> web.WebSocketResponse:
    runtime: BrokerRuntime = request.app[RUNTIME]
    ws = open_websocket(limit or runtime.config.mq.maxMessageBytes, heartbeat)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # gone during the upgrade
        return ws
    link = _Link(ws)
    await serve(ws, link, make(runtime, transport, link))
    return ws
