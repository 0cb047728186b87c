"""Optional picows WebSocket listener on a second port (``server.fastPort``), issue 7.

The same producer and consumer endpoints as the aiohttp port (DESIGN A2-A4, B3, B4),
served by picows, whose per-frame cost is about half of aiohttp's on this workload
(docs/performance.md). It shares the event loop, the broker and everything else with the
main port; the HTTP API, the console and /Sync stay on the aiohttp port only.

Frames arrive through one callback each, with no coroutine per frame; producer replies
and consumer pushes are written once per loop iteration like on the main port.
Fragmented messages are reassembled; a message above ``mq.maxMessageBytes`` closes 1009.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import unquote

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from kapokmq.core.broker import ProducerSession
from kapokmq.core.topics import ConsumerSession
from kapokmq.model import ClientInfo
from kapokmq.protocol import FrameError, parse_send_frame
from kapokmq.server.auth import MATCHED, MAX_ATTEMPTS, MISMATCH, PROMPT, key_matches
from kapokmq.server.frames import OK_FRAME, ReplyWriter, text_frame
from kapokmq.server.runtime import BrokerRuntime
from kapokmq.server.ws_consumer import frame_writer
from kapokmq.storage.acks import OrderedReplies

log = logging.getLogger(__name__)

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_POLICY_VIOLATION = 1008
_TOO_BIG = 1009


class _Connection(WSListener):
    """One producer or consumer connection: handshake, then frames in, frames out."""

    def __init__(self, runtime: BrokerRuntime, role: str, topic: str, client_id: str) -> None:
        self.runtime = runtime
        self.role = role
        self.topic = topic
        self.client_id = client_id
        self.transport: WSTransport | None = None
        self.raw: Any = None
        self.authed = False
        self.attempts = 0
        self.ip = ""
        self.peer = f"{role} {client_id!r}@{topic!r}"
        self.limit = runtime.config.mq.maxMessageBytes
        self.fragments: list[bytes] | None = None
        self.fragments_size = 0
        self.consumer: ConsumerSession | None = None
        self.producer: ProducerSession | None = None
        self.replies: ReplyWriter | None = None
        self.durable: OrderedReplies | None = None
        self.held: deque[bytes] = deque()  # producer frames waiting for backlog room
        self.waiting = False

    # ------------------------------------------------------------------ connection
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        peername = self.raw.get_extra_info("peername")
        self.ip = peername[0] if peername else ""
        self.peer += f" from {self.ip} (fast port)"
        transport.send(_TEXT, PROMPT.encode())

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        broker = self.runtime.broker
        if self.replies is not None:
            self.replies.flush()
        if self.consumer is not None:
            broker.detach_consumer(self.consumer)
            self.consumer = None
            log.info("%s disconnected", self.peer)
        if self.producer is not None:
            broker.detach_producer(self.producer)
            self.producer = None
            log.info("%s disconnected", self.peer)

    def close(self, code: int, reason: bytes) -> None:
        if self.transport is not None:
            self.transport.send_close(WSCloseCode(code), reason)
            self.transport.disconnect()

    # ------------------------------------------------------------------ frames
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        payload: bytes | None
        if (kind is _TEXT or kind is _BINARY) and frame.fin and self.fragments is None:
            if frame.payload_size > self.limit:
                self.close(_TOO_BIG, b"message too big")
                return
            payload = frame.get_payload_as_bytes()
        elif kind is _TEXT or kind is _BINARY or kind is _CONTINUATION:
            payload = self._reassemble(frame)
            if payload is None:
                return
        elif kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        else:  # PING is answered by picows; PONG ignored
            return
        if self.consumer is not None:
            code = payload.decode("utf-8", "replace")
            if len(code) != 32:
                code = code.strip()
            self.runtime.broker.ack(self.consumer, code)
        elif self.producer is not None:
            if self.held or self.waiting:
                self.held.append(payload)
            else:
                self._produce(payload)
        else:
            self._handshake(payload)

    def _reassemble(self, frame: WSFrame) -> bytes | None:
        kind = frame.msg_type
        if kind is _CONTINUATION:
            if self.fragments is None:
                self.close(1002, b"continuation without a first frame")
                return None
        else:
            if self.fragments is not None:
                self.close(1002, b"new message inside a fragmented one")
                return None
            self.fragments = []
            self.fragments_size = 0
        self.fragments_size += frame.payload_size
        if self.fragments_size > self.limit:
            self.close(_TOO_BIG, b"message too big")
            return None
        self.fragments.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return None
        payload = b"".join(self.fragments)
        self.fragments = None
        return payload

    def _handshake(self, payload: bytes) -> None:
        assert self.transport is not None
        runtime = self.runtime
        if key_matches(payload, runtime.config.mq.secretKey):
            self.transport.send(_TEXT, MATCHED.encode())
            self._attach()
            return
        self.attempts += 1
        self.transport.send(_TEXT, MISMATCH.encode())
        if self.attempts >= MAX_ATTEMPTS:
            log.warning("closing %s after %d wrong secret keys", self.peer, MAX_ATTEMPTS)
            self.close(_POLICY_VIOLATION, b"too many wrong secret keys")
        else:
            self.transport.send(_TEXT, PROMPT.encode())

    def _attach(self) -> None:
        broker = self.runtime.broker
        info = ClientInfo(self.client_id, self.topic, self.ip, int(time.time()))
        if self.role == "consumer":
            self.consumer = broker.attach_consumer(info, frame_writer(self.raw, self.peer))
        else:
            self.producer = broker.attach_producer(info)
            self.replies = ReplyWriter(self.raw, self.runtime.loop)
            if self.runtime.durable_ticket is not None:
                self.durable = OrderedReplies(self.replies, self.raw)
        log.info("%s connected", self.peer)

    def _produce(self, payload: bytes) -> None:
        runtime = self.runtime
        broker = runtime.broker
        try:
            data, delay = parse_send_frame(payload)
        except FrameError as exc:
            reply = text_frame(f"error: {exc}".encode())
        else:
            if broker.full:  # B4: stop reading; resume when there is room
                self.held.appendleft(payload)
                self._wait_for_room()
                return
            broker.publish(self.topic, data, delay)
            if delay > 0:
                runtime.rearm()
            reply = OK_FRAME
        replies = self.replies
        assert replies is not None
        ticket = runtime.durable_ticket
        if self.durable is not None and ticket is not None:
            self.durable.send(reply, ticket() if reply is OK_FRAME else None)
        else:
            replies.send(reply)

    def _wait_for_room(self) -> None:
        self.waiting = True
        self.raw.pause_reading()
        task = asyncio.ensure_future(self.runtime.wait_for_room())
        task.add_done_callback(self._room)

    def _room(self, _: object) -> None:
        self.waiting = False
        held = self.held
        while held and not self.waiting and not self.raw.is_closing():
            self._produce(held.popleft())
        if not self.waiting and not self.raw.is_closing():
            self.raw.resume_reading()


def _route(path: str) -> tuple[str, str, str] | None:
    parts = path.split("?", 1)[0].split("/")
    # "", "Producers"|"Consumers", "Conn", topic, id
    if len(parts) != 5 or parts[0] or parts[2] != "Conn" or not parts[3] or not parts[4]:
        return None
    role = {"Producers": "producer", "Consumers": "consumer"}.get(parts[1])
    if role is None:
        return None
    return role, unquote(parts[3]), unquote(parts[4])


async def start_fast_listener(
    runtime: BrokerRuntime, host: str, port: int, ssl: Any = None
) -> asyncio.Server:
    """Listen for producer and consumer WebSockets with picows; returns the server."""

    def factory(request: WSUpgradeRequest) -> _Connection | None:
        path = request.path
        route = _route(path.decode("latin-1") if isinstance(path, bytes) else path)
        if route is None:
            return None
        return _Connection(runtime, *route)

    server: asyncio.Server = await ws_create_server(
        factory,
        host,
        port,
        ssl=ssl,
        # a fragmented message is checked against the limit as it is reassembled
        max_frame_size=runtime.config.mq.maxMessageBytes + 1024,
        websocket_handshake_timeout=10,
    )
    return server
