"""Master-slave sync (DESIGN A7): the master streams every message change to its slaves.

Wire format, as the original: a slave opens ``GET /Sync/Conn`` on the master, does the
usual secret-key handshake, then receives one message JSON (A1 layout, real Status and
ConsumedTime) per change and sends ``hi`` every second. Ours adds two things: a new slave
first receives every stored message (the original only streamed later changes), and a
deletion is sent as ``{"MessageCode":"…","Deleted":true}``.

While connected to a live master a slave stores but does not push; when the master is
unreachable it starts pushing, and stops again when the master is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import aiohttp
import orjson
from aiohttp import WSMsgType, web

from kapokmq.config import Config
from kapokmq.model import Message, Status, dumps
from kapokmq.server.auth import MATCHED, MISMATCH, PROMPT, handshake
from kapokmq.server.frames import ReplyWriter, text_frame
from kapokmq.server.keys import RUNTIME
from kapokmq.server.runtime import BrokerRuntime

log = logging.getLogger(__name__)

HEARTBEAT = b"hi"
SNAPSHOT_CHUNK = 5000


def encode_record(msg: Message) -> bytes:
    return text_frame(dumps(msg.to_dict()) + b"\n")


def encode_removal(msg: Message) -> bytes:
    return text_frame(dumps({"MessageCode": msg.code, "Deleted": True}) + b"\n")


class ReplicationHub:
    """Master side: a message listener that fans changes out to the connected slaves.

    It is registered with the broker only while at least one slave is connected, so a
    broker without slaves pays nothing per message.
    """

    def __init__(self, runtime: BrokerRuntime) -> None:
        self.runtime = runtime
        self.slaves: list[ReplyWriter] = []

    def attach(self, writer: ReplyWriter) -> None:
        """Send the whole store, then every later change (one loop step: nothing between)."""
        messages = list(self.runtime.broker.messages())
        for start in range(0, len(messages), SNAPSHOT_CHUNK):
            chunk = messages[start : start + SNAPSHOT_CHUNK]
            writer.send(b"".join([encode_record(m) for m in chunk]))
        if not self.slaves:
            self.runtime.broker.add_listener(self)
        self.slaves.append(writer)

    def detach(self, writer: ReplyWriter) -> None:
        with contextlib.suppress(ValueError):
            self.slaves.remove(writer)
        if not self.slaves:
            with contextlib.suppress(ValueError):
                self.runtime.broker.listeners.remove(self)

    def _send(self, frame: bytes) -> None:
        for writer in self.slaves:
            writer.send(frame)

    def message_added(self, msg: Message) -> None:
        self._send(encode_record(msg))

    def message_updated(self, msg: Message) -> None:
        self._send(encode_record(msg))

    def message_removed(self, msg: Message) -> None:
        self._send(encode_removal(msg))

    def messages_added(self, msgs: list[Message]) -> None:
        self._send(b"".join([encode_record(m) for m in msgs]))

    def messages_updated(self, msgs: list[Message]) -> None:
        self._send(b"".join([encode_record(m) for m in msgs]))


HUB = web.AppKey("replication_hub", ReplicationHub)


async def sync_endpoint(request: web.Request) -> web.StreamResponse:
    """`GET /Sync/Conn`: a slave's stream of changes."""
    runtime = request.app[RUNTIME]
    hub = request.app.get(HUB)
    if hub is None:
        hub = request.app[HUB] = ReplicationHub(runtime)
    ws = web.WebSocketResponse(max_msg_size=1 << 16, compress=False, autoping=True)
    await ws.prepare(request)
    peer = f"slave from {request.remote}"
    if not await handshake(ws, runtime.config.mq.secretKey, peer, runtime.config.mq.keyTimeout):
        return ws
    writer = ReplyWriter(request.transport, runtime.loop)
    hub.attach(writer)
    log.info("%s connected; streaming %d stored messages", peer, len(runtime.broker.store))
    try:
        async for msg in ws:  # heartbeats ("hi"); nothing else is expected
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
    finally:
        writer.flush()
        hub.detach(writer)
        log.info("%s disconnected", peer)
    return ws


def decode_record(raw: str | bytes) -> Message | str:
    """A replicated message, or the code of a deleted one. Raises ValueError if malformed."""
    obj: Any = orjson.loads(raw)
    if not isinstance(obj, dict) or not isinstance(obj.get("MessageCode"), str):
        raise ValueError("not a message record")
    code: str = obj["MessageCode"]
    if obj.get("Deleted") is True:
        return code
    data = obj.get("MessageData", "")
    topic = obj.get("Topic", "")
    numbers = [obj.get(k, 0) for k in ("CreateTime", "ConsumedTime", "DelayTime", "Status")]
    if not isinstance(data, str) or not isinstance(topic, str):
        raise ValueError("MessageData and Topic must be strings")
    if any(type(n) is not int for n in numbers):
        raise ValueError("CreateTime, ConsumedTime, DelayTime and Status must be integers")
    create, consumed, delay, status = numbers
    return Message(
        code, data, topic, create, delay, Status(status), float(create), consumed_time=consumed
    )


class SlaveLink:
    """Slave side: keep a sync connection to the master; pause pushing while it lives."""

    def __init__(self, runtime: BrokerRuntime, config: Config) -> None:
        self.runtime = runtime
        sync = config.sync
        self.url = f"{sync.masterProtocol}://{sync.masterAddr}:{sync.masterPort}/Sync/Conn"
        self.secret = config.mq.secretKey
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sync-slave")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.5
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    await self._follow(session)
                    backoff = 0.5
                except PermissionError as exc:
                    log.error("master at %s refused our key (%s); not retrying", self.url, exc)
                    self._takeover()
                    return
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("master at %s unreachable: %s", self.url, exc)
                self._takeover()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)

    def _takeover(self) -> None:
        if self.connected.is_set():
            log.warning("master lost: this slave starts pushing")
        self.connected.clear()
        self.runtime.broker.set_paused(False)

    async def _follow(self, session: aiohttp.ClientSession) -> None:
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)
        async with session.ws_connect(self.url, heartbeat=3.0, timeout=timeout) as ws:
            while True:
                text = await ws.receive_str(timeout=10)
                if text == PROMPT:
                    await ws.send_str(self.secret)
                elif text == MISMATCH:
                    raise PermissionError("Secret key matching error")
                elif text == MATCHED:
                    break
            self.runtime.broker.set_paused(True)
            self.connected.set()
            log.info("following master %s; pushing paused", self.url)
            beats = asyncio.get_running_loop().create_task(self._heartbeat(ws))
            try:
                async for frame in ws:
                    if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        break
                    self._apply(frame.data)
            finally:
                beats.cancel()

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await ws.send_str(HEARTBEAT.decode())
            await asyncio.sleep(1.0)

    def _apply(self, raw: str | bytes) -> None:
        try:
            record = decode_record(raw)
        except (ValueError, orjson.JSONDecodeError) as exc:
            log.warning("ignoring malformed sync record: %s", exc)
            return
        broker = self.runtime.broker
        if isinstance(record, str):
            broker.delete(record)
        else:
            broker.replicate(record)
            if record.status is Status.DELAYED:
                self.runtime.rearm()
