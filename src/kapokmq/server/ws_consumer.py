"""`GET /Consumers/Conn/{topic}/{consumerId}`: pushes messages, reads acks (DESIGN A4, B1, B4)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import WSMsgType, web

from kapokmq.model import ClientInfo, Message, encode_pushes
from kapokmq.server.auth import handshake
from kapokmq.server.keys import RUNTIME
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.ws_producer import client_ip, open_websocket

log = logging.getLogger(__name__)


def frame_writer(transport: asyncio.Transport | None, peer: str) -> Callable[[list[Message]], None]:
    """A deliver callback: all frames of a batch in one write; nothing if the peer is gone.

    Messages that could not be written stay in the session's in-flight table and go back
    to the queue when the read loop notices the closed connection and detaches.
    """

    def deliver(batch: list[Message]) -> None:
        if transport is None or transport.is_closing():
            return
        try:
            transport.write(b"".join(encode_pushes(batch)))
        except Exception:  # never let one broken connection stop dispatch for the others
            log.exception("push to %s failed; closing it", peer)
            transport.abort()

    return deliver


async def consumer_endpoint(request: web.Request) -> web.StreamResponse:
    runtime: BrokerRuntime = request.app[RUNTIME]
    topic = request.match_info["topic"]
    consumer_id = request.match_info["consumerId"]
    ws = open_websocket(request, runtime)
    await ws.prepare(request)
    peer = f"consumer {consumer_id!r}@{topic!r} from {client_ip(request)}"
    if not await handshake(ws, runtime.config.mq.secretKey, peer, runtime.config.mq.keyTimeout):
        return ws
    broker = runtime.broker
    info = ClientInfo(consumer_id, topic, client_ip(request), int(time.time()))
    session = broker.attach_consumer(info, frame_writer(request.transport, peer))
    log.info("%s connected", peer)
    ack = broker.ack
    text, binary = WSMsgType.TEXT, WSMsgType.BINARY
    try:
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is text:
                code = msg.data
            elif kind is binary:
                code = msg.data.decode("utf-8", "replace")
            else:
                break
            if len(code) != 32:
                code = code.strip()
            ack(session, code)
    finally:
        broker.detach_consumer(session)
        log.info("%s disconnected", peer)
    return ws
