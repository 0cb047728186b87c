"""The producer and consumer WebSocket endpoints served by picows (DESIGN A2-A4, B3, B4).

The main port hands each WebSocket upgrade of these two paths to this module
(server/listener.py); picows' per-frame cost is about half of aiohttp's on this
workload (docs/performance.md). The aiohttp versions (ws_producer.py, ws_consumer.py)
behave the same and serve when ``server.wsEngine`` is ``aiohttp``.

Frames arrive through one callback each, with no coroutine per frame; producer replies
and consumer pushes are written once per loop iteration like on the aiohttp path.
Fragmented messages are reassembled; a message above ``mq.maxMessageBytes`` closes 1009.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in picows' stubs

from kapokmq.core.broker import ProducerSession
from kapokmq.core.topics import ConsumerSession
from kapokmq.model import ClientInfo
from kapokmq.protocol import FrameError, parse_send_frame
from kapokmq.server.auth import MATCHED, MAX_ATTEMPTS, MISMATCH, NO_KEY, PROMPT, key_matches
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
HANDSHAKE_TIMEOUT = 10.0  # seconds from the upgrade request to the upgrade


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
        self.acks: list[str] | None = None  # a consumer's acks of the current read
        self.producer: ProducerSession | None = None
        self.replies: ReplyWriter | None = None
        self.durable: OrderedReplies | None = None
        self.held: deque[bytes] = deque()  # producer frames waiting for backlog room
        # producer frames of the current read, parsed, and as received
        self.pending: list[tuple[str, int]] = []
        self.pending_raw: list[bytes] = []
        self.waiting = False
        self.key_timer: asyncio.TimerHandle | None = None  # until the right key arrives

    # ------------------------------------------------------------------ connection
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        peername = self.raw.get_extra_info("peername")
        self.ip = peername[0] if peername else ""
        self.peer += f" from {self.ip}"
        self.runtime.websockets.add(self)
        transport.send(_TEXT, PROMPT.encode())
        self.key_timer = self.runtime.loop.call_later(
            self.runtime.config.mq.keyTimeout, self._no_key_in_time
        )

    def _no_key_in_time(self) -> None:
        log.warning(
            "closing %s: no secret key within %d s", self.peer, self.runtime.config.mq.keyTimeout
        )
        self.close(_POLICY_VIOLATION, NO_KEY)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.key_timer is not None:
            self.key_timer.cancel()
        self.runtime.websockets.discard(self)
        broker = self.runtime.broker
        self._publish_pending()  # received in full: stored even though no `ok` can go back
        if self.replies is not None:
            self.replies.flush()
        if self.consumer is not None:
            self._apply_acks()
            broker.detach_consumer(self.consumer)
            self.consumer = None
            self.acks = None
            log.info("%s disconnected", self.peer)
        if self.producer is not None:
            broker.detach_producer(self.producer)
            self.producer = None
            log.info("%s disconnected", self.peer)

    def pause_writing(self) -> None:
        """A slow consumer: its in-flight window (mq.maxInFlight) already bounds pushes."""

    def resume_writing(self) -> None:
        pass

    def close(self, code: int, reason: bytes) -> None:
        # frames read before the offending one are stored and answered before the close
        self._publish_pending()
        if self.replies is not None:
            self.replies.flush()
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
        acks = self.acks
        if acks is not None:  # a consumer: every frame is an ack
            code = payload.decode("utf-8", "replace")
            if len(code) != 32:
                code = code.strip()
            if not acks:  # the read's first: apply them all once the read is done
                self.runtime.loop.call_soon(self._apply_acks)
            acks.append(code)
        elif self.producer is not None:
            self._accept(payload)
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
        if self.key_timer is not None:
            self.key_timer.cancel()
            self.key_timer = None
        broker = self.runtime.broker
        info = ClientInfo(self.client_id, self.topic, self.ip, int(time.time()))
        if self.role == "consumer":
            self.consumer = broker.attach_consumer(info, frame_writer(self.raw, self.peer))
            self.acks = []
        else:
            self.producer = broker.attach_producer(info)
            self.replies = ReplyWriter(self.raw, self.runtime.loop)
            if self.runtime.durable_ticket is not None:
                self.durable = OrderedReplies(self.replies, self.raw)
        log.info("%s connected", self.peer)

    def _apply_acks(self) -> None:
        codes = self.acks
        if codes and self.consumer is not None:
            self.acks = []
            self.runtime.broker.ack_many(self.consumer, codes)

    def _publish_pending(self) -> None:
        items = self.pending
        if not items:
            return
        raw = self.pending_raw
        self.pending = []
        self.pending_raw = []
        runtime = self.runtime
        refusal = runtime.refusal
        if refusal is not None:
            self._reply(text_frame(f"error: {refusal.ws_text}".encode()) * len(items), False)
            return
        taken, delayed = runtime.broker.publish_many(self.topic, items)
        if delayed:
            runtime.rearm()
        if taken:
            self._reply(OK_FRAME * taken, True)
        if taken < len(items):  # B4: stop reading; resume when there is room
            self.held.extend(raw[taken:])
            self._wait_for_room()

    def _accept(self, payload: bytes) -> None:
        """A producer frame: parsed now, published with the rest of its read, or held
        (in order) while the backlog is full."""
        if self.held or self.waiting:
            self.held.append(payload)
            return
        try:
            item = parse_send_frame(payload)
        except FrameError as exc:
            self._publish_pending()  # replies keep the order of the frames
            if self.held or self.waiting:
                self.held.append(payload)
            else:
                self._reply(text_frame(f"error: {exc}".encode()), False)
            return
        if not self.pending:  # the read's first: publish them all once the read is done
            self.runtime.loop.call_soon(self._publish_pending)
        self.pending.append(item)
        self.pending_raw.append(payload)

    def _reply(self, frames: bytes, durable: bool) -> None:
        """Frames for the producer; ``ok``s wait for the disk under fsync ``always``."""
        ticket = self.runtime.durable_ticket
        if self.durable is not None and ticket is not None:
            self.durable.send(frames, ticket() if durable else None)
        else:
            assert self.replies is not None
            self.replies.send(frames)

    def _wait_for_room(self) -> None:
        if self.raw.is_closing():  # disconnected: nobody to answer
            return
        self.waiting = True
        self.raw.pause_reading()
        task = asyncio.ensure_future(self.runtime.wait_for_room())
        task.add_done_callback(self._room)

    def _room(self, _: object) -> None:
        """The backlog has room: the held frames go the way of a fresh read."""
        self.waiting = False
        if self.raw.is_closing():
            return
        held, self.held = self.held, deque()
        for payload in held:
            self._accept(payload)
        self._publish_pending()
        if not self.waiting:
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


def websocket_protocols(runtime: BrokerRuntime) -> Callable[[str], asyncio.BaseProtocol | None]:
    """For the listener: the picows protocol of a producer or consumer upgrade path."""
    max_frame = runtime.config.mq.maxMessageBytes + 1024  # fragments are checked as joined
    picows_log = logging.getLogger("picows.server")

    def for_path(path: str) -> asyncio.BaseProtocol | None:
        route = _route(path)
        if route is None:
            return None

        def listener(request: WSUpgradeRequest) -> _Connection:
            return _Connection(runtime, *route)

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


def close_all(runtime: BrokerRuntime) -> None:
    """Shutdown: close every picows connection with 1001 (going away)."""
    for connection in list(runtime.websockets):
        if isinstance(connection, _Connection):
            connection.close(1001, b"server shutting down")
