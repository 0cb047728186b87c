"""`GET /Producers/Conn/{topic}/{producerId}`: one reply per frame, in order (DESIGN A3, B3)."""

from __future__ import annotations

import logging
import time

from aiohttp import WSMsgType, web

from kapokmq.model import ClientInfo
from kapokmq.protocol import FrameError, parse_send_frame
from kapokmq.server.auth import handshake
from kapokmq.server.frames import OK_FRAME, ReplyWriter, text_frame
from kapokmq.server.keys import RUNTIME
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.storage.acks import OrderedReplies

log = logging.getLogger(__name__)

_DATA = (WSMsgType.TEXT, WSMsgType.BINARY)


def open_websocket(
    request: web.Request, runtime: BrokerRuntime, slack: int = 1
) -> web.WebSocketResponse:
    # aiohttp refuses a message whose size is >= max_msg_size; B3 closes only frames
    # *above* mq.maxMessageBytes, so a frame of exactly that size must pass. A producer
    # allows some slack and checks the size itself, so that the frames read before a
    # too-big one are answered before the close (as on the picows engine).
    return web.WebSocketResponse(
        max_msg_size=runtime.config.mq.maxMessageBytes + slack, compress=False, autoping=True
    )


def client_ip(request: web.Request) -> str:
    return request.remote or ""


async def producer_endpoint(request: web.Request) -> web.StreamResponse:
    runtime: BrokerRuntime = request.app[RUNTIME]
    topic = request.match_info["topic"]
    producer_id = request.match_info["producerId"]
    ws = open_websocket(request, runtime, slack=1024)
    limit = runtime.config.mq.maxMessageBytes
    await ws.prepare(request)
    peer = f"producer {producer_id!r}@{topic!r} from {client_ip(request)}"
    if not await handshake(ws, runtime.config.mq.secretKey, peer, runtime.config.mq.keyTimeout):
        return ws
    broker = runtime.broker
    session = broker.attach_producer(
        ClientInfo(producer_id, topic, client_ip(request), int(time.time()))
    )
    log.info("%s connected", peer)
    transport = request.transport
    replies = ReplyWriter(transport, runtime.loop)
    send = replies.send
    publish = broker.publish  # runtime.publish, minus a call: the timer is rearmed below
    store = broker.store
    ticket = runtime.durable_ticket  # fsync always: each `ok` waits for its WAL batch
    durable = OrderedReplies(replies, transport) if ticket is not None else None
    try:
        while True:
            msg = await ws.receive()
            if msg.type not in _DATA:
                break
            payload = msg.data
            size = len(payload)  # of a text frame: characters, at most its bytes, 1/4 at least
            if size > limit or (
                size * 4 > limit and isinstance(payload, str) and len(payload.encode()) > limit
            ):
                replies.flush()
                await ws.close(code=1009, message=b"message too big")
                break
            try:
                data, delay = parse_send_frame(msg.data)
            except FrameError as exc:
                reply = text_frame(f"error: {exc}".encode())
            else:
                if store.unconsumed() >= broker.backlog_limit:  # B4: hold this reply for room
                    await runtime.wait_for_room()
                refusal = runtime.refusal
                if refusal is not None:
                    reply = text_frame(f"error: {refusal.ws_text}".encode())
                else:
                    publish(topic, data, delay)
                    if delay > 0:
                        runtime.rearm()
                    reply = OK_FRAME
            if transport is None or transport.is_closing():
                break
            if durable is not None and ticket is not None:
                durable.send(reply, ticket() if reply is OK_FRAME else None)
            else:
                send(reply)
    finally:
        replies.flush()
        broker.detach_producer(session)
        log.info("%s disconnected", peer)
    return ws
